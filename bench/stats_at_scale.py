"""The dashboard's figures (``GET /api/v1/admin/stats``) at a million payments.

Fills a throw-away database with ``--payments`` paid invoices and their payments spread over
the last year (every 30th refunded, with its refund), ``--subscriptions`` subscriptions (a
third of them expired or canceled), then times ``billing.admin.stats.dashboard_stats`` — the
one function behind the API and the panel's dashboard — for periods of 7, 30, 90 and 366
days: ``--repeats`` runs each after one warm-up, the median reported. Run
``python bench/stats_at_scale.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _common import bench_database, exit_on_sigterm, machine, median, server_url_from_env

from billing.admin.stats import dashboard_stats
from billing.db import create_engine, libpq_url, session_factory

PERIODS = (7, 30, 90, 366)
RESULTS = Path(__file__).resolve().parent / "results" / "stats_at_scale.json"

FILL_SQL = """
INSERT INTO tariffs (id, code, name, description, role, monthly_price, currency, is_active,
                     role_exists)
SELECT gen_random_uuid(), 'bench' || n, 'Bench ' || n, '', 'bench' || n, 49900 + n * 10000,
       'RUB', true, true
FROM generate_series(0, 2) AS n;

CREATE TEMPORARY TABLE bench_tariffs AS
SELECT id, monthly_price, row_number() OVER (ORDER BY code) - 1 AS n FROM tariffs;

-- Users u0..u(users-1) as UUIDs made from their number: payment i is user i mod users's.
CREATE TEMPORARY TABLE bench_paid AS
SELECT i, md5('user' || (i %% %(users)s))::uuid AS user_id, t.id AS tariff_id,
       t.monthly_price, 1 + i %% 3 AS months,
       %(now)s::timestamptz - (i %% 365) * interval '1 day' - (i %% 86400) * interval '1 second'
           AS paid_at
FROM generate_series(0, %(payments)s - 1) AS i
JOIN bench_tariffs t ON t.n = i %% 3;

INSERT INTO invoices (id, user_id, tariff_id, kind, months, currency, monthly_price,
                      base_amount, discount_source, discount_amount, total_amount, considered,
                      status, expires_at, paid_at, created_at, updated_at)
SELECT md5('invoice' || i)::uuid, user_id, tariff_id,
       CASE WHEN i %% 4 = 0 THEN 'renewal' ELSE 'purchase' END, months, 'RUB', monthly_price,
       monthly_price * months, 'none', 0, monthly_price * months, '[]',
       CASE WHEN i %% 30 = 0 THEN 'refunded' ELSE 'paid' END,
       paid_at + interval '30 minutes', paid_at, paid_at, paid_at
FROM bench_paid;

INSERT INTO payments (id, invoice_id, user_id, provider, provider_payment_id, idempotence_key,
                      status, amount, currency, provider_data, paid_at, refunded_at,
                      created_at, updated_at)
SELECT md5('payment' || i)::uuid, md5('invoice' || i)::uuid, user_id, 'yookassa',
       'bench-' || i, gen_random_uuid(),
       CASE WHEN i %% 30 = 0 THEN 'refunded' ELSE 'succeeded' END,
       monthly_price * months, 'RUB', '{}', paid_at,
       CASE WHEN i %% 30 = 0 THEN paid_at + interval '20 minutes' END, paid_at, paid_at
FROM bench_paid;

INSERT INTO refunds (id, payment_id, provider_refund_id, idempotence_key, status, reason,
                     amount, currency, created_at, updated_at)
SELECT gen_random_uuid(), md5('payment' || i)::uuid, 'bench-refund-' || i, gen_random_uuid(),
       'succeeded', 'requested', monthly_price * months, 'RUB',
       paid_at + interval '20 minutes', paid_at + interval '20 minutes'
FROM bench_paid WHERE i %% 30 = 0;

INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           created_at, updated_at)
SELECT gen_random_uuid(), md5('user' || u)::uuid, t.id, 'bench' || t.n,
       CASE u %% 3 WHEN 0 THEN 'expired' WHEN 1 THEN 'canceled' ELSE 'active' END,
       %(now)s::timestamptz + CASE WHEN u %% 3 = 2 THEN interval '20 days'
                                   ELSE interval '-5 days' END,
       %(now)s::timestamptz - (u %% 365) * interval '1 day',
       %(now)s::timestamptz - (u %% 200) * interval '1 day'
FROM generate_series(0, %(subscriptions)s - 1) AS u
JOIN bench_tariffs t ON t.n = u %% 3;
"""


def fill(url: str, *, payments: int, subscriptions: int, now: datetime) -> float:
    started = time.perf_counter()
    params = {
        "payments": payments,
        "users": max(subscriptions, 1),
        "subscriptions": subscriptions,
        "now": now,
    }
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        with connection.transaction():
            for statement in FILL_SQL.split(";\n\n"):
                connection.execute(statement, params)  # type: ignore[call-overload]
        connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


async def time_periods(url: str, *, now: datetime, repeats: int) -> list[dict[str, Any]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    rows = []
    try:
        for days in PERIODS:
            last = now.date()
            first = last - timedelta(days=days - 1)
            durations = []
            for run in range(repeats + 1):  # the first is a warm-up
                started = time.perf_counter()
                async with sessions() as session:
                    figures = await dashboard_stats(session, first, last, currency="RUB", now=now)
                if run:
                    durations.append(time.perf_counter() - started)
            rows.append(
                {
                    "days": days,
                    "median_ms": round(median(durations) * 1000, 1),
                    "runs_ms": [round(d * 1000, 1) for d in durations],
                    "payments_in_period": sum(day.payments for day in figures.days),
                    "mrr": figures.mrr,
                }
            )
    finally:
        await engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-save", action="store_true", help=f"don't write {RESULTS.name}")
    args = parser.parse_args()
    exit_on_sigterm()
    server_url = server_url_from_env()
    now = datetime.now(UTC).replace(microsecond=0)
    with bench_database(server_url) as url:
        filled_s = fill(url, payments=args.payments, subscriptions=args.subscriptions, now=now)
        print(f"filled {args.payments} payments in {filled_s:.1f} s", file=sys.stderr)
        periods = asyncio.run(time_periods(url, now=now, repeats=args.repeats))
    result = {
        "machine": machine(server_url),
        "payments": args.payments,
        "subscriptions": args.subscriptions,
        "repeats": args.repeats,
        "fill_s": round(filled_s, 1),
        "periods": periods,
    }
    print(json.dumps(result, indent=2))
    if not args.no_save:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
