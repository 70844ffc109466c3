"""Stripe's shapes as the sandbox reads and writes them: form-encoded requests with nested
keys, Stripe's JSON objects and its error bodies (https://docs.stripe.com/api).

Requests are checked the way Stripe does it — a missing or unusable parameter is a 400
``invalid_request_error`` naming the ``param`` in Stripe's bracket spelling — and parameters
the sandbox does not emulate are ignored, as the ЮKassa sandbox ignores what it does not
emulate.

Objects carry every field of Stripe's published schema for them (nulls and defaults where the
sandbox has nothing to say), so that code written against Stripe's API finds what it reads.
A session's payment intent goes through Stripe's states: ``requires_payment_method`` after a
declined card (the session stays ``open`` for another try), ``processing`` while a delayed
payment method settles (the session is ``complete`` but ``unpaid``), ``succeeded``.

Saved cards: a session with ``customer`` and ``payment_intent_data[setup_future_usage]``
attaches the card it is paid with to the customer (a ``payment_method`` the sandbox keeps);
``POST /v1/payment_intents`` with ``confirm=true`` charges it without the viewer — an
intent kept on a row of the sessions' table (``kind: payment_intent`` in its state, never
shown as a session), so that reading and refunding it is what it is for a session's intent.
A declined charge is Stripe's 402 ``card_error`` (``CardError``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import stripe
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from billing.sandbox import cards
from billing.sandbox.models import (
    STATE_KEY,
    SandboxStripeCustomer,
    SandboxStripePaymentMethod,
    SandboxStripeRefund,
    SandboxStripeSession,
    SandboxStripeSessionStatus,
    merchant_part,
    state_of,
)

# Stripe's limit on a charge, in minor units (99 999 999: eight digits).
MAX_AMOUNT = 99_999_999
MAX_FIELDS = 1000
MAX_DEPTH = 6
MAX_INDEX = 999
_ALPHABET = string.ascii_letters + string.digits
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
# What the sandbox's ids look like (and Stripe's: a prefix, then letters and digits).
OBJECT_ID = re.compile(r"[a-z]{2,4}_[A-Za-z0-9_]{1,76}")
SANDBOX_CARD = {"brand": "visa", "country": "US", "funding": "credit"}
SANDBOX_CARD_LAST4 = "4242"  # the ``ok`` test card's, as Stripe's own
# Checkout's languages (Stripe's ``locale`` enumeration).
LOCALES = Literal[
    "auto", "bg", "cs", "da", "de", "el", "en", "en-GB", "es", "es-419", "et", "fi", "fil",
    "fr", "fr-CA", "hr", "hu", "id", "it", "ja", "ko", "lt", "lv", "ms", "mt", "nb", "nl",
    "pl", "pt", "pt-BR", "ro", "ru", "sk", "sl", "sv", "th", "tr", "vi", "zh", "zh-HK",
    "zh-TW",
]  # fmt: skip
DECLINE = {
    "code": "card_declined",
    "decline_code": "generic_decline",
    "message": "Your card was declined.",
}
# A test card's decline as Stripe reports it (its test cards 4000…9995 and 4000…0069): an
# expired card is its own error ``code``, with the same ``decline_code``.
DECLINES = {
    cards.Decline.INSUFFICIENT_FUNDS: {
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
    },
    cards.Decline.EXPIRED: {
        "code": "expired_card",
        "decline_code": "expired_card",
        "message": "Your card has expired.",
    },
}
DELAYED_FAILURE = {
    "code": "payment_method_provider_decline",
    "message": "The payment was declined by the bank after processing.",
}


def new_id(prefix: str, length: int = 24) -> str:
    """``pi_3Mtw…``-like: the prefix and random letters and digits."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_session_id() -> str:
    return new_id("cs_test_", 58)


def derived_id(prefix: str, source: str, length: int = 24) -> str:
    """A stable id for an object the sandbox does not store (a line item, a payment method):
    the same source always names the same object."""
    digest = hmac.new(b"sandbox", source.encode(), hashlib.sha256).digest()
    return prefix + "".join(_ALPHABET[byte % len(_ALPHABET)] for byte in digest[:length])


# --- errors ---------------------------------------------------------------------------------


class StripeApiError(Exception):
    """An error answered in Stripe's shape: ``{"error": {"type", "code", "message", "param",
    "doc_url"}}`` with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeApiError:
    return StripeApiError(status, message, code=code, param=param)


def no_such(what: str, object_id: str, param: str, *, status: int = 404) -> StripeApiError:
    """404 for the object a URL names; 400 for one a parameter names."""
    return StripeApiError(
        status, f"No such {what}: '{object_id}'", code="resource_missing", param=param
    )


class CardError(StripeApiError):
    """Stripe's 402 for a declined charge: its body names the charge, the payment intent left
    ``requires_payment_method`` and the payment method (``body`` is kept whole, so that a
    replay under the same ``Idempotency-Key`` answers it again)."""

    def __init__(self, body: dict[str, Any], *, replayed: bool = False) -> None:
        super().__init__(402, body["error"]["message"], type="card_error",
                         code=body["error"]["code"])  # fmt: skip
        self._body = body
        self.replayed = replayed

    def body(self) -> dict[str, Any]:
        return self._body


def card_error(
    failure: dict[str, Any], *, charge_id: str, intent: dict[str, Any], method: dict[str, Any]
) -> CardError:
    return CardError({
        "error": {
            "type": "card_error",
            "charge": charge_id,
            "doc_url": f"https://stripe.com/docs/error-codes/{failure['code'].replace('_', '-')}",
            "payment_intent": intent,
            "payment_method": method,
            **failure,
        }
    })  # fmt: skip


def idempotency_error(message: str) -> StripeApiError:
    return StripeApiError(400, message, type="idempotency_error")


def missing_api_key() -> StripeApiError:
    return StripeApiError(
        401,
        "You did not provide an API key. You need to provide your API key in the Authorization"
        " header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
    )


def invalid_api_key(given: str) -> StripeApiError:
    # Stripe shows the key's prefix and its last four characters, never more.
    prefix = re.match(r"[a-z]{2}_(test_|live_)?", given)
    shown = (prefix.group(0) if prefix else "") + "*" * 8 + given[-4:] if len(given) > 8 else ""
    return StripeApiError(401, f"Invalid API Key provided: {shown or '****'}")


# --- form encoding --------------------------------------------------------------------------


def parse_form(raw: bytes) -> dict[str, Any]:
    """Stripe's form encoding → nested values: ``a[b][0][c]=1`` → ``{"a": {"b": [{"c":
    "1"}]}}``, ``expand[]=x&expand[]=y`` → ``{"expand": ["x", "y"]}``; a repeated plain key
    keeps its last value. Every leaf is a string, as sent."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise invalid_request("The request is not valid UTF-8.") from None
    except ValueError:
        raise invalid_request(f"Too many parameters: at most {MAX_FIELDS}.") from None
    tree: dict[Any, Any] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise invalid_request("Parameters may not contain NUL characters.", param=key[:64])
        match = _KEY.fullmatch(key)
        if match is None:
            raise invalid_request(f"Invalid parameter name: {key[:64]}", param=key[:64])
        path: list[str] = [match[1], *_SEGMENT.findall(match[2])]
        if len(path) > MAX_DEPTH:
            raise invalid_request("Parameters are nested too deeply.", param=key[:64])
        _put(tree, path, value, key)
    return {name: _arrays(node, name) for name, node in tree.items()}


def _put(tree: dict[Any, Any], path: list[str], value: str, key: str) -> None:
    node = tree
    for depth, segment in enumerate(path):
        name: str | int = segment
        if depth and segment == "":  # ``[]``: the next element
            name = sum(isinstance(existing, int) for existing in node)
        elif depth and segment.isdigit():
            if len(segment) > 3 or int(segment) > MAX_INDEX:
                raise invalid_request("Array index too large.", param=key[:64])
            name = int(segment)
        if depth == len(path) - 1:
            if isinstance(node.get(name), dict):
                raise invalid_request(f"Invalid value for {key[:64]}: expected an object.",
                                      param=key[:64])  # fmt: skip
            node[name] = value
            return
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid value for {key[:64]}: expected a string.",
                                  param=key[:64])  # fmt: skip
        node = child


def _arrays(node: Any, param: str) -> Any:
    """Objects whose keys are all indexes are arrays (indexes 0…n-1, as Stripe requires)."""
    if not isinstance(node, dict):
        return node
    keys = list(node)
    if keys and all(isinstance(key, int) for key in keys):
        if sorted(keys) != list(range(len(keys))):
            raise invalid_request("Invalid array", param=param)
        return [_arrays(node[index], f"{param}[{index}]") for index in range(len(keys))]
    if any(isinstance(key, int) for key in keys):
        raise invalid_request("Invalid object: mixes indexes and names", param=param)
    return {key: _arrays(value, f"{param}[{key}]") for key, value in node.items()}


def digest(params: dict[str, Any]) -> str:
    """Tells "the same request again" from "another request under the same key"."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def param_name(location: Sequence[str | int]) -> str:
    """``("line_items", 0, "price_data")`` → ``line_items[0][price_data]``."""
    head, *rest = [str(part) for part in location] or [""]
    return head + "".join(f"[{part}]" for part in rest)


def _drop_empty(params: Any, path: tuple[str | int, ...] = ()) -> Any:
    """Stripe reads an empty value as "unset": fine in metadata, refused elsewhere."""
    if isinstance(params, dict):
        return {k: _drop_empty(v, (*path, k)) for k, v in params.items()
                if not (v == "" and "metadata" in (*path, k))}  # fmt: skip
    if isinstance(params, list):
        return [_drop_empty(v, (*path, i)) for i, v in enumerate(params)]
    if params == "":
        name = param_name(path)
        raise invalid_request(
            f"You passed an empty string for '{name}'. We assume empty values are an attempt to"
            f" unset a parameter; however '{name}' cannot be unset. You should remove '{name}'"
            " from your request or supply a non-empty value.",
            param=name,
            code="parameter_invalid_empty",
        )
    return params


# --- requests -------------------------------------------------------------------------------


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("Not a valid URL")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 50 or any(len(k) > 40 or len(v) > 500 for k, v in value.items()):
        raise ValueError("up to 50 keys, names up to 40 characters, values up to 500")
    if STATE_KEY in value:
        raise ValueError(f"the key {STATE_KEY} is the sandbox's own")
    return value


Url = Annotated[str, Field(max_length=5000), AfterValidator(_url)]
Metadata = Annotated[dict[str, str], AfterValidator(_metadata)]


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProductDataIn(_Form):
    name: str = Field(max_length=250)


class PriceDataIn(_Form):
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    unit_amount: int = Field(ge=0, le=MAX_AMOUNT)
    product_data: ProductDataIn


class LineItemIn(_Form):
    price: str | None = None  # a Price object's id: not emulated
    price_data: PriceDataIn | None = None
    quantity: int = Field(ge=1, le=MAX_AMOUNT)


class PaymentIntentDataIn(_Form):
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata = Field(default_factory=dict)
    # Save the card paid with for later charges: ``off_session`` (without the customer).
    setup_future_usage: Literal["on_session", "off_session"] | None = None


ObjectId = Annotated[str, Field(max_length=80)]


class SessionIn(_Form):
    # Subscriptions and setup sessions are not emulated; billing sells months at once.
    mode: Literal["payment"]
    line_items: list[LineItemIn] = Field(min_length=1, max_length=100)
    # Required for the hosted page (the only ``ui_mode`` emulated), as at Stripe; ``hosted``,
    # its older name, is still taken.
    ui_mode: Literal["hosted_page", "hosted"] = "hosted_page"
    success_url: Url
    cancel_url: Url | None = None
    customer_email: str | None = Field(default=None, max_length=800, pattern=r"^[^@\s]+@[^@\s]+$")
    customer: ObjectId | None = None
    locale: LOCALES | None = None
    client_reference_id: str | None = Field(default=None, max_length=200)
    expires_at: int | None = Field(default=None, ge=0, le=2**40)
    metadata: Metadata = Field(default_factory=dict)
    payment_intent_data: PaymentIntentDataIn = Field(default_factory=PaymentIntentDataIn)
    expand: list[str] = Field(default_factory=list, max_length=20)


class RefundIn(_Form):
    payment_intent: str | None = None
    charge: str | None = None
    amount: int | None = Field(default=None, ge=1, le=MAX_AMOUNT)
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)
    expand: list[str] = Field(default_factory=list, max_length=20)


class ReadIn(_Form):
    expand: list[str] = Field(default_factory=list, max_length=20)


class CustomerIn(_Form):
    email: str | None = Field(default=None, max_length=512, pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=5000)
    metadata: Metadata = Field(default_factory=dict)
    expand: list[str] = Field(default_factory=list, max_length=20)


class PaymentIntentIn(_Form):
    """``POST /v1/payment_intents``: only ``confirm=true`` is emulated — the charge of a
    saved card, on or (``off_session``) without the customer."""

    amount: int = Field(ge=1, le=MAX_AMOUNT)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    customer: ObjectId | None = None
    payment_method: ObjectId | None = None
    confirm: bool = False
    off_session: bool | Literal["one_off", "recurring"] = False
    description: str | None = Field(default=None, max_length=1000)
    metadata: Metadata = Field(default_factory=dict)
    expand: list[str] = Field(default_factory=list, max_length=20)


_Model = TypeVar("_Model", bound=_Form)


def parse_params(model: type[_Model], raw: bytes) -> tuple[_Model, str]:
    """The request and its digest, or Stripe's 400 naming the first unusable param."""
    params = _drop_empty(parse_form(raw))
    try:
        request = model.model_validate(params)
    except ValidationError as error:
        raise _as_stripe_error(error) from None
    return request, digest(params)


def _as_stripe_error(error: ValidationError) -> StripeApiError:
    first = error.errors()[0]
    name = param_name(first["loc"])
    kind, message = first["type"], str(first["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        return invalid_request(f"Missing required param: {name}.", param=name,
                               code="parameter_missing")  # fmt: skip
    if kind.startswith("int_"):
        return invalid_request(f"Invalid integer: {str(first['input'])[:64]}", param=name,
                               code="parameter_invalid_integer")  # fmt: skip
    if kind == "dict_type":
        return invalid_request("Invalid object", param=name)
    if kind == "list_type":
        return invalid_request("Invalid array", param=name)
    return invalid_request(f"Invalid {name}: {message}", param=name)


# --- objects --------------------------------------------------------------------------------


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def checkout_url(public_url: str, session_id: str) -> str:
    """Where the viewer pays (Stripe's is ``https://checkout.stripe.com/c/pay/cs_…``)."""
    return f"{public_url}/sandbox/stripe/c/pay/{session_id}"


def intent_state(session: SandboxStripeSession) -> dict[str, Any] | None:
    """The payment intent's ``status``, ``created`` and ``last_payment_error``, and its latest
    charge's ``charge_status`` and ``failure``; None before the viewer first tries to pay."""
    if session.payment_intent_id is None:
        return None
    recorded = state_of(session.merchant_metadata).get("intent")
    if isinstance(recorded, dict):
        return recorded
    # Sessions paid before attempts were recorded: paid at once, by card.
    assert session.paid_at is not None
    return {"status": "succeeded", "created": unix(session.paid_at), "charge_status": "succeeded"}


def is_paid(session: SandboxStripeSession) -> bool:
    intent = intent_state(session)
    return intent is not None and intent["status"] == "succeeded"


def session_object(
    session: SandboxStripeSession,
    *,
    public_url: str,
    expand: Sequence[str] = (),
    saved_method: SandboxStripePaymentMethod | None = None,
) -> dict[str, Any]:
    """A Checkout Session as ``GET /v1/checkout/sessions/{id}`` shows it (``saved_method``:
    the card it saved as it is now, for ``expand[]=payment_intent.payment_method``)."""
    state = state_of(session.merchant_metadata)
    intent: Any = session.payment_intent_id
    # Expanding a path expands every object along it.
    if intent is not None and any(path.split(".")[0] == "payment_intent" for path in expand):
        nested = [path.split(".", 1)[1] for path in expand if path.startswith("payment_intent.")]
        intent = payment_intent_object(session, expand=nested, saved_method=saved_method)
    email = state.get("customer_email")
    complete = session.status == SandboxStripeSessionStatus.COMPLETE
    body: dict[str, Any] = {
        "id": session.id,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": None,
        "allowed_payment_method_types": None,
        "amount_subtotal": session.amount_total,
        "amount_total": session.amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "branding_settings": None,
        "cancel_url": session.cancel_url,
        "client_reference_id": session.client_reference_id,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": unix(session.created_at),
        "currency": session.currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": state.get("customer"),
        "customer_account": None,
        "customer_creation": "if_required",
        # What the customer entered on the page; the sandbox's page asks for nothing more.
        "customer_details": (
            {
                "address": None,
                "business_name": None,
                "email": email,
                "individual_name": None,
                "name": None,
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            if complete
            else None
        ),
        "customer_email": email,
        "discounts": [],
        "excluded_payment_method_types": None,
        "expires_at": unix(session.expires_at),
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": state.get("locale"),
        "managed_payments": None,
        "metadata": merchant_part(session.merchant_metadata),
        "mode": "payment",
        "name_collection": None,
        "optional_items": None,
        "origin_context": None,
        "payment_intent": intent,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "paid" if is_paid(session) else "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "presentment_details": None,
        "recovered_from": None,
        "redirect_on_completion": None,
        "return_url": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": session.status,
        "submit_type": None,
        "subscription": None,
        "success_url": session.success_url,
        "tax_id_collection": {"enabled": False, "required": "never"},
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": (
            checkout_url(public_url, session.id)
            if session.status == SandboxStripeSessionStatus.OPEN
            else None
        ),
        "wallet_options": None,
    }
    if "line_items" in expand:
        body["line_items"] = line_items_list(session)
    return body


def line_items_list(session: SandboxStripeSession) -> dict[str, Any]:
    """``line_items`` (only when expanded): a list of Stripe's ``item`` objects, each with the
    one-off price the shop's ``price_data`` made."""
    items = []
    for index, item in enumerate(session.line_items):
        source = f"{session.id}/{index}"
        total = item["unit_amount"] * item["quantity"]
        price = {
            "id": derived_id("price_", source), "object": "price", "active": False,
            "billing_scheme": "per_unit", "created": unix(session.created_at),
            "currency": session.currency, "custom_unit_amount": None, "livemode": False,
            "lookup_key": None, "metadata": {}, "nickname": None,
            "product": derived_id("prod_", source, 14), "recurring": None,
            "tax_behavior": "unspecified", "tiers_mode": None, "transform_quantity": None,
            "type": "one_time", "unit_amount": item["unit_amount"],
            "unit_amount_decimal": str(item["unit_amount"]),
        }  # fmt: skip
        items.append({
            "id": derived_id("li_", source), "object": "item", "adjustable_quantity": None,
            "amount_discount": 0,
            "amount_subtotal": total, "amount_tax": 0, "amount_total": total,
            "currency": session.currency, "description": item["name"], "metadata": {},
            "price": price, "quantity": item["quantity"],
        })  # fmt: skip
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "url": f"/v1/checkout/sessions/{session.id}/line_items",
    }


def payment_intent_object(
    session: SandboxStripeSession,
    *,
    expand: Sequence[str] = (),
    saved_method: SandboxStripePaymentMethod | None = None,
) -> dict[str, Any]:
    """The PaymentIntent the viewer's first try to pay made (a session has one at most), or
    the one a charge of a saved card made; ``payment_method`` is expandable."""
    intent = intent_state(session)
    assert intent is not None and session.payment_intent_id is not None
    succeeded = intent["status"] == "succeeded"
    error = intent.get("error")
    method: Any = (
        None if intent["status"] == "requires_payment_method" else payment_method_id(session)
    )
    if method is not None and "payment_method" in expand:
        method = payment_method_object(saved_method or session_payment_method(session))
    return {
        "id": session.payment_intent_id,
        "object": "payment_intent",
        "amount": session.amount_total,
        "amount_capturable": 0,
        "amount_details": {"discount_amount": None, "error": None, "shipping": None, "tax": None,
                           "tip": {}},
        "amount_received": session.amount_total if succeeded else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",  # Checkout's default for one-off payments
        "allowed_payment_method_types": None,
        "client_secret": f"{session.payment_intent_id}_secret_{derived_id('', session.id)}",
        "confirmation_method": "automatic",
        "created": intent["created"],
        "currency": session.currency,
        "customer": state_of(session.merchant_metadata).get("customer"),
        "customer_account": None,
        "description": session.payment_intent_description,
        "excluded_payment_method_types": None,
        "hooks": None,
        "last_payment_error": _payment_error(session, error) if error else None,
        "latest_charge": charge_object(session) if "latest_charge" in expand else session.charge_id,
        "livemode": False,
        "managed_payments": None,
        "metadata": session.payment_intent_metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_details": None,
        "payment_method": method,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                            "network": None,
                                            "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_record": None,
        "presentment_details": None,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": state_of(session.merchant_metadata).get("setup_future_usage"),
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": intent["status"],
        "transfer_data": None,
        "transfer_group": None,
    }  # fmt: skip


def payment_method_id(session: SandboxStripeSession) -> str:
    """The card the latest try used: the saved one it was attached as, or one per charge."""
    saved = (intent_state(session) or {}).get("payment_method")
    return saved if isinstance(saved, str) else derived_id("pm_", session.charge_id or session.id)


def intent_card(session: SandboxStripeSession) -> cards.TestCard:
    return cards.card_of((intent_state(session) or {}).get("card"))


def _card_since(session: SandboxStripeSession) -> datetime:
    """When the latest try's card was first paid with (a saved card: when it was saved)."""
    assert session.paid_at is not None
    since = (intent_state(session) or {}).get("card_since")
    return datetime.fromisoformat(since) if isinstance(since, str) else session.paid_at


def session_payment_method(session: SandboxStripeSession) -> SandboxStripePaymentMethod:
    """The latest try's card as a payment method, for one not kept (a card not saved)."""
    return SandboxStripePaymentMethod(
        id=payment_method_id(session), card=intent_card(session).value, customer_id=None,
        created_at=_card_since(session),
    )  # fmt: skip


def _payment_error(session: SandboxStripeSession, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "card_error",
        "charge": session.charge_id,
        "doc_url": f"https://stripe.com/docs/error-codes/{error['code'].replace('_', '-')}",
        "payment_method_type": "card",
        **error,
    }


def card_details(card: cards.TestCard, created_at: datetime) -> dict[str, Any]:
    """A test card as Stripe describes it: brand, last 4, expiry, country, funding."""
    month, year = cards.expiry(card, created_at)
    last4 = cards.last4(card, ok=SANDBOX_CARD_LAST4)
    return {"brand": SANDBOX_CARD["brand"], "country": SANDBOX_CARD["country"],
            "exp_month": month, "exp_year": year, "fingerprint": derived_id("", last4, 16),
            "funding": SANDBOX_CARD["funding"], "last4": last4}  # fmt: skip


def payment_method_object(method: SandboxStripePaymentMethod) -> dict[str, Any]:
    """``GET /v1/payment_methods/{id}``: a card, and the customer it is attached to."""
    card = cards.card_of(method.card)
    return {
        "id": method.id,
        "object": "payment_method",
        "allow_redisplay": "limited",  # saved by a payment, not shown again unasked
        "billing_details": {
            "address": {"city": None, "country": None, "line1": None, "line2": None,
                        "postal_code": None, "state": None},
            "email": None, "name": None, "phone": None,
        },
        "card": {
            **card_details(card, method.created_at),
            "checks": {"address_line1_check": None, "address_postal_code_check": None,
                       "cvc_check": "pass"},
            "description": None,
            "display_brand": SANDBOX_CARD["brand"],
            "generated_from": None,
            "iin": None,
            "issuer": None,
            "networks": {"available": [SANDBOX_CARD["brand"]], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": unix(method.created_at),
        "customer": method.customer_id,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }  # fmt: skip


def customer_object(customer: SandboxStripeCustomer) -> dict[str, Any]:
    """A Customer as ``GET /v1/customers/{id}`` shows it."""
    return {
        "id": customer.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "business_name": None,
        "created": unix(customer.created_at),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": customer.description,
        "discount": None,
        "email": customer.email,
        "individual_name": None,
        "invoice_prefix": derived_id("", customer.id, 8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                             "footer": None, "rendering_options": None},
        "livemode": False,
        "metadata": customer.merchant_metadata,
        "name": customer.name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }  # fmt: skip


def charge_object(session: SandboxStripeSession) -> dict[str, Any]:
    """The latest charge of the session's payment intent; Stripe copies the intent's metadata
    onto it when the intent is confirmed."""
    intent = intent_state(session)
    assert intent is not None and session.paid_at is not None
    status = intent.get("charge_status", "succeeded")
    succeeded = status == "succeeded"
    failure = intent.get("error") if status == "failed" else None
    return {
        "id": session.charge_id,
        "object": "charge",
        "amount": session.amount_total,
        "amount_captured": session.amount_total if succeeded else 0,
        "amount_refunded": session.amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "authorization_code": None,
        "balance_transaction": derived_id("txn_", session.charge_id or "") if succeeded else None,
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": state_of(session.merchant_metadata).get("customer_email"),
            "name": None,
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "BILLING SANDBOX",
        "captured": succeeded,
        "created": unix(session.paid_at),
        "currency": session.currency,
        "customer": state_of(session.merchant_metadata).get("customer"),
        "description": session.payment_intent_description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure["code"] if failure else None,
        "failure_message": failure["message"] if failure else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": session.payment_intent_metadata,
        "on_behalf_of": None,
        "outcome": _outcome(status, failure),
        "paid": succeeded,
        "payment_intent": session.payment_intent_id,
        "payment_method": payment_method_id(session),
        "payment_method_details": {
            "type": "card",
            "card": {
                **card_details(intent_card(session), _card_since(session)),
                "amount_authorized": session.amount_total if failure is None else None,
                "authorization_code": None,
                "capture_before": None,
                "checks": None,
                "description": None,
                "electronic_commerce_indicator": None,
                "extended_authorization": {"status": "disabled"},
                "iin": None,
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "issuer": None,
                "mandate": None,
                "moto": None,
                "multicapture": {"status": "unavailable"},
                "network": "visa",
                "network_token": {"used": False},
                "network_transaction_id": None,
                "overcapture": {
                    "maximum_amount_capturable": session.amount_total,
                    "status": "unavailable",
                },
                "regulated_status": "unregulated",
                "setup_credential_usage": None,
                "stored_credential_usage": None,
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
        },
        "presentment_details": None,
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": session.amount_refunded == session.amount_total,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


def _outcome(status: str, failure: dict[str, Any] | None) -> dict[str, Any] | None:
    if status == "pending":
        return None
    if failure is not None:
        return {**_NO_ADVICE, "network_status": "declined_by_network",
                "reason": failure.get("decline_code"), "risk_level": "normal",
                "seller_message": "The bank did not approve the payment.",
                "type": "issuer_declined"}  # fmt: skip
    return {**_NO_ADVICE, "network_status": "approved_by_network", "reason": None,
            "risk_level": "normal", "seller_message": "Payment complete.",
            "type": "authorized"}  # fmt: skip


# What an outcome says beyond the decision; the sandbox has no network codes, Radar rules
# or scores to tell.
_NO_ADVICE = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
              "risk_score": None, "rule": None}  # fmt: skip


def refund_object(refund: SandboxStripeRefund, session: SandboxStripeSession) -> dict[str, Any]:
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "balance_transaction": derived_id("txn_", refund.id),
        "charge": session.charge_id,
        "created": unix(refund.created_at),
        "currency": refund.currency,
        "customer": state_of(session.merchant_metadata).get("customer"),
        "customer_account": None,
        "destination_details": {"card": {"reference": None, "reference_status": "pending",
                                         "reference_type": "acquirer_reference_number",
                                         "type": "refund"},
                                "type": "card"},
        "metadata": refund.merchant_metadata,
        "payment_intent": session.payment_intent_id,
        "payment_method": payment_method_id(session),
        "pending_reason": None,
        "presentment_details": None,
        "reason": refund.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": refund.status,
        "transfer_reversal": None,
    }  # fmt: skip


def event(
    kind: str,
    subject: dict[str, Any],
    *,
    created: datetime,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """What Stripe POSTs to a webhook endpoint: an ``event`` wrapping the object as it is.
    ``request`` names the API request that caused it (null for what the customer or Stripe
    itself did: paying on the page, a session's expiry)."""
    return {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": stripe.api_version,  # the version the installed SDK speaks
        "context": None,  # for events of connected accounts and organizations
        "created": unix(created),
        "data": {"object": subject},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": kind,
    }


def check_expand(expand: Sequence[str], allowed: set[str]) -> list[str]:
    for index, path in enumerate(expand):
        if path not in allowed:
            raise invalid_request(f"This property cannot be expanded ({path[:64]}).",
                                  param=f"expand[{index}]")  # fmt: skip
    return list(expand)
