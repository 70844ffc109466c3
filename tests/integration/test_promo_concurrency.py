"""Concurrent reservations on a real PostgreSQL: the limit of a promo code and its
once-per-user rule hold when many transactions race for them at the same moment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from billing.db import create_engine, session_factory, transaction
from billing.errors import Problem
from billing.models import PromoCode
from tests.integration.test_promo_codes import (
    add_invoice,
    add_tariff,
    promo_row,
    redemption_statuses,
    reserve_in,
)

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime.now(UTC)


@pytest.fixture
async def racing_sessions(database_url: str) -> AsyncIterator[Sessions]:
    """Sessions on connections of their own: every racer holds a real connection at once."""
    engine = create_engine(database_url, poolclass=NullPool)
    yield session_factory(engine)
    await engine.dispose()


async def add_promo(sessions: Sessions, code: str, **terms: object) -> None:
    async with transaction(sessions) as session:
        session.add(PromoCode(code=code, percent=10, **terms))


async def race(
    sessions: Sessions, code: str, tariff_id: uuid.UUID, invoices: list[tuple[uuid.UUID, uuid.UUID]]
) -> list[str]:
    """Every (user, invoice) reserves ``code`` in its own transaction, all at once; the
    outcome of each: ``reserved`` or the refusal's code."""
    # Each racer opens its connection and transaction first; none goes before all are ready.
    ready = asyncio.Barrier(len(invoices))

    async def one(user_id: uuid.UUID, invoice_id: uuid.UUID) -> str:
        async with transaction(sessions) as session:
            try:
                await session.execute(text("SELECT 1"))
            except BaseException:
                await ready.abort()  # the others must not wait for this one forever
                raise
            await ready.wait()
            try:
                await reserve_in(
                    session, code, tariff_id=tariff_id, user_id=user_id,
                    invoice_id=invoice_id, now=NOW,
                )  # fmt: skip
            except Problem as problem:
                return problem.code
        return "reserved"

    # Every racer finishes before the test goes on, even when one fails unexpectedly.
    outcomes = await asyncio.gather(
        *(one(user, invoice) for user, invoice in invoices), return_exceptions=True
    )
    return [outcome if isinstance(outcome, str) else repr(outcome) for outcome in outcomes]


async def test_forty_users_racing_for_five_slots_get_exactly_five(
    sessions: Sessions, racing_sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    await add_promo(sessions, "FIVE", max_redemptions=5)
    users = [uuid.uuid4() for _ in range(40)]
    invoices = [(user, await add_invoice(sessions, tariff, user)) for user in users]

    outcomes = await race(racing_sessions, "five", tariff, invoices)

    assert outcomes.count("reserved") == 5
    assert outcomes.count("promo_code_exhausted") == 35
    row = await promo_row(sessions, "FIVE")
    assert row is not None and row.redemptions_count == 5
    assert await redemption_statuses(sessions) == ["reserved"] * 5


async def test_one_user_racing_ten_reservations_of_a_once_per_user_code_gets_one(
    sessions: Sessions, racing_sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    await add_promo(sessions, "ONCE")
    user = uuid.uuid4()
    invoices = [(user, await add_invoice(sessions, tariff, user)) for _ in range(10)]

    outcomes = await race(racing_sessions, "ONCE", tariff, invoices)

    assert outcomes.count("reserved") == 1
    assert outcomes.count("promo_code_already_used") == 9
    row = await promo_row(sessions, "ONCE")
    assert row is not None and row.redemptions_count == 1
    assert await redemption_statuses(sessions) == ["reserved"]
