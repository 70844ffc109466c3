"""The sandboxes against material nobody here wrote: the ЮKassa sandbox's answers parsed by
the official SDK's response models (the Stripe sandbox's objects are checked against the
official SDK's field declarations in ``test_stripe_sandbox_sdk_shapes.py``); and the provider
behaviours issue 13 lists (two-stage payments, expiry, delayed payments…)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from yookassa.domain.response import (
    PaymentListResponse,
    PaymentResponse,
    RefundListResponse,
    RefundResponse,
)

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import SANDBOX_STRIPE_SECRET_KEY, Settings
from billing.sandbox.schemas import CONFIRMATION_LIFETIME
from tests.conftest import LoopbackTransport
from tests.integration.test_sandbox import AUTH as YOOKASSA_AUTH
from tests.integration.test_sandbox import receipt_for

STRIPE = "/sandbox/stripe/v1"
STRIPE_AUTH = {"Authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}",
               "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
RETURN_URL = "https://cinema.example/back"


class Recorder(LoopbackTransport):
    """Records what the sandboxes send to billing's webhooks; the rest goes into the app."""

    def __init__(self) -> None:
        super().__init__("billing.test")
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/webhooks/"):
            self.sent.append((request.url.path, json.loads(await request.aread())))
            return httpx.Response(200, json={})
        return await super().handle_async_request(request)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for sent_to, body in self.sent if sent_to == path]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, recorder: Recorder) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock, outbound_transport=recorder)
    recorder.app = application
    async with LifespanManager(application):
        yield application


async def drain(app: FastAPI) -> None:
    await app.state.sandbox_notifier.drain()
    await app.state.sandbox_stripe_notifier.drain()


# --- Stripe ---------------------------------------------------------------------------------


async def stripe_post(client: httpx.AsyncClient, path: str, params: dict[str, str],
                      key: str | None = None) -> httpx.Response:  # fmt: skip
    headers = {**STRIPE_AUTH, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"{STRIPE}{path}", content=urlencode(params), headers=headers)


async def stripe_get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(f"{STRIPE}{path}", headers=STRIPE_AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def session_params(**changes: str) -> dict[str, str]:
    return {
        "mode": "payment", "line_items[0][quantity]": "2",
        "line_items[0][price_data][currency]": "rub",
        "line_items[0][price_data][unit_amount]": "24950",
        "line_items[0][price_data][product_data][name]": "Premium: 1 mo.",
        "success_url": RETURN_URL, "cancel_url": RETURN_URL,
        "customer_email": "viewer@cinema.example", "locale": "ru",
        "expires_at": str(int(time.time()) + 3600), **changes,
    }  # fmt: skip


async def press_stripe(client: httpx.AsyncClient, session_id: str, **form: str) -> httpx.Response:
    return await client.post(f"/sandbox/stripe/c/pay/{session_id}", data=form)


@pytest.mark.parametrize("provider_name", ["stripe"])
@pytest.mark.parametrize("outcome", ["settle", "fail"])
async def test_a_delayed_payment_completes_unpaid_then_settles_or_fails(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder, outcome: str
) -> None:
    session = (await stripe_post(client, "/checkout/sessions", session_params())).json()

    paid_later = await press_stripe(client, session["id"], action="pay", card="delayed")

    assert paid_later.status_code == 303
    processing = await stripe_get(
        client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent"
    )
    assert (processing["status"], processing["payment_status"]) == ("complete", "unpaid")
    assert processing["payment_intent"]["status"] == "processing"
    page = await client.get(f"/sandbox/stripe/c/pay/{session['id']}")
    assert "Processing" in page.text and 'value="settle"' in page.text
    assert_stripe_error = (await stripe_post(client, "/refunds", {
        "payment_intent": processing["payment_intent"]["id"]}))  # fmt: skip
    assert assert_stripe_error.status_code == 400  # nothing is paid yet

    answered = await press_stripe(client, session["id"], action=outcome)

    assert answered.status_code == 303
    settled = await stripe_get(
        client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent"
    )
    types = [event["type"] for event in recorder.bodies("/api/v1/webhooks/stripe")]
    if outcome == "settle":
        assert (settled["status"], settled["payment_status"]) == ("complete", "paid")
        assert settled["payment_intent"]["status"] == "succeeded"
        assert types == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    else:
        assert (settled["status"], settled["payment_status"]) == ("complete", "unpaid")
        assert settled["payment_intent"]["status"] == "requires_payment_method"
        assert types == ["checkout.session.completed", "payment_intent.payment_failed",
                         "checkout.session.async_payment_failed"]  # fmt: skip
    assert (await press_stripe(client, session["id"], action=outcome)).status_code == 200  # once


# --- ЮKassa: the official SDK's models ---------------------------------------------------------


async def yk_create(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    body = {"amount": {"value": "499.00", "currency": "RUB"},
            "confirmation": {"type": "redirect", "return_url": RETURN_URL},
            "receipt": receipt_for("499.00"), **changes}  # fmt: skip
    headers = {**YOOKASSA_AUTH, "Idempotence-Key": str(uuid.uuid4())}
    response = await client.post("/sandbox/v3/payments", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def yk(client: httpx.AsyncClient, method: str, path: str, body: Any = None,
             key: str | None = None) -> httpx.Response:  # fmt: skip
    headers = {**YOOKASSA_AUTH, "Idempotence-Key": key or str(uuid.uuid4())}
    return await client.request(method, f"/sandbox/v3{path}", json=body, headers=headers)


def parsed(body: dict[str, Any]) -> PaymentResponse:
    """The SDK's model keeps every field the answer has (it refuses none it knows)."""
    model = PaymentResponse(body)
    assert model.id == body["id"] and model.status == body["status"]
    assert model.amount.value is not None and model.metadata == body["metadata"]
    return model


async def test_two_stage_payment_waits_for_capture_then_captures_part(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder, clock: FrozenClock
) -> None:
    created = await yk_create(client)  # no "capture": ЮKassa's default is two-stage
    assert (await client.post(f"/sandbox/checkout/{created['id']}", data={"action": "pay"})
            ).status_code == 303  # fmt: skip

    held = (await yk(client, "GET", f"/payments/{created['id']}")).json()
    model = parsed(held)
    assert (model.status, model.paid, model.refundable) == ("waiting_for_capture", True, False)
    assert model.expires_at is not None and model.captured_at is None
    assert "refunded_amount" not in held

    # Taking part of a receipted payment sells part: the receipt says what.
    part = {"amount": {"value": "300.00", "currency": "RUB"}, "receipt": receipt_for("300.00")}
    captured = await yk(client, "POST", f"/payments/{created['id']}/capture", part, key="cap-1")
    again = await yk(client, "POST", f"/payments/{created['id']}/capture", part, key="cap-1")
    assert captured.status_code == again.status_code == 200
    assert again.json() == captured.json()
    model = parsed(captured.json())
    assert (model.status, str(model.amount.value)) == ("succeeded", "300.00")
    assert model.captured_at is not None and model.refundable is True
    late = await yk(client, "POST", f"/payments/{created['id']}/cancel")
    assert (late.status_code, late.json()["code"]) == (400, "invalid_request")

    asked = {"payment_id": created["id"], "amount": {"value": "100.00", "currency": "RUB"},
             "receipt": receipt_for("100.00")}  # fmt: skip
    refund = await yk(client, "POST", "/refunds", asked)
    assert RefundResponse(refund.json()).status == "succeeded"
    assert parsed((await yk(client, "GET", f"/payments/{created['id']}")).json()
                  ).refunded_amount.value == 100  # fmt: skip

    await drain(app)
    events = [body["event"] for body in recorder.bodies("/api/v1/webhooks/yookassa")]
    assert events == ["payment.waiting_for_capture", "payment.succeeded", "refund.succeeded"]


async def test_a_held_payment_can_be_canceled(app: FastAPI, client: httpx.AsyncClient) -> None:
    created = await yk_create(client, capture=False)
    await client.post(f"/sandbox/checkout/{created['id']}", data={"action": "pay"})

    canceled = await yk(client, "POST", f"/payments/{created['id']}/cancel")

    assert canceled.status_code == 200
    model = parsed(canceled.json())
    assert model.status == "canceled"
    assert (model.cancellation_details.party, model.cancellation_details.reason) == (
        "merchant", "canceled_by_merchant",
    )  # fmt: skip
    pending = await yk_create(client, capture=True)
    refused = await yk(client, "POST", f"/payments/{pending['id']}/capture")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request")


async def test_an_unconfirmed_payment_expires_as_yookassa_s_does(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, recorder: Recorder
) -> None:
    created = await yk_create(client, capture=True)
    clock.advance(CONFIRMATION_LIFETIME - timedelta(seconds=1))
    assert (await yk(client, "GET", f"/payments/{created['id']}")).json()["status"] == "pending"

    clock.advance(timedelta(seconds=1))

    expired = parsed((await yk(client, "GET", f"/payments/{created['id']}")).json())
    assert expired.status == "canceled"
    assert (expired.cancellation_details.party, expired.cancellation_details.reason) == (
        "yoo_money", "expired_on_confirmation",
    )  # fmt: skip
    too_late = await client.post(f"/sandbox/checkout/{created['id']}", data={"action": "pay"})
    assert too_late.status_code == 200 and "<form" not in too_late.text
    await drain(app)
    [sent] = recorder.bodies("/api/v1/webhooks/yookassa")
    assert (sent["event"], sent["object"]["status"]) == ("payment.canceled", "canceled")


async def test_embedded_confirmation_answers_a_token(client: httpx.AsyncClient) -> None:
    created = await yk_create(client, capture=True, confirmation={"type": "embedded"})
    model = parsed(created)
    assert model.confirmation.type == "embedded"
    assert model.confirmation.confirmation_token.startswith("ct-")


async def test_lists_and_me_parse_with_the_sdk(client: httpx.AsyncClient) -> None:
    made = [await yk_create(client, capture=True) for _ in range(3)]
    first = await client.get("/sandbox/v3/payments?limit=2", headers=YOOKASSA_AUTH)
    assert first.status_code == 200, first.text
    page = PaymentListResponse(first.json())
    assert page.type == "list" and len(page.items) == 2 and page.next_cursor
    url = f"/sandbox/v3/payments?limit=2&cursor={page.next_cursor}"
    rest = PaymentListResponse((await client.get(url, headers=YOOKASSA_AUTH)).json())
    assert rest.next_cursor is None
    assert {item.id for item in [*page.items, *rest.items]} == {p["id"] for p in made}
    pending = await client.get("/sandbox/v3/payments?status=succeeded", headers=YOOKASSA_AUTH)
    assert pending.json()["items"] == []
    refunds = await client.get(f"/sandbox/v3/refunds?payment_id={made[0]['id']}",
                               headers=YOOKASSA_AUTH)  # fmt: skip
    assert RefundListResponse(refunds.json()).items == []
    me = (await client.get("/sandbox/v3/me", headers=YOOKASSA_AUTH)).json()
    assert (me["account_id"], me["test"], me["status"]) == ("sandbox-shop", True, "enabled")
    bad = await client.get("/sandbox/v3/payments?limit=0", headers=YOOKASSA_AUTH)
    assert (bad.status_code, bad.json()["parameter"]) == (400, "limit")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/receipts/x/y", 404, "not_found"), ("GET", "/webhooks", 404, "not_found"),
     ("DELETE", "/payments/x", 405, "method_not_allowed"),
     ("GET", "/payments/x/capture", 405, "method_not_allowed"),
     ("PUT", "/refunds", 405, "method_not_allowed")],
)  # fmt: skip
async def test_what_the_sandbox_does_not_emulate_answers_yookassa_s_error_shape(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    response = await client.request(method, f"/sandbox/v3{path}", headers=YOOKASSA_AUTH)
    assert response.status_code == status
    body = response.json()
    assert (body["type"], body["code"]) == ("error", code)
    uuid.UUID(body["id"])
    assert body["description"]
