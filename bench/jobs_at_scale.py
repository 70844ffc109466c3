"""The scheduler jobs at 10k, 100k and 1M rows: wall time, rows/s, and the process's memory.

Issue 5 asks that every job processes in bounded batches with "memory flat at a million
rows". For each job and each N this bench fills the tables with N rows the job has to
process (``INSERT … SELECT generate_series``, not the ORM), then runs the job function
itself in a fresh Python process, again and again until it reports nothing left to do (a
run is bounded by design: the next scheduled run continues), and records:

* wall time of all the runs together and rows/s;
* peak RSS of that process (``ru_maxrss``), and its RSS right before the first run, so the
  job's own share is visible (imports and the connection pool are most of a peak);
* the duration of the first and the last run, to show whether later runs slow down;
* optionally (``--tracemalloc``, one extra process per job and N, not timed) the peak of
  Python allocations during the job;
* for the two subscription jobs, the time of the baseline issue 15 measures them against:
  the same update and the same events done by hand-written set-based SQL
  (``WITH moved AS (UPDATE … RETURNING …) INSERT INTO outbox_events SELECT …``, one statement
  per pass, in one transaction), timed on a fresh fill of the same N, and the job's time ÷
  the baseline's.

Every (job, N) is measured ``--repeats`` times (fresh rows, fresh process) and the median is
reported; the tables are checked afterwards (every row in its final state, every event
written). Run ``python bench/jobs_at_scale.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import uvloop
from _common import bench_database, exit_on_sigterm, machine, median, server_url_from_env

from billing.db import libpq_url
from billing.models import Base

JOB_NAMES = ("expire-subscriptions", "remind-expiring", "expire-invoices", "deliver-outbox")
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
GRACE_PERIOD = timedelta(days=2)
REMIND_BEFORE = timedelta(days=3)
PAGE_SIZE = resource.getpagesize()


# Filling: N rows of the kind each job processes ------------------------------------------

# One tariff (every subscription and invoice points at one) and, for invoices, one promo
# code that every 10th open invoice holds a reservation of.
TARIFF_SQL = """
INSERT INTO tariffs (id, code, name, description, role, monthly_price, currency, is_active,
                     role_exists, created_at, updated_at)
VALUES (gen_random_uuid(), 'bench', 'Bench', '', 'bench', 49900, 'RUB', true, true,
        %(now)s, %(now)s)
RETURNING id
"""

# Ended more than the grace period ago, spread over N seconds: each row goes
# active → grace (subscription.expired) → expired (role.revoke) within the same run.
ENDED_SUBSCRIPTIONS_SQL = """
INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           reminded_for_period_end, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 'bench', 'active',
       %(now)s - %(grace)s - interval '1 hour' - g * interval '1 second', NULL,
       %(now)s - interval '40 days', %(now)s - interval '40 days'
FROM generate_series(1, %(n)s) AS g
"""

# Ending within the reminder window, never reminded.
ENDING_SUBSCRIPTIONS_SQL = """
INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           reminded_for_period_end, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 'bench', 'active',
       %(now)s + %(remind)s * (g::float8 / (%(n)s + 1)), NULL,
       %(now)s - interval '20 days', %(now)s - interval '20 days'
FROM generate_series(1, %(n)s) AS g
"""

PROMO_SQL = """
INSERT INTO promo_codes (id, code, percent, amount, currency, valid_from, valid_until,
                         max_redemptions, redemptions_count, once_per_user, is_active,
                         created_by, created_at)
VALUES (gen_random_uuid(), 'BENCH10', 10, NULL, NULL, NULL, NULL, NULL, 0, true, true,
        'bench', %(now)s)
RETURNING id
"""

# Open and past expires_at: 3 months of 499.00, 5 % duration discount; every 10th with the
# promo code's 10 % instead (and a reservation to release). The amounts satisfy the CHECKs
# base = price · months and total = base − discount.
OPEN_INVOICES_SQL = """
INSERT INTO invoices (id, user_id, tariff_id, months, currency, monthly_price, base_amount,
                      discount_source, discount_percent, discount_amount, total_amount,
                      considered, promo_code_id, promo_code, status, expires_at, paid_at,
                      created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 3, 'RUB', 49900, 149700,
       CASE WHEN promo THEN 'promo' ELSE 'duration' END,
       CASE WHEN promo THEN 10 ELSE 5 END,
       CASE WHEN promo THEN 14970 ELSE 7485 END,
       CASE WHEN promo THEN 134730 ELSE 142215 END,
       '[]'::jsonb,
       CASE WHEN promo THEN %(promo)s::uuid END,
       CASE WHEN promo THEN 'BENCH10' END,
       'open', expires, NULL, expires - interval '30 minutes', expires - interval '30 minutes'
FROM (
    SELECT g %% 10 = 0 AS promo, %(now)s - interval '1 minute' - g * interval '1 second' AS expires
    FROM generate_series(1, %(n)s) AS g
) AS rows
"""

RESERVATIONS_SQL = """
INSERT INTO promo_redemptions (id, promo_code_id, user_id, invoice_id, once_per_user, status,
                               created_at, updated_at)
SELECT gen_random_uuid(), promo_code_id, user_id, id, true, 'reserved', created_at, created_at
FROM invoices WHERE promo_code_id IS NOT NULL;
UPDATE promo_codes SET redemptions_count = (SELECT count(*) FROM promo_redemptions)
"""

# Pending and due, in commit order; two events per user (one for each receiver, as an
# expiry writes them), so the relay's per-user ordering check has rows to look at.
PENDING_EVENTS_SQL = """
INSERT INTO outbox_events (id, type, user_id, payload, status, attempts, next_attempt_at,
                           last_error, occurred_at, delivered_at)
SELECT gen_random_uuid(),
       CASE WHEN g %% 2 = 1 THEN 'subscription.expired' ELSE 'role.revoke' END,
       user_id,
       CASE WHEN g %% 2 = 1
            THEN jsonb_build_object('subscription_id', subscription_id, 'tariff_id', %(tariff)s,
                                    'role', 'bench', 'current_period_end', occurred,
                                    'access_until', occurred + %(grace)s)
            ELSE jsonb_build_object('role', 'bench', 'subscription_id', subscription_id)
       END,
       'pending', 0, occurred, NULL, occurred, NULL
FROM (
    SELECT g, md5('user' || (g + 1) / 2)::uuid AS user_id,
           md5('subscription' || (g + 1) / 2)::uuid AS subscription_id,
           %(now)s - (%(n)s - g) * interval '1 millisecond' AS occurred
    FROM generate_series(1, %(n)s) AS g
) AS rows
ORDER BY g
"""


def fill(url: str, job: str, n: int, now: datetime) -> float:
    """Empty every table, then N rows for ``job``; VACUUM ANALYZE and CHECKPOINT so the
    planner knows the table (as autovacuum would by then) and the fill's WAL is not
    written out during the measurement. Answers the seconds it took."""
    started = time.perf_counter()
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    params: dict[str, Any] = {"now": now, "n": n, "grace": GRACE_PERIOD, "remind": REMIND_BEFORE}
    with psycopg.connect(libpq_url(url)) as connection:
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        row = connection.execute(TARIFF_SQL, params).fetchone()
        assert row is not None
        params["tariff"] = row[0]
        if job == "expire-subscriptions":
            connection.execute(ENDED_SUBSCRIPTIONS_SQL, params)
        elif job == "remind-expiring":
            connection.execute(ENDING_SUBSCRIPTIONS_SQL, params)
        elif job == "expire-invoices":
            promo = connection.execute(PROMO_SQL, params).fetchone()
            assert promo is not None
            params["promo"] = promo[0]
            connection.execute(OPEN_INVOICES_SQL, params)
            for statement in RESERVATIONS_SQL.split(";"):
                connection.execute(statement)
        elif job == "deliver-outbox":
            connection.execute(PENDING_EVENTS_SQL, params)
        else:
            raise ValueError(job)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
        connection.execute("CHECKPOINT")
    return time.perf_counter() - started


# What "done" means for each job, checked after every measured process.
CHECKS: dict[str, list[tuple[str, str]]] = {
    "expire-subscriptions": [
        (
            "subscriptions not expired",
            "SELECT count(*) FROM subscriptions WHERE status <> 'expired'",
        ),
        ("events", "SELECT count(*) - 2 * (SELECT count(*) FROM subscriptions) FROM outbox_events"),
    ],
    "remind-expiring": [
        (
            "subscriptions not reminded",
            "SELECT count(*) FROM subscriptions "
            "WHERE reminded_for_period_end IS DISTINCT FROM current_period_end",
        ),
        ("events", "SELECT count(*) - (SELECT count(*) FROM subscriptions) FROM outbox_events"),
    ],
    "expire-invoices": [
        ("invoices still open", "SELECT count(*) FROM invoices WHERE status = 'open'"),
        ("reservations held", "SELECT count(*) FROM promo_redemptions WHERE status = 'reserved'"),
        ("promo redemptions_count", "SELECT sum(redemptions_count) FROM promo_codes"),
    ],
    "deliver-outbox": [
        ("events not delivered", "SELECT count(*) FROM outbox_events WHERE status <> 'delivered'"),
    ],
}


# The baseline: one hand-written set-based statement per pass, doing the job's update and
# writing its events (the columns ``outbox.service.add_event`` writes, the payloads of the
# event models; the session's time zone is UTC so timestamps read as ``isoformat()`` does).
# expire-subscriptions measures both passes, as the job's run does on this fill:
# active → grace with ``subscription.expired``, then grace → expired with ``role.revoke``.
# remind-expiring: the fill has no auto-renewing subscription, so no reminder is priced.
BASELINES: dict[str, list[str]] = {
    "expire-subscriptions": [
        """
WITH moved AS (
    UPDATE subscriptions SET status = 'grace', updated_at = now()
    WHERE status = 'active' AND current_period_end <= %(now)s
    RETURNING id, user_id, tariff_id, role, current_period_end
)
INSERT INTO outbox_events (id, type, user_id, payload, status, attempts, next_attempt_at,
                           occurred_at)
SELECT gen_random_uuid(), 'subscription.expired', user_id,
       jsonb_build_object('subscription_id', id, 'tariff_id', tariff_id, 'role', role,
                          'current_period_end', current_period_end,
                          'access_until', current_period_end + %(grace)s),
       'pending', 0, %(now)s, %(now)s
FROM moved
""",
        """
WITH moved AS (
    UPDATE subscriptions SET status = 'expired', updated_at = now()
    WHERE status = 'grace' AND current_period_end <= %(now)s - %(grace)s
    RETURNING id, user_id, role
)
INSERT INTO outbox_events (id, type, user_id, payload, status, attempts, next_attempt_at,
                           occurred_at)
SELECT gen_random_uuid(), 'role.revoke', user_id,
       jsonb_build_object('role', role, 'subscription_id', id),
       'pending', 0, %(now)s, %(now)s
FROM moved
""",
    ],
    "remind-expiring": [
        """
WITH moved AS (
    UPDATE subscriptions SET reminded_for_period_end = current_period_end, updated_at = now()
    WHERE status = 'active'
      AND current_period_end > %(now)s AND current_period_end <= %(now)s + %(remind)s
      AND reminded_for_period_end IS DISTINCT FROM current_period_end
    RETURNING id, user_id, tariff_id, role, current_period_end
)
INSERT INTO outbox_events (id, type, user_id, payload, status, attempts, next_attempt_at,
                           occurred_at)
SELECT gen_random_uuid(), 'subscription.expiring', user_id,
       jsonb_build_object('subscription_id', id, 'tariff_id', tariff_id, 'role', role,
                          'current_period_end', current_period_end, 'auto_renew', false),
       'pending', 0, %(now)s, %(now)s
FROM moved
""",
    ],
}


def run_baseline(url: str, job: str, now: datetime) -> float:
    """The baseline's statements in one transaction, commit included; answers seconds."""
    params = {"now": now, "grace": GRACE_PERIOD, "remind": REMIND_BEFORE}
    with psycopg.connect(libpq_url(url)) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        connection.commit()
        started = time.perf_counter()
        for statement in BASELINES[job]:
            connection.execute(statement, params)
        connection.commit()
        return time.perf_counter() - started


def check_done(url: str, job: str) -> None:
    with psycopg.connect(libpq_url(url)) as connection:
        for what, sql in CHECKS[job]:
            row = connection.execute(sql).fetchone()
            if row is None or row[0] != 0:
                raise SystemExit(f"{job}: {what}: {row[0] if row else None}, expected 0")


# The measured process ----------------------------------------------------------------------


def current_rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE // 1024


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


@dataclass
class Outcome:
    rows: int  # what the runs reported doing, summed
    runs: int  # runs that did something (a last, empty run is timed but not counted)
    seconds: float
    cpu_seconds: float  # this process's CPU (user + system) over the runs: the job's Python
    run_seconds: list[float]
    run_rows: list[int]
    rss_before_kb: int
    rss_peak_kb: int
    rss_after_runs_kb: list[int]
    blocks_after_runs: list[int]  # sys.getallocatedblocks(): Python objects still alive
    traced_peak_kb: int | None


async def measure(job: str, url: str, now: datetime, trace: bool) -> Outcome:
    # Imported here: the parent process never loads the application.
    import httpx

    from billing.checkout.tasks import expire_invoices
    from billing.config import Settings
    from billing.db import create_engine, session_factory
    from billing.outbox.tasks import run_deliver_outbox
    from billing.subscriptions.tasks import expire_subscriptions, remind_expiring

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as data_dir:
        # No Notification or Auth service: the log sinks deliver (and log below WARNING).
        settings = Settings(
            database_url=url,
            data_dir=Path(data_dir),
            jwt_secret="bench",  # noqa: S106 - nothing is signed here
            notify_url=None,
            notify_amqp_url=None,
            auth_url=None,
            grace_period=GRACE_PERIOD,
            remind_before=REMIND_BEFORE,
        )
        engine = create_engine(url)
        sessions = session_factory(engine)
        async with httpx.AsyncClient() as client:
            runs: dict[str, Callable[[], Awaitable[dict[str, int]]]] = {
                "expire-subscriptions": lambda: expire_subscriptions(
                    sessions, now=now, grace_period=settings.grace_period
                ),
                "remind-expiring": lambda: remind_expiring(sessions, now=now, settings=settings),
                "expire-invoices": lambda: expire_invoices(sessions, now=now),
                "deliver-outbox": lambda: run_deliver_outbox(sessions, settings, client, now),
            }
            # What counts as a processed row in each report (a subscription that expired,
            # an invoice that expired, an event delivered).
            counted = {
                "expire-subscriptions": "expired",
                "remind-expiring": "reminded",
                "expire-invoices": "expired",
                "deliver-outbox": "delivered",
            }[job]
            run = runs[job]
            async with engine.connect() as connection:  # the pool's first connection
                await connection.exec_driver_sql("SELECT 1")
            rss_before = peak_rss_kb()
            if trace:
                tracemalloc.start()
            rows = worked = 0
            run_seconds: list[float] = []
            run_rows: list[int] = []
            rss_after_runs: list[int] = []
            blocks_after_runs: list[int] = []
            started = time.perf_counter()
            cpu_started = time.process_time()
            while True:
                run_started = time.perf_counter()
                report = await run()
                run_seconds.append(time.perf_counter() - run_started)
                rss_after_runs.append(current_rss_kb())
                blocks_after_runs.append(sys.getallocatedblocks())
                if not any(report.values()):
                    break
                rows += report[counted]
                run_rows.append(report[counted])
                worked += 1
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            traced = tracemalloc.get_traced_memory()[1] // 1024 if trace else None
        await engine.dispose()
    return Outcome(
        rows=rows,
        runs=worked,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        run_seconds=run_seconds,
        run_rows=run_rows,
        rss_before_kb=rss_before,
        rss_peak_kb=peak_rss_kb(),
        rss_after_runs_kb=rss_after_runs,
        blocks_after_runs=blocks_after_runs,
        traced_peak_kb=traced,
    )


def child(args: argparse.Namespace) -> None:
    outcome = uvloop.run(  # the loop `billing worker` runs its jobs on
        measure(args.job, args.url, datetime.fromisoformat(args.now), args.tracemalloc)
    )
    print(json.dumps(outcome.__dict__))


def run_child(job: str, url: str, now: datetime, *, trace: bool) -> Outcome:
    command = [sys.executable, __file__, "--child", "--job", job, "--url", url]
    command += ["--now", now.isoformat()] + (["--tracemalloc"] if trace else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"{job}: the measured process failed:\n{done.stderr}")
    return Outcome(**json.loads(done.stdout.strip().splitlines()[-1]))


# The parent: fill, measure, check, report ---------------------------------------------------


@dataclass
class Result:
    job: str
    n: int
    outcomes: list[Outcome]
    traced_peak_kb: int | None
    fill_seconds: float
    baseline_seconds: list[float]  # empty: no baseline for this job

    def summary(self) -> dict[str, Any]:
        outcomes = self.outcomes
        typical = sorted(outcomes, key=lambda o: o.seconds)[len(outcomes) // 2]
        baseline = median(self.baseline_seconds) if self.baseline_seconds else None
        seconds = median([o.seconds for o in outcomes])
        return {
            "job": self.job,
            "n": self.n,
            "runs": outcomes[0].runs,
            "seconds": seconds,
            "seconds_all": [round(o.seconds, 3) for o in outcomes],
            "baseline_seconds": baseline,
            "baseline_seconds_all": [round(value, 3) for value in self.baseline_seconds],
            "job_over_baseline": None if baseline is None else seconds / baseline,
            "rows_per_s": median([o.rows / o.seconds for o in outcomes]),
            "cpu_seconds": median([o.cpu_seconds for o in outcomes]),
            "cpu_us_per_row": median([o.cpu_seconds / o.rows * 1e6 for o in outcomes]),
            "first_run_s": median([o.run_seconds[0] for o in outcomes]),
            "last_run_s": median([o.run_seconds[max(o.runs - 1, 0)] for o in outcomes]),
            "rss_before_mib": median([o.rss_before_kb / 1024 for o in outcomes]),
            "rss_peak_mib": median([o.rss_peak_kb / 1024 for o in outcomes]),
            "rss_job_mib": median([(o.rss_peak_kb - o.rss_before_kb) / 1024 for o in outcomes]),
            "rss_first_run_mib": median([o.rss_after_runs_kb[0] / 1024 for o in outcomes]),
            "rss_last_run_mib": median([o.rss_after_runs_kb[-1] / 1024 for o in outcomes]),
            "blocks_first_run": median([o.blocks_after_runs[0] for o in outcomes]),
            "blocks_last_run": median([o.blocks_after_runs[-1] for o in outcomes]),
            "traced_peak_mib": None if self.traced_peak_kb is None else self.traced_peak_kb / 1024,
            "fill_seconds": self.fill_seconds,
            # Every run of the median measurement: does a run get slower as the table ages?
            "median_run_seconds": [round(value, 3) for value in typical.run_seconds],
            "median_run_rows": typical.run_rows,
        }


def bench(url: str, job: str, n: int, repeats: int, trace: bool) -> Result:
    outcomes: list[Outcome] = []
    fills: list[float] = []
    baselines: list[float] = []
    for _ in range(repeats):
        now = datetime.now(UTC).replace(microsecond=0)
        fills.append(fill(url, job, n, now))
        outcome = run_child(job, url, now, trace=False)
        check_done(url, job)
        if outcome.rows != n:
            raise SystemExit(f"{job}: processed {outcome.rows} rows of {n}")
        outcomes.append(outcome)
        print(
            f"  {job} N={n:,}: {outcome.seconds:.2f} s in {outcome.runs} run(s), "
            f"peak RSS {outcome.rss_peak_kb / 1024:.1f} MiB "
            f"(before {outcome.rss_before_kb / 1024:.1f})",
            file=sys.stderr,
            flush=True,
        )
        if job in BASELINES:
            now = datetime.now(UTC).replace(microsecond=0)
            fill(url, job, n, now)
            baselines.append(run_baseline(url, job, now))
            check_done(url, job)
            print(
                f"  {job} N={n:,}: baseline (set-based SQL) {baselines[-1]:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    traced = None
    if trace:
        now = datetime.now(UTC).replace(microsecond=0)
        fill(url, job, n, now)
        traced_outcome = run_child(job, url, now, trace=True)
        check_done(url, job)
        traced = traced_outcome.traced_peak_kb
        print(
            f"  {job} N={n:,}: tracemalloc peak {traced} KiB "
            f"({traced_outcome.seconds:.2f} s under tracemalloc, not counted)",
            file=sys.stderr,
            flush=True,
        )
    return Result(job, n, outcomes, traced, median(fills), baselines)


def markdown(results: list[Result]) -> str:
    summaries = [result.summary() for result in results]
    lines = [
        "Speed (medians)",
        "",
        "| job | N | runs | wall s | rows/s | first run s | last run s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['job']} | {s['n']:,} | {s['runs']} | {s['seconds']:.2f} "
            f"| {s['rows_per_s']:,.0f} | {s['first_run_s']:.2f} | {s['last_run_s']:.2f} |"
        )
    against = [s for s in summaries if s["baseline_seconds"] is not None]
    if against:
        lines += [
            "",
            "Against one hand-written set-based SQL (medians; target: ratio ≤ 3)",
            "",
            "| job | N | job s | baseline s | ratio | rows/s | job's CPU µs/row | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in against:
            lines.append(
                f"| {s['job']} | {s['n']:,} | {s['seconds']:.2f} | {s['baseline_seconds']:.2f} "
                f"| {s['job_over_baseline']:.2f} | {s['rows_per_s']:,.0f} "
                f"| {s['cpu_us_per_row']:.0f} | {s['rss_peak_mib']:.1f} |"
            )
    lines += [
        "",
        "Memory of the measured process (medians; MiB; blocks = sys.getallocatedblocks())",
        "",
        "| job | N | RSS before | peak RSS | job's RSS (peak − before) "
        "| RSS after 1st / last run | blocks after 1st / last run | tracemalloc peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        traced = "–" if s["traced_peak_mib"] is None else f"{s['traced_peak_mib']:.1f}"
        lines.append(
            f"| {s['job']} | {s['n']:,} | {s['rss_before_mib']:.1f} | {s['rss_peak_mib']:.1f} "
            f"| {s['rss_job_mib']:.1f} "
            f"| {s['rss_first_run_mib']:.1f} / {s['rss_last_run_mib']:.1f} "
            f"| {s['blocks_first_run']:,.0f} / {s['blocks_last_run']:,.0f} | {traced} |"
        )
    lines += [
        "",
        "Largest N against smallest",
        "",
        "| job | peak RSS ratio | job's RSS ratio | rows/s ratio |",
        "|---|---:|---:|---:|",
    ]
    for job in dict.fromkeys(s["job"] for s in summaries):
        mine = sorted((s for s in summaries if s["job"] == job), key=lambda s: s["n"])
        if len(mine) < 2:
            continue
        small, large = mine[0], mine[-1]
        job_ratio = (
            f"{large['rss_job_mib'] / small['rss_job_mib']:.2f}"
            if small["rss_job_mib"] > 0
            else "–"
        )
        lines.append(
            f"| {job} ({large['n']:,} / {small['n']:,}) "
            f"| {large['rss_peak_mib'] / small['rss_peak_mib']:.2f} | {job_ratio} "
            f"| {large['rows_per_s'] / small['rows_per_s']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated row counts (default: %(default)s)",
    )
    parser.add_argument(
        "--jobs", default=",".join(JOB_NAMES), help="comma-separated jobs (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="measurements per job and N")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="one more process per job and N under tracemalloc (slower; memory only)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--server-url",
        default=server_url_from_env(),
        help="PostgreSQL server (default: $BILLING_BENCH_SERVER_URL or %(default)s)",
    )
    # The measured process (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    jobs = [job.strip() for job in args.jobs.split(",") if job.strip()]
    unknown = sorted(set(jobs) - set(JOB_NAMES))
    if unknown:
        parser.error(f"unknown jobs: {', '.join(unknown)}")
    sizes = [int(size.replace("_", "")) for size in args.sizes.split(",")]
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    exit_on_sigterm()
    about = machine(args.server_url)
    results: list[Result] = []
    with bench_database(args.server_url) as url:
        for job in jobs:
            for n in sizes:
                results.append(bench(url, job, n, args.repeats, args.tracemalloc))
    total = time.perf_counter() - started
    print("Machine: " + "; ".join(f"{key} {value}" for key, value in about.items()))
    print(f"Repeats: {args.repeats} (medians); whole bench: {total / 60:.1f} min\n")
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": about,
                    "repeats": args.repeats,
                    "total_seconds": total,
                    "results": [r.summary() for r in results],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
