"""Which adapter the configuration asks for (``BILLING_PROVIDER``)."""

from __future__ import annotations

import httpx

from billing.checkout.providers.base import PaymentProvider
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.config import Settings


def provider_from_settings(settings: Settings, client: httpx.AsyncClient) -> PaymentProvider:
    """The configured provider, calling out through ``client`` (the app's outbound client).

    With the default settings this is the ЮKassa adapter pointed at the built-in sandbox.
    """
    if settings.provider == "yookassa":
        return YooKassaProvider(
            client,
            base_url=settings.yookassa_base_url,
            shop_id=settings.yookassa_shop_id,
            secret_key=settings.yookassa_secret_key,
        )
    raise ValueError(f"provider {settings.provider} is not available yet")
