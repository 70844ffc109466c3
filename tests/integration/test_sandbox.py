"""The built-in ЮKassa sandbox through HTTP: ЮKassa's API under /sandbox/v3, the checkout
page, the notifications it sends, and billing's ЮKassa adapter talking to it end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.checkout.providers.base import (
    Notification,
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderRejected,
)
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.clock import FrozenClock
from billing.config import SANDBOX_SECRET_KEY, SANDBOX_SHOP_ID, Settings
from billing.sandbox.models import SandboxPayment, SandboxRefund
from tests.conftest import LoopbackTransport

Sessions = async_sessionmaker[AsyncSession]
WEBHOOK = "/api/v1/webhooks/yookassa"
RETURN_URL = "https://cinema.example/account/payments/42"


def basic(shop_id: str = SANDBOX_SHOP_ID, secret: str = SANDBOX_SECRET_KEY) -> str:
    return "Basic " + base64.b64encode(f"{shop_id}:{secret}".encode()).decode()


AUTH = {"Authorization": basic()}


def yookassa_time(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Webhooks:
    """Billing's notification URL as the sandbox sees it: records what arrives."""

    received: list[dict[str, Any]] = field(default_factory=list)
    answer: int = 200
    fail: bool = False

    def events(self) -> list[str]:
        return [body["event"] for body in self.received]


class RecordingLoopback(LoopbackTransport):
    """The app's outbound calls: the webhook is recorded here, everything else to billing.test
    goes back into the app (the adapter → the sandbox)."""

    def __init__(self, public_host: str, webhooks: Webhooks) -> None:
        super().__init__(public_host)
        self.webhooks = webhooks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.public_host and request.url.path == WEBHOOK:
            if self.webhooks.fail:
                raise httpx.ConnectError("billing is down", request=request)
            self.webhooks.received.append(json.loads(await request.aread()))
            return httpx.Response(self.webhooks.answer, json={})
        return await super().handle_async_request(request)


@pytest.fixture
def webhooks() -> Webhooks:
    return Webhooks()


@pytest.fixture
def receipts() -> bool:
    """Whether the sandbox's shop sends 54-FZ receipts: on, as with ЮKassa by default. The
    tests of billing's adapter on its own (no receipt given) parametrise it off."""
    return True


@pytest.fixture
def settings(settings: Settings, receipts: bool) -> Settings:
    return settings.model_copy(update={"receipts": receipts})


def receipt_for(value: Any = "499.00", currency: str = "RUB", **changes: Any) -> dict[str, Any]:
    """A valid 54-FZ ``receipt`` for a payment or a refund of ``value``: one item, as billing
    sends it."""
    item = {
        "description": "Premium, 1 мес.",
        "quantity": 1,
        "amount": {"value": value, "currency": currency},
        "vat_code": 1,
        "payment_subject": "service",
        "payment_mode": "full_payment",
        "measure": "piece",
    }
    return {"customer": {"email": "viewer@example.com"}, "items": [item], **changes}


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, webhooks: Webhooks) -> AsyncIterator[FastAPI]:
    loopback = RecordingLoopback("billing.test", webhooks)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


async def create_payment(
    client: httpx.AsyncClient,
    *,
    key: str | None = None,
    value: Any = "499.00",
    headers: dict[str, str] | None = None,
    **changes: Any,
) -> httpx.Response:
    body = {
        "amount": {"value": value, "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": RETURN_URL},
        "description": "Premium: 1 mo.",
        "metadata": {"billing_payment_id": "7b1d9c1e"},
        "receipt": receipt_for(value),
        **changes,
    }
    return await client.post(
        "/sandbox/v3/payments",
        json=body,
        headers={**AUTH, "Idempotence-Key": key or str(uuid.uuid4()), **(headers or {})},
    )


async def new_payment(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await create_payment(client, **changes)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def press(
    client: httpx.AsyncClient, payment_id: str, action: str = "pay", **form: str
) -> httpx.Response:
    return await client.post(f"/sandbox/checkout/{payment_id}", data={"action": action, **form})


async def read_payment(client: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    response = await client.get(f"/sandbox/v3/payments/{payment_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refund(
    client: httpx.AsyncClient, payment_id: str, value: str, *, key: str | None = None,
    currency: str = "RUB",
) -> httpx.Response:  # fmt: skip
    amount = {"value": value, "currency": currency}
    return await client.post(
        "/sandbox/v3/refunds",
        json={"payment_id": payment_id, "amount": amount, "receipt": receipt_for(value, currency)},
        headers={**AUTH, "Idempotence-Key": key or str(uuid.uuid4())},
    )


async def count(sessions: Sessions, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def assert_yookassa_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["type"] == "error"
    assert body["code"] == code
    uuid.UUID(body["id"])
    assert body["description"]
    return body


# --- creating and reading payments ----------------------------------------------------------


async def test_create_answers_yookassas_pending_payment(
    client: httpx.AsyncClient, clock: FrozenClock, sessions: Sessions
) -> None:
    response = await create_payment(client)

    assert response.status_code == 200  # ЮKassa answers 200, not 201
    payment = response.json()
    payment_id = payment["id"]
    uuid.UUID(payment_id)
    assert payment == {
        "id": payment_id,
        "status": "pending",
        "paid": False,
        "amount": {"value": "499.00", "currency": "RUB"},
        "description": "Premium: 1 mo.",
        "recipient": {"account_id": SANDBOX_SHOP_ID, "gateway_id": "1000001"},
        "created_at": yookassa_time(clock.now()),
        "confirmation": {
            "type": "redirect",
            "confirmation_url": f"http://billing.test/sandbox/checkout/{payment_id}",
            "return_url": RETURN_URL,
        },
        "test": True,
        "refundable": False,
        "metadata": {"billing_payment_id": "7b1d9c1e"},
        "receipt_registration": "pending",  # its receipt is registered once it succeeds
    }
    assert await read_payment(client, payment_id) == payment
    assert await count(sessions, SandboxPayment) == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(secret="wrong-secret"),
        basic(shop_id="another-shop"),
        basic(secret=""),
        "Basic " + base64.b64encode(SANDBOX_SHOP_ID.encode()).decode(),  # no colon
        "Basic not*base64",
        "Bearer " + SANDBOX_SECRET_KEY,
        "Basic",
    ],
    ids=[
        "none", "wrong-secret", "wrong-shop", "empty-secret", "no-colon", "not-base64",
        "bearer", "empty-basic",
    ],
)  # fmt: skip
async def test_bad_credentials_get_yookassas_401_and_change_nothing(
    client: httpx.AsyncClient, sessions: Sessions, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    created = await client.post(
        "/sandbox/v3/payments",
        json={"amount": {"value": "1.00", "currency": "RUB"}},
        headers={"Idempotence-Key": "k", **headers},
    )
    body = assert_yookassa_error(created, 401, "invalid_credentials")
    assert SANDBOX_SECRET_KEY not in created.text
    assert body["parameter"] == "Authorization"
    assert await count(sessions, SandboxPayment) == 0

    refund_headers = {"Idempotence-Key": "r", **headers}
    for other in (
        await client.get(f"/sandbox/v3/payments/{uuid.uuid4()}", headers=headers),
        await client.get(f"/sandbox/v3/refunds/{uuid.uuid4()}", headers=headers),
        await client.post("/sandbox/v3/refunds", json={}, headers=refund_headers),
    ):
        assert_yookassa_error(other, 401, "invalid_credentials")


async def test_the_configured_credentials_are_the_ones_checked(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, jwt_secret="x" * 40,
        public_url="http://billing.test", yookassa_shop_id="shop-7",
        yookassa_secret_key="s3cret",
    )  # fmt: skip
    application = create_app(settings, clock=clock)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            default = await create_payment(http)
            configured = await create_payment(
                http, headers={"Authorization": basic("shop-7", "s3cret")}
            )
    assert_yookassa_error(default, 401, "invalid_credentials")
    assert configured.status_code == 200
    assert configured.json()["recipient"]["account_id"] == "shop-7"


async def test_the_same_idempotence_key_and_body_answer_the_same_payment(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    first = await create_payment(client, key="order-42")
    again = await create_payment(client, key="order-42")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await count(sessions, SandboxPayment) == 1

    other_body = await create_payment(client, key="order-42", value="500.00")
    body = assert_yookassa_error(other_body, 400, "invalid_request")
    assert body["parameter"] == "Idempotence-Key"
    assert await count(sessions, SandboxPayment) == 1

    concurrent = await asyncio.gather(*(create_payment(client, key="burst") for _ in range(5)))
    assert {response.status_code for response in concurrent} == {200}
    assert len({response.json()["id"] for response in concurrent}) == 1
    assert await count(sessions, SandboxPayment) == 2


@pytest.mark.parametrize(
    "key", [None, "", "x" * 65, "with space"], ids=["missing", "empty", "too-long", "space"]
)
async def test_a_payment_needs_an_idempotence_key(
    client: httpx.AsyncClient, sessions: Sessions, key: str | None
) -> None:
    headers = {**AUTH} if key is None else {**AUTH, "Idempotence-Key": key}
    response = await client.post(
        "/sandbox/v3/payments",
        json={"amount": {"value": "1.00", "currency": "RUB"}},
        headers=headers,
    )
    body = assert_yookassa_error(response, 400, "invalid_request")
    assert body["parameter"] == "Idempotence-Key"
    assert await count(sessions, SandboxPayment) == 0


AMOUNT = {"value": "499.00", "currency": "RUB"}
REDIRECT = {"type": "redirect", "return_url": RETURN_URL}


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"capture": True, "confirmation": REDIRECT}, "amount"),
        ({"amount": {"value": "0.00", "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": "-1.00", "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": "4.999", "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": 4.999, "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": "1e3", "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": 1e300, "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": True, "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": "100000000.01", "currency": "RUB"}, "capture": True,
          "confirmation": REDIRECT}, "amount.value"),
        ({"amount": {"value": "1.00", "currency": "rub"}, "capture": True,
          "confirmation": REDIRECT}, "amount.currency"),
        ({"amount": {"value": "1.00"}, "capture": True, "confirmation": REDIRECT},
         "amount.currency"),
        ({"amount": AMOUNT, "capture": True}, "confirmation"),
        ({"amount": AMOUNT, "capture": True,
          "confirmation": {"type": "qr"}}, "confirmation.type"),
        ({"amount": AMOUNT, "capture": True,
          "confirmation": {"type": "redirect"}}, "confirmation.return_url"),
        ({"amount": AMOUNT, "capture": True,
          "confirmation": {"type": "redirect", "return_url": "javascript:alert(1)"}},
         "confirmation.return_url"),
        ({"amount": AMOUNT, "capture": "later", "confirmation": REDIRECT}, "capture"),
        ({"amount": AMOUNT, "capture": True, "confirmation": REDIRECT,
          "description": "d" * 129}, "description"),
        ({"amount": AMOUNT, "capture": True, "confirmation": REDIRECT,
          "metadata": {"k": 1}}, "metadata.k"),
        ({"amount": AMOUNT, "capture": True, "confirmation": REDIRECT,
          "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"amount": AMOUNT, "capture": True, "confirmation": REDIRECT,
          "metadata": {"$sandbox": "x"}}, "metadata"),
        ({"amount": AMOUNT, "capture": True, "confirmation": REDIRECT,
          "description": "nul\u0000"}, None),
    ],
    ids=[
        "no-amount", "zero", "negative", "three-decimals", "three-decimals-number",
        "exponent", "huge-number", "bool", "over-the-limit", "lowercase-currency",
        "no-currency", "no-confirmation", "unknown-confirmation", "no-return-url",
        "javascript-url", "capture-not-boolean", "long-description",
        "metadata-not-string", "metadata-too-many-keys", "metadata-sandbox-key", "nul-character",
    ],
)  # fmt: skip
async def test_an_unusable_payment_request_is_a_400_naming_the_parameter(
    client: httpx.AsyncClient, sessions: Sessions, body: dict[str, Any], parameter: str | None
) -> None:
    response = await client.post(
        "/sandbox/v3/payments", json=body, headers={**AUTH, "Idempotence-Key": "k"}
    )
    answer = assert_yookassa_error(response, 400, "invalid_request")
    assert answer.get("parameter") == parameter
    assert await count(sessions, SandboxPayment) == 0


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'"a"', b"{" * 50_000])
async def test_a_body_that_is_no_json_object_is_a_400(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/sandbox/v3/payments", content=content, headers={**AUTH, "Idempotence-Key": "k"}
    )
    assert_yookassa_error(response, 400, "invalid_request")


async def test_amounts_may_be_json_numbers_too(client: httpx.AsyncClient) -> None:
    assert (await new_payment(client, value=499.5))["amount"]["value"] == "499.50"
    assert (await new_payment(client, value=12))["amount"]["value"] == "12.00"


@pytest.mark.parametrize("payment_id", [str(uuid.uuid4()), "not-a-uuid", "x" * 300, "%00", "a.b"])
async def test_an_unknown_payment_is_yookassas_404(
    client: httpx.AsyncClient, payment_id: str
) -> None:
    response = await client.get(f"/sandbox/v3/payments/{payment_id}", headers=AUTH)
    assert_yookassa_error(response, 404, "not_found")
    page = await client.get(f"/sandbox/checkout/{payment_id}")
    assert page.status_code == 404
    pressed = await press(client, payment_id)
    assert pressed.status_code == 404


# --- the checkout page ----------------------------------------------------------------------


async def test_the_checkout_page_shows_amount_description_and_the_two_buttons(
    client: httpx.AsyncClient,
) -> None:
    payment = await new_payment(client, description="Premium <b>1</b> mo.")
    page = await client.get(payment["confirmation"]["confirmation_url"])

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "499.00 RUB" in page.text
    assert "Premium &lt;b&gt;1&lt;/b&gt; mo." in page.text  # the shop's text, escaped
    assert '<form method="post">' in page.text
    assert 'name="action" value="pay"' in page.text
    assert 'name="action" value="decline"' in page.text


async def test_pay_succeeds_notifies_billing_and_sends_the_viewer_back(
    client: httpx.AsyncClient, clock: FrozenClock, webhooks: Webhooks
) -> None:
    payment = await new_payment(client)
    clock.advance(timedelta(minutes=3))

    pressed = await press(client, payment["id"], "pay")

    assert pressed.status_code == 303
    assert pressed.headers["location"] == RETURN_URL
    paid = await read_payment(client, payment["id"])
    assert paid["status"] == "succeeded"
    assert paid["paid"] is True
    assert paid["captured_at"] == yookassa_time(clock.now())
    assert paid["created_at"] == payment["created_at"]
    assert paid["income_amount"] == {"value": "481.53", "currency": "RUB"}  # less 3.5 % fee
    assert "refunded_amount" not in paid  # ЮKassa shows it once a refund exists
    assert paid["refundable"] is True
    assert paid["payment_method"]["type"] == "bank_card"
    assert "confirmation" not in paid
    assert webhooks.received == [
        {"type": "notification", "event": "payment.succeeded", "object": paid}
    ]


async def test_decline_cancels_as_a_card_decline(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    payment = await new_payment(client)

    pressed = await press(client, payment["id"], "decline")

    assert pressed.status_code == 303
    canceled = await read_payment(client, payment["id"])
    assert canceled["status"] == "canceled"
    assert canceled["paid"] is False
    assert canceled["refundable"] is False
    assert canceled["cancellation_details"] == {
        "party": "payment_network",
        "reason": "general_decline",
    }
    assert "captured_at" not in canceled
    assert "refunded_amount" not in canceled
    assert webhooks.received == [
        {"type": "notification", "event": "payment.canceled", "object": canceled}
    ]


async def test_notify_0_pays_without_a_notification(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    payment = await new_payment(client)

    pressed = await press(client, payment["id"], "pay", notify="0")

    assert pressed.status_code == 303
    assert (await read_payment(client, payment["id"]))["status"] == "succeeded"
    assert webhooks.received == []


async def test_a_second_press_changes_nothing_and_shows_the_outcome(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    payment = await new_payment(client)
    await press(client, payment["id"], "pay")

    again = await press(client, payment["id"], "decline")

    assert again.status_code == 200
    assert "Paid" in again.text
    assert "<form" not in again.text
    assert (await read_payment(client, payment["id"]))["status"] == "succeeded"
    assert webhooks.events() == ["payment.succeeded"]
    page = await client.get(f"/sandbox/checkout/{payment['id']}")
    assert "Paid" in page.text
    assert "<form" not in page.text


async def test_racing_presses_decide_once(client: httpx.AsyncClient, webhooks: Webhooks) -> None:
    payment = await new_payment(client)

    answers = await asyncio.gather(
        *(press(client, payment["id"], action) for action in ["pay", "decline"] * 4)
    )

    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [303]
    final = (await read_payment(client, payment["id"]))["status"]
    assert webhooks.events() == [f"payment.{final}"]


@pytest.mark.parametrize("form", [{}, {"action": "refund"}, {"action": "PAY "}])
async def test_an_unknown_action_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    payment = await new_payment(client)
    response = await client.post(f"/sandbox/checkout/{payment['id']}", data=form)
    assert response.status_code == 400
    assert (await read_payment(client, payment["id"]))["status"] == "pending"


@pytest.mark.parametrize("billing", ["answers 500", "is down"])
async def test_a_notification_billing_does_not_take_is_not_the_viewers_problem(
    client: httpx.AsyncClient, webhooks: Webhooks, billing: str
) -> None:
    webhooks.answer, webhooks.fail = (500, False) if billing == "answers 500" else (200, True)
    payment = await new_payment(client)

    pressed = await press(client, payment["id"], "pay")

    assert pressed.status_code == 303
    assert (await read_payment(client, payment["id"]))["status"] == "succeeded"


# --- refunds --------------------------------------------------------------------------------


async def paid_payment(client: httpx.AsyncClient) -> dict[str, Any]:
    payment = await new_payment(client)
    assert (await press(client, payment["id"], "pay", notify="0")).status_code == 303
    return payment


async def test_refunds_add_up_to_at_most_the_payment(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, webhooks: Webhooks
) -> None:
    payment = await paid_payment(client)

    part = await refund(client, payment["id"], "100.00")
    assert part.status_code == 200
    refund_id = part.json()["id"]
    assert part.json() == {
        "id": refund_id,
        "payment_id": payment["id"],
        "status": "succeeded",
        "created_at": yookassa_time(clock.now()),
        "amount": {"value": "100.00", "currency": "RUB"},
    }
    after_part = await read_payment(client, payment["id"])
    assert after_part["refunded_amount"] == {"value": "100.00", "currency": "RUB"}
    assert (after_part["status"], after_part["refundable"]) == ("succeeded", True)

    too_much = await refund(client, payment["id"], "399.01")
    assert assert_yookassa_error(too_much, 400, "invalid_request")["parameter"] == "amount.value"

    rest = await refund(client, payment["id"], "399.00")
    assert rest.status_code == 200
    fully = await read_payment(client, payment["id"])
    assert fully["status"] == "succeeded"  # ЮKassa keeps the status; refunded_amount tells
    assert fully["refunded_amount"] == fully["amount"]
    assert fully["refundable"] is False
    assert_yookassa_error(await refund(client, payment["id"], "0.01"), 400, "invalid_request")

    read = await client.get(f"/sandbox/v3/refunds/{refund_id}", headers=AUTH)
    assert read.json() == part.json()

    await app.state.sandbox_notifier.drain()
    assert webhooks.received == [
        {"type": "notification", "event": "refund.succeeded", "object": part.json()},
        {"type": "notification", "event": "refund.succeeded", "object": rest.json()},
    ]


async def test_a_repeated_refund_request_is_the_same_refund(
    app: FastAPI, client: httpx.AsyncClient, sessions: Sessions, webhooks: Webhooks
) -> None:
    payment = await paid_payment(client)

    first = await refund(client, payment["id"], "499.00", key="refund-1")
    again = await refund(client, payment["id"], "499.00", key="refund-1")
    other = await refund(client, payment["id"], "1.00", key="refund-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert assert_yookassa_error(other, 400, "invalid_request")["parameter"] == "Idempotence-Key"
    assert await count(sessions, SandboxRefund) == 1
    assert (await read_payment(client, payment["id"]))["refunded_amount"]["value"] == "499.00"
    await app.state.sandbox_notifier.drain()
    assert webhooks.events() == ["refund.succeeded"]


async def test_concurrent_refunds_never_refund_more_than_was_paid(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    payment = await paid_payment(client)

    answers = await asyncio.gather(*(refund(client, payment["id"], "300.00") for _ in range(4)))

    assert sorted(answer.status_code for answer in answers) == [200, 400, 400, 400]
    assert (await read_payment(client, payment["id"]))["refunded_amount"]["value"] == "300.00"
    assert await count(sessions, SandboxRefund) == 1


async def test_only_a_succeeded_payment_can_be_refunded(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    pending = await new_payment(client)
    declined = await new_payment(client)
    await press(client, declined["id"], "decline", notify="0")
    paid = await paid_payment(client)

    cases = [
        (await refund(client, pending["id"], "1.00"), "payment_id"),
        (await refund(client, declined["id"], "1.00"), "payment_id"),
        (await refund(client, str(uuid.uuid4()), "1.00"), "payment_id"),
        (await refund(client, "../payments", "1.00"), "payment_id"),
        (await refund(client, paid["id"], "1.00", currency="USD"), "amount.currency"),
        (await refund(client, paid["id"], "0.00"), "amount.value"),
    ]
    for response, parameter in cases:
        assert assert_yookassa_error(response, 400, "invalid_request")["parameter"] == parameter
    assert await count(sessions, SandboxRefund) == 0


async def test_an_unknown_refund_is_yookassas_404(client: httpx.AsyncClient) -> None:
    for refund_id in (str(uuid.uuid4()), "x" * 100):
        response = await client.get(f"/sandbox/v3/refunds/{refund_id}", headers=AUTH)
        assert_yookassa_error(response, 404, "not_found")


# --- billing's ЮKassa adapter against the sandbox, end to end ------------------------------


def adapter(app: FastAPI, settings: Settings, **changes: str) -> YooKassaProvider:
    options = {
        "base_url": settings.yookassa_base_url,
        "shop_id": settings.yookassa_shop_id,
        "secret_key": settings.yookassa_secret_key,
        **changes,
    }
    return YooKassaProvider(app.state.outbound, **options)


@pytest.mark.parametrize("receipts", [False])  # the adapter alone: no receipt
async def test_the_adapter_pays_and_refunds_through_the_sandbox(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    webhooks: Webhooks,
) -> None:
    yookassa = adapter(app, settings)
    assert settings.yookassa_base_url == "http://billing.test/sandbox/v3"
    billing_payment_id = uuid.uuid4()

    created = await yookassa.create_payment(
        payment_id=billing_payment_id, amount=49900, currency="RUB",
        description="Premium: 1 mo.", return_url=RETURN_URL, idempotence_key="pay-1",
        expires_at=clock.now() + timedelta(minutes=30),
        requested_at=datetime.now(UTC),
    )  # fmt: skip
    assert created.status == ProviderPaymentStatus.PENDING
    assert (created.amount, created.currency) == (49900, "RUB")
    assert created.confirmation_url == (
        f"http://billing.test/sandbox/checkout/{created.provider_payment_id}"
    )
    sandbox_view = await read_payment(client, created.provider_payment_id)
    assert sandbox_view["metadata"] == {"billing_payment_id": str(billing_payment_id)}

    clock.advance(timedelta(minutes=2))
    assert (await client.post(created.confirmation_url, data={"action": "pay"})).status_code == 303

    paid = await yookassa.get_payment(created.provider_payment_id)
    assert paid.status == ProviderPaymentStatus.SUCCEEDED
    assert paid.paid_at == clock.now()
    assert paid.refunded_amount == 0
    # The notification the sandbox sent is one the adapter understands.
    [sent] = webhooks.received
    assert yookassa.parse_notification(json.dumps(sent).encode(), {}) == Notification(
        event="payment.succeeded", provider_payment_id=created.provider_payment_id
    )

    refunded = await yookassa.create_refund(
        provider_payment_id=created.provider_payment_id, amount=49900, currency="RUB",
        idempotence_key="refund-1",
    )  # fmt: skip
    assert refunded.status == ProviderRefundStatus.SUCCEEDED
    assert (refunded.amount, refunded.currency) == (49900, "RUB")
    assert (await yookassa.get_payment(created.provider_payment_id)).refunded_amount == 49900
    await app.state.sandbox_notifier.drain()
    assert yookassa.parse_notification(json.dumps(webhooks.received[-1]).encode(), {}) == (
        Notification(event="refund.succeeded", provider_payment_id=created.provider_payment_id)
    )


@pytest.mark.parametrize("receipts", [False])  # the adapter alone: no receipt
async def test_the_adapter_s_retry_with_the_same_key_finds_the_same_sandbox_payment(
    app: FastAPI, settings: Settings, clock: FrozenClock, sessions: Sessions
) -> None:
    yookassa = adapter(app, settings)
    asked = {
        "payment_id": uuid.uuid4(), "amount": 100, "currency": "RUB", "description": "d",
        "return_url": RETURN_URL, "idempotence_key": "same", "expires_at": clock.now(),
        "requested_at": datetime.now(UTC),
    }  # fmt: skip
    first = await yookassa.create_payment(**asked)
    second = await yookassa.create_payment(**asked)
    assert first == second
    assert await count(sessions, SandboxPayment) == 1


@pytest.mark.parametrize("receipts", [False])  # the adapter alone: no receipt
async def test_the_sandbox_refusals_reach_the_adapter_as_rejections(
    app: FastAPI, settings: Settings, clock: FrozenClock
) -> None:
    with pytest.raises(ProviderRejected) as wrong_key:
        await adapter(app, settings, secret_key="wrong").get_payment(str(uuid.uuid4()))
    assert (wrong_key.value.status, wrong_key.value.code) == (401, "invalid_credentials")

    with pytest.raises(ProviderRejected) as unknown:
        await adapter(app, settings).get_payment(str(uuid.uuid4()))
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")

    pending = await adapter(app, settings).create_payment(
        payment_id=uuid.uuid4(), amount=100, currency="RUB", description="d",
        return_url=RETURN_URL, idempotence_key="p", expires_at=clock.now(),
        requested_at=datetime.now(UTC),
    )  # fmt: skip
    with pytest.raises(ProviderRejected) as not_paid:
        await adapter(app, settings).create_refund(
            provider_payment_id=pending.provider_payment_id, amount=100, currency="RUB",
            idempotence_key="r",
        )  # fmt: skip
    assert (not_paid.value.status, not_paid.value.code) == (400, "invalid_request")


# --- the official ЮKassa SDK against the sandbox on a real server --------------------------


@contextmanager
def serving(
    database_url: str, data_dir: Path, clock: FrozenClock, webhooks: Webhooks, **changes: Any
) -> Iterator[str]:
    """The app (``Settings`` with ``changes``) on a real uvicorn in a thread, at the address
    this yields: the SDK is synchronous and speaks real HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = Settings(
        database_url=database_url, data_dir=data_dir, jwt_secret="x" * 40,
        public_url=public_url, **changes,
    )  # fmt: skip
    loopback = RecordingLoopback("127.0.0.1", webhooks)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    server = uvicorn.Server(uvicorn.Config(application, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield public_url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listener.close()


@pytest.fixture
def served_sandbox(
    database_url: str, tmp_path: Path, clock: FrozenClock, webhooks: Webhooks
) -> Iterator[str]:
    with serving(database_url, tmp_path, clock, webhooks) as public_url:
        yield public_url


def test_the_official_yookassa_sdk_pays_and_refunds_in_the_sandbox(
    served_sandbox: str, webhooks: Webhooks
) -> None:
    yookassa = pytest.importorskip("yookassa")
    from yookassa.domain.exceptions import BadRequestError, NotFoundError, UnauthorizedError
    from yookassa.domain.notification import WebhookNotificationFactory

    api_url = f"{served_sandbox}/sandbox/v3"
    yookassa.Configuration.configure(SANDBOX_SHOP_ID, SANDBOX_SECRET_KEY, api_url=api_url)
    try:
        request = {
            "amount": {"value": "499.00", "currency": "RUB"},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": RETURN_URL},
            "description": "Premium: 1 mo.",
            "receipt": receipt_for("499.00"),  # the shop sends 54-FZ receipts
        }
        created = yookassa.Payment.create(request, "sdk-payment-1")
        assert created.status == "pending"
        assert created.amount.value == Decimal("499.00")
        assert created.metadata == {"cms_name": "yookassa_sdk_python"}  # the SDK adds it
        confirmation_url = created.confirmation.confirmation_url
        assert confirmation_url == f"{served_sandbox}/sandbox/checkout/{created.id}"
        assert yookassa.Payment.create(request, "sdk-payment-1").id == created.id

        pressed = httpx.post(confirmation_url, data={"action": "pay"})
        assert pressed.status_code == 303

        paid = yookassa.Payment.find_one(created.id)
        assert (paid.status, paid.paid, paid.refundable) == ("succeeded", True, True)
        assert paid.captured_at is not None
        assert paid.income_amount.value == Decimal("481.53")
        assert paid.payment_method.card.last4 == "4477"
        event = WebhookNotificationFactory().create(webhooks.received[0])
        assert (event.event, event.object.id, event.object.status) == (
            "payment.succeeded", created.id, "succeeded",
        )  # fmt: skip

        refund = yookassa.Refund.create(
            {"payment_id": created.id, "amount": {"value": "499.00", "currency": "RUB"},
             "receipt": receipt_for("499.00")},
            "sdk-refund-1",
        )  # fmt: skip
        assert (refund.status, refund.payment_id) == ("succeeded", created.id)
        assert yookassa.Refund.find_one(refund.id).amount.value == Decimal("499.00")
        assert yookassa.Payment.find_one(created.id).refunded_amount.value == Decimal("499.00")

        with pytest.raises(BadRequestError) as nothing_left:
            yookassa.Refund.create(
                {"payment_id": created.id, "amount": {"value": "1.00", "currency": "RUB"},
                 "receipt": receipt_for("1.00")}
            )  # fmt: skip
        assert nothing_left.value.args[0]["parameter"] == "amount.value"
        with pytest.raises(NotFoundError):
            yookassa.Payment.find_one(str(uuid.uuid4()))
        yookassa.Configuration.configure(SANDBOX_SHOP_ID, "wrong", api_url=api_url)
        with pytest.raises(UnauthorizedError):
            yookassa.Payment.find_one(created.id)
    finally:
        yookassa.Configuration.configure(None, None)
