"""The money path against a running `billing serve` (real HTTP, real PostgreSQL): a burst of
viewers, a provider that hangs, and a process killed between the provider call and the
transaction that records its answer."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.auth import issue_token
from billing.config import Settings
from billing.db import libpq_url
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.fake_yookassa import FakeYooKassa, serve
from tests.e2e.test_serve_process import BILLING, environment, free_port, wait_until_healthy
from tests.integration.checkout_helpers import add_tariff

Sessions = async_sessionmaker[AsyncSession]
TOKENS = Settings(jwt_secret=TEST_JWT_SECRET)


class Billing:
    """`billing serve --no-worker` on the test database, restartable on the same port."""

    def __init__(self, database_url: str, data_dir: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = environment(
            data_dir,
            BILLING_DATABASE_URL=database_url,
            BILLING_JWT_SECRET=TEST_JWT_SECRET,
            **settings,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [BILLING, "serve", "--port", str(self.port), "--no-worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_healthy(self.url, self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_killed(self) -> None:
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BILLING, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def job(self, name: str) -> str:
        done = self.command("jobs", "run", name)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@contextmanager
def running(database_url: str, data_dir: Path, **settings: str) -> Iterator[Billing]:
    billing = Billing(database_url, data_dir, **settings)
    billing.start()
    try:
        yield billing
    finally:
        billing.stop()


def viewer_headers(user_id: uuid.UUID | None = None) -> dict[str, str]:
    subject = str(user_id or uuid.uuid4())
    token = issue_token(TOKENS, subject, [], email=f"{subject}@example.com")
    return {"Authorization": f"Bearer {token}"}


async def issue_invoice(
    http: httpx.AsyncClient, headers: dict[str, str], tariff_id: uuid.UUID
) -> str:
    response = await http.post(
        "/api/v1/invoices", json={"tariff_id": str(tariff_id), "months": 1}, headers=headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def scalar(database_url: str, query: str, *params: object) -> object:
    with psycopg.connect(libpq_url(database_url)) as connection:
        row = connection.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# --- a campaign's burst -----------------------------------------------------------------------


async def test_64_viewers_starting_payments_at_once_all_get_one_provider_payment(
    database_url: str, tmp_path: Path, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    with running(database_url, tmp_path / "data") as billing:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=billing.url, timeout=60, limits=limits) as http:
            viewers = [viewer_headers() for _ in range(64)]
            invoices = await asyncio.gather(
                *(issue_invoice(http, headers, tariff.id) for headers in viewers)
            )
            # Every viewer at once, and a quarter of them double-click.
            starts = [
                (headers, invoice) for headers, invoice in zip(viewers, invoices, strict=True)
            ]
            starts += starts[:16]
            answers = await asyncio.gather(
                *(
                    http.post(f"/api/v1/invoices/{invoice}/payments", json={}, headers=headers)
                    for headers, invoice in starts
                )
            )

    assert [answer.status_code for answer in answers] == [201] * 80
    payment_of: dict[str, set[str]] = {}
    for (_, invoice), answer in zip(starts, answers, strict=True):
        assert answer.json()["confirmation_url"]
        payment_of.setdefault(invoice, set()).add(answer.json()["id"])
    assert all(len(ids) == 1 for ids in payment_of.values())  # a double click: the same one
    assert scalar(database_url, "SELECT count(*) FROM payments") == 64
    # Exactly one payment at the provider (the sandbox's own records) per invoice.
    assert scalar(database_url, "SELECT count(*) FROM sandbox_payments") == 64
    assert (
        scalar(
            database_url,
            "SELECT count(*) FROM payments p JOIN sandbox_payments s"
            " ON s.id = p.provider_payment_id",
        )
        == 64
    )


# --- a provider that hangs --------------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[int]:
    """A local port that accepts connections and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


async def test_a_hanging_provider_costs_only_its_own_callers(
    database_url: str, tmp_path: Path, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    paid_viewer = uuid.uuid4()
    service = {"Authorization": f"Bearer {issue_token(TOKENS, str(uuid.uuid4()), ['service'])}"}
    with (
        silent_server() as port,
        running(
            database_url, tmp_path / "data", BILLING_YOOKASSA_API_URL=f"http://127.0.0.1:{port}/v3"
        ) as billing,
    ):
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=billing.url, timeout=60, limits=limits) as http:
            viewers = [viewer_headers() for _ in range(20)]
            invoices = [await issue_invoice(http, headers, tariff.id) for headers in viewers]
            started = time.monotonic()
            payments = asyncio.gather(
                *(
                    http.post(f"/api/v1/invoices/{invoice}/payments", json={}, headers=headers)
                    for headers, invoice in zip(viewers, invoices, strict=True)
                )
            )
            slowest = 0.0
            reads = 0
            while not payments.done():
                for path, headers in (
                    ("/api/v1/tariffs", {}),
                    (f"/api/v1/users/{paid_viewer}/entitlements", service),
                ):
                    asked = time.monotonic()
                    answer = await http.get(path, headers=headers)
                    slowest = max(slowest, time.monotonic() - asked)
                    reads += 1
                    assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.2)
            answers = await payments
            waited = time.monotonic() - started

    assert [answer.status_code for answer in answers] == [503] * 20
    assert {answer.json()["code"] for answer in answers} == {"provider_unavailable"}
    assert waited < 30  # the provider budget (≈ 16 s) under a client's patience
    assert reads > 20
    assert slowest < 1.0, f"the API waited {slowest:.2f} s while the provider hung"


# --- a crash between the provider call and the second transaction -----------------------------


@pytest.fixture
def fake_yookassa() -> Iterator[tuple[FakeYooKassa, str]]:
    fake = FakeYooKassa()
    server = serve(fake)
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}/v3"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_crash_after_the_provider_call_is_completed_without_a_second_payment_or_refund(
    database_url: str, tmp_path: Path, sessions: Sessions, fake_yookassa: tuple[FakeYooKassa, str]
) -> None:
    fake, api_url = fake_yookassa
    tariff = await add_tariff(sessions)
    billing = Billing(database_url, tmp_path / "data", BILLING_YOOKASSA_API_URL=api_url)
    viewer = viewer_headers()
    billing.start()
    try:
        async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
            retried = await issue_invoice(http, viewer, tariff.id)
            reconciled = await issue_invoice(http, viewer, tariff.id)

        # 1. Killed once the provider made the payment, before billing stored its answer.
        for invoice in (retried, reconciled):
            fake.kill_on["payment"] = billing.pid
            with pytest.raises(httpx.TransportError):
                async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
                    await http.post(f"/api/v1/invoices/{invoice}/payments", json={}, headers=viewer)
            billing.wait_killed()
            billing.start()
        assert len(fake.payments) == 2
        interrupted = "SELECT count(*) FROM payments WHERE provider_payment_id IS NULL"
        assert scalar(database_url, interrupted) == 2

        # 2a. The viewer's next click asks again with the same key: the same payment.
        async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
            again = await http.post(f"/api/v1/invoices/{retried}/payments", json={}, headers=viewer)
        assert again.status_code == 201, again.text
        first = again.json()
        assert len(fake.payments_of(first["id"])) == 1
        # 2b. Nobody clicks again: reconciliation finishes it (the attempt is a minute old).
        scalar(
            database_url,
            "UPDATE payments SET created_at = now() - interval '2 minutes',"
            " updated_at = now() - interval '2 minutes'"
            " WHERE provider_payment_id IS NULL RETURNING 1",
        )
        assert billing.job("reconcile-payments").startswith("reconcile-payments: checked=1")
        assert scalar(database_url, interrupted) == 0
        assert len(fake.payments) == 2  # still one per invoice
        assert len(fake.keys_seen) == 4 and len(set(fake.keys_seen)) == 2

        # 3. Both are paid; the refunds are interrupted the same way.
        second_id = str(
            scalar(database_url, "SELECT id FROM payments WHERE invoice_id = %s", reconciled)
        )
        async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
            for payment_id in (first["id"], second_id):
                fake.pay(fake.payments_of(payment_id)[0]["id"])
                confirmed = await http.post(
                    f"/api/v1/payments/{payment_id}/confirm", headers=viewer
                )
                assert confirmed.json()["status"] == "succeeded"
        for payment_id in (first["id"], second_id):
            fake.kill_on["refund"] = billing.pid
            with pytest.raises(httpx.TransportError):
                async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
                    await http.post(f"/api/v1/payments/{payment_id}/refund", headers=viewer)
            billing.wait_killed()
            billing.start()
        assert len(fake.refunds) == 2
        # 4a. The viewer asks again: the same refund, applied once.
        async with httpx.AsyncClient(base_url=billing.url, timeout=30) as http:
            refunded = await http.post(f"/api/v1/payments/{first['id']}/refund", headers=viewer)
            assert refunded.status_code == 200, refunded.text
            assert refunded.json()["status"] == "refunded"
            # 4b. Reconciliation finishes the other.
            scalar(
                database_url,
                "UPDATE refunds SET created_at = now() - interval '2 minutes',"
                " updated_at = now() - interval '2 minutes' WHERE status = 'pending' RETURNING 1",
            )
            assert "refunded=1" in billing.job("reconcile-payments")
            other = await http.get(f"/api/v1/payments/{second_id}", headers=viewer)
            assert other.json()["status"] == "refunded"
    finally:
        billing.stop()
    assert len(fake.refunds) == 2  # one per payment, never a second
    assert scalar(database_url, "SELECT count(*) FROM refunds WHERE status = 'succeeded'") == 2
    assert (
        scalar(database_url, "SELECT count(*) FROM outbox_events WHERE type = 'payment.refunded'")
        == 2
    )
    verify = billing.command("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
