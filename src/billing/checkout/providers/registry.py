"""Every payment provider's adapter, built once at start-up and looked up by name.

A payment, its refund and its notifications always go through the adapter of the provider
that took the payment (``payment.provider``); ``BILLING_PROVIDER`` only picks the provider
for new payments, so switching it never strands an older payment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx

from billing.checkout.providers.base import PaymentProvider
from billing.checkout.providers.stripe import StripeProvider
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.config import Settings


class UnknownProvider(LookupError):
    """A payment or a webhook names a provider this deployment has no adapter for."""


class Providers(Mapping[str, PaymentProvider]):
    def __init__(self, adapters: Mapping[str, PaymentProvider], *, for_new_payments: str) -> None:
        if for_new_payments not in adapters:
            raise ValueError(f"provider {for_new_payments} is not available")
        self._adapters = dict(adapters)
        self.for_new_payments = self._adapters[for_new_payments]

    def __getitem__(self, name: str) -> PaymentProvider:
        try:
            return self._adapters[name]
        except KeyError:
            raise UnknownProvider(f"no adapter for provider {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._adapters

    def __iter__(self) -> Iterator[str]:
        return iter(self._adapters)

    def __len__(self) -> int:
        return len(self._adapters)


def providers_from_settings(settings: Settings, client: httpx.AsyncClient) -> Providers:
    """Both adapters, calling out through ``client`` (the app's outbound client).

    Each talks to its real API when its address is configured, else to the built-in sandbox
    (``/sandbox/v3`` for ЮKassa, ``/sandbox/stripe`` for Stripe), so both are always ready:
    payments taken under one setting stay confirmable and refundable under another.
    """
    adapters: dict[str, PaymentProvider] = {
        "yookassa": YooKassaProvider(
            client,
            base_url=settings.yookassa_base_url,
            shop_id=settings.yookassa_shop_id,
            secret_key=settings.yookassa_secret_key,
        ),
        "stripe": StripeProvider(
            client,
            base_url=settings.stripe_base_url,
            secret_key=settings.stripe_secret_key,
            webhook_secret=settings.stripe_webhook_secret,
        ),
    }
    return Providers(adapters, for_new_payments=settings.provider)


def provider_from_settings(settings: Settings, client: httpx.AsyncClient) -> PaymentProvider:
    """The adapter ``BILLING_PROVIDER`` picks for new payments."""
    return providers_from_settings(settings, client).for_new_payments
