"""One bad row never stops a job's batch: it is rolled back alone, logged with its id,
counted as ``failed``, and left for the next run; the rest of the batch is done."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import BatchReport, for_each_claimed, for_each_claimed_batch
from billing.checkout.tasks import expire_invoices
from billing.clock import FrozenClock
from billing.db import libpq_url
from billing.models import (
    Invoice,
    InvoiceStatus,
    PromoCode,
    PromoRedemption,
    Subscription,
    SubscriptionStatus,
)
from billing.subscriptions.tasks import expire_subscriptions
from tests.integration.checkout_helpers import add_tariff, events, make_viewer

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
GRACE = timedelta(days=2)


async def invoice_status(sessions: Sessions, invoice_id: str) -> str:
    async with sessions() as session:
        return str(await session.scalar(select(Invoice.status).where(Invoice.id == invoice_id)))


async def test_an_invoice_the_database_refuses_to_expire_is_left_for_the_next_run(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tariff = await add_tariff(sessions)
    async with sessions() as session, session.begin():
        session.add(PromoCode(id=uuid.uuid4(), code="SPRING", percent=10))
        session.add(PromoCode(id=uuid.uuid4(), code="DRIFTED", percent=10))
    poison = await make_viewer(client, auth_headers).issue_invoice(tariff.id, promo_code="DRIFTED")
    healthy = [
        await make_viewer(client, auth_headers).issue_invoice(tariff.id, promo_code="SPRING")
        for _ in range(2)
    ]
    # A counter someone reset by hand: releasing the reservation would make it -1, which
    # the database refuses (redemptions_count >= 0).
    async with sessions() as session, session.begin():
        await session.execute(
            update(PromoCode).where(PromoCode.code == "DRIFTED").values(redemptions_count=0)
        )

    clock.advance(timedelta(minutes=30))
    with caplog.at_level(logging.ERROR, logger="billing.batches"):
        report = await expire_invoices(sessions, now=clock.now())
    assert report == {"expired": 2, "released": 2, "failed": 1}
    assert [await invoice_status(sessions, invoice["id"]) for invoice in healthy] == [
        "expired",
        "expired",
    ]
    # The bad row is untouched (its savepoint rolled back alone) and its id is in the log.
    assert await invoice_status(sessions, poison["id"]) == "open"
    async with sessions() as session:
        reservation = await session.scalar(
            select(PromoRedemption.status).where(PromoRedemption.invoice_id == poison["id"])
        )
    assert reservation == "reserved"
    assert any(poison["id"] in record.getMessage() for record in caplog.records)

    # Every run tries it again, and fails it again, without stopping...
    assert await expire_invoices(sessions, now=clock.now()) == {
        "expired": 0,
        "released": 0,
        "failed": 1,
    }
    # ...until the data is repaired: then the next run finishes it.
    async with sessions() as session, session.begin():
        await session.execute(
            update(PromoCode).where(PromoCode.code == "DRIFTED").values(redemptions_count=1)
        )
    assert await expire_invoices(sessions, now=clock.now()) == {
        "expired": 1,
        "released": 1,
        "failed": 0,
    }
    assert await invoice_status(sessions, poison["id"]) == "expired"


async def test_a_failed_row_is_not_claimed_again_in_the_same_run(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    # The first claimed (the oldest), so a full batch of one holds only the bad row.
    invoices = [(await viewer.issue_invoice(tariff.id))["id"] for _ in range(3)]
    poison = uuid.UUID(invoices[0])
    clock.advance(timedelta(minutes=30))
    seen: list[uuid.UUID] = []

    async def expire(session: AsyncSession, invoice: Invoice) -> None:
        seen.append(invoice.id)
        invoice.status = InvoiceStatus.EXPIRED
        if invoice.id == poison:
            raise ValueError("cannot read this invoice")

    overdue = (
        select(Invoice)
        .where(Invoice.status == InvoiceStatus.OPEN, Invoice.expires_at <= clock.now())
        .order_by(Invoice.expires_at)
    )
    report = await for_each_claimed(sessions, overdue, expire, batch_size=1)
    assert report == BatchReport(handled=2, failed=1)
    # Claimed once each; the bad one's batch is retried row by row (the batch is one
    # savepoint first, then one per row), and then it is never claimed again in this run.
    assert seen == [poison] + [uuid.UUID(invoice) for invoice in invoices]
    assert [await invoice_status(sessions, invoice) for invoice in invoices] == [
        "open",
        "expired",
        "expired",
    ]


async def test_a_failed_row_of_a_set_based_batch_is_isolated_and_not_claimed_again(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoices: list[uuid.UUID] = []
    for _ in range(5):  # one a second: the claim's order is theirs
        invoices.append(uuid.UUID((await viewer.issue_invoice(tariff.id))["id"]))
        clock.advance(timedelta(seconds=1))
    poison = invoices[1]  # in the first batch of two, with a healthy row
    clock.advance(timedelta(minutes=30))
    calls: list[list[uuid.UUID]] = []

    async def expire(session: AsyncSession, rows: Sequence[Row[Any]]) -> None:
        ids = [row.id for row in rows]
        calls.append(ids)
        # The batch's change goes in before the bad row is met: the savepoint must undo it.
        await session.execute(
            update(Invoice).where(Invoice.id.in_(ids)).values(status=InvoiceStatus.EXPIRED)
        )
        if poison in ids:
            raise ValueError("cannot read this invoice")

    overdue = (
        select(Invoice.id)
        .where(Invoice.status == InvoiceStatus.OPEN, Invoice.expires_at <= clock.now())
        .order_by(Invoice.expires_at)
    )
    report = await for_each_claimed_batch(sessions, overdue, expire, batch_size=2)
    assert report == BatchReport(handled=4, failed=1)
    # The first batch whole, then its rows alone; later batches never claim the bad row.
    assert calls == [invoices[0:2], [invoices[0]], [poison], invoices[2:4], [invoices[4]]]
    assert [await invoice_status(sessions, str(invoice)) for invoice in invoices] == [
        "expired",
        "open",
        "expired",
        "expired",
        "expired",
    ]


@contextmanager
def updates_refused(database_url: str, user_id: uuid.UUID) -> Iterator[None]:
    """The database refuses every change to this user's subscriptions (as a constraint
    added by a later release, or a corrupted row, would)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute(
            "CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'row % refused', OLD.id; END $$"
        )
        connection.execute(
            "CREATE TRIGGER refuse_change BEFORE UPDATE ON subscriptions FOR EACH ROW"
            f" WHEN (OLD.user_id = '{user_id}') EXECUTE FUNCTION refuse_change()"
        )
    try:
        yield
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
            connection.execute("DROP TRIGGER refuse_change ON subscriptions")
            connection.execute("DROP FUNCTION refuse_change()")


async def test_a_subscription_that_fails_keeps_its_event_out_and_the_others_go_on(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    database_url: str,
) -> None:
    tariff = await add_tariff(sessions)
    viewers = [make_viewer(client, auth_headers) for _ in range(3)]
    for viewer in viewers:
        await viewer.paid(tariff.id, months=1)
    bad = viewers[1]
    async with sessions() as session:
        end = max(await session.scalars(select(Subscription.current_period_end)))

    clock.set(end)
    with updates_refused(database_url, bad.user_id):
        report = await expire_subscriptions(sessions, now=clock.now(), grace_period=GRACE)
    assert report == {"grace": 2, "expired": 0, "failed": 1}
    async with sessions() as session:
        rows = await session.execute(select(Subscription.user_id, Subscription.status))
        statuses = {row.user_id: row.status for row in rows}
    assert statuses == {
        viewers[0].user_id: SubscriptionStatus.GRACE,
        bad.user_id: SubscriptionStatus.ACTIVE,
        viewers[2].user_id: SubscriptionStatus.GRACE,
    }
    # The failed row's outbox event went with its savepoint: a state change and its
    # events commit together, or not at all.
    notified = {event.user_id for event in await events(sessions, "subscription.expired")}
    assert notified == {viewers[0].user_id, viewers[2].user_id}

    # Next run, with the fault gone, the row is done.
    assert await expire_subscriptions(sessions, now=clock.now(), grace_period=GRACE) == {
        "grace": 1,
        "expired": 0,
        "failed": 0,
    }
