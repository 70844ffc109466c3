"""Each scheduler claim reads its rows through an index, whatever the size of the table.

The claims are the statements the jobs really send (captured from the engine while the job
runs), explained on a table of 40 000 subscriptions and 20 000 invoices, most of them
already handled (expired, reminded, paid), with fresh statistics: the state of a table in
production. A sequential scan there would make every run read the whole table (the 1M-row
benchmark in bench/README.md showed it), so the plan must read the claim's own partial
index (which holds only the rows still to take), with no ``Seq Scan`` on the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.checkout.renewals import _due
from billing.checkout.tasks import expire_invoices
from billing.config import Settings
from billing.db import libpq_url
from billing.subscriptions.tasks import expire_subscriptions, remind_expiring
from tests.integration.checkout_helpers import add_tariff

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=2)
REMIND_BEFORE = timedelta(days=3)

# Most rows are done with; a few of each kind are due, as between two scheduler runs.
SUBSCRIPTIONS = """
INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           reminded_for_period_end, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 'premium', kind.status,
       %(now)s + kind.period_end_in + (n %% 1000) * interval '1 second',
       CASE WHEN kind.reminded THEN %(now)s + kind.period_end_in
                                    + (n %% 1000) * interval '1 second' END,
       %(now)s - interval '90 days', %(now)s - interval '90 days'
FROM (VALUES ('expired', interval '-60 days', true, 30000),  -- long over
             ('active', interval '20 days', false, 6000),   -- paid, far from its end
             ('active', interval '1 day', true, 3500),      -- ends soon, already reminded
             ('active', interval '1 day', false, 100),      -- ends soon: remind
             ('active', interval '-1 hour', true, 100),     -- ended: to grace
             ('grace', interval '-1 day', true, 250),       -- in grace, not over
             ('grace', interval '-3 days', true, 50))       -- grace over: expire
     AS kind(status, period_end_in, reminded, count),
     generate_series(1, kind.count) AS n
"""

INVOICES = """
INSERT INTO invoices (id, user_id, tariff_id, months, currency, monthly_price, base_amount,
                      discount_source, discount_percent, discount_amount, total_amount,
                      considered, status, kind, expires_at, paid_at, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 1, 'RUB', 49900, 49900, 'none', NULL,
       0, 49900, '[]'::jsonb, kind.status, 'purchase', %(now)s + kind.expires_in,
       CASE WHEN kind.status = 'paid' THEN %(now)s - interval '1 day' END,
       %(now)s - interval '1 day', %(now)s - interval '1 day'
FROM (VALUES ('paid', interval '-1 day', 18000),
             ('expired', interval '-1 day', 1800),
             ('open', interval '20 minutes', 150),
             ('open', interval '-5 minutes', 50))
     AS kind(status, expires_in, count),
     generate_series(1, kind.count)
"""


def claims_of(engine: AsyncEngine) -> list[tuple[str, Any]]:
    """Every claim (``… FOR UPDATE SKIP LOCKED``) the engine sends from now on."""
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def remember(
        conn: object, cursor: object, statement: str, parameters: Any, *args: object
    ) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement:
            sent.append((statement, parameters))

    return sent


@pytest.fixture
async def filled(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    tariff = await add_tariff(sessions)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute(SUBSCRIPTIONS, {"tariff": tariff.id, "now": NOW})
        connection.execute(INVOICES, {"tariff": tariff.id, "now": NOW})
        connection.execute("VACUUM ANALYZE subscriptions, invoices")


def plan(database_url: str, statement: str, parameters: Any) -> str:
    with psycopg.connect(libpq_url(database_url)) as connection:
        rows = connection.execute(f"EXPLAIN {statement}", parameters).fetchall()
    return "\n".join(str(row[0]) for row in rows)


Job = Callable[[async_sessionmaker[AsyncSession]], Awaitable[dict[str, int]]]

JOBS: dict[str, tuple[Job, list[str], dict[str, int]]] = {
    "remind-expiring": (
        lambda s: remind_expiring(s, now=NOW, settings=Settings(remind_before=REMIND_BEFORE)),
        ["ix_subscriptions_to_remind"],
        {"reminded": 100, "failed": 0},
    ),
    "expire-subscriptions": (
        lambda s: expire_subscriptions(s, now=NOW, grace_period=GRACE),
        ["ix_subscriptions_active_period_end", "ix_subscriptions_grace_period_end"],
        {"grace": 100, "expired": 50, "failed": 0},
    ),
    "expire-invoices": (
        lambda s: expire_invoices(s, now=NOW),
        ["ix_invoices_open_expires"],
        {"expired": 50, "released": 0, "failed": 0},
    ),
}


@pytest.mark.usefixtures("filled")
@pytest.mark.parametrize("job_name", list(JOBS))
async def test_each_claim_is_an_index_scan_on_its_own_partial_index(
    job_name: str,
    database_url: str,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job, indexes, expected = JOBS[job_name]
    sent = claims_of(engine)
    assert await job(sessions) == expected  # the job did its work, through these claims
    # One claim per pass (each pass found fewer rows than a batch and stopped).
    assert len(sent) == len(indexes)
    for (statement, parameters), index in zip(sent, indexes, strict=True):
        explained = plan(database_url, statement, parameters)
        # An ordered index scan, or a bitmap scan of the few rows the partial index holds
        # (then sorted: a few hundred rows, not the table).
        assert f"Index Scan using {index}" in explained or (
            f"Bitmap Index Scan on {index}" in explained
        ), explained
        assert "Seq Scan" not in explained, explained


@pytest.mark.usefixtures("filled")
async def test_the_renewal_claim_is_an_index_scan_on_its_own_partial_index(
    database_url: str, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """``renew-subscriptions`` claims through ``checkout.renewals._due`` (the job itself
    needs a provider; its claim does not)."""
    sent = claims_of(engine)
    async with sessions() as session:
        assert list(await session.scalars(_due(NOW, Settings(jwt_secret="x" * 32)))) == []
    [(statement, parameters)] = sent
    explained = plan(database_url, statement, parameters)
    assert "Index Scan using ix_subscriptions_to_renew" in explained, explained
    assert "Seq Scan on subscriptions" not in explained, explained
