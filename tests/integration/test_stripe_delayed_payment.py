"""A delayed Stripe payment method (a bank debit): the session completes unpaid, and billing
waits; the money arriving settles the payment, a failure ends it."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.integration.checkout_helpers import add_tariff, events, make_viewer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def provider_name() -> str:
    return "stripe"


@pytest.mark.parametrize(("outcome", "ends"), [("settle", "succeeded"), ("fail", "canceled")])
async def test_a_delayed_payment_waits_then_settles_or_ends(
    outcome: str,
    ends: str,
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])

    paid_later = await client.post(
        payment["confirmation_url"], data={"action": "pay", "card": "delayed"}
    )
    assert paid_later.status_code in (200, 303)
    assert (await viewer.payment(payment["id"]))["status"] == "pending"  # still processing
    assert await viewer.subscriptions() == []

    # The bank answers days later; Stripe sends async_payment_succeeded or _failed.
    decided = await client.post(payment["confirmation_url"], data={"action": outcome})
    assert decided.status_code in (200, 303)
    assert (await viewer.payment(payment["id"]))["status"] == ends
    assert len(await viewer.subscriptions()) == (1 if ends == "succeeded" else 0)
    assert len(await events(sessions, "payment.succeeded")) == (1 if ends == "succeeded" else 0)
