"""The dashboard's figures (``GET /api/v1/admin/stats``) at 100 000 and a million payments.

For each ``--sizes`` N, fills a throw-away database with N paid invoices and their payments
spread over the last year (every 30th refunded, with its refund), N / 10 subscriptions (a
third each active, expired, canceled), then times ``billing.admin.stats.dashboard_stats`` —
the one function behind the API and the panel's dashboard — and each of its queries
(``billing.admin.stats.QUERIES``) alone, for periods of 7, 30, 90 and 366 days: one
warm-up, then ``--repeats`` runs, the median reported. ``--label before`` / ``after`` keeps
both measurements side by side in the JSON; ``--explain DIR`` writes each query's
``EXPLAIN (ANALYZE, BUFFERS)`` per size and period. Run ``python bench/stats_at_scale.py
--help`` for the flags.
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
from sqlalchemy.dialects import postgresql

from billing.admin.stats import NO_JIT, QUERIES, dashboard_stats, query_bounds
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
        connection.execute("CHECKPOINT")  # the fill's WAL is not written during the timing
    return time.perf_counter() - started


def explain(url: str, bounds: dict[str, Any]) -> str:
    """Each query's plan as PostgreSQL ran it, with the pages it touched."""
    parts = []
    with psycopg.connect(libpq_url(url)) as connection:
        connection.execute(str(NO_JIT))
        for name, query in QUERIES.items():
            sql = str(query.compile(dialect=postgresql.psycopg.dialect()))
            rows = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", bounds).fetchall()
            parts.append(f"-- {name}\n" + "\n".join(str(row[0]) for row in rows))
    return "\n\n".join(parts) + "\n"


def ms(seconds: list[float]) -> dict[str, Any]:
    return {
        "median_ms": round(median(seconds) * 1000, 1),
        "runs_ms": [round(s * 1000, 1) for s in seconds],
    }


async def time_periods(
    url: str, *, now: datetime, repeats: int, explain_to: Path | None, size: int
) -> list[dict[str, Any]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    rows = []
    try:
        for days in PERIODS:
            last = now.date()
            first = last - timedelta(days=days - 1)
            bounds = query_bounds(first, last, currency="RUB", now=now)
            if explain_to is not None:
                (explain_to / f"stats_{size}_{days}d.txt").write_text(explain(url, bounds))
            durations: list[float] = []
            per_query: dict[str, list[float]] = {name: [] for name in QUERIES}
            for run in range(repeats + 1):  # the first is a warm-up
                started = time.perf_counter()
                async with sessions() as session:
                    figures = await dashboard_stats(session, first, last, currency="RUB", now=now)
                if run:
                    durations.append(time.perf_counter() - started)
                async with sessions() as session:
                    await session.execute(NO_JIT)  # as dashboard_stats runs them
                    for name, query in QUERIES.items():
                        started = time.perf_counter()
                        (await session.execute(query, bounds)).all()
                        if run:
                            per_query[name].append(time.perf_counter() - started)
            rows.append(
                {
                    "days": days,
                    **ms(durations),
                    "queries": {name: ms(seconds) for name, seconds in per_query.items()},
                    "payments_in_period": sum(day.payments for day in figures.days),
                    "gross_in_period": sum(day.gross for day in figures.days),
                    "refunds_in_period": sum(day.refunds for day in figures.days),
                    "new": figures.new_subscriptions,
                    "churned": figures.churned_subscriptions,
                    "renewals": [figures.renewals.attempted, figures.renewals.succeeded],
                    "active": sum(tariff.count for tariff in figures.active_subscriptions),
                    "mrr": figures.mrr,
                }
            )
            print(f"N={size} {days} days: {rows[-1]['median_ms']} ms", file=sys.stderr)
    finally:
        await engine.dispose()
    return rows


FIGURES = ("payments_in_period", "gross_in_period", "refunds_in_period", "new", "churned")
FIGURES_NOW = ("renewals", "active", "mrr")
HEADING = "## Dashboard statistics at 1 M payments (bench/stats_at_scale.py)"


def results_section(path: Path = RESULTS) -> list[str]:
    """``results.md``'s section: before and after, per size and period, then per query."""
    if not path.exists():
        return []
    recorded = json.loads(path.read_text())
    before, after = recorded.get("before"), recorded.get("after")
    if before is None or after is None:
        return []

    def periods(run: dict[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
        return {(s["payments"], p["days"]): p for s in run["sizes"] for p in s["periods"]}

    old, new = periods(before), periods(after)
    pair = recorded.get("earlier")  # an earlier before/after pair, kept for its spread
    earlier = (periods(pair["before"]), periods(pair["after"])) if pair else None
    same = all(
        old[key][figure] == new[key][figure]
        for key in old.keys() & new.keys()
        for figure in FIGURES + FIGURES_NOW
    )
    lines = [
        "",
        HEADING,
        "",
        f"`dashboard_stats` (the function behind `GET /api/v1/admin/stats` and the panel's"
        f" dashboard) on a fresh fill per size: N payments over the last 365 days (every 30th"
        f" refunded, every 4th invoice a renewal), N / 10 subscriptions; median of"
        f" {after['repeats']} runs after a warm-up (before: {before['repeats']}). Before:"
        f" {before['machine']['code']}, load average {before['machine']['load average']};"
        f" after (migration 0015 and the queries of `admin/stats.py`):"
        f" {after['machine']['code']}, load average {after['machine']['load average']}."
        f" Machine: {after['machine']['cpu']}, {after['machine']['nproc']} CPUs shared with"
        f" other sessions, {after['machine']['memory']}, PostgreSQL"
        f" {after['machine']['postgresql']}. The figures answered are "
        + ("identical before and after." if same else "**not** identical before and after.")
        + (f" The earlier pair: {pair['note']}." if pair and "note" in pair else ""),
        "",
        "| payments | period | before ms | after ms | before ÷ after | after runs ms |"
        + (" earlier pair: before → after ms |" if earlier else ""),
        "|---:|---:|---:|---:|---:|---|" + ("---:|" if earlier else ""),
    ]
    for key in sorted(new.keys() & old.keys()):
        ratio = old[key]["median_ms"] / new[key]["median_ms"]
        runs = ", ".join(f"{ms:.0f}" for ms in new[key]["runs_ms"])
        again = (
            f" {earlier[0][key]['median_ms']:.0f} → {earlier[1][key]['median_ms']:.0f} |"
            if earlier and key in earlier[0] and key in earlier[1]
            else ""
        )
        lines.append(
            f"| {key[0]:_} | {key[1]} days | {old[key]['median_ms']:.0f} |"
            f" {new[key]['median_ms']:.0f} | {ratio:.1f} | {runs} |{again}".replace("_", " ")
        )
    names = list(next(iter(new.values()))["queries"])
    lines += [
        "",
        "Each query alone at 1 000 000 payments, median ms, before → after:",
        "",
        "| period | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for key in sorted(k for k in new.keys() & old.keys() if k[0] == 1_000_000):
        cells = [
            f"{old[key]['queries'][name]['median_ms']:.0f} →"
            f" {new[key]['queries'][name]['median_ms']:.0f}"
            for name in names
        ]
        lines.append(f"| {key[1]} days | " + " | ".join(cells) + " |")
    return lines


def write_section(markdown: Path) -> None:
    """Put the section into ``markdown`` in place of its last version (or at the end)."""
    text = markdown.read_text() if markdown.exists() else ""
    section = "\n".join(results_section()).strip("\n") + "\n"
    start = text.find(HEADING)
    if start < 0:
        markdown.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = text.find("\n## ", start + len(HEADING))
    rest = "" if end < 0 else "\n" + text[end + 1 :]
    markdown.write_text(text[:start] + section + rest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="payments, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="after", help="where in the JSON: before, after")
    parser.add_argument("--explain", type=Path, help="a directory for the EXPLAIN ANALYZE texts")
    parser.add_argument("--no-save", action="store_true", help=f"don't write {RESULTS.name}")
    parser.add_argument(
        "--code", help="the code measured, if not this tree's (an older export on PYTHONPATH)"
    )
    parser.add_argument(
        "--markdown", type=Path, help="write the before/after section into this file and stop"
    )
    args = parser.parse_args()
    if args.markdown is not None:
        write_section(args.markdown)
        return
    exit_on_sigterm()
    server_url = server_url_from_env()
    # A fixed instant of the day, so that a run's 1-day edges fall where the last one's did.
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    if args.explain is not None:
        args.explain.mkdir(parents=True, exist_ok=True)
    measured = []
    for size in (int(size) for size in args.sizes.split(",")):
        with bench_database(server_url) as url:
            filled_s = fill(url, payments=size, subscriptions=size // 10, now=now)
            print(f"filled {size} payments in {filled_s:.1f} s", file=sys.stderr)
            periods = asyncio.run(
                time_periods(url, now=now, repeats=args.repeats, explain_to=args.explain, size=size)
            )
        measured.append(
            {
                "payments": size,
                "subscriptions": size // 10,
                "fill_s": round(filled_s, 1),
                "periods": periods,
            }
        )
    about = machine(server_url)
    if args.code:
        about["code"] = args.code
    result = {"machine": about, "repeats": args.repeats, "sizes": measured}
    print(json.dumps(result, indent=2))
    if not args.no_save:
        saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        if "sizes" in saved or "periods" in saved or "machine" in saved:
            saved = {}  # the file's older, single-measurement shape
        saved[args.label] = result
        RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
