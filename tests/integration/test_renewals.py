"""Auto-renewal: `renew-subscriptions` charges the saved method a day before the period ends,
at today's price, exactly once; soft declines are retried on schedule, hard ones stop.

ЮKassa is faked at its HTTP boundary (respx), so each outcome of a charge is chosen here."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.renewals import renew_subscriptions
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Invoice, RenewalAttempt, Tariff
from billing.subscriptions.tasks import remind_expiring
from billing.verify import verify
from tests.integration.checkout_helpers import (
    Viewer,
    add_tariff,
    app_with_provider_at,
    client_of,
    events,
    make_viewer,
)
from tests.integration.test_saved_methods import SAVED_CARD
from tests.integration.test_yookassa_adapter import (
    PAYMENT_ID,
    pending_payment,
    succeeded_payment,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
API = "http://yookassa.test/v3"


class FakeYooKassa:
    """The viewer's first payment, then charges of the saved card answered as told."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock  # the provider's clock: when a charge is captured
        self.charges: list[dict[str, Any]] = []
        self.keys: list[str] = []
        self.outcomes: list[str] = []  # "ok" or a cancellation reason, one per new charge
        self.by_key: dict[str, dict[str, Any]] = {}

    def create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "payment_method_id" not in body:
            return httpx.Response(200, json=pending_payment())
        key = request.headers["Idempotence-Key"]
        self.keys.append(key)
        if key not in self.by_key:  # ЮKassa answers a repeated key with the first result
            self.charges.append(body)
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            charge_id = str(uuid.uuid4())
            if outcome == "ok":
                answer = succeeded_payment(
                    id=charge_id, amount=body["amount"], captured_at=self.clock.now().isoformat()
                )
            else:
                answer = pending_payment(
                    id=charge_id, status="canceled", amount=body["amount"],
                    cancellation_details={"party": "issuer", "reason": outcome},
                )  # fmt: skip
                del answer["confirmation"]
            self.by_key[key] = answer
        return httpx.Response(200, json=self.by_key[key])


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    async with app_with_provider_at(settings, clock, yookassa_api_url=API) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as http:
        yield http


@pytest.fixture
def fake(respx_mock: respx.MockRouter, clock: FrozenClock) -> FakeYooKassa:
    yookassa = FakeYooKassa(clock)
    respx_mock.post(f"{API}/payments").mock(side_effect=yookassa.create)
    respx_mock.get(f"{API}/payments/{PAYMENT_ID}").respond(
        200, json=succeeded_payment(payment_method=SAVED_CARD)
    )
    respx_mock.post(f"{API}/refunds").mock(side_effect=refunded)
    return yookassa


def refunded(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json={
        "id": str(uuid.uuid4()), "payment_id": body["payment_id"], "status": "succeeded",
        "amount": body["amount"], "created_at": "2026-03-01T10:55:18.139Z",
    })  # fmt: skip


async def subscribed_with_a_saved_card(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions
) -> tuple[Viewer, Tariff, dict[str, Any]]:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    started = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"save_payment_method": True},
        headers=viewer.headers,
    )
    await client.post(f"/api/v1/payments/{started.json()['id']}/confirm", headers=viewer.headers)
    [subscription] = await viewer.subscriptions()
    assert subscription["auto_renew"] is True
    return viewer, tariff, subscription


def renew(app: FastAPI, clock: FrozenClock) -> Any:
    return renew_subscriptions(
        app.state.sessions, app.state.providers, now=clock.now(), settings=app.state.settings
    )


@pytest.mark.respx(assert_all_called=False)
async def test_a_renewal_charges_the_saved_card_at_today_s_price_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    viewer, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    end = datetime.fromisoformat(subscription["current_period_end"])
    async with sessions() as session, session.begin():  # marketing raised the price since
        await session.execute(update(Tariff).values(monthly_price=59900))

    clock.set(end - timedelta(days=1, seconds=1))
    assert (await renew(app, clock))["charged"] == 0  # not yet: more than a day left
    clock.set(end - timedelta(days=1))
    reports = await asyncio.gather(renew(app, clock), renew(app, clock))  # two workers
    assert sum(report["charged"] for report in reports) == 1
    assert len(fake.charges) == 1
    [charge] = fake.charges
    assert charge["payment_method_id"] == SAVED_CARD["id"]
    assert charge["amount"] == {"value": "599.00", "currency": "RUB"}  # today's price
    assert "confirmation" not in charge
    assert charge["receipt"]["items"][0]["amount"]["value"] == "599.00"

    [renewed] = await viewer.subscriptions()
    assert datetime.fromisoformat(renewed["current_period_end"]) > end  # extended from its end
    [event] = await events(sessions, "subscription.renewed")
    assert event.payload["amount"] == 59900 and event.payload["months"] == 1
    assert len(await events(sessions, "payment.succeeded")) == 2
    async with sessions() as session:
        kinds = sorted(invoice.kind for invoice in await session.scalars(select(Invoice)))
    assert kinds == ["purchase", "renewal"]
    assert (await renew(app, clock))["charged"] == 0  # the next period is not due yet
    assert await money_findings(sessions, clock) == []

    # A renewal is refundable within the window, like any payment.
    payments = (await client.get("/api/v1/payments", headers=viewer.headers)).json()
    refund = await client.post(
        f"/api/v1/payments/{payments[0]['id']}/refund", headers=viewer.headers
    )
    assert refund.json()["status"] == "refunded", refund.text
    [after_refund] = await viewer.subscriptions()
    assert after_refund["current_period_end"] == subscription["current_period_end"]


@pytest.mark.respx(assert_all_called=False)
async def test_a_soft_decline_is_retried_on_schedule_then_succeeds(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    viewer, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    end = datetime.fromisoformat(subscription["current_period_end"])
    fake.outcomes = ["insufficient_funds"]
    first = end - timedelta(days=1)
    clock.set(first)
    assert (await renew(app, clock))["declined"] == 1
    [failed] = await events(sessions, "subscription.renewal_failed")
    assert failed.payload["reason"] == "insufficient_funds"
    assert failed.payload["attempt"] == 1
    assert datetime.fromisoformat(failed.payload["next_attempt_at"]) == first + timedelta(hours=6)
    assert "/checkout?sig=" in failed.payload["pay_url"]
    [retrying] = await viewer.subscriptions()  # the viewer sees when the card is tried again
    assert retrying["auto_renew"] is True
    assert datetime.fromisoformat(retrying["renews_at"]) == first + timedelta(hours=6)

    clock.set(first + timedelta(hours=6) - timedelta(seconds=1))
    assert await renew(app, clock) == {"charged": 0, "declined": 0, "unknown": 0, "failed": 0}
    clock.set(first + timedelta(hours=6))
    assert (await renew(app, clock))["charged"] == 1
    assert len(fake.charges) == 2 and len(set(fake.keys)) == 2  # a new key per attempt
    async with sessions() as session:
        attempts = [
            (a.attempt, a.status, a.reason)
            for a in await session.scalars(select(RenewalAttempt).order_by(RenewalAttempt.attempt))
        ]
    assert attempts == [(1, "declined", "insufficient_funds"), (2, "succeeded", None)]
    [renewed] = await viewer.subscriptions()
    assert datetime.fromisoformat(renewed["current_period_end"]) > end
    # The next charge is the new period's, no longer the old period's retry.
    new_end = datetime.fromisoformat(renewed["current_period_end"])
    assert datetime.fromisoformat(renewed["renews_at"]) == new_end - timedelta(days=1)


@pytest.mark.respx(assert_all_called=False)
async def test_a_hard_decline_stops_the_retries(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    viewer, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    end = datetime.fromisoformat(subscription["current_period_end"])
    fake.outcomes = ["card_expired"]
    clock.set(end - timedelta(days=1))
    assert (await renew(app, clock))["declined"] == 1
    [failed] = await events(sessions, "subscription.renewal_failed")
    assert (failed.payload["reason"], failed.payload["next_attempt_at"]) == ("card_expired", None)
    # No charge is planned any more: renewal is off (the card does not work), access is not.
    [stopped] = await viewer.subscriptions()
    assert (stopped["auto_renew"], stopped["renews_at"]) == (False, None)
    assert stopped["current_period_end"] == subscription["current_period_end"]
    for later in (timedelta(hours=6), timedelta(days=1), timedelta(days=2)):
        clock.set(end - timedelta(days=1) + later)
        assert (await renew(app, clock))["charged"] == 0
    assert len(fake.charges) == 1


@pytest.mark.respx(assert_all_called=False)
async def test_a_canceled_renewal_charges_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    viewer, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    await client.post(f"/api/v1/subscriptions/{subscription['id']}/cancel", headers=viewer.headers)
    clock.set(datetime.fromisoformat(subscription["current_period_end"]) - timedelta(hours=1))
    assert (await renew(app, clock))["charged"] == 0
    assert fake.charges == []


@pytest.mark.respx(assert_all_called=False)
async def test_the_reminder_says_when_and_how_much_will_be_charged(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    _, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    end = datetime.fromisoformat(subscription["current_period_end"])
    clock.set(end - timedelta(days=3))
    await remind_expiring(sessions, now=clock.now(), settings=app.state.settings)
    [reminder] = await events(sessions, "subscription.expiring")
    assert reminder.payload["auto_renew"] is True
    assert reminder.payload["renewal_amount"] == 49900
    assert datetime.fromisoformat(reminder.payload["renews_at"]) == end - timedelta(days=1)


@pytest.mark.respx(assert_all_called=False)
async def test_verify_names_a_period_charged_twice(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    fake: FakeYooKassa,
) -> None:
    _, _, subscription = await subscribed_with_a_saved_card(client, auth_headers, sessions)
    clock.set(datetime.fromisoformat(subscription["current_period_end"]) - timedelta(days=1))
    assert (await renew(app, clock))["charged"] == 1
    async with sessions() as session, session.begin():  # a second charge for the same period
        [attempt] = await session.scalars(select(RenewalAttempt))
        session.add(
            RenewalAttempt(
                id=uuid.uuid4(), subscription_id=attempt.subscription_id,
                period_end=attempt.period_end, attempt=2, invoice_id=attempt.invoice_id,
                payment_id=attempt.payment_id, status="succeeded",
            )
        )  # fmt: skip
    assert await money_findings(sessions, clock) == ["renewal-charged-once"]


async def money_findings(sessions: Sessions, clock: FrozenClock) -> list[str]:
    """`billing verify`'s findings, but the outbox's: no relay runs in these tests, and the
    clock moved a month, so their events look stuck."""
    async with sessions() as session:
        found = await verify(session, now=clock.now(), grace_period=timedelta(days=2))
    return [finding.check.name for finding in found if finding.check.name != "outbox-not-stuck"]
