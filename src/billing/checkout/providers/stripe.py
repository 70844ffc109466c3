"""The Stripe adapter: Checkout Sessions through the official ``stripe`` SDK's async client
(https://docs.stripe.com/api/checkout/sessions).

What it relies on from Stripe's documentation:
- A payment is a Checkout Session in ``mode=payment``; billing knows it by the session id
  (``cs_…``). Since API version 2022-08-01 the PaymentIntent (``pi_…``) is made only when
  the customer pays, so it is learnt from the completed session and kept in
  ``payments.provider_data`` for the refund.
- ``expires_at`` must lie 30 minutes to 24 hours after the session's creation, on Stripe's
  clock (real time).
- Every POST carries an ``Idempotency-Key``; the SDK retries network errors, 409 and 5xx with
  the same key (``max_network_retries``), so a retry never makes a second session or refund.
- Webhooks are signed: ``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
  "t.payload" keyed with the endpoint's secret>``; the SDK checks it and the timestamp's age.
- ``charge.*`` events carry the charge, which names the payment intent, never the session;
  Stripe copies the intent's metadata onto its charge, so ``billing_payment_id`` is there for
  whoever reads the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import stripe
from stripe.params.checkout import SessionCreateParams

from billing.checkout.providers.base import (
    PROVIDER_ATTEMPTS,
    PROVIDER_TIMEOUT,
    DeclineReason,
    InvalidNotification,
    Notification,
    ProviderError,
    ProviderPayment,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
    Receipt,
    SavedMethod,
)

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")
PAYMENT_INTENT_ID = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.expired",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
}
CHARGE_EVENTS = {"charge.refunded"}
REFUND_STATUSES = {
    "pending": ProviderRefundStatus.PENDING,
    "requires_action": ProviderRefundStatus.PENDING,
    "succeeded": ProviderRefundStatus.SUCCEEDED,
    "failed": ProviderRefundStatus.CANCELED,
    "canceled": ProviderRefundStatus.CANCELED,
}
MIN_LIFETIME = timedelta(minutes=30)
MAX_LIFETIME = timedelta(hours=24)
# The request reaches Stripe a moment after the adapter reads the clock: stay inside the window.
LIFETIME_MARGIN = timedelta(minutes=1)
SIGNATURE_TOLERANCE = 300  # seconds; the SDK's default and Stripe's recommendation
# One read answers status, payment intent, payment time and refunded amount.
SESSION_EXPAND = ["payment_intent.latest_charge"]  # (its payment_method is an id)
_T = TypeVar("_T")


class _Malformed(Exception):
    """A 2xx answer that is not the object Stripe documents."""


class OutboundHTTPClient(stripe.HTTPClient):
    """The SDK's HTTP client interface over billing's one outbound httpx client.

    ``stripe.HTTPXClient`` opens an ``httpx.AsyncClient`` of its own; adapters are made per
    request, and their calls must go through the app's client (its timeouts, its transport —
    which tests route back into the app). This one borrows that client and never closes it.
    """

    name = "httpx"

    def __init__(self, client: httpx.AsyncClient, timeout: httpx.Timeout) -> None:
        super().__init__()
        self._client = client
        self._timeout = timeout

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._client.request(
                method.upper(), url, headers=headers, content=post_data, timeout=self._timeout
            )
        except httpx.TransportError as error:  # timeouts, refused connections, resets
            # The SDK's own clients raise this, and retry when ``should_retry``.
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                f"Stripe could not be reached: {type(error).__name__}", should_retry=True
            ) from error
        return response.content, response.status_code, response.headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)

    async def close_async(self) -> None:
        """The client belongs to the app, which closes it."""

    def close(self) -> None:
        """The client belongs to the app, which closes it."""


class StripeProvider:
    """``PaymentProvider`` over Stripe's API at ``base_url`` (``https://api.stripe.com``, or
    the sandbox's ``…/sandbox/stripe``), through the app's shared outbound ``client``."""

    name: str = "stripe"
    sends_receipts: bool = False  # Stripe mails its own receipt to customer_email
    keeps_customers: bool = True  # a saved method is attached to the viewer's Customer

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        secret_key: str,
        webhook_secret: str,
        max_network_retries: int = PROVIDER_ATTEMPTS - 1,
        timeout: httpx.Timeout = PROVIDER_TIMEOUT,
        tolerance: int = SIGNATURE_TOLERANCE,
    ) -> None:
        """``max_network_retries`` after the first attempt (the SDK backs off 0.5 s, 1 s, …),
        each bounded by ``timeout``; webhooks older than ``tolerance`` seconds are refused."""
        self._stripe = stripe.StripeClient(
            secret_key,
            base_addresses={"api": base_url.rstrip("/")},
            http_client=OutboundHTTPClient(client, timeout),
            max_network_retries=max_network_retries,
        )
        self._webhook_secret = webhook_secret
        self._tolerance = tolerance

    # --- the interface ----------------------------------------------------------------------

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
        reference = {"billing_payment_id": str(payment_id)}
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": amount,
                        "product_data": {"name": description},
                    },
                }
            ],
            "success_url": return_url,
            "cancel_url": return_url,
            "client_reference_id": str(payment_id),
            "expires_at": session_expiry(expires_at, requested_at),
            "metadata": reference,
            "payment_intent_data": {"description": description, "metadata": reference},
        }
        if customer_id:
            # Stripe takes the e-mail from the Customer then (customer_email is refused).
            params["customer"] = customer_id
        elif customer_email:
            params["customer_email"] = customer_email  # Stripe mails its receipt there
        if save_payment_method:
            params["payment_intent_data"]["setup_future_usage"] = "off_session"
        session = await self._call(
            "create a Checkout Session",
            self._stripe.v1.checkout.sessions.create_async(
                params, {"idempotency_key": idempotence_key}
            ),
        )
        return _parse(session, _payment)

    async def get_payment(
        self, provider_payment_id: str, data: Mapping[str, Any] | None = None
    ) -> ProviderPayment:
        if PAYMENT_INTENT_ID.fullmatch(provider_payment_id):  # a charge without the viewer
            intent = await self._call(
                "read a PaymentIntent",
                self._stripe.v1.payment_intents.retrieve_async(
                    provider_payment_id, {"expand": ["latest_charge"]}
                ),
            )
            return _parse(intent, _intent_payment)
        if not SESSION_ID.fullmatch(provider_payment_id):
            raise ProviderRejected("not a Checkout Session id", status=404, code="resource_missing")
        session = await self._call(
            "read a Checkout Session",
            self._stripe.v1.checkout.sessions.retrieve_async(
                provider_payment_id, {"expand": SESSION_EXPAND}
            ),
        )
        return _parse(session, _payment)

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
        """An off-session PaymentIntent confirmed at once on the viewer's saved card; a
        decline is Stripe's 402 ``card_error`` naming the intent and its ``decline_code``."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": method.customer_id,
            "payment_method": method.provider_method_id,
            "off_session": True,
            "confirm": True,
            "description": description,
            "metadata": {"billing_payment_id": str(payment_id)},
            "expand": ["latest_charge"],
        }
        try:
            intent = await self._stripe.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotence_key},
            )
        except stripe.CardError as error:
            body = error.json_body if isinstance(error.json_body, dict) else {}
            return _parse(body, _declined_intent)
        except stripe.StripeError as error:
            raise _translated(error, "charge a saved card") from None
        return _parse(intent.to_dict(), _intent_payment)

    async def create_customer(
        self, *, user_id: uuid.UUID, email: str | None, idempotence_key: str
    ) -> str:
        params: dict[str, Any] = {"metadata": {"billing_user_id": str(user_id)}}
        if email:
            params["email"] = email
        customer = await self._call(
            "create a Customer",
            self._stripe.v1.customers.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotence_key},
            ),
        )
        customer_id = customer.get("id")
        if not isinstance(customer_id, str) or not customer_id.startswith("cus_"):
            raise ProviderUnavailable("Stripe answered an unexpected customer")
        return customer_id

    async def capture_payment(
        self, provider_payment_id: str, *, amount: int, currency: str, idempotence_key: str
    ) -> ProviderPayment:
        # Checkout Sessions are made with automatic capture: none ever waits for one.
        raise ProviderRejected("billing's Stripe payments capture automatically", status=400)

    async def cancel_payment(
        self, provider_payment_id: str, *, idempotence_key: str
    ) -> ProviderPayment:
        raise ProviderRejected("billing's Stripe payments capture automatically", status=400)

    async def create_refund(
        self,
        *,
        provider_payment_id: str,
        amount: int,
        currency: str,
        idempotence_key: str,
        data: Mapping[str, Any] | None = None,
        receipt: Receipt | None = None,
    ) -> ProviderRefund:
        intent = (data or {}).get("payment_intent")
        if not (isinstance(intent, str) and PAYMENT_INTENT_ID.fullmatch(intent)):
            # Not kept (settled before it was known): the session names it.
            intent = (await self.get_payment(provider_payment_id)).data.get("payment_intent")
        if not isinstance(intent, str):
            raise ProviderRejected("the session has no payment to refund", status=400)
        refund = await self._call(
            "refund a payment intent",
            self._stripe.v1.refunds.create_async(
                {"payment_intent": intent, "amount": amount},
                {"idempotency_key": idempotence_key},
            ),
        )
        return _parse(refund, _refund)

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """A signed event → the session it is about (for ``charge.*``: the payment intent).

        Events billing has no use for are named by their object's id, which matches no
        payment: they are acknowledged and ignored, so Stripe does not keep retrying them.
        """
        signature = next(
            (value for name, value in headers.items() if name.lower() == "stripe-signature"),
            None,
        )
        if not signature:
            raise InvalidNotification("no Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(
                body, signature, self._webhook_secret, tolerance=self._tolerance
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidNotification(f"not signed by Stripe: {error.user_message}") from None
        except (ValueError, RecursionError):  # signed, yet not an event
            raise InvalidNotification("the body is not a Stripe event") from None
        document = event.to_dict()
        kind, event_id = document.get("type"), document.get("id")
        subject = (document.get("data") or {}).get("object")
        if not (isinstance(kind, str) and isinstance(event_id, str) and isinstance(subject, dict)):
            raise InvalidNotification("the event has no type, id or object")
        named_by = None
        if kind in SESSION_EVENTS:
            named, pattern = subject.get("id"), SESSION_ID
        elif kind in CHARGE_EVENTS:
            named, pattern = subject.get("payment_intent"), PAYMENT_INTENT_ID
            named_by = "payment_intent"  # kept in the payment's data by ``_payment``
        else:
            named, pattern = subject.get("id"), None
        if not isinstance(named, str) or (pattern is not None and not pattern.fullmatch(named)):
            raise InvalidNotification(f"the {kind} event names no payment")
        return Notification(
            event=kind, provider_payment_id=named, event_id=event_id, named_by=named_by
        )

    # --- calls ------------------------------------------------------------------------------

    async def _call(self, what: str, request: Awaitable[stripe.StripeObject]) -> dict[str, Any]:
        """Await one SDK call (its own retries included) and answer the object as a dict."""
        try:
            answer = await request
        except stripe.StripeError as error:
            raise _translated(error, what) from None
        return answer.to_dict()


def session_expiry(invoice_expires_at: datetime, now: datetime) -> int:
    """``expires_at`` for the session: the invoice's expiry, moved into Stripe's window.

    ``now`` is the real time of the first request with this idempotency key, because Stripe
    judges the window on its own clock, and a retry must send the same parameters (Stripe
    refuses a key reused with others; it answers a replay without judging it again). An invoice
    shorter-lived than Stripe's 30 minutes gets a session that outlives it a little; a
    payment made then is settled like any other, as with ЮKassa, whose payments outlive
    invoices too.
    """
    earliest = now + MIN_LIFETIME + LIFETIME_MARGIN
    latest = now + MAX_LIFETIME - LIFETIME_MARGIN
    return int(min(max(invoice_expires_at, earliest), latest).timestamp())


def _translated(error: stripe.StripeError, what: str) -> ProviderError:
    status = error.http_status
    if (
        # APIError: a 5xx, or an answer that is no Stripe object (even with a 2xx).
        isinstance(error, stripe.APIConnectionError | stripe.RateLimitError | stripe.APIError)
        or status is None
        or status < 400
        or status >= 500
        or status == 409  # a concurrent request with the same key: still in progress
    ):
        log.warning("Stripe: %s failed: %r", what, error)
        return ProviderUnavailable(f"Stripe: {what}: {type(error).__name__}")
    code = error.code
    if code is None and error.error is not None:
        code = error.error.type
    message = f"Stripe answered {status} to '{what}'"
    if error.user_message:
        message += f": {error.user_message}"
    return ProviderRejected(message, status=status, code=code)


def _parse(answer: dict[str, Any], parse: Callable[[dict[str, Any]], _T]) -> _T:
    try:
        return parse(answer)
    except (_Malformed, KeyError, TypeError, ValueError, AttributeError) as error:
        # A 2xx we cannot read is the provider misbehaving, not the viewer's fault.
        log.error("Stripe answered an unexpected body: %s", error)
        raise ProviderUnavailable("Stripe answered an unexpected body") from None


# --- Stripe objects -------------------------------------------------------------------------


def _payment(session: dict[str, Any]) -> ProviderPayment:
    if session.get("object") != "checkout.session":
        raise _Malformed("not a checkout.session")
    session_id = _string(session, "id")
    if not SESSION_ID.fullmatch(session_id):
        raise _Malformed("not a session id")
    status, paid = _string(session, "status"), _string(session, "payment_status")
    intent = session.get("payment_intent")
    if status == "complete" and paid == "unpaid" and _delayed_payment_failed(intent):
        # A delayed payment method (a bank debit) that failed: the session is complete and
        # cannot be paid again (async_payment_failed).
        state = ProviderPaymentStatus.CANCELED
    elif status == "open" or (status == "complete" and paid == "unpaid"):
        # Open: the viewer is on the page (a declined card keeps it open for another one).
        # Complete but unpaid: a delayed payment method is still being processed.
        state = ProviderPaymentStatus.PENDING
    elif status == "complete" and paid in ("paid", "no_payment_required"):
        state = ProviderPaymentStatus.SUCCEEDED
    elif status == "expired":
        state = ProviderPaymentStatus.CANCELED
    else:
        raise _Malformed(f"unknown session state {status!r}/{paid!r}")
    intent_id, charge = _intent_and_charge(intent)
    paid_at = None
    if state == ProviderPaymentStatus.SUCCEEDED and charge is not None:
        paid_at = datetime.fromtimestamp(_integer(charge, "created"), UTC)
    url = session.get("url")
    return ProviderPayment(
        provider_payment_id=session_id,
        status=state,
        amount=_integer(session, "amount_total"),
        currency=_string(session, "currency").upper(),
        confirmation_url=url if isinstance(url, str) else None,
        paid_at=paid_at,
        refunded_amount=_integer(charge, "amount_refunded") if charge is not None else 0,
        data={"payment_intent": intent_id} if intent_id is not None else {},
        saved_method=_saved_method(intent, charge)
        if state == ProviderPaymentStatus.SUCCEEDED
        else None,
    )


def _saved_method(intent: Any, charge: dict[str, Any] | None) -> SavedMethod | None:
    """The card a paid session saved for charges without the viewer: its intent was made
    with ``setup_future_usage=off_session`` and names a payment method and a customer; the
    charge's ``payment_method_details.card`` says which card."""
    if not isinstance(intent, dict) or intent.get("setup_future_usage") != "off_session":
        return None
    method = intent.get("payment_method")
    method_id = method.get("id") if isinstance(method, dict) else method
    customer = intent.get("customer")
    customer_id = customer.get("id") if isinstance(customer, dict) else customer
    if not isinstance(method_id, str) or not isinstance(customer_id, str):
        return None
    details = (charge or {}).get("payment_method_details") or {}
    card = details.get("card") if isinstance(details, dict) else None
    card = card if isinstance(card, dict) else {}
    last4 = card.get("last4") if isinstance(card.get("last4"), str) else None
    month, year = card.get("exp_month"), card.get("exp_year")
    expires = (
        f"{year:04d}-{month:02d}" if isinstance(month, int) and isinstance(year, int) else None
    )
    brand = str(card.get("brand") or "card").title()
    title = f"{brand} *{last4}" if last4 else "Saved card"
    return SavedMethod(
        provider_method_id=method_id, title=title, card_last4=last4, expires=expires,
        customer_id=customer_id,
    )  # fmt: skip


# Stripe's decline_code (or error code) → billing's (https://docs.stripe.com/declines/codes).
DECLINE_REASONS = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "issuer_not_available": DeclineReason.ISSUER_UNAVAILABLE,
    "try_again_later": DeclineReason.ISSUER_UNAVAILABLE,
    "processing_error": DeclineReason.PROVIDER_UNAVAILABLE,
    "expired_card": DeclineReason.CARD_EXPIRED,
    "authentication_required": DeclineReason.METHOD_REVOKED,  # the viewer must be there
    "fraudulent": DeclineReason.FRAUD,
    "lost_card": DeclineReason.FRAUD,
    "stolen_card": DeclineReason.FRAUD,
    "pickup_card": DeclineReason.FRAUD,
}


def _intent_payment(intent: dict[str, Any]) -> ProviderPayment:
    """A PaymentIntent billing made without the viewer (a renewal), as a payment."""
    if intent.get("object") != "payment_intent":
        raise _Malformed("not a payment_intent")
    intent_id = _string(intent, "id")
    status = _string(intent, "status")
    if status == "succeeded":
        state = ProviderPaymentStatus.SUCCEEDED
    elif status in ("requires_payment_method", "canceled"):
        state = ProviderPaymentStatus.CANCELED
    else:  # processing, requires_action, requires_confirmation, requires_capture
        state = ProviderPaymentStatus.PENDING
    charge = intent.get("latest_charge")
    charge = charge if isinstance(charge, dict) else None
    paid_at = None
    if state == ProviderPaymentStatus.SUCCEEDED:
        paid_at = datetime.fromtimestamp(
            _integer(charge, "created") if charge else _integer(intent, "created"), UTC
        )
    decline = None
    if state == ProviderPaymentStatus.CANCELED:
        error = intent.get("last_payment_error") or {}
        code = error.get("decline_code") or error.get("code")
        decline = DECLINE_REASONS.get(str(code), DeclineReason.DECLINED)
    return ProviderPayment(
        provider_payment_id=intent_id,
        status=state,
        amount=_integer(intent, "amount"),
        currency=_string(intent, "currency").upper(),
        confirmation_url=None,
        paid_at=paid_at,
        refunded_amount=_integer(charge, "amount_refunded") if charge is not None else 0,
        data={"payment_intent": intent_id},
        decline_reason=decline,
    )


def _declined_intent(body: dict[str, Any]) -> ProviderPayment:
    """Stripe's 402 ``{error: {type: card_error, code, decline_code, payment_intent}}``."""
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("payment_intent"), dict):
        raise _Malformed("a card error without its payment intent")
    # The error's own codes say why, whatever the intent's copy holds.
    reason = {key: error.get(key) for key in ("code", "decline_code")}
    return _intent_payment(
        {
            **error["payment_intent"],
            "status": "requires_payment_method",
            "last_payment_error": reason,
        }
    )


def _delayed_payment_failed(intent: Any) -> bool:
    """The session's (expanded) payment intent says its payment failed for good."""
    return isinstance(intent, dict) and intent.get("status") in (
        "requires_payment_method",
        "canceled",
    )


def _intent_and_charge(intent: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The session's ``payment_intent``: null, an id, or (expanded) the object with its
    ``latest_charge`` — an id, or (expanded) the charge."""
    if intent is None:
        return None, None
    if isinstance(intent, str):
        return intent, None
    if not isinstance(intent, dict):
        raise _Malformed("payment_intent is neither an id nor an object")
    charge = intent.get("latest_charge")
    return _string(intent, "id"), charge if isinstance(charge, dict) else None


def _refund(refund: dict[str, Any]) -> ProviderRefund:
    if refund.get("object") != "refund":
        raise _Malformed("not a refund")
    status = REFUND_STATUSES.get(_string(refund, "status"))
    if status is None:
        raise _Malformed(f"unknown refund status {refund['status']!r}")
    return ProviderRefund(
        provider_refund_id=_string(refund, "id"),
        status=status,
        amount=_integer(refund, "amount"),
        currency=_string(refund, "currency").upper(),
    )


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise _Malformed(f"{key} is not a string")
    return value


def _integer(obj: dict[str, Any], key: str) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"{key} is not an integer")
    return value
