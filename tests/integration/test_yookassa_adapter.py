"""The ЮKassa adapter at the HTTP boundary, against ЮKassa's documented request and response
shapes (https://yookassa.ru/developers/api): what it sends, how it retries, what it makes of
the answers and of notifications."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from billing.checkout.providers.base import (
    InvalidNotification,
    Notification,
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
)
from billing.checkout.providers.registry import provider_from_settings
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.config import Settings

BASE = "https://api.yookassa.test/v3"
SHOP_ID = "100500"
SECRET_KEY = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0"
PAYMENT_ID = "2d8b0a3c-000f-5000-9000-1a1b2c3d4e5f"
BILLING_PAYMENT_ID = uuid.UUID("7b1d9c1e-5a0b-4d43-9d0c-2f6f1d0e8a11")
RETURN_URL = "https://cinema.example/payments/7b1d9c1e"
CONFIRMATION_URL = f"https://yoomoney.ru/api-pages/v2/payment-confirm/epl?orderId={PAYMENT_ID}"


def pending_payment(**changes: Any) -> dict[str, Any]:
    """ЮKassa's answer to ``POST /v3/payments`` (the documentation's example, our values)."""
    return {
        "id": PAYMENT_ID,
        "status": "pending",
        "paid": False,
        "amount": {"value": "499.00", "currency": "RUB"},
        "confirmation": {"type": "redirect", "confirmation_url": CONFIRMATION_URL},
        "created_at": "2026-03-01T10:51:18.139Z",
        "description": "Premium: 1 mo.",
        "metadata": {"billing_payment_id": str(BILLING_PAYMENT_ID)},
        "recipient": {"account_id": SHOP_ID, "gateway_id": "100700"},
        "refundable": False,
        "test": False,
        **changes,
    }


def succeeded_payment(**changes: Any) -> dict[str, Any]:
    answer = pending_payment(
        **{
            "status": "succeeded",
            "paid": True,
            "captured_at": "2026-03-01T10:52:31.118Z",
            "income_amount": {"value": "481.54", "currency": "RUB"},
            "refunded_amount": {"value": "0.00", "currency": "RUB"},
            "refundable": True,
            "payment_method": {"type": "bank_card", "id": PAYMENT_ID, "saved": False},
            **changes,
        }
    )
    del answer["confirmation"]
    return answer


def error(code: str, description: str, parameter: str | None = None) -> dict[str, Any]:
    body = {"type": "error", "id": str(uuid.uuid4()), "code": code, "description": description}
    if parameter:
        body["parameter"] = parameter
    return body


def provider(client: httpx.AsyncClient, **options: Any) -> YooKassaProvider:
    return YooKassaProvider(
        client, base_url=BASE, shop_id=SHOP_ID, secret_key=SECRET_KEY, backoff=0.0, **options
    )


async def create(yookassa: YooKassaProvider, key: str = "key-1") -> Any:
    return await yookassa.create_payment(
        payment_id=BILLING_PAYMENT_ID,
        amount=49900,
        currency="RUB",
        description="Premium: 1 mo.",
        return_url=RETURN_URL,
        idempotence_key=key,
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        requested_at=datetime.now(UTC),
    )


def basic(shop_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{shop_id}:{secret}".encode()).decode()


# --- creating a payment ---------------------------------------------------------------------


async def test_create_payment_sends_the_documented_request_and_reads_the_answer() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/payments").respond(200, json=pending_payment())
        payment = await create(provider(client), key="7f0e5c3a-idem")

    [call] = route.calls
    assert call.request.headers["Authorization"] == basic(SHOP_ID, SECRET_KEY)
    assert call.request.headers["Idempotence-Key"] == "7f0e5c3a-idem"
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.content) == {
        "amount": {"value": "499.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "description": "Premium: 1 mo.",
        "metadata": {"billing_payment_id": str(BILLING_PAYMENT_ID)},
    }
    assert payment.provider_payment_id == PAYMENT_ID
    assert payment.status == ProviderPaymentStatus.PENDING
    assert (payment.amount, payment.currency) == (49900, "RUB")
    assert payment.confirmation_url == CONFIRMATION_URL
    assert payment.paid_at is None
    assert payment.refunded_amount == 0


async def test_a_long_description_is_cut_to_yookassas_128_characters() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/payments").respond(200, json=pending_payment())
        await provider(client).create_payment(
            payment_id=BILLING_PAYMENT_ID, amount=1, currency="RUB", description="x" * 300,
            return_url=RETURN_URL, idempotence_key="k", expires_at=datetime.now(UTC),
            requested_at=datetime.now(UTC),
        )  # fmt: skip
    body = json.loads(route.calls.last.request.content)
    assert body["description"] == "x" * 128
    assert body["amount"] == {"value": "0.01", "currency": "RUB"}


@pytest.mark.parametrize(
    "first_failure",
    [
        httpx.Response(500, json=error("internal_server_error", "Internal server error")),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(429, json=error("too_many_requests", "Too many requests")),
        httpx.Response(202, json={"type": "processing", "retry_after": 1800}),
        httpx.ReadTimeout("the read timed out"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["500", "502", "429", "202-processing", "timeout", "connect-error"],
)
async def test_a_failure_a_repeat_can_cure_is_retried_with_the_same_idempotence_key(
    first_failure: httpx.Response | Exception,
) -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/payments").mock(
            side_effect=[first_failure, httpx.Response(200, json=pending_payment())]
        )
        payment = await create(provider(client), key="the-one-key")

    assert payment.provider_payment_id == PAYMENT_ID
    assert route.call_count == 2
    keys = [call.request.headers["Idempotence-Key"] for call in route.calls]
    assert keys == ["the-one-key", "the-one-key"]
    bodies = [call.request.content for call in route.calls]
    assert bodies[0] == bodies[1]


async def test_three_5xx_in_a_row_make_the_provider_unavailable() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/payments").respond(503, text="Service Unavailable")
        with pytest.raises(ProviderUnavailable):
            await create(provider(client))
    assert route.call_count == 3
    assert {call.request.headers["Idempotence-Key"] for call in route.calls} == {"key-1"}


async def test_timeouts_every_time_make_the_provider_unavailable() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.get(f"/payments/{PAYMENT_ID}").mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(ProviderUnavailable):
            await provider(client, attempts=4).get_payment(PAYMENT_ID)
    assert route.call_count == 4


async def test_retries_back_off_exponentially() -> None:
    sent_at: list[float] = []

    def unavailable(request: httpx.Request) -> httpx.Response:
        sent_at.append(time.monotonic())
        return httpx.Response(500)

    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        mock.post("/payments").mock(side_effect=unavailable)
        yookassa = YooKassaProvider(
            client, base_url=BASE, shop_id=SHOP_ID, secret_key=SECRET_KEY, backoff=0.05
        )
        with pytest.raises(ProviderUnavailable):
            await create(yookassa)
    first, second, third = sent_at
    assert second - first >= 0.05
    assert third - second >= 0.1


async def test_each_attempt_is_bounded_by_the_adapter_s_timeout() -> None:
    seen: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=pending_payment())

    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient(timeout=30) as client:
        mock.post("/payments").mock(side_effect=record)
        await create(provider(client, timeout=httpx.Timeout(4.0, connect=1.5)))
        await create(provider(client))
    assert seen[0] == {"connect": 1.5, "read": 4.0, "write": 4.0, "pool": 4.0}
    # By default, PROVIDER_TIMEOUT, not the (longer) client's: a viewer waits for it.
    assert seen[1] == {"connect": 3.0, "read": 5.0, "write": 5.0, "pool": 5.0}


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, error("invalid_request", "Invalid amount value", "amount.value"), "invalid_request"),
        (401, error("invalid_credentials", "Error in shopId or secret key", "Authorization"),
         "invalid_credentials"),
        (403, error("forbidden", "Not enough rights"), "forbidden"),
        (404, error("not_found", "Payment doesn't exist or access denied"), "not_found"),
        (400, {"unexpected": "shape"}, None),
    ],
    ids=["400", "401", "403", "404", "400-not-yookassa-shape"],
)  # fmt: skip
async def test_a_4xx_is_a_rejection_with_yookassas_error_code_and_is_not_retried(
    status: int, body: dict[str, Any], code: str | None
) -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/payments").respond(status, json=body)
        with pytest.raises(ProviderRejected) as rejected:
            await create(provider(client))
    assert route.call_count == 1
    assert rejected.value.status == status
    assert rejected.value.code == code
    if "description" in body:
        assert body["description"] in str(rejected.value)
    if "parameter" in body:
        assert body["parameter"] in str(rejected.value)


async def test_a_4xx_without_a_json_body_is_a_rejection_too() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        mock.post("/payments").respond(400, text="<html>Bad Request</html>")
        with pytest.raises(ProviderRejected) as rejected:
            await create(provider(client))
    assert (rejected.value.status, rejected.value.code) == (400, None)


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        [pending_payment()],
        {**pending_payment(), "id": None},
        {**pending_payment(), "id": "../../payments"},
        {**pending_payment(), "status": "authorized"},
        {**pending_payment(), "amount": {"value": 499.0, "currency": "RUB"}},
        {**pending_payment(), "amount": {"value": "499.001", "currency": "RUB"}},
        {**pending_payment(), "amount": {"value": "-1.00", "currency": "RUB"}},
        {**pending_payment(), "amount": "499.00"},
        {key: value for key, value in pending_payment().items() if key != "amount"},
        succeeded_payment(captured_at="yesterday"),
        succeeded_payment(captured_at="2026-03-01T10:52:31"),
        succeeded_payment(refunded_amount={"value": "1.00", "currency": "USD"}),
    ],
    ids=[
        "not-json", "a-list", "no-id", "path-like-id", "unknown-status", "float-amount",
        "three-decimals", "negative", "amount-not-object", "no-amount", "bad-time",
        "naive-time", "refund-in-other-currency",
    ],
)  # fmt: skip
async def test_a_2xx_that_is_not_a_yookassa_payment_makes_the_provider_unavailable(
    body: Any,
) -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        if isinstance(body, str):
            mock.post("/payments").respond(200, text=body)
        else:
            mock.post("/payments").respond(200, json=body)
        with pytest.raises(ProviderUnavailable):
            await create(provider(client))


# --- reading a payment ----------------------------------------------------------------------


async def test_get_payment_reads_a_succeeded_payment() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.get(f"/payments/{PAYMENT_ID}").respond(
            200, json=succeeded_payment(refunded_amount={"value": "100.50", "currency": "RUB"})
        )
        payment = await provider(client).get_payment(PAYMENT_ID)

    [call] = route.calls
    assert call.request.headers["Authorization"] == basic(SHOP_ID, SECRET_KEY)
    assert "Idempotence-Key" not in call.request.headers
    assert payment.status == ProviderPaymentStatus.SUCCEEDED
    assert payment.paid_at == datetime(2026, 3, 1, 10, 52, 31, 118000, tzinfo=UTC)
    assert payment.refunded_amount == 10050
    assert payment.confirmation_url is None


async def test_a_succeeded_payment_without_captured_at_was_paid_when_created() -> None:
    answer = succeeded_payment()
    del answer["captured_at"], answer["refunded_amount"]
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        mock.get(f"/payments/{PAYMENT_ID}").respond(200, json=answer)
        payment = await provider(client).get_payment(PAYMENT_ID)
    assert payment.paid_at == datetime(2026, 3, 1, 10, 51, 18, 139000, tzinfo=UTC)
    assert payment.refunded_amount == 0


@pytest.mark.parametrize(
    ("yookassa_status", "status"),
    [
        ("pending", ProviderPaymentStatus.PENDING),
        ("waiting_for_capture", ProviderPaymentStatus.WAITING_FOR_CAPTURE),
        ("canceled", ProviderPaymentStatus.CANCELED),
    ],
)
async def test_get_payment_maps_yookassas_statuses(
    yookassa_status: str, status: ProviderPaymentStatus
) -> None:
    answer = pending_payment(status=yookassa_status)
    if yookassa_status == "canceled":
        answer["cancellation_details"] = {"party": "payment_network", "reason": "general_decline"}
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        mock.get(f"/payments/{PAYMENT_ID}").respond(200, json=answer)
        payment = await provider(client).get_payment(PAYMENT_ID)
    assert payment.status == status
    assert payment.paid_at is None


@pytest.mark.parametrize("weird_id", ["", "../refunds", "a/b", "x" * 65, "id with spaces"])
async def test_an_id_that_is_no_yookassa_id_is_never_put_in_a_url(weird_id: str) -> None:
    async with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        route = mock.route()
        async with httpx.AsyncClient() as client:
            with pytest.raises(ProviderRejected):
                await provider(client).get_payment(weird_id)
    assert not route.called


# --- refunds --------------------------------------------------------------------------------


async def test_create_refund_sends_the_documented_request_and_reads_the_refund() -> None:
    refund_id = "2d8b1f0e-0015-5000-8000-11f0a2b3c4d5"
    answer = {
        "id": refund_id,
        "payment_id": PAYMENT_ID,
        "status": "succeeded",
        "created_at": "2026-03-01T11:10:00.000Z",
        "amount": {"value": "499.00", "currency": "RUB"},
    }
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.post("/refunds").mock(
            side_effect=[httpx.ConnectTimeout("slow"), httpx.Response(200, json=answer)]
        )
        refund = await provider(client).create_refund(
            provider_payment_id=PAYMENT_ID, amount=49900, currency="RUB",
            idempotence_key="refund-key", data={},
        )  # fmt: skip

    assert [json.loads(call.request.content) for call in route.calls] == 2 * [
        {"payment_id": PAYMENT_ID, "amount": {"value": "499.00", "currency": "RUB"}}
    ]
    assert [call.request.headers["Idempotence-Key"] for call in route.calls] == 2 * ["refund-key"]
    assert route.calls.last.request.headers["Authorization"] == basic(SHOP_ID, SECRET_KEY)
    assert refund.provider_refund_id == refund_id
    assert refund.status == ProviderRefundStatus.SUCCEEDED
    assert (refund.amount, refund.currency) == (49900, "RUB")


async def test_a_refund_yookassa_refuses_is_a_rejection() -> None:
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        mock.post("/refunds").respond(
            400, json=error("invalid_request", "Payment is not refundable", "payment_id")
        )
        with pytest.raises(ProviderRejected) as rejected:
            await provider(client).create_refund(
                provider_payment_id=PAYMENT_ID, amount=1, currency="RUB", idempotence_key="k"
            )
    assert rejected.value.code == "invalid_request"


# --- notifications --------------------------------------------------------------------------


def notification(event: str, subject: dict[str, Any]) -> bytes:
    return json.dumps({"type": "notification", "event": event, "object": subject}).encode()


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        ("payment.succeeded", succeeded_payment()),
        ("payment.canceled", pending_payment(status="canceled")),
        ("payment.waiting_for_capture", pending_payment(status="waiting_for_capture")),
        ("refund.succeeded", {"id": "2d8b1f0e-0015-5000-8000-11f0a2b3c4d5",
                              "payment_id": PAYMENT_ID, "status": "succeeded",
                              "amount": {"value": "499.00", "currency": "RUB"}}),
    ],
)  # fmt: skip
def test_a_notification_names_the_payment_to_re_read(event: str, subject: dict[str, Any]) -> None:
    yookassa = provider(httpx.AsyncClient())
    parsed = yookassa.parse_notification(notification(event, subject), {})
    assert parsed == Notification(event=event, provider_payment_id=PAYMENT_ID)


def test_only_the_id_is_taken_from_a_notification() -> None:
    """A forged body claiming another amount or status is still only "go and re-read X"."""
    forged = succeeded_payment(amount={"value": "1.00", "currency": "RUB"}, status="succeeded")
    parsed = provider(httpx.AsyncClient()).parse_notification(
        notification("payment.succeeded", forged), {}
    )
    assert parsed == Notification(event="payment.succeeded", provider_payment_id=PAYMENT_ID)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"[]",
        b'"notification"',
        json.dumps({"event": "payment.succeeded", "object": {"id": PAYMENT_ID}}).encode(),
        json.dumps({"type": "error", "event": "payment.succeeded",
                    "object": {"id": PAYMENT_ID}}).encode(),
        notification("payment.refunded", {"id": PAYMENT_ID}),
        notification("payout.succeeded", {"id": PAYMENT_ID}),
        json.dumps({"type": "notification", "event": "payment.succeeded"}).encode(),
        notification("payment.succeeded", {}),
        notification("payment.succeeded", {"id": 42}),
        notification("payment.succeeded", {"id": "../refunds"}),
        notification("payment.succeeded", {"id": "x" * 65}),
        notification("refund.succeeded", {"id": PAYMENT_ID}),
        json.dumps({"type": "notification", "event": "payment.succeeded",
                    "object": [PAYMENT_ID]}).encode(),
    ],
    ids=[
        "empty", "not-json", "not-utf8", "deeply-nested", "a-list", "a-string", "no-type",
        "wrong-type", "unknown-event", "payout-event", "no-object", "no-id", "id-not-string",
        "path-like-id", "too-long-id", "refund-without-payment-id", "object-not-a-dict",
    ],
)  # fmt: skip
def test_anything_else_is_an_invalid_notification(body: bytes) -> None:
    with pytest.raises(InvalidNotification):
        provider(httpx.AsyncClient()).parse_notification(body, {})


# --- which provider -------------------------------------------------------------------------


def test_the_default_configuration_is_the_yookassa_adapter_on_the_sandbox(tmp_path: Path) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path, public_url="http://billing.test")
    chosen = provider_from_settings(settings, httpx.AsyncClient())
    assert isinstance(chosen, YooKassaProvider)
    assert chosen.name == "yookassa"


async def test_the_configured_address_and_credentials_are_used(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        yookassa_api_url="https://api.yookassa.test/v3",
        yookassa_shop_id="shop-7",
        yookassa_secret_key="live_secret",
    )
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        route = mock.get(f"/payments/{PAYMENT_ID}").respond(200, json=pending_payment())
        await provider_from_settings(settings, client).get_payment(PAYMENT_ID)
    assert route.calls.last.request.headers["Authorization"] == basic("shop-7", "live_secret")
