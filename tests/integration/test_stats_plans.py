"""Each query of the dashboard's figures reads its rows through its own index.

The queries of ``billing.admin.stats.QUERIES`` are explained, with the default 30-day
period's parameters, on a year of sales (12 000 paid invoices and payments, every 30th
refunded, every 4th a renewal; 3 000 subscriptions, a third each active, expired, canceled)
with fresh statistics. A sequential scan of one of these tables there is what made the
figures take seconds at a million payments (bench/README.md); each figure must read the
index of migration 0015 that holds the rows it counts (an index range, not the table).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import psycopg
import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.admin.stats import QUERIES, dashboard_stats, query_bounds
from billing.db import libpq_url
from tests.integration.checkout_helpers import add_tariff

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
PAYMENTS = 12_000
SUBSCRIPTIONS = 3_000

SALES = """
CREATE TEMPORARY TABLE sold AS
SELECT i, md5('user' || (i %% %(users)s))::uuid AS user_id,
       (ARRAY[%(basic)s, %(premium)s]::uuid[])[1 + i %% 2] AS tariff_id, 1 + i %% 3 AS months,
       49900 * (1 + i %% 3) - (i %% 7) * 100 AS total,
       %(now)s::timestamptz - (i %% 365) * interval '1 day' - (i %% 86400) * interval '1 second'
           AS paid_at
FROM generate_series(0, %(payments)s - 1) AS i;

INSERT INTO invoices (id, user_id, tariff_id, kind, months, currency, monthly_price,
                      base_amount, discount_source, discount_amount, total_amount, considered,
                      status, expires_at, paid_at, created_at, updated_at)
SELECT md5('invoice' || i)::uuid, user_id, tariff_id,
       CASE WHEN i %% 4 = 0 THEN 'renewal' ELSE 'purchase' END, months, 'RUB', 49900,
       49900 * months, 'duration', 49900 * months - total, total, '[]',
       CASE WHEN i %% 30 = 0 THEN 'refunded' ELSE 'paid' END,
       paid_at + interval '30 minutes', paid_at, paid_at, paid_at
FROM sold;

INSERT INTO payments (id, invoice_id, user_id, provider, provider_payment_id, idempotence_key,
                      status, amount, currency, provider_data, paid_at, refunded_at,
                      created_at, updated_at)
SELECT md5('payment' || i)::uuid, md5('invoice' || i)::uuid, user_id, 'sandbox', 'pay-' || i,
       gen_random_uuid(), CASE WHEN i %% 30 = 0 THEN 'refunded' ELSE 'succeeded' END,
       total, 'RUB', '{}', paid_at,
       CASE WHEN i %% 30 = 0 THEN paid_at + interval '20 hours' END, paid_at, paid_at
FROM sold;

INSERT INTO refunds (id, payment_id, provider_refund_id, idempotence_key, status, reason,
                     amount, currency, created_at, updated_at)
SELECT gen_random_uuid(), md5('payment' || i)::uuid, 'refund-' || i, gen_random_uuid(),
       'succeeded', 'requested', total, 'RUB', paid_at + interval '20 hours',
       paid_at + interval '20 hours'
FROM sold WHERE i %% 30 = 0;

INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           created_at, updated_at)
SELECT gen_random_uuid(), md5('user' || u)::uuid,
       (ARRAY[%(basic)s, %(premium)s]::uuid[])[1 + u %% 2], 'premium',
       (ARRAY['expired', 'canceled', 'active'])[1 + u %% 3],
       %(now)s::timestamptz + CASE WHEN u %% 3 = 2 THEN interval '20 days'
                                   ELSE interval '-5 days' END,
       %(now)s::timestamptz - (u %% 365) * interval '1 day',
       %(now)s::timestamptz - (u %% 200) * interval '1 day'
FROM generate_series(0, %(subscriptions)s - 1) AS u
"""

# The index each figure must read, and what its Index Cond must hold (the figure's range
# or key, not a walk of the whole index); None: the whole of a small partial index.
INDEXES: dict[str, list[tuple[str, str | None]]] = {
    "days": [
        ("ix_payments_settled_paid_at", "(paid_at >="),
        ("ix_payments_refunded_at", "(refunded_at >="),
    ],
    "active": [("ix_subscriptions_active_tariff", "(current_period_end >")],
    "new": [("ix_subscriptions_created", "(created_at >=")],
    "churned": [
        ("ix_subscriptions_ended_updated", "(updated_at >="),
        ("ix_subscriptions_live_user", None),  # the live subscriptions, to anti-join
    ],
    "renewals": [("ix_invoices_renewal_created", "(created_at >=")],
    "mrr": [("ix_invoices_paid_last", "(user_id = s.user_id)")],
}
TABLES = ("payments", "refunds", "invoices", "subscriptions")


def bounds() -> dict[str, object]:
    last = NOW.date()
    return query_bounds(last - timedelta(days=29), last, currency="RUB", now=NOW)


@pytest.fixture
async def year_of_sales(database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    basic = await add_tariff(sessions, price=29900, role="basic")
    premium = await add_tariff(sessions, price=49900, role="premium")
    parameters = {
        "basic": basic.id,
        "premium": premium.id,
        "now": NOW,
        "payments": PAYMENTS,
        "users": SUBSCRIPTIONS,
        "subscriptions": SUBSCRIPTIONS,
    }
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        with connection.transaction():
            for statement in SALES.split(";\n\n"):
                connection.execute(statement, parameters)  # type: ignore[call-overload]
        connection.execute("VACUUM ANALYZE payments, refunds, invoices, subscriptions")


def plan(database_url: str, name: str) -> str:
    sql = str(QUERIES[name].compile(dialect=postgresql.psycopg.dialect()))
    with psycopg.connect(libpq_url(database_url)) as connection:
        rows = connection.execute(f"EXPLAIN {sql}", bounds()).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def index_cond(explained: str, index: str) -> str:
    """The Index Cond of the plan node that reads ``index`` ("" if it reads it whole)."""
    lines = explained.splitlines()
    at = next(n for n, line in enumerate(lines) if re.search(rf"(using|on) {index} ", line))
    for line in lines[at + 1 :]:
        if "->" in line:
            break
        if "Index Cond:" in line:
            return line
    return ""


@pytest.mark.usefixtures("year_of_sales")
async def test_each_figure_reads_its_own_index_not_the_table(database_url: str) -> None:
    assert set(INDEXES) == set(QUERIES)  # every query is pinned
    for name, indexes in INDEXES.items():
        explained = plan(database_url, name)
        for index, condition in indexes:
            assert index in explained, (name, explained)
            if condition is not None:
                assert condition in index_cond(explained, index), (name, explained)
        for table in TABLES:
            assert f"Seq Scan on {table}" not in explained, (name, explained)


def paid_at(i: int) -> datetime:
    return NOW - timedelta(days=i % 365, seconds=i % 86400)


def total(i: int) -> int:
    return 49900 * (1 + i % 3) - (i % 7) * 100


@pytest.mark.usefixtures("year_of_sales")
async def test_what_those_plans_answer(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The fill's own arithmetic, day by day (payments fall at every second of the UTC day,
    refunds 20 hours later, often the next day), and MRR from each active subscription's
    last paid invoice (a refunded one is not paid)."""
    first, last = NOW.date() - timedelta(days=29), NOW.date()
    async with sessions() as session:
        figures = await dashboard_stats(session, first, last, currency="RUB", now=NOW)
    paid: Counter[date] = Counter()
    gross: Counter[date] = Counter()
    refunds: Counter[date] = Counter()
    refunded: Counter[date] = Counter()
    for i in range(PAYMENTS):
        paid[paid_at(i).date()] += 1
        gross[paid_at(i).date()] += total(i)
        if i % 30 == 0:
            refunds[(paid_at(i) + timedelta(hours=20)).date()] += 1
            refunded[(paid_at(i) + timedelta(hours=20)).date()] += total(i)
    days = [first + timedelta(days=n) for n in range(30)]
    assert [(d.date, d.payments, d.gross, d.refunds, d.refunded) for d in figures.days] == [
        (day, paid[day], gross[day], refunds[day], refunded[day]) for day in days
    ]
    active = [u for u in range(SUBSCRIPTIONS) if u % 3 == 2]
    assert sum(tariff.count for tariff in figures.active_subscriptions) == len(active)
    # Subscription u's invoices are u, u + 3000, …: the same user and tariff.
    invoices = {u: [i for i in range(u, PAYMENTS, SUBSCRIPTIONS) if i % 30] for u in active}
    monthly = [
        Fraction(total(i), 1 + i % 3)
        for u in active
        if invoices[u]
        for i in [max(invoices[u], key=paid_at)]
    ]
    assert figures.mrr == round(sum(monthly))  # exact, then half up: no .5 here to round
