"""Auto-renewal end to end with both providers on the built-in sandbox (their own saved
methods, customers and charges without the viewer): save a card while paying, renew it
by the job, a card that declines later, and deleting the card."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.renewals import renew_subscriptions
from billing.clock import FrozenClock
from tests.integration.checkout_helpers import add_tariff, both_providers, events, make_viewer

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
pytestmark = both_providers


async def subscribe_saving(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, card: str
) -> tuple[Any, dict[str, Any]]:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    started = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"save_payment_method": True},
        headers=viewer.headers,
    )
    assert started.status_code == 201, started.text
    paid = await client.post(
        started.json()["confirmation_url"], data={"action": "pay", "card": card}
    )
    assert paid.status_code in (200, 303), paid.text
    assert (await viewer.payment(started.json()["id"]))["status"] == "succeeded"
    [subscription] = await viewer.subscriptions()
    return viewer, subscription


def renew(app: FastAPI, clock: FrozenClock) -> Any:
    return renew_subscriptions(
        app.state.sessions, app.state.providers, now=clock.now(), settings=app.state.settings
    )


async def test_a_saved_card_renews_through_the_provider_s_own_saved_method(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    viewer, subscription = await subscribe_saving(client, auth_headers, sessions, "ok")
    assert subscription["auto_renew"] is True
    [method] = (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json()
    assert method["card_last4"] and method["title"]

    end = datetime.fromisoformat(subscription["current_period_end"])
    clock.set(end - timedelta(days=1))
    assert (await renew(app, clock))["charged"] == 1
    [renewed] = await viewer.subscriptions()
    assert datetime.fromisoformat(renewed["current_period_end"]) > end
    assert len(await events(sessions, "subscription.renewed")) == 1
    assert (await renew(app, clock))["charged"] == 0


async def test_a_card_that_declines_later_is_retried_and_deleting_it_stops_renewal(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    viewer, subscription = await subscribe_saving(
        client, auth_headers, sessions, "declines_later_insufficient_funds"
    )
    end = datetime.fromisoformat(subscription["current_period_end"])
    clock.set(end - timedelta(days=1))
    assert (await renew(app, clock))["declined"] == 1
    [failed] = await events(sessions, "subscription.renewal_failed")
    assert failed.payload["reason"] == "insufficient_funds"
    assert failed.payload["next_attempt_at"] is not None

    [method] = (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json()
    deleted = await client.delete(f"/api/v1/payment-methods/{method['id']}", headers=viewer.headers)
    assert deleted.status_code == 204
    clock.set(end - timedelta(days=1) + timedelta(hours=6))
    assert (await renew(app, clock))["charged"] == 0  # nothing left to charge
    [after] = await viewer.subscriptions()
    assert after["auto_renew"] is False
