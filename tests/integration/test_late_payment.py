"""A payment that succeeds after its invoice expired is honoured only at a price billing can
still honour: its promo code is redeemed again within the code's limits, or the money goes
straight back (``payment.refunded`` with ``reason: invoice_expired``). Never more
redemptions than ``max_redemptions``, whatever the timing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.tasks import expire_invoices
from billing.clock import FrozenClock
from billing.models import PromoCode, Refund, Tariff
from billing.verify import verify
from tests.integration.checkout_helpers import (
    add_tariff,
    both_providers,
    count,
    events,
    make_viewer,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
pytestmark = both_providers


async def add_promo(sessions: Sessions, *, max_redemptions: int) -> None:
    async with sessions() as session, session.begin():
        session.add(
            PromoCode(id=uuid.uuid4(), code="LAST", percent=10, max_redemptions=max_redemptions)
        )


async def redemptions(sessions: Sessions) -> int:
    async with sessions() as session:
        promo = await session.scalar(select(PromoCode))
        assert promo is not None
        return promo.redemptions_count


async def expire_a_started_payment(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> tuple[Tariff, dict]:
    """A viewer starts paying with the code, then dawdles until the invoice expires (its
    reservation is released)."""
    tariff = await add_tariff(sessions)
    late = make_viewer(client, auth_headers)
    invoice = await late.issue_invoice(tariff.id, promo_code="last")
    payment = await late.start_payment(invoice["id"])
    clock.advance(timedelta(minutes=31))
    expired = await expire_invoices(sessions, now=clock.now())
    assert (expired["expired"], expired["released"]) == (1, 1)
    assert await redemptions(sessions) == 0
    return tariff, {"viewer": late, "payment": payment}


async def test_a_late_payment_on_an_exhausted_code_is_refunded_at_once(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    await add_promo(sessions, max_redemptions=1)
    tariff, started = await expire_a_started_payment(client, auth_headers, sessions, clock)
    # Meanwhile another viewer takes the last use.
    other = make_viewer(client, auth_headers)
    invoice = await other.issue_invoice(tariff.id, promo_code="last")
    paid = await other.start_payment(invoice["id"])
    await other.press(paid)
    assert await redemptions(sessions) == 1

    late, payment = started["viewer"], started["payment"]
    await late.press(payment)  # the provider takes the money and tells billing

    assert (await late.payment(payment["id"]))["status"] == "refunded"
    assert await late.subscriptions() == []
    assert await redemptions(sessions) == 1  # never above max_redemptions
    async with sessions() as session:
        [refund] = await session.scalars(select(Refund))
    assert (refund.reason, refund.status) == ("invoice_expired", "succeeded")
    refunded = await events(sessions, "payment.refunded")
    assert [event.payload["reason"] for event in refunded] == ["invoice_expired"]
    assert [event.payload["payment_id"] for event in refunded] == [payment["id"]]
    async with sessions() as session:
        assert await verify(session, now=clock.now(), grace_period=timedelta(days=2)) == []


async def test_a_late_payment_is_honoured_when_the_code_has_a_use_left(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    await add_promo(sessions, max_redemptions=2)
    _, started = await expire_a_started_payment(client, auth_headers, sessions, clock)
    late, payment = started["viewer"], started["payment"]

    await late.press(payment)

    assert (await late.payment(payment["id"]))["status"] == "succeeded"
    [subscription] = await late.subscriptions()
    assert subscription["status"] == "active"
    assert await redemptions(sessions) == 1
    assert await count(sessions, Refund) == 0
    assert len(await events(sessions, "payment.succeeded")) == 1
    async with sessions() as session:
        assert await verify(session, now=clock.now(), grace_period=timedelta(days=2)) == []
