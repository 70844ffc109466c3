"""Database outages under a running billing, on a private PostgreSQL the test stops and
starts (never the machine's shared server).

``billing serve`` (with its in-process worker) under HTTP load on keep-alive connections:
while the database is away every answer is a 503 ``database_unavailable`` within a bound,
none is a 500 and no connection is dropped; once it is back everything answers 200 by
itself, the worker delivers an event and settles a payment, and ``billing verify`` is
clean. A standalone ``billing worker`` rides out an outage too, and exits non-zero with one
clear line on what it cannot recover from: a database whose schema is behind.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from billing.auth import issue_token
from billing.config import Settings
from billing.migrations import upgrade
from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy
from tests.private_postgres import (  # noqa: F401 - private_postgres: the fixture
    PrivatePostgres,
    private_postgres,
    server_directory,
)

JWT_SECRET = "outage-test-secret-that-is-long-enough"
OUTAGE_SECONDS = 8
# Every answer during the outage comes within this (connect_timeout is 3 s, pool_timeout 5 s).
ANSWER_BOUND = 5.0


@dataclass
class Answer:
    started: float
    elapsed: float
    status: int
    code: str | None


@dataclass
class KeepAliveClient:
    """One HTTP/1.1 connection, reused for every request until stopped. A connection the
    server closes (or drops) is never silently reopened: it is recorded as ``broken``."""

    port: int
    path: str
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    broken: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.connect()
        connection.auto_open = False  # a closed connection raises instead of reconnecting
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection.request("GET", self.path, headers=self.headers)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.broken = f"{type(error).__name__}: {error}"
                return
            code = json.loads(body).get("code") if response.status >= 400 else None
            self.answers.append(Answer(started, time.monotonic() - started, response.status, code))
            if response.will_close:
                self.broken = f"the server closed the connection after a {response.status}"
                return
            time.sleep(0.05)


def _query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def add_event(url: str) -> uuid.UUID:
    event_id = uuid.uuid4()
    _query(
        url,
        "INSERT INTO outbox_events (id, type, user_id, payload, status, attempts,"
        " next_attempt_at, occurred_at) VALUES (%s, 'payment.succeeded', %s,"
        " '{\"amount\": 49900}', 'pending', 0, now(), now())",
        event_id,
        uuid.uuid4(),
    )
    return event_id


def event_status(url: str, event_id: uuid.UUID) -> str:
    [(status,)] = _query(url, "SELECT status FROM outbox_events WHERE id = %s", event_id)
    return str(status)


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], None]
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture
def billing_database(private_postgres: PrivatePostgres) -> str:  # noqa: F811 - the fixture
    url = private_postgres.create_database("billing")
    upgrade(url)
    return url


def start(args: list[str], log: Path, database_url: str) -> subprocess.Popen[bytes]:
    env = environment(
        log.parent / "billing-data",
        BILLING_DATABASE_URL=database_url,
        BILLING_JWT_SECRET=JWT_SECRET,
    )
    # A file, not a pipe: a pipe nobody reads fills up and stalls the server mid-test.
    return subprocess.Popen(
        [BILLING, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def serve(tmp_path: Path, billing_database: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    process = start(["serve", "--port", str(port)], tmp_path / "serve.log", billing_database)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def paid_without_notification(base_url: str, token: str) -> str:
    """A sandbox payment the viewer paid whose notification never came: only the
    reconciler can settle it. Answers its id."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        [tariff, *_] = http.get("/api/v1/tariffs").json()
        invoice = http.post(
            "/api/v1/invoices", json={"tariff_id": tariff["id"], "months": 1}, headers=headers
        )
        assert invoice.status_code == 201, invoice.text
        payment = http.post(f"/api/v1/invoices/{invoice.json()['id']}/payments", headers=headers)
        assert payment.status_code == 201, payment.text
        paid = http.post(payment.json()["confirmation_url"], data={"action": "pay", "notify": "0"})
        assert paid.status_code in (200, 303), paid.text
        assert (
            http.get(f"/api/v1/payments/{payment.json()['id']}", headers=headers).json()["status"]
            == "pending"
        )
        return str(payment.json()["id"])


def test_serve_answers_503_during_an_outage_and_recovers_by_itself(
    private_postgres: PrivatePostgres,  # noqa: F811 - the fixture
    billing_database: str,
    serve: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    base_url, process = serve
    port = int(base_url.rsplit(":", 1)[1])
    demo = subprocess.run(
        [BILLING, "demo-data"],
        env=environment(tmp_path / "demo", BILLING_DATABASE_URL=billing_database),
        capture_output=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr.decode()
    settings = Settings(database_url=billing_database, jwt_secret=JWT_SECRET, data_dir=tmp_path)
    subject = str(uuid.uuid4())
    viewer = issue_token(settings, subject, email=f"{subject}@example.com")  # receipts need it
    payment_id = paid_without_notification(base_url, viewer)

    def alive() -> None:
        assert process.poll() is None, "billing serve exited"

    authenticated = {"Authorization": f"Bearer {viewer}"}
    clients = [
        KeepAliveClient(port, "/api/v1/tariffs", {}),
        KeepAliveClient(port, "/api/v1/tariffs", {}),
        KeepAliveClient(port, "/api/v1/payments", authenticated),
        KeepAliveClient(port, "/api/v1/subscriptions", authenticated),
    ]
    for client in clients:
        client.start()
    time.sleep(2)
    stopping = time.monotonic()
    private_postgres.stop()
    stopped = time.monotonic()
    try:
        time.sleep(OUTAGE_SECONDS / 2)
        ready = httpx.get(f"{base_url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["code"] == "database_unavailable"
        time.sleep(OUTAGE_SECONDS / 2)
    finally:
        restarting = time.monotonic()
        private_postgres.start()
    restarted = time.monotonic()
    time.sleep(10)  # recovery, under the same load
    for client in clients:
        client.stop()
    alive()

    for client in clients:
        assert client.broken is None, f"{client.path}: {client.broken}"
        assert {answer.status for answer in client.answers} <= {200, 503}, client.path
        before = [answer for answer in client.answers if answer.started < stopping - 0.5]
        during = [a for a in client.answers if stopped <= a.started and a.started < restarting]
        after = [answer for answer in client.answers if answer.started > restarted + 5]
        assert before and during and after, client.path
        assert all(answer.status == 200 for answer in before), client.path
        assert all(
            (answer.status, answer.code) == (503, "database_unavailable") for answer in during
        ), client.path
        slowest = max(answer.elapsed for answer in client.answers)
        assert slowest < ANSWER_BOUND, f"{client.path}: an answer took {slowest:.1f} s"
        # Back by itself: 200 again a few seconds after the database returned.
        assert all(answer.status == 200 for answer in after), client.path
    assert httpx.get(f"{base_url}/ready", timeout=10).status_code == 200

    # The in-process worker came back too: it delivers an event written after the outage
    # and settles the payment whose notification never came (the reconciler leaves a
    # payment alone for its first minute, so the payment is made to look a minute older).
    event_id = add_event(billing_database)
    _query(
        billing_database,
        "UPDATE payments SET created_at = now() - interval '2 minutes',"
        " updated_at = now() - interval '2 minutes' WHERE id = %s",
        payment_id,
    )
    wait_for(
        "the outbox event delivered",
        lambda: event_status(billing_database, event_id) == "delivered",
        timeout=60,
        alive=alive,
    )
    with httpx.Client(base_url=base_url, timeout=30, headers=authenticated) as http:
        wait_for(
            "the payment settled by reconciliation",
            lambda: http.get(f"/api/v1/payments/{payment_id}").json()["status"] == "succeeded",
            timeout=120,
            alive=alive,
        )
        assert [s["status"] for s in http.get("/api/v1/subscriptions").json()] == ["active"]

    verify = subprocess.run(
        [BILLING, "verify"],
        env=environment(tmp_path / "verify", BILLING_DATABASE_URL=billing_database),
        capture_output=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()

    stop(process)
    log = (tmp_path / "serve.log").read_text()
    assert "database unavailable on GET /api/v1/tariffs" in log  # one line per request...
    assert "Exception in ASGI application" not in log  # ...not uvicorn's stack trace
    assert "worker: the database answers again" in log


def test_the_standalone_worker_rides_out_an_outage_and_stops_on_a_schema_behind(
    private_postgres: PrivatePostgres,  # noqa: F811 - the fixture
    billing_database: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "worker.log"
    worker = start(["worker"], log, billing_database)
    try:

        def alive() -> None:
            assert worker.poll() is None, f"the worker exited: {log.read_text()}"

        first = add_event(billing_database)
        wait_for(
            "delivered before the outage",
            lambda: event_status(billing_database, first) == "delivered",
            timeout=60,
            alive=alive,
        )
        with private_postgres.outage():
            time.sleep(5)
            alive()
        second = add_event(billing_database)
        wait_for(
            "delivered after the outage",
            lambda: event_status(billing_database, second) == "delivered",
            timeout=60,
            alive=alive,
        )

        # The database comes back as an older backup: a schema this worker cannot use.
        # Restarting cannot cure that, so the worker stops, non-zero, saying what to do.
        private_postgres.stop()
        with server_directory(tmp_path / "older") as directory:
            older = PrivatePostgres(directory, port=private_postgres.port)
            older.start()
            try:
                upgrade(older.create_database("billing"), "0004")
                worker.wait(timeout=90)
            finally:
                older.stop()
    finally:
        stop(worker)
    output = log.read_text()
    assert worker.returncode == 2, output
    assert "restart" in output  # the outage: a line per attempt
    [line] = [line for line in output.splitlines() if line.startswith("worker stopped:")]
    assert "schema is behind" in line
    assert "billing migrate" in line


def test_ready_says_when_the_in_process_worker_stopped_for_good(
    private_postgres: PrivatePostgres,  # noqa: F811 - the fixture
    serve: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    base_url, process = serve
    assert httpx.get(f"{base_url}/ready", timeout=10).status_code == 200
    # The database comes back as an older backup: the API still reaches it, but the
    # worker cannot run on that schema, and /ready must not hide it.
    private_postgres.stop()
    with server_directory(tmp_path / "older") as directory:
        older = PrivatePostgres(directory, port=private_postgres.port)
        older.start()
        try:
            upgrade(older.create_database("billing"), "0004")
            deadline = time.monotonic() + 90
            while (ready := httpx.get(f"{base_url}/ready", timeout=10)).status_code == 200 or (
                ready.json()["code"] == "database_unavailable"
            ):
                assert process.poll() is None, "billing serve exited"
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.5)
            assert ready.status_code == 503
            assert ready.json()["code"] == "worker_stopped"
            assert "billing migrate" in ready.json()["detail"]
            assert process.poll() is None  # the API keeps serving
        finally:
            older.stop()
