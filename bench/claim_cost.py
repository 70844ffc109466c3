"""What one scheduler claim costs as a backlog is worked through, before and after the
partial indexes of migration 0009, on a table of N subscriptions.

For each N (``--sizes``) and each claim — ``remind`` (active, ending within the reminder
window, not reminded yet), ``to-grace`` (active, period over), ``to-expired`` (grace, grace
period over) — fill N due rows, then mark a share of them handled with one set-based UPDATE
(as the job would have, 500 at a time), ``VACUUM ANALYZE`` (what autovacuum keeps up with;
the bench server runs with autovacuum off), and time the job's own claim (``SELECT …
ORDER BY current_period_end LIMIT 500 FOR UPDATE SKIP LOCKED``, the statement
``subscriptions/tasks.py`` sends) with ``EXPLAIN (ANALYZE)``: the median of ``--repeats``
executions, each in a transaction rolled back. "before" runs the same in a transaction
that first drops the new indexes and recreates ``ix_subscriptions_live_period_end``, with
the reminder's claim in its old form (``reminded_for_period_end IS NULL OR … <> …``).

Shares handled: 0 (the first batch), 50 % and 90 % (late in the backlog, where the old
claims walked past every row already handled).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _common import bench_database, exit_on_sigterm, machine, server_url_from_env

from billing.db import libpq_url

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
GRACE = timedelta(days=2)
REMIND_BEFORE = timedelta(days=3)

FILL = """
INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           reminded_for_period_end, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 'premium', %(status)s,
       %(start)s + n * %(step)s, NULL, %(now)s, %(now)s
FROM generate_series(1, %(n)s) AS n
"""

# Each claim: the rows it selects (the share handled is taken from the earliest, as the
# claim's ORDER BY does), how the job marks one handled, and its WHERE before and after.
CLAIMS: dict[str, dict[str, Any]] = {
    "remind": {
        "status": "active",
        "start": NOW + timedelta(minutes=1),
        "span": REMIND_BEFORE - timedelta(minutes=2),
        "handled": "reminded_for_period_end = current_period_end",
        "where": "status = 'active' AND current_period_end > %(now)s"
        " AND current_period_end <= %(until)s AND {reminded}",
        "reminded_after": "reminded_for_period_end IS DISTINCT FROM current_period_end",
        "reminded_before": "(reminded_for_period_end IS NULL"
        " OR reminded_for_period_end <> current_period_end)",
        "until": NOW + REMIND_BEFORE,
    },
    "to-grace": {
        "status": "active",
        "start": NOW - timedelta(days=60),
        "span": timedelta(days=59),
        "handled": "status = 'grace'",
        "where": "status = 'active' AND current_period_end <= %(now)s",
    },
    "to-expired": {
        "status": "grace",
        "start": NOW - timedelta(days=60),
        "span": timedelta(days=57),
        "handled": "status = 'expired'",
        "where": "status = 'grace' AND current_period_end <= %(over)s",
    },
}

BEFORE = """
DROP INDEX ix_subscriptions_active_period_end, ix_subscriptions_grace_period_end,
           ix_subscriptions_to_remind;
CREATE INDEX ix_subscriptions_live_period_end ON subscriptions (current_period_end)
    WHERE status IN ('active', 'grace');
ANALYZE subscriptions;
"""


def claim_sql(name: str, variant: str) -> str:
    claim = CLAIMS[name]
    where = claim["where"].format(reminded=claim.get(f"reminded_{variant}", ""))
    return (
        f"SELECT * FROM subscriptions WHERE {where}"  # noqa: S608 - fixed texts
        " ORDER BY current_period_end LIMIT 500 FOR UPDATE SKIP LOCKED"
    )


def timed(connection: psycopg.Connection[Any], sql: str, repeats: int) -> tuple[float, str]:
    params = {"now": NOW, "until": NOW + REMIND_BEFORE, "over": NOW - GRACE}
    times, plan = [], ""
    for _ in range(repeats):
        rows = connection.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params).fetchall()
        plan = "\n".join(str(row[0]) for row in rows)
        found = re.search(r"Execution Time: ([\d.]+) ms", plan)
        assert found, plan
        times.append(float(found.group(1)))
    return statistics.median(times), plan


def measure(url: str, n: int, name: str, repeats: int) -> list[dict[str, Any]]:
    claim = CLAIMS[name]
    results = []
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("TRUNCATE subscriptions CASCADE")
        tariff = connection.execute("SELECT id FROM tariffs LIMIT 1").fetchone()
        assert tariff is not None
        connection.execute(
            FILL,
            {
                "tariff": tariff[0],
                "status": claim["status"],
                "start": claim["start"],
                "step": claim["span"] / n,
                "n": n,
                "now": NOW,
            },
        )
        done = 0
        for share in (0.0, 0.5, 0.9):
            target = int(n * share)
            if target > done:
                connection.execute(
                    f"UPDATE subscriptions SET {claim['handled']} WHERE id IN"  # noqa: S608
                    " (SELECT id FROM subscriptions ORDER BY current_period_end"
                    " OFFSET %s LIMIT %s)",
                    (done, target - done),
                )
                done = target
            connection.execute("VACUUM ANALYZE subscriptions")
            for variant in ("before", "after"):
                connection.execute("BEGIN")
                try:
                    if variant == "before":
                        connection.execute(BEFORE)
                    ms, plan = timed(connection, claim_sql(name, variant), repeats)
                finally:
                    connection.execute("ROLLBACK")
                scans = re.findall(
                    r"(Seq Scan on \w+|Index Scan using \w+|Bitmap Index Scan on \w+)", plan
                )
                results.append(
                    {
                        "claim": name,
                        "n": n,
                        "handled": share,
                        "variant": variant,
                        "ms": round(ms, 2),
                        "plan": ", ".join(dict.fromkeys(scans)),
                        "sorted": "Sort" in plan,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    return results


def seed_tariff(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO tariffs (id, code, name, description, role, monthly_price, currency,"
            " is_active, created_at, updated_at) VALUES (gen_random_uuid(), 'premium',"
            " 'Premium', '', 'premium', 49900, 'RUB', true, now(), now())"
        )


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default=server_url_from_env())
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--claims", default=",".join(CLAIMS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with bench_database(args.server_url) as url:
        about = machine(url)
        seed_tariff(url)
        for name in args.claims.split(","):
            for n in (int(size) for size in args.sizes.split(",")):
                results += measure(url, n, name, args.repeats)
    if args.json:
        args.json.write_text(json.dumps({"machine": about, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
