"""The one interface every payment provider adapter implements.

Billing never trusts what a provider *sends*; it only trusts what it *reads back*:
notifications are parsed just far enough to know which payment to re-read.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import httpx

# What a provider call may cost a viewer's request: each attempt connects within 3 s and
# reads within 5 s, three attempts in all with a short back-off between them (≈ 16 s at
# worst, under the 30 s a browser or mobile client waits). A provider that hangs then costs
# its own callers that long, and nobody else: no connection or lock is held meanwhile.
PROVIDER_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
PROVIDER_ATTEMPTS = 3


class ProviderPaymentStatus(StrEnum):
    PENDING = "pending"  # waiting for the viewer
    # Paid by the viewer and held for the shop: captured (then succeeded) or canceled.
    WAITING_FOR_CAPTURE = "waiting_for_capture"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class ProviderRefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class DeclineReason(StrEnum):
    """Why a provider declined a charge, in billing's words (each adapter maps its own)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    ISSUER_UNAVAILABLE = "issuer_unavailable"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    CARD_EXPIRED = "card_expired"
    METHOD_REVOKED = "method_revoked"  # the method may no longer be charged (or is gone)
    FRAUD = "fraud"
    DECLINED = "declined"  # anything else the issuer or provider refused


@dataclass(frozen=True)
class SavedMethod:
    """A payment method the provider kept for charges without the viewer."""

    provider_method_id: str
    title: str  # what the viewer recognises: "Bank card *4477"
    card_last4: str | None = None
    expires: str | None = None  # "2027-03"
    customer_id: str | None = None  # the provider's customer it belongs to (Stripe)


@dataclass(frozen=True)
class ProviderPayment:
    """A payment as the provider sees it."""

    provider_payment_id: str
    status: ProviderPaymentStatus
    amount: int  # minor units
    currency: str
    confirmation_url: str | None
    paid_at: datetime | None = None
    refunded_amount: int = 0
    # Provider-specific facts billing keeps for later calls (e.g. Stripe's payment intent).
    data: Mapping[str, Any] = field(default_factory=dict)
    # The method the provider saved with this payment, when the viewer asked to save it.
    saved_method: SavedMethod | None = None
    # Why a canceled payment was declined, when the provider says.
    decline_reason: DeclineReason | None = None


@dataclass(frozen=True)
class ReceiptItem:
    description: str  # at most 128 characters (ЮKassa's limit)
    amount: int  # minor units: the line's total, quantity 1
    vat_code: int
    # What billing sells: a service, paid in full at once, counted in pieces (54-FZ).
    payment_subject: str = "service"
    payment_mode: str = "full_payment"
    measure: str = "piece"


@dataclass(frozen=True)
class Receipt:
    """A 54-FZ fiscal receipt of a sale or of its refund: who gets it, what was sold."""

    customer_email: str
    currency: str
    items: tuple[ReceiptItem, ...]
    tax_system_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> Receipt:
        return cls(
            customer_email=stored["customer_email"],
            currency=stored["currency"],
            items=tuple(ReceiptItem(**item) for item in stored["items"]),
            tax_system_code=stored.get("tax_system_code"),
        )


@dataclass(frozen=True)
class ProviderRefund:
    provider_refund_id: str
    status: ProviderRefundStatus
    amount: int
    currency: str


@dataclass(frozen=True)
class Notification:
    """What a notification is about: only the provider's payment id, to be re-read."""

    event: str
    provider_payment_id: str
    event_id: str | None = None  # for providers that number their events (Stripe)
    # When the event names the payment by something else than its id, the key of
    # ``ProviderPayment.data`` that billing keeps that reference under (Stripe's charge
    # events name the payment intent, never the Checkout Session).
    named_by: str | None = None


class ProviderError(Exception):
    """Base of the failures an adapter reports."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or answered 5xx after retries: try again later.
    The API answers 503 ``provider_unavailable`` and writes nothing."""


class ProviderRejected(ProviderError):
    """The provider refused the request (4xx): retrying the same request will not help."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class InvalidNotification(ProviderError):
    """A notification that is malformed or not signed by the provider: answer 400."""


class PaymentProvider(Protocol):
    name: str
    # Whether this provider sends billing's 54-FZ receipts to the tax service (ЮKassa does;
    # Stripe mails its own receipt to ``customer_email``).
    sends_receipts: bool
    # Whether a method is saved for (and charged through) a customer of the provider's,
    # one per viewer (Stripe), made by ``create_customer``.
    keeps_customers: bool

    async def create_customer(
        self, *, user_id: uuid.UUID, email: str | None, idempotence_key: str
    ) -> str:
        """The provider's customer for a viewer (only where ``keeps_customers``)."""
        ...

    async def create_payment(
        self,
        *,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        description: str,
        return_url: str,
        idempotence_key: str,
        expires_at: datetime,
        requested_at: datetime,
        customer_email: str | None = None,
        receipt: Receipt | None = None,
        save_payment_method: bool = False,
        customer_id: str | None = None,
    ) -> ProviderPayment:
        """Create the payment; retries reuse ``idempotence_key`` so at most one exists.
        With ``save_payment_method`` the provider is asked to keep the method for charges
        without the viewer (``ProviderPayment.saved_method`` once paid).

        ``requested_at`` is the real time of the first attempt with this key: a provider
        that judges windows by its own clock computes them from it, so that a retry (the
        viewer's next click, reconciliation) sends exactly the same request and is answered
        the first one's result."""
        ...

    async def get_payment(
        self, provider_payment_id: str, data: Mapping[str, Any] | None = None
    ) -> ProviderPayment: ...

    async def charge_saved_method(
        self,
        *,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        description: str,
        method: SavedMethod,
        idempotence_key: str,
        receipt: Receipt | None = None,
    ) -> ProviderPayment:
        """Charge a saved method without the viewer (auto-renewal): answered ``succeeded``,
        or ``canceled`` with its ``decline_reason``; a retry with the key answers the first
        attempt's outcome, never a second charge."""
        ...

    async def capture_payment(
        self, provider_payment_id: str, *, amount: int, currency: str, idempotence_key: str
    ) -> ProviderPayment:
        """Take the money of a payment waiting for capture (whole)."""
        ...

    async def cancel_payment(
        self, provider_payment_id: str, *, idempotence_key: str
    ) -> ProviderPayment:
        """Release the money of a payment waiting for capture."""
        ...

    async def create_refund(
        self,
        *,
        provider_payment_id: str,
        amount: int,
        currency: str,
        idempotence_key: str,
        data: Mapping[str, Any] | None = None,
        receipt: Receipt | None = None,
    ) -> ProviderRefund: ...

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """Which payment a notification is about; raises ``InvalidNotification``."""
        ...
