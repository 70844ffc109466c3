"""The Stripe adapter at the HTTP boundary, against Stripe's documented request and response
shapes (https://docs.stripe.com/api/checkout/sessions, /api/refunds, /webhooks): what it
sends through the official SDK, how failures come out, what it makes of the answers and of
signed events."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
import stripe

from billing.checkout.providers.base import (
    InvalidNotification,
    Notification,
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from billing.checkout.providers.registry import provider_from_settings
from billing.checkout.providers.stripe import StripeProvider, session_expiry
from billing.config import Settings

BASE = "https://api.stripe.test"
SECRET_KEY = "sk_test_51Example0000000000000000000000000000000000"
WEBHOOK_SECRET = "whsec_test_secret_0123456789"
SESSION_ID = "cs_test_a1Ye0Gd9SOEYfcNv4pYdd9CDNpvdw7IATZ0sQ1RpvCaZDwtJuBfBQKqX4U"
INTENT_ID = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
CHARGE_ID = "ch_3MtwBwLkdIwHu7ix28HVjKOb"
BILLING_PAYMENT_ID = uuid.UUID("7b1d9c1e-5a0b-4d43-9d0c-2f6f1d0e8a11")
RETURN_URL = "https://cinema.example/payments/7b1d9c1e"
CHECKOUT_URL = f"https://checkout.stripe.com/c/pay/{SESSION_ID}#fidkdWxOYHwnPyd1blpxYHZxWjA0"
CREATED = 1_772_361_078  # 2026-03-01T10:31:18Z
PAID = CREATED + 73


def open_session(**changes: Any) -> dict[str, Any]:
    """Stripe's answer to ``POST /v1/checkout/sessions`` (the documentation's example, with
    our values; since 2022-08-01 an open session has no payment intent yet)."""
    return {
        "id": SESSION_ID,
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": 49900,
        "amount_total": 49900,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": RETURN_URL,
        "client_reference_id": str(BILLING_PAYMENT_ID),
        "created": CREATED,
        "currency": "rub",
        "customer": None,
        "customer_details": None,
        "customer_email": None,
        "expires_at": CREATED + 1860,
        "invoice": None,
        "livemode": False,
        "locale": None,
        "metadata": {"billing_payment_id": str(BILLING_PAYMENT_ID)},
        "mode": "payment",
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": RETURN_URL,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": CHECKOUT_URL,
        **changes,
    }


def charge(**changes: Any) -> dict[str, Any]:
    return {
        "id": CHARGE_ID,
        "object": "charge",
        "amount": 49900,
        "amount_captured": 49900,
        "amount_refunded": 0,
        "captured": True,
        "created": PAID,
        "currency": "rub",
        "metadata": {"billing_payment_id": str(BILLING_PAYMENT_ID)},
        "paid": True,
        "payment_intent": INTENT_ID,
        "refunded": False,
        "status": "succeeded",
        **changes,
    }


def paid_session(*, latest_charge: Any = None, **changes: Any) -> dict[str, Any]:
    """The session retrieved with ``expand[]=payment_intent.latest_charge`` once paid."""
    intent = {
        "id": INTENT_ID,
        "object": "payment_intent",
        "amount": 49900,
        "amount_received": 49900,
        "created": PAID,
        "currency": "rub",
        "latest_charge": charge() if latest_charge is None else latest_charge,
        "metadata": {"billing_payment_id": str(BILLING_PAYMENT_ID)},
        "status": "succeeded",
    }
    return open_session(
        **{"status": "complete", "payment_status": "paid", "payment_intent": intent,
           "url": None, **changes}
    )  # fmt: skip


def refund_object(**changes: Any) -> dict[str, Any]:
    return {
        "id": "re_3MtwBwLkdIwHu7ix2a6Bq1vS",
        "object": "refund",
        "amount": 49900,
        "balance_transaction": "txn_3MtwBwLkdIwHu7ix2bbRj0GK",
        "charge": CHARGE_ID,
        "created": PAID + 600,
        "currency": "rub",
        "metadata": {},
        "payment_intent": INTENT_ID,
        "reason": None,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
        **changes,
    }


def stripe_error(type_: str, message: str, **fields: str) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **fields}}


def provider(client: httpx.AsyncClient, **changes: Any) -> StripeProvider:
    options: dict[str, Any] = {
        "base_url": BASE, "secret_key": SECRET_KEY, "webhook_secret": WEBHOOK_SECRET,
        "max_network_retries": 1, **changes,
    }  # fmt: skip
    return StripeProvider(client, **options)


def form(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.content.decode(), keep_blank_values=True))


async def create(stripe_provider: StripeProvider, **changes: Any) -> Any:
    asked: dict[str, Any] = {
        "payment_id": BILLING_PAYMENT_ID, "amount": 49900, "currency": "RUB",
        "description": "Premium: 1 mo.", "return_url": RETURN_URL, "idempotence_key": "key-1",
        "expires_at": datetime.now(UTC) + timedelta(minutes=30),
        "requested_at": datetime.now(UTC), **changes,
    }  # fmt: skip
    return await stripe_provider.create_payment(**asked)


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient() as http:
        yield http


# --- creating a Checkout Session -------------------------------------------------------------


@respx.mock
async def test_start_creates_a_checkout_session_with_one_line_item(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = respx_mock.post(f"{BASE}/v1/checkout/sessions").respond(200, json=open_session())
    before = int(time.time())

    created = await create(provider(client))

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Stripe-Version"] == stripe.api_version
    sent = form(request)
    expires_at = int(sent.pop("expires_at"))
    assert sent == {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "rub",
        "line_items[0][price_data][unit_amount]": "49900",
        "line_items[0][price_data][product_data][name]": "Premium: 1 mo.",
        "success_url": RETURN_URL,
        "cancel_url": RETURN_URL,
        "client_reference_id": str(BILLING_PAYMENT_ID),
        "metadata[billing_payment_id]": str(BILLING_PAYMENT_ID),
        "payment_intent_data[description]": "Premium: 1 mo.",
        "payment_intent_data[metadata][billing_payment_id]": str(BILLING_PAYMENT_ID),
    }
    # The invoice's 30 minutes are Stripe's minimum: moved a minute on, safely inside.
    assert before + 31 * 60 <= expires_at <= int(time.time()) + 31 * 60

    assert created.provider_payment_id == SESSION_ID
    assert created.status == ProviderPaymentStatus.PENDING
    assert (created.amount, created.currency) == (49900, "RUB")
    assert created.confirmation_url == CHECKOUT_URL
    assert (created.paid_at, created.refunded_amount, dict(created.data)) == (None, 0, {})


@pytest.mark.parametrize(
    ("invoice_in", "expected_in"),
    [
        (timedelta(minutes=30), timedelta(minutes=31)),  # Stripe's minimum, and a margin
        (timedelta(minutes=-5), timedelta(minutes=31)),
        (timedelta(hours=2), timedelta(hours=2)),  # inside the window: the invoice's own
        (timedelta(days=3), timedelta(hours=23, minutes=59)),  # Stripe's maximum, less a margin
    ],
    ids=["invoice-ttl-30-min", "past", "two-hours", "three-days"],
)
def test_expires_at_is_the_invoice_s_moved_into_stripe_s_window(
    invoice_in: timedelta, expected_in: timedelta
) -> None:
    now = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert session_expiry(now + invoice_in, now) == int((now + expected_in).timestamp())


@respx.mock
async def test_a_retried_start_reuses_the_idempotency_key(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = respx_mock.post(f"{BASE}/v1/checkout/sessions").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=open_session())]
    )

    created = await create(provider(client), idempotence_key="same-key")

    assert created.provider_payment_id == SESSION_ID
    assert [call.request.headers["Idempotency-Key"] for call in route.calls] == ["same-key"] * 2
    assert form(route.calls[0].request) == form(route.calls[1].request)


# --- reading it back -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (open_session(), ProviderPaymentStatus.PENDING),
        # Complete but unpaid: a delayed payment method (a bank debit) is still processing.
        (open_session(status="complete", url=None), ProviderPaymentStatus.PENDING),
        (open_session(status="expired", url=None), ProviderPaymentStatus.CANCELED),
        (paid_session(), ProviderPaymentStatus.SUCCEEDED),
        (paid_session(payment_status="no_payment_required"), ProviderPaymentStatus.SUCCEEDED),
    ],
    ids=["open", "complete-unpaid", "expired", "complete-paid", "no-payment-required"],
)
@respx.mock
async def test_read_maps_the_session_onto_billing_s_states(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    answer: dict[str, Any],
    status: ProviderPaymentStatus,
) -> None:
    route = respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(200, json=answer)

    payment = await provider(client).get_payment(SESSION_ID, {})

    assert payment.status == status
    assert (payment.amount, payment.currency) == (49900, "RUB")
    # One read answers everything: the intent and its charge come expanded.
    request = route.calls.last.request
    assert request.method == "GET"
    assert parse_qsl(request.url.query.decode()) == [("expand[0]", "payment_intent.latest_charge")]
    assert request.headers["Authorization"] == f"Bearer {SECRET_KEY}"


@respx.mock
async def test_a_paid_session_gives_the_charge_s_time_and_refunds_and_keeps_the_intent(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(
        200, json=paid_session(latest_charge=charge(amount_refunded=49900, refunded=True))
    )

    payment = await provider(client).get_payment(SESSION_ID)

    assert payment.status == ProviderPaymentStatus.SUCCEEDED
    assert payment.paid_at == datetime.fromtimestamp(PAID, UTC)
    assert payment.refunded_amount == 49900
    assert dict(payment.data) == {"payment_intent": INTENT_ID}
    assert payment.confirmation_url is None


@respx.mock
async def test_an_unexpanded_intent_is_still_kept(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    answer = paid_session(payment_intent=INTENT_ID)
    respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(200, json=answer)

    payment = await provider(client).get_payment(SESSION_ID)

    assert payment.status == ProviderPaymentStatus.SUCCEEDED
    assert payment.paid_at is None  # billing then takes its own "now"
    assert dict(payment.data) == {"payment_intent": INTENT_ID}


# (A payment intent's id, pi_…, is asked about: a renewal is charged as one.)
@pytest.mark.parametrize("session_id", ["", "cs_test_../../v1/refunds", "x" * 300])
async def test_something_that_is_no_session_id_is_not_asked_about(session_id: str) -> None:
    async with respx.mock(assert_all_called=False) as mock, httpx.AsyncClient() as client:
        route = mock.route().respond(500)
        with pytest.raises(ProviderRejected) as rejected:
            await provider(client).get_payment(session_id)
    assert (rejected.value.status, rejected.value.code) == (404, "resource_missing")
    assert not route.called


# --- refunds ---------------------------------------------------------------------------------


@respx.mock
async def test_refund_refunds_the_kept_payment_intent_with_the_idempotency_key(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = respx_mock.post(f"{BASE}/v1/refunds").respond(200, json=refund_object())

    refund = await provider(client).create_refund(
        provider_payment_id=SESSION_ID, amount=49900, currency="RUB",
        idempotence_key="refund-key", data={"payment_intent": INTENT_ID},
    )  # fmt: skip

    request = route.calls.last.request
    assert form(request) == {"payment_intent": INTENT_ID, "amount": "49900"}
    assert request.headers["Idempotency-Key"] == "refund-key"
    assert refund.provider_refund_id == "re_3MtwBwLkdIwHu7ix2a6Bq1vS"
    assert refund.status == ProviderRefundStatus.SUCCEEDED
    assert (refund.amount, refund.currency) == (49900, "RUB")


@respx.mock
async def test_without_a_kept_intent_the_session_names_it(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    read = respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(
        200, json=paid_session()
    )
    refunded = respx_mock.post(f"{BASE}/v1/refunds").respond(200, json=refund_object())

    await provider(client).create_refund(
        provider_payment_id=SESSION_ID, amount=49900, currency="RUB", idempotence_key="k",
        data={},
    )  # fmt: skip

    assert read.called
    assert form(refunded.calls.last.request)["payment_intent"] == INTENT_ID


@respx.mock
async def test_an_unpaid_session_has_nothing_to_refund(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(200, json=open_session())
    refunded = respx_mock.post(f"{BASE}/v1/refunds").respond(200, json=refund_object())

    with pytest.raises(ProviderRejected):
        await provider(client).create_refund(
            provider_payment_id=SESSION_ID, amount=49900, currency="RUB", idempotence_key="k"
        )
    assert not refunded.called


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("pending", ProviderRefundStatus.PENDING),
        ("requires_action", ProviderRefundStatus.PENDING),
        ("failed", ProviderRefundStatus.CANCELED),
        ("canceled", ProviderRefundStatus.CANCELED),
    ],
)
@respx.mock
async def test_refund_statuses(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    status: str,
    expected: ProviderRefundStatus,
) -> None:
    respx_mock.post(f"{BASE}/v1/refunds").respond(200, json=refund_object(status=status))
    refund = await provider(client).create_refund(
        provider_payment_id=SESSION_ID, amount=49900, currency="RUB", idempotence_key="k",
        data={"payment_intent": INTENT_ID},
    )  # fmt: skip
    assert refund.status == expected


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, stripe_error("invalid_request_error", "No such payment_intent: 'pi_x'",
                           code="resource_missing", param="payment_intent"), "resource_missing"),
        (401, stripe_error("invalid_request_error", "Invalid API Key provided: sk_test_****"),
         "invalid_request_error"),
        (402, stripe_error("card_error", "Your card was declined.", code="card_declined"),
         "card_declined"),
        (403, stripe_error("invalid_request_error", "The provided key does not have access."),
         "invalid_request_error"),
        (404, stripe_error("invalid_request_error", "No such checkout.session: 'cs_test_x'",
                           code="resource_missing", param="session"), "resource_missing"),
        (400, stripe_error("idempotency_error", "Keys for idempotent requests can only be used"
                           " with the same parameters they were first used with."),
         "idempotency_error"),
    ],
    ids=["invalid-request", "bad-key", "card-declined", "forbidden", "not-found", "key-reused"],
)  # fmt: skip
@respx.mock
async def test_a_refusal_is_a_rejection_at_once(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    status: int,
    body: dict[str, Any],
    code: str,
) -> None:
    route = respx_mock.post(f"{BASE}/v1/checkout/sessions").respond(status, json=body)

    with pytest.raises(ProviderRejected) as rejected:
        await create(provider(client))

    assert (rejected.value.status, rejected.value.code) == (status, code)
    assert body["error"]["message"] in str(rejected.value)
    assert route.call_count == 1  # retrying the same request would not help


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json=stripe_error("api_error", "Something went wrong.")),
        httpx.Response(503, text="Service Unavailable"),
        httpx.Response(409, json=stripe_error("idempotency_error", "A concurrent request.")),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["500", "503-not-json", "409-concurrent", "connect-error", "timeout"],
)
@respx.mock
async def test_a_failure_a_repeat_may_cure_is_retried_then_unavailable(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient, failure: Any
) -> None:
    kwargs = (
        {"side_effect": failure} if isinstance(failure, Exception) else {"return_value": failure}
    )
    route = respx_mock.post(f"{BASE}/v1/checkout/sessions").mock(**kwargs)

    with pytest.raises(ProviderUnavailable):
        await create(provider(client, max_network_retries=1))

    assert route.call_count == 2
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {"key-1"}


@respx.mock
async def test_by_default_two_retries_are_made(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    route = respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").respond(502)
    with pytest.raises(ProviderUnavailable):
        await provider(client, max_network_retries=2).get_payment(SESSION_ID)
    assert route.call_count == 3


@respx.mock
async def test_rate_limiting_is_unavailable(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient
) -> None:
    respx_mock.post(f"{BASE}/v1/refunds").respond(
        429, json=stripe_error("invalid_request_error", "Too many requests.", code="rate_limit")
    )
    with pytest.raises(ProviderUnavailable):
        await provider(client, max_network_retries=0).create_refund(
            provider_payment_id=SESSION_ID, amount=1, currency="RUB", idempotence_key="k",
            data={"payment_intent": INTENT_ID},
        )  # fmt: skip


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>gateway</html>"),
        httpx.Response(200, json={"object": "payment_intent", "id": INTENT_ID}),
        httpx.Response(200, json=open_session(status="processing")),
        httpx.Response(200, json=open_session(amount_total="499.00")),
        httpx.Response(200, json=open_session(id="../../v1/refunds")),
        httpx.Response(200, json=paid_session(latest_charge=charge(created="yesterday"))),
    ],
    ids=["not-json", "another-object", "unknown-status", "string-amount", "bad-id", "bad-time"],
)
@respx.mock
async def test_an_unreadable_answer_is_unavailable_never_a_crash(
    respx_mock: respx.MockRouter, client: httpx.AsyncClient, answer: httpx.Response
) -> None:
    respx_mock.get(f"{BASE}/v1/checkout/sessions/{SESSION_ID}").mock(return_value=answer)
    with pytest.raises(ProviderUnavailable):
        await provider(client).get_payment(SESSION_ID)


# --- webhooks --------------------------------------------------------------------------------


def stripe_event(
    kind: str, subject: dict[str, Any], event_id: str = "evt_1NG8Du2eZvKYlo2C"
) -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "api_version": stripe.api_version,
        "created": int(time.time()), "data": {"object": subject}, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None}, "type": kind,
    }).encode()  # fmt: skip


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=int(at if at is not None else time.time())
    )
    return {"stripe-signature": header}


@pytest.mark.parametrize(
    ("kind", "subject", "named"),
    [
        ("checkout.session.completed", paid_session(payment_intent=INTENT_ID), SESSION_ID),
        ("checkout.session.expired", open_session(status="expired", url=None), SESSION_ID),
        ("checkout.session.async_payment_succeeded", paid_session(), SESSION_ID),
        ("checkout.session.async_payment_failed", open_session(status="complete"), SESSION_ID),
        # A charge names its payment intent, never the session.
        ("charge.refunded", charge(amount_refunded=49900, refunded=True), INTENT_ID),
        # Events billing does not use are named by their object: no payment matches it.
        ("payout.paid", {"id": "po_1OaFDbEcg9tTZuTgNYmX0PKB", "object": "payout"},
         "po_1OaFDbEcg9tTZuTgNYmX0PKB"),
    ],
    ids=["completed", "expired", "async-succeeded", "async-failed", "charge-refunded", "payout"],
)  # fmt: skip
def test_a_signed_event_names_what_to_re_read(
    kind: str, subject: dict[str, Any], named: str
) -> None:
    body = stripe_event(kind, subject)
    notification = provider(httpx.AsyncClient()).parse_notification(body, signed(body))
    assert notification == Notification(
        event=kind,
        provider_payment_id=named,
        event_id="evt_1NG8Du2eZvKYlo2C",
        # The payment keeps its intent under this key of its data (see _payment).
        named_by="payment_intent" if named == INTENT_ID else None,
    )


def test_the_header_name_is_case_insensitive_and_a_rotated_secret_s_signature_counts() -> None:
    body = stripe_event("checkout.session.completed", paid_session())
    old = signed(body, secret="whsec_old")["stripe-signature"]
    new = signed(body)["stripe-signature"].split(",")[1]  # v1=…
    parsed = provider(httpx.AsyncClient()).parse_notification(
        body, {"Stripe-Signature": f"{old},{new}"}
    )
    assert parsed.provider_payment_id == SESSION_ID


BODY = stripe_event("checkout.session.completed", paid_session())


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (BODY, {}),
        (BODY, {"stripe-signature": ""}),
        (BODY, signed(BODY, secret="whsec_someone_else")),
        (BODY, signed(BODY, at=time.time() - 301)),
        (BODY.replace(b'"status": "complete"', b'"status": "open"'), signed(BODY)),
        (BODY + b" ", signed(BODY)),
        (BODY, {"stripe-signature": "t=nope,v1=abc"}),
        (BODY, {"stripe-signature": f"t={int(time.time())}"}),
        (BODY, {"stripe-signature": signed(BODY)["stripe-signature"].replace("v1=", "v0=")}),
        (b"not json", signed(b"not json")),
        (b"\xff\xfe", {"stripe-signature": "t=1,v1=00"}),
        (json.dumps({"object": "event", "type": "x"}).encode(),
         signed(json.dumps({"object": "event", "type": "x"}).encode())),
        (stripe_event("checkout.session.completed", {"id": 7}),
         signed(stripe_event("checkout.session.completed", {"id": 7}))),
        (stripe_event("checkout.session.completed", {"id": "cs_../refunds"}),
         signed(stripe_event("checkout.session.completed", {"id": "cs_../refunds"}))),
        (stripe_event("charge.refunded", charge(payment_intent=None)),
         signed(stripe_event("charge.refunded", charge(payment_intent=None)))),
    ],
    ids=[
        "no-header", "empty-header", "wrong-secret", "stale", "altered-body", "one-more-byte",
        "bad-timestamp", "no-signature", "other-scheme", "signed-garbage", "not-utf8",
        "no-data", "id-not-string", "path-like-id", "charge-without-intent",
    ],
)  # fmt: skip
def test_anything_not_a_fresh_genuine_event_is_invalid(
    body: bytes, headers: dict[str, str]
) -> None:
    with pytest.raises(InvalidNotification):
        provider(httpx.AsyncClient()).parse_notification(body, headers)


# --- which provider --------------------------------------------------------------------------


async def test_the_stripe_setting_gives_the_stripe_adapter_on_the_configured_api(
    tmp_path: Path,
) -> None:
    sandboxed = Settings(data_dir=tmp_path, provider="stripe", public_url="http://billing.test")
    settings = Settings(
        data_dir=tmp_path,
        provider="stripe",
        stripe_api_base="https://api.stripe.test",
        stripe_secret_key="sk_live_configured",
        stripe_webhook_secret=WEBHOOK_SECRET,
    )
    assert sandboxed.stripe_base_url == "http://billing.test/sandbox/stripe"
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        chosen = provider_from_settings(settings, client)
        assert isinstance(chosen, StripeProvider)
        assert chosen.name == "stripe"
        route = mock.get(f"/v1/checkout/sessions/{SESSION_ID}").respond(200, json=open_session())
        await chosen.get_payment(SESSION_ID)
        body = stripe_event("checkout.session.expired", open_session(status="expired"))
        assert chosen.parse_notification(body, signed(body)).provider_payment_id == SESSION_ID
    assert route.calls.last.request.headers["Authorization"] == "Bearer sk_live_configured"
