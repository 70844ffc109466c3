"""Two API processes and two workers on one database, under load: every payment settles
once, every subscription gets its months once, every event is delivered once.

``billing serve --workers 2 --no-worker`` and two ``billing worker`` processes on the test
database; a local HTTP server stands in for the Notification and Auth services and records
each delivery's ``Idempotency-Key`` (the event's id). Forty viewers pay at once, and each
payment is then settled by three racing paths through different connections (so through
either API process): the sandbox's webhook and two confirm calls.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import libpq_url
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_money_path_process import viewer_headers
from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy
from tests.integration.checkout_helpers import add_tariff
from tests.local_http import QuietHandler, serving

VIEWERS = 40


@contextmanager
def recording_receiver() -> Iterator[tuple[str, Counter[str]]]:
    """The Notification and Auth services: answers every POST and DELETE 200 and counts the
    deliveries per Idempotency-Key; lists one role (the tariff's) to the role sync."""
    keys: Counter[str] = Counter()
    lock = threading.Lock()

    class Handler(QuietHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                keys[self.headers.get("Idempotency-Key") or "none"] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = _answer
        do_DELETE = _answer

        def do_GET(self) -> None:  # the Auth service's roles, read by the sync-roles job
            body = b'[{"name": "premium", "description": "Premium"}]'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as url:
        yield url, keys


def rows(database_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(libpq_url(database_url)) as connection:
        return connection.execute(query).fetchall()


@contextmanager
def cluster(env: dict[str, str], port: int, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``billing serve --workers 2 --no-worker`` and two ``billing worker``; stopped with
    SIGTERM on the way out (their exit codes are then in the processes)."""
    commands = {
        "serve": [BILLING, "serve", "--port", str(port), "--workers", "2", "--no-worker"],
        "w1": [BILLING, "worker"],
        "w2": [BILLING, "worker"],
    }
    processes = []
    for name, command in commands.items():
        with (logs / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes[0])
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)


async def pay(http: httpx.AsyncClient, tariff_id: uuid.UUID) -> tuple[str, str, dict[str, str]]:
    """A viewer's checkout up to *Pay* at the sandbox, without its notification (sent later,
    racing the confirms): billing's payment id, the sandbox's, the viewer's headers."""
    headers = viewer_headers()
    invoice = await http.post(
        "/api/v1/invoices", json={"tariff_id": str(tariff_id), "months": 1}, headers=headers
    )
    assert invoice.status_code == 201, invoice.text
    payment = await http.post(
        f"/api/v1/invoices/{invoice.json()['id']}/payments", json={}, headers=headers
    )
    assert payment.status_code == 201, payment.text
    sandbox_id = payment.json()["confirmation_url"].rsplit("/", 1)[1]
    paid = await http.post(f"/sandbox/checkout/{sandbox_id}", data={"action": "pay", "notify": "0"})
    assert paid.status_code < 400, paid.text
    return str(payment.json()["id"]), sandbox_id, headers


def webhook(sandbox_id: str) -> dict[str, Any]:
    """ЮKassa's notification of a payment that succeeded (billing re-reads the payment)."""
    return {
        "type": "notification",
        "event": "payment.succeeded",
        "object": {"id": sandbox_id, "status": "succeeded"},
    }


async def test_two_api_processes_and_two_workers_settle_and_deliver_once(
    database_url: str, tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tariff = await add_tariff(sessions)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with recording_receiver() as (receiver_url, deliveries):
        env = environment(
            tmp_path / "data",
            BILLING_DATABASE_URL=database_url,
            BILLING_JWT_SECRET=TEST_JWT_SECRET,
            BILLING_NOTIFY_URL=f"{receiver_url}/events",
            BILLING_AUTH_URL=receiver_url,
        )
        with cluster(env, port, tmp_path) as processes:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http:
                paid = await asyncio.gather(*(pay(http, tariff.id) for _ in range(VIEWERS)))
                # Each payment settled by two confirm calls racing the provider's webhook,
                # each on a fresh connection (no keep-alive), so spread over both processes.
                answers = await asyncio.gather(
                    *(
                        call
                        for payment, sandbox_id, headers in paid
                        for call in (
                            http.post(f"/api/v1/payments/{payment}/confirm", headers=headers),
                            http.post("/api/v1/webhooks/yookassa", json=webhook(sandbox_id)),
                            http.post(f"/api/v1/payments/{payment}/confirm", headers=headers),
                        )
                    )
                )
            assert [answer.status_code for answer in answers] == [200] * (3 * VIEWERS)
            confirmed = answers[0::3] + answers[2::3]
            assert {answer.json()["status"] for answer in confirmed} == {"succeeded"}

            # The workers deliver every event (deliver-outbox runs every 10 s).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                [(left,)] = rows(
                    database_url, "SELECT count(*) FROM outbox_events WHERE status <> 'delivered'"
                )
                if left == 0:
                    break
                await asyncio.sleep(1)
            assert left == 0, f"{left} events not delivered in time"
    assert [process.returncode for process in processes] == [0, 0, 0]
    # Settled once: one success per invoice, one subscription per viewer with one month.
    assert rows(database_url, "SELECT count(*) FROM payments WHERE status = 'succeeded'") == [
        (VIEWERS,)
    ]
    # The subscription ends where its one payment's slice ends, and the slice is one month:
    # a second settlement would have extended it past the payment's period_end.
    periods = rows(
        database_url,
        "SELECT s.current_period_end = p.period_end, p.period_end - p.period_start"
        " FROM subscriptions s JOIN payments p ON p.user_id = s.user_id",
    )
    assert len(periods) == VIEWERS
    assert all(ends_together for ends_together, _ in periods), periods
    assert all(timedelta(days=28) <= length <= timedelta(days=31) for _, length in periods), periods
    assert rows(
        database_url,
        "SELECT count(*) FROM outbox_events WHERE type = 'payment.succeeded'",
    ) == [(VIEWERS,)]
    # Delivered once: every event's id arrived exactly once at its service.
    events = {str(event_id) for (event_id,) in rows(database_url, "SELECT id FROM outbox_events")}
    assert len(events) >= 2 * VIEWERS  # at least the payment and the role grant of each
    assert set(deliveries) == events
    assert [key for key, count in deliveries.items() if count > 1] == []
    for name in ("serve", "w1", "w2"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name
