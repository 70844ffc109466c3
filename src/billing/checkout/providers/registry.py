"""Which adapter the configuration asks for (``BILLING_PROVIDER``)."""

from __future__ import annotations

import httpx

from billing.checkout.providers.base import PaymentProvider
from billing.checkout.providers.stripe import StripeProvider
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.config import Settings


def provider_from_settings(settings: Settings, client: httpx.AsyncClient) -> PaymentProvider:
    """The configured provider, calling out through ``client`` (the app's outbound client).

    With the default settings this is the ЮKassa adapter pointed at the built-in sandbox; with
    ``BILLING_PROVIDER=stripe`` and no ``BILLING_STRIPE_API_BASE``, the Stripe adapter pointed
    at the sandbox's Stripe mode.
    """
    if settings.provider == "yookassa":
        return YooKassaProvider(
            client,
            base_url=settings.yookassa_base_url,
            shop_id=settings.yookassa_shop_id,
            secret_key=settings.yookassa_secret_key,
        )
    if settings.provider == "stripe":
        return StripeProvider(
            client,
            base_url=settings.stripe_base_url,
            secret_key=settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret,
        )
    raise ValueError(f"provider {settings.provider} is not available")
