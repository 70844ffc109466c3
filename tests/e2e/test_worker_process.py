"""`billing worker` and `billing jobs run` as real processes on the test database."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

from billing.db import libpq_url
from tests.e2e.test_serve_process import BILLING, environment


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BILLING, *args], env=env, capture_output=True, text=True, timeout=120)


def test_jobs_run_prints_what_it_did(database_url: str, tmp_path: Path) -> None:
    env = environment(tmp_path, BILLING_DATABASE_URL=database_url)
    result = run(["jobs", "run", "expire-subscriptions"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "expire-subscriptions: grace=0 expired=0 failed=0"

    unknown = run(["jobs", "run", "make-money"], env)
    assert unknown.returncode == 2
    assert "unknown job 'make-money'" in unknown.stderr
    assert "reconcile-payments" in unknown.stderr


def _status(database_url: str, event_id: uuid.UUID) -> str:
    with psycopg.connect(libpq_url(database_url)) as connection:
        row = connection.execute(
            "SELECT status FROM outbox_events WHERE id = %s", (event_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_the_worker_process_runs_the_schedule_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    event_id = uuid.uuid4()
    with psycopg.connect(libpq_url(database_url)) as connection:
        connection.execute(
            "INSERT INTO outbox_events (id, type, user_id, payload, status, attempts,"
            " next_attempt_at, occurred_at) VALUES (%s, 'payment.succeeded', %s,"
            " '{\"amount\": 49900}', 'pending', 0, now(), now())",
            (event_id, uuid.uuid4()),
        )
    env = environment(tmp_path, BILLING_DATABASE_URL=database_url)
    worker = subprocess.Popen(
        [BILLING, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60  # deliver-outbox runs every 10 seconds
        while _status(database_url, event_id) != "delivered" and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.5)
        assert _status(database_url, event_id) == "delivered"
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output.decode()
    assert "job deliver-outbox" in output.decode()
