"""ЮKassa's shapes as the sandbox reads and writes them: requests, objects, error bodies.

Requests are checked the way ЮKassa does it — an unusable field is a 400 ``invalid_request``
naming the ``parameter`` — and fields the sandbox does not emulate (receipts, saved cards…)
are ignored, as the real API ignores what a shop did not ask for.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from billing.money import MAX_AMOUNT, format_amount, parse_amount, percent_of
from billing.sandbox.models import SandboxPayment, SandboxPaymentStatus, SandboxRefund

# A realistic card-acquiring fee, so that ``income_amount`` differs from ``amount`` as it does.
COMMISSION_PERCENT = Decimal("3.50")
GATEWAY_ID = "1000001"
# Who declines a card in ЮKassa's ``cancellation_details``, and the usual reason.
DECLINED_BY = "payment_network"
DECLINE_REASON = "general_decline"
_MAX_UNITS = Decimal(MAX_AMOUNT) / 100
# The sandbox's ids (UUIDs) and ЮKassa's (UUID-like); anything else cannot name an object.
OBJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SANDBOX_CARD = {
    "first6": "555555",
    "last4": "4477",
    "expiry_month": "12",
    "expiry_year": "2030",
    "card_type": "MasterCard",
    "issuer_country": "RU",
}


class YooKassaError(Exception):
    """An error answered in ЮKassa's shape: ``{"type": "error", "id", "code", "description",
    "parameter"}`` with its HTTP status."""

    def __init__(
        self, status: int, code: str, description: str, parameter: str | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.parameter = parameter

    def body(self) -> dict[str, str]:
        body = {
            "type": "error",
            "id": str(uuid.uuid4()),
            "code": self.code,
            "description": self.description,
        }
        if self.parameter is not None:
            body["parameter"] = self.parameter
        return body


def invalid_request(description: str, parameter: str | None = None) -> YooKassaError:
    return YooKassaError(400, "invalid_request", description, parameter)


def invalid_credentials() -> YooKassaError:
    return YooKassaError(
        401,
        "invalid_credentials",
        "Authentication by given credentials failed: check the shop id and the secret key",
        "Authorization",
    )


def not_found(what: str, parameter: str) -> YooKassaError:
    return YooKassaError(404, "not_found", f"{what} doesn't exist or access denied", parameter)


# --- requests -------------------------------------------------------------------------------


def _minor_units(value: object) -> int:
    """ЮKassa's ``amount.value``: a decimal string ("499.00"), or a JSON number, with at most
    2 decimals; the body is decoded with Decimal so no float ever appears."""
    if isinstance(value, str):
        minor = parse_amount(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        minor = value * 100
    elif isinstance(value, Decimal) and value.is_finite():
        if not 0 < value <= _MAX_UNITS:  # before any arithmetic on a huge exponent
            raise ValueError("must be positive and within the limit")
        scaled = value * 100
        if scaled != scaled.to_integral_value():
            raise ValueError("at most 2 decimals")
        minor = int(scaled)
    else:
        raise ValueError("must be a decimal amount such as 499.00")
    if not 0 < minor <= MAX_AMOUNT:
        raise ValueError("must be positive and within the limit")
    return minor


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    # ЮKassa: up to 16 keys, names up to 32 characters, values up to 512.
    if len(value) > 16 or any(len(k) > 32 or len(v) > 512 for k, v in value.items()):
        raise ValueError("up to 16 keys of up to 32 characters, values up to 512")
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AmountIn(_Request):
    value: Annotated[int, BeforeValidator(_minor_units)]
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class ConfirmationIn(_Request):
    # The only scenario the sandbox emulates: redirect the viewer to the checkout page.
    type: Literal["redirect"]
    return_url: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)]


class PaymentIn(_Request):
    amount: AmountIn
    # Two-stage payments (capture later) are not emulated; billing always captures at once.
    capture: Literal[True]
    confirmation: ConfirmationIn
    description: str | None = Field(default=None, max_length=128)
    metadata: Annotated[dict[str, str], AfterValidator(_metadata)] = Field(default_factory=dict)


class RefundIn(_Request):
    payment_id: str = Field(pattern=OBJECT_ID)
    amount: AmountIn
    description: str | None = Field(default=None, max_length=250)


_Model = TypeVar("_Model", bound=_Request)


def parse_body(model: type[_Model], body: bytes) -> tuple[_Model, str]:
    """The request and a digest of what was sent, or a 400 ``invalid_request`` naming the
    first unusable parameter."""
    try:
        document = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise invalid_request("Request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise invalid_request("Request body must be a JSON object")
    digest, canonical = _canonical(document)
    if "\\u0000" in canonical:  # PostgreSQL keeps no NUL characters, nor does ЮKassa
        raise invalid_request("Request body contains a NUL character")
    try:
        request = model.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        parameter = ".".join(str(part) for part in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise invalid_request(f"Invalid parameter value: {message}", parameter) from None
    return request, digest


def _canonical(document: Any) -> tuple[str, str]:
    """The request in one canonical spelling, and its digest: tells "the same request again"
    from "another request under the same key"."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest(), canonical


# --- objects --------------------------------------------------------------------------------


def money(minor: int, currency: str) -> dict[str, str]:
    return {"value": format_amount(minor), "currency": currency}


def timestamp(moment: datetime) -> str:
    """ЮKassa writes UTC with milliseconds and a ``Z``: ``2018-07-18T10:51:18.139Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def payment_object(payment: SandboxPayment, *, shop_id: str, public_url: str) -> dict[str, Any]:
    """A payment as ``GET /v3/payments/{id}`` shows it."""
    status = payment.status
    body: dict[str, Any] = {
        "id": payment.id,
        "status": status,
        "paid": status == SandboxPaymentStatus.SUCCEEDED,
        "amount": money(payment.amount, payment.currency),
    }
    if status == SandboxPaymentStatus.SUCCEEDED:
        fee = percent_of(payment.amount, COMMISSION_PERCENT)
        body["income_amount"] = money(payment.amount - fee, payment.currency)
    if payment.description is not None:
        body["description"] = payment.description
    body["recipient"] = {"account_id": shop_id, "gateway_id": GATEWAY_ID}
    if status != SandboxPaymentStatus.PENDING:
        # The viewer chose a card on the checkout page.
        body["payment_method"] = {
            "type": "bank_card",
            "id": payment.id,
            "saved": False,
            "title": f"Bank card *{SANDBOX_CARD['last4']}",
            "card": SANDBOX_CARD,
        }
    if payment.captured_at is not None:
        body["captured_at"] = timestamp(payment.captured_at)
    body["created_at"] = timestamp(payment.created_at)
    if status == SandboxPaymentStatus.PENDING:
        body["confirmation"] = {
            "type": "redirect",
            "confirmation_url": checkout_url(public_url, payment.id),
            "return_url": payment.return_url,
        }
    body["test"] = True
    if status == SandboxPaymentStatus.SUCCEEDED:
        body["refunded_amount"] = money(payment.refunded_amount, payment.currency)
    body["refundable"] = (
        status == SandboxPaymentStatus.SUCCEEDED and payment.refunded_amount < payment.amount
    )
    body["metadata"] = payment.merchant_metadata
    if status == SandboxPaymentStatus.CANCELED:
        body["cancellation_details"] = {
            "party": DECLINED_BY,
            "reason": payment.cancellation_reason or DECLINE_REASON,
        }
    return body


def refund_object(refund: SandboxRefund) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "status": refund.status,
        "created_at": timestamp(refund.created_at),
        "amount": money(refund.amount, refund.currency),
    }
    if refund.description is not None:
        body["description"] = refund.description
    return body


def notification(event: str, subject: dict[str, Any]) -> dict[str, Any]:
    """What ЮKassa POSTs to the shop's notification URL."""
    return {"type": "notification", "event": event, "object": subject}


def checkout_url(public_url: str, payment_id: str) -> str:
    return f"{public_url}/sandbox/checkout/{payment_id}"
