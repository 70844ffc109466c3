"""A ЮKassa payment that stops at ``waiting_for_capture`` (a shop set up for two-stage
payments): captured at once while its invoice can be honoured, canceled otherwise — the
money is never left held while the viewer gets nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.config import Settings
from tests.integration.checkout_helpers import (
    add_tariff,
    app_with_provider_at,
    client_of,
    events,
    make_viewer,
)
from tests.integration.test_yookassa_adapter import (
    PAYMENT_ID,
    pending_payment,
    succeeded_payment,
)

Sessions = async_sessionmaker[AsyncSession]
API = "http://yookassa.test/v3"


@pytest.fixture
async def client(settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app_with_provider_at(settings, clock, yookassa_api_url=API) as app,
        client_of(app) as http,
    ):
        yield http


def waiting() -> dict[str, object]:
    return pending_payment(status="waiting_for_capture", paid=True)


@respx.mock(assert_all_called=False)
async def test_a_payment_waiting_for_capture_is_captured_while_its_invoice_is_open(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
) -> None:
    respx_mock.post(f"{API}/payments").respond(200, json=pending_payment())
    respx_mock.get(f"{API}/payments/{PAYMENT_ID}").respond(200, json=waiting())
    capture = respx_mock.post(f"{API}/payments/{PAYMENT_ID}/capture").respond(
        200, json=succeeded_payment()
    )
    cancel = respx_mock.post(f"{API}/payments/{PAYMENT_ID}/cancel")
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])

    confirmed = await client.post(
        f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers
    )
    assert confirmed.json()["status"] == "succeeded"
    assert json.loads(capture.calls.last.request.content) == {
        "amount": {"value": "499.00", "currency": "RUB"}
    }
    assert not cancel.called
    assert len(await events(sessions, "payment.succeeded")) == 1
    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "active"

    # A repeat asks nothing more: the payment is settled.
    await client.post(f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers)
    assert capture.call_count == 1


@respx.mock(assert_all_called=False)
async def test_one_waiting_on_an_expired_invoice_is_canceled_and_grants_nothing(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    respx_mock.post(f"{API}/payments").respond(200, json=pending_payment())
    respx_mock.get(f"{API}/payments/{PAYMENT_ID}").respond(200, json=waiting())
    capture = respx_mock.post(f"{API}/payments/{PAYMENT_ID}/capture")
    canceled = pending_payment(
        status="canceled",
        cancellation_details={"party": "merchant", "reason": "canceled_by_merchant"},
    )
    cancel = respx_mock.post(f"{API}/payments/{PAYMENT_ID}/cancel").respond(200, json=canceled)
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
    clock.advance(timedelta(minutes=31))

    confirmed = await client.post(
        f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers
    )
    assert confirmed.json()["status"] == "canceled"
    assert cancel.call_count == 1
    assert not capture.called
    assert await viewer.subscriptions() == []
    assert await events(sessions, "payment.succeeded") == []
