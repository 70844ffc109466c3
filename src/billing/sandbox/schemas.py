"""ЮKassa's shapes as the sandbox reads and writes them: requests, objects, error bodies.

Requests are checked the way ЮKassa does it — an unusable field is a 400 ``invalid_request``
naming the ``parameter`` (``receipt.items[0].vat_code``) — and fields the sandbox does not
emulate are ignored, as the real API ignores what a shop did not ask for.
A ``receipt`` is checked field by field here and against the amount in ``receipts``.

Lifetimes, as ЮKassa documents them for bank cards: a payment the viewer has not confirmed
within ``CONFIRMATION_LIFETIME`` is canceled (``expired_on_confirmation``); a two-stage payment
not captured within ``CAPTURE_LIFETIME`` is canceled (``expired_on_capture``). Both are judged
on the app's clock, so a test moves the clock instead of waiting.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from billing.money import MAX_AMOUNT, format_amount, parse_amount, percent_of
from billing.sandbox import cards
from billing.sandbox.models import (
    STATE_KEY,
    SandboxPayment,
    SandboxPaymentStatus,
    SandboxRefund,
    merchant_part,
    state_of,
)

# A realistic card-acquiring fee, so that ``income_amount`` differs from ``amount`` as it does.
COMMISSION_PERCENT = Decimal("3.50")
GATEWAY_ID = "1000001"
# ЮKassa's ``cancellation_details.reason`` values the sandbox gives; the usual decline first.
DECLINE_REASON = "general_decline"
EXPIRED_ON_CONFIRMATION = "expired_on_confirmation"
EXPIRED_ON_CAPTURE = "expired_on_capture"
CANCELED_BY_MERCHANT = "canceled_by_merchant"
# A charge without the viewer of a method the shop may not (or no longer) charge.
PERMISSION_REVOKED = "permission_revoked"
DECLINE_REASONS = {
    cards.Decline.INSUFFICIENT_FUNDS: "insufficient_funds",
    cards.Decline.EXPIRED: "card_expired",
}
# Who cancels, by reason (ЮKassa's ``cancellation_details.party``: ``merchant``,
# ``yoo_money``, or ``payment_network`` — any other participant, such as the card's issuer).
CANCELED_BY = {
    EXPIRED_ON_CONFIRMATION: "yoo_money",
    EXPIRED_ON_CAPTURE: "yoo_money",
    CANCELED_BY_MERCHANT: "merchant",
    PERMISSION_REVOKED: "yoo_money",
}
DECLINED_BY = "payment_network"
CONFIRMATION_LIFETIME = timedelta(hours=1)
CAPTURE_LIFETIME = timedelta(days=7)
WAITING_FOR_CAPTURE = "waiting_for_capture"
_MAX_UNITS = Decimal(MAX_AMOUNT) / 100
# The sandbox's ids (UUIDs) and ЮKassa's (UUID-like); anything else cannot name an object.
OBJECT_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
SANDBOX_CARD_FIRST6 = "555555"
SANDBOX_CARD_LAST4 = "4477"  # the ``ok`` test card's


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


def not_found(what: str, parameter: str | None) -> YooKassaError:
    return YooKassaError(404, "not_found", f"{what} doesn't exist or access denied", parameter)


def method_not_allowed(method: str) -> YooKassaError:
    # ЮKassa documents the 405 without an error code of its own; the body keeps its shape.
    return YooKassaError(405, "method_not_allowed", f"HTTP method {method} is not allowed here")


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
    if STATE_KEY in value:
        raise ValueError(f"the key {STATE_KEY} is the sandbox's own")
    return value


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AmountIn(_Request):
    value: Annotated[int, BeforeValidator(_minor_units)]
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class ConfirmationIn(_Request):
    # ``redirect``: the viewer is sent to the checkout page and back to ``return_url``;
    # ``embedded``: the shop shows ЮKassa's widget with a ``confirmation_token`` (here the
    # checkout page stands in for the widget).
    type: Literal["redirect", "embedded"]
    return_url: Annotated[str, Field(max_length=2048), AfterValidator(_http_url)] | None = None

    @model_validator(mode="after")
    def _redirect_needs_return_url(self) -> Self:
        if self.type == "redirect" and self.return_url is None:
            raise ValueError("Field required: return_url")
        return self


# 54-FZ receipts (ЮKassa's ``receipt`` object): its lists of values, for FFD 1.05 and 1.2.
PAYMENT_SUBJECTS = frozenset({
    "commodity", "excise", "job", "service", "gambling_bet", "gambling_prize", "lottery",
    "lottery_prize", "intellectual_activity", "payment", "agent_commission", "property_right",
    "non_operating_gain", "insurance_premium", "sales_tax", "resort_fee", "composite",
    "another", "fine", "tax", "lien", "cost", "pension_insurance_without_payouts",
    "pension_insurance_with_payouts", "health_insurance_without_payouts",
    "health_insurance_with_payouts", "health_insurance", "casino", "agent_withdrawals",
    "non_marked_excise", "marked_excise", "marked", "non_marked",
})  # fmt: skip
PAYMENT_MODES = frozenset({
    "full_prepayment", "partial_prepayment", "advance", "full_payment", "partial_payment",
    "credit", "credit_payment",
})  # fmt: skip
MEASURES = frozenset({
    "piece", "gram", "kilogram", "ton", "centimeter", "decimeter", "meter",
    "square_centimeter", "square_decimeter", "square_meter", "milliliter", "liter",
    "cubic_meter", "kilowatt_hour", "gigacalorie", "day", "hour", "minute", "second",
    "kilobyte", "megabyte", "gigabyte", "terabyte", "another",
})  # fmt: skip
_QUANTITY = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
_MAX_QUANTITY = Decimal(10**9)


def _one_of(values: frozenset[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"must be one of ЮKassa's values ({', '.join(sorted(values))})")
        return value

    return AfterValidator(check)


def _code(value: object) -> object:
    """A code of ЮKassa's lists (``vat_code``, ``tax_system_code``): a number, or its digits
    as a string (as ЮKassa's own examples send it); never a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and not (len(value) <= 2 and value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number")
    return int(value)


def _quantity(value: object) -> Decimal:
    """``quantity``: a positive number or numeric string ("1", "2.5"), kept exact; at most 6
    decimals and below a billion, so that ``amount × quantity`` stays exact arithmetic."""
    if isinstance(value, str) and _QUANTITY.fullmatch(value.strip()):
        quantity = Decimal(value.strip())
    elif isinstance(value, int) and not isinstance(value, bool):
        quantity = Decimal(value)
    elif isinstance(value, Decimal) and value.is_finite():
        quantity = value
    else:
        raise ValueError("must be a number such as 1 or 2.5")
    if not 0 < quantity < _MAX_QUANTITY:
        raise ValueError("must be positive and below 10^9")
    exponent = quantity.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise ValueError("at most 6 decimals")
    return quantity


class ReceiptCustomerIn(_Request):
    full_name: str | None = Field(default=None, min_length=1, max_length=256)
    inn: str | None = Field(default=None, pattern=r"^([0-9]{10}|[0-9]{12})$")
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9]{7,15}$")  # ITU-T E.164

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        # Where the receipt is sent: ЮKassa needs one of the two.
        if self.email is None and self.phone is None:
            raise ValueError("the customer needs an email or a phone")
        return self


class ReceiptItemIn(_Request):
    description: str = Field(min_length=1, max_length=128)
    quantity: Annotated[Decimal, BeforeValidator(_quantity)]
    amount: AmountIn  # the price of one unit
    vat_code: Annotated[int, BeforeValidator(_code), Field(ge=1, le=12)]
    payment_subject: Annotated[str, _one_of(PAYMENT_SUBJECTS)]
    payment_mode: Annotated[str, _one_of(PAYMENT_MODES)]
    measure: Annotated[str, _one_of(MEASURES)] | None = None


class ReceiptIn(_Request):
    customer: ReceiptCustomerIn
    # ЮKassa: up to 100 items (80 with its own receipts service).
    items: list[ReceiptItemIn] = Field(min_length=1, max_length=100)
    tax_system_code: Annotated[int, BeforeValidator(_code), Field(ge=1, le=6)] | None = None


class PaymentIn(_Request):
    amount: AmountIn
    # ЮKassa's default is two-stage: the paid payment waits for ``POST …/capture``.
    capture: bool = False
    # Required, except for a charge of a saved method (``payment_method_id``): that one is
    # made at once, without the viewer.
    confirmation: ConfirmationIn | None = None
    description: str | None = Field(default=None, max_length=128)
    metadata: Annotated[dict[str, str], AfterValidator(_metadata)] = Field(default_factory=dict)
    receipt: ReceiptIn | None = None
    # Save the method the viewer pays with, for later charges without them (autopayments).
    save_payment_method: bool = False
    payment_method_id: str | None = Field(default=None, pattern=OBJECT_ID)

    @model_validator(mode="after")
    def _confirmed_or_saved(self) -> Self:
        if self.confirmation is None and self.payment_method_id is None:
            raise ValueError("Field required: confirmation")
        return self


class CaptureIn(_Request):
    amount: AmountIn | None = None  # less than the payment's: a partial capture
    receipt: ReceiptIn | None = None  # what a partial capture sells instead


class RefundIn(_Request):
    payment_id: str = Field(pattern=OBJECT_ID)
    amount: AmountIn
    description: str | None = Field(default=None, max_length=250)
    receipt: ReceiptIn | None = None


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
        location = list(first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        if message.startswith("Field required: "):  # a rule across fields names its field
            location.append(message.removeprefix("Field required: "))
            message = "Field required"
        parameter = _parameter(location)
        raise invalid_request(f"Invalid parameter value: {message}", parameter) from None
    return request, digest


def _parameter(location: list[int | str]) -> str | None:
    """ЮKassa's way of naming a field: ``receipt.items[0].vat_code``."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or None


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


def api_status(payment: SandboxPayment) -> str:
    """The status ЮKassa shows: a two-stage payment the viewer paid is ``waiting_for_capture``
    (kept as ``pending`` with its authorisation time in the sandbox's state)."""
    if payment.status == SandboxPaymentStatus.PENDING and authorized_at(payment) is not None:
        return WAITING_FOR_CAPTURE
    return payment.status


def authorized_at(payment: SandboxPayment) -> datetime | None:
    moment = state_of(payment.merchant_metadata).get("authorized_at")
    return datetime.fromisoformat(moment) if isinstance(moment, str) else None


def captures_at_once(payment: SandboxPayment) -> bool:
    # Records made before two-stage payments were emulated were all ``capture: true``.
    return bool(state_of(payment.merchant_metadata).get("capture", True))


def payment_object(
    payment: SandboxPayment,
    *,
    shop_id: str,
    public_url: str,
    receipt_registration: str | None = None,
) -> dict[str, Any]:
    """A payment as ``GET /v3/payments/{id}`` shows it; ``receipt_registration`` where its
    54-FZ receipt stands, if it has one (``receipts.receipt_registration``)."""
    status = api_status(payment)
    paid = status in (SandboxPaymentStatus.SUCCEEDED, WAITING_FOR_CAPTURE)
    authorized = authorized_at(payment)
    body: dict[str, Any] = {
        "id": payment.id,
        "status": status,
        "paid": paid,
        "amount": money(payment.amount, payment.currency),
    }
    if status == SandboxPaymentStatus.SUCCEEDED:
        fee = percent_of(payment.amount, COMMISSION_PERCENT)
        body["income_amount"] = money(payment.amount - fee, payment.currency)
    if payment.description is not None:
        body["description"] = payment.description
    body["recipient"] = {"account_id": shop_id, "gateway_id": GATEWAY_ID}
    method = payment_method(payment)
    if method is not None:
        body["payment_method"] = method
    if payment.captured_at is not None:
        body["captured_at"] = timestamp(payment.captured_at)
    body["created_at"] = timestamp(payment.created_at)
    if status == WAITING_FOR_CAPTURE and authorized is not None:
        body["expires_at"] = timestamp(authorized + CAPTURE_LIFETIME)
    if status == SandboxPaymentStatus.PENDING:
        body["confirmation"] = confirmation(payment, public_url)
    body["test"] = True
    if payment.refunded_amount > 0:  # ЮKassa shows it once something was refunded
        body["refunded_amount"] = money(payment.refunded_amount, payment.currency)
    body["refundable"] = (
        status == SandboxPaymentStatus.SUCCEEDED and payment.refunded_amount < payment.amount
    )
    body["metadata"] = merchant_part(payment.merchant_metadata)
    if receipt_registration is not None:
        body["receipt_registration"] = receipt_registration
    if status == SandboxPaymentStatus.CANCELED:
        reason = payment.cancellation_reason or DECLINE_REASON
        body["cancellation_details"] = {
            "party": CANCELED_BY.get(reason, DECLINED_BY),
            "reason": reason,
        }
    return body


def payment_method(payment: SandboxPayment) -> dict[str, Any] | None:
    """The card the payment was paid (or declined) with, once there is one: the one the viewer
    chose on the checkout page, or the saved method a charge without the viewer used. Its
    ``id`` is the method's — a saving payment's own id, as ЮKassa numbers them — and
    ``saved`` says whether the shop may charge it later."""
    state = state_of(payment.merchant_metadata)
    if "card" not in state and (
        api_status(payment) == SandboxPaymentStatus.PENDING
        or payment.cancellation_reason in (EXPIRED_ON_CONFIRMATION, PERMISSION_REVOKED)
    ):
        return None  # nobody paid: unconfirmed, or a method that could not be charged
    card = cards.card_of(state.get("card"))
    last4 = cards.last4(card, ok=SANDBOX_CARD_LAST4)
    month, year = cards.expiry(card, _card_saved_at(payment, state))
    return {
        "type": "bank_card",
        "id": state.get("method_id", payment.id),
        "saved": bool(state.get("saved", False)),
        "title": f"Bank card *{last4}",
        "card": {
            "first6": SANDBOX_CARD_FIRST6,
            "last4": last4,
            "expiry_month": f"{month:02d}",
            "expiry_year": str(year),
            "card_type": "MasterCard",
            "issuer_country": "RU",
        },
    }


def _card_saved_at(payment: SandboxPayment, state: dict[str, Any]) -> datetime:
    """When the card was first paid with: its expiry is reckoned from then."""
    moment = state.get("card_since")
    return datetime.fromisoformat(moment) if isinstance(moment, str) else payment.created_at


def confirmation(payment: SandboxPayment, public_url: str) -> dict[str, Any]:
    if state_of(payment.merchant_metadata).get("confirmation") == "embedded":
        # The widget's token; the sandbox's checkout page is where the widget would be.
        return {"type": "embedded", "confirmation_token": f"ct-{payment.id}"}
    return {
        "type": "redirect",
        "confirmation_url": checkout_url(public_url, payment.id),
        "return_url": payment.return_url,
    }


def list_object(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """ЮKassa's list: ``{"type": "list", "items": […], "next_cursor"}`` (the cursor only while
    more items follow), newest first."""
    body: dict[str, Any] = {"type": "list", "items": items}
    if next_cursor is not None:
        body["next_cursor"] = next_cursor
    return body


def me_object(shop_id: str, *, receipts: bool) -> dict[str, Any]:
    """``GET /v3/me``: the shop the credentials belong to, sending 54-FZ receipts through
    ЮKassa's own receipts service (``avanpost``) when ``receipts``."""
    fiscalization: dict[str, Any] = {"enabled": receipts}
    if receipts:
        fiscalization["provider"] = "avanpost"
    return {
        "account_id": shop_id,
        "test": True,
        "fiscalization": fiscalization,
        "fiscalization_enabled": receipts,  # ЮKassa's older name, still sent
        "payment_methods": ["bank_card"],
        "status": "enabled",
    }


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
