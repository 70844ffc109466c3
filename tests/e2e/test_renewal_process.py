"""Auto-renewal as an operator runs it, once per provider on billing's own sandbox: one
``billing serve --no-worker`` process on the test database, viewers over HTTP with Auth-style
JWTs, marketing over the Admin API, and every job a ``billing jobs run`` process (nothing
runs in the background). A local HTTP server stands in for the Notification service and
records what ``deliver-outbox`` sends it.

A one-month subscription is made due now by ``BILLING_RENEW_BEFORE=P40D`` in the job's
environment (and the reminder by ``BILLING_REMIND_BEFORE=P40D``), not by waiting a month;
declines are retried on ``BILLING_RENEW_RETRY=PT1S,PT2S``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from billing.auth import issue_token
from billing.db import libpq_url
from billing.subscriptions.periods import add_months
from tests.e2e.test_money_path_process import TOKENS, Billing, viewer_headers
from tests.e2e.test_serve_process import BILLING
from tests.integration.checkout_helpers import PROVIDERS
from tests.local_http import QuietHandler, serving

DUE_NOW = {"BILLING_RENEW_BEFORE": "P40D"}  # a one-month period ends well within 40 days
RETRY_SOON = {**DUE_NOW, "BILLING_RENEW_RETRY": "PT1S,PT2S"}
PRICE = 49900
# Charges of a saved method without the viewer, at each sandbox (its own records).
SANDBOX_CHARGES = {
    "yookassa": "SELECT count(*) FROM sandbox_payments WHERE metadata -> '$sandbox' ? 'method_id'",
    "stripe": "SELECT count(*) FROM sandbox_stripe_sessions"
    " WHERE metadata -> '$sandbox' ->> 'kind' = 'payment_intent'",
}
# The viewer topped up the card at their bank: the sandbox's saved card pays from now on.
TOP_UP = {
    "yookassa": "UPDATE sandbox_payments"
    " SET metadata = jsonb_set(metadata, '{$sandbox,card}', '\"ok\"') WHERE id = %s",
    "stripe": "UPDATE sandbox_stripe_payment_methods SET card = 'ok' WHERE id = %s",
}
RENEWAL_PAYMENTS = (
    "SELECT p.user_id, p.status FROM payments p JOIN invoices i ON i.id = p.invoice_id"
    " WHERE i.kind = 'renewal' ORDER BY p.created_at"
)


class NotificationSink:
    """The Notification service: accepts every event (200) and keeps what it was sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def of(self, user_id: uuid.UUID, event_type: str) -> list[dict[str, Any]]:
        """The ``data`` of each event of this type for this viewer, in the order received."""
        with self._lock:
            return [
                event["data"]
                for event in self.received
                if event["user_id"] == str(user_id) and event["type"] == event_type
            ]

    @contextmanager
    def serving(self) -> Iterator[str]:
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    sink.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        with serving(Handler) as url:
            yield f"{url}/events"


@dataclass
class Operator:
    """The running ``billing serve`` of one provider, its jobs, and the Notification sink."""

    provider: str
    billing: Billing
    sink: NotificationSink
    database_url: str

    @staticmethod
    def _counts(name: str, output: str) -> dict[str, int]:
        """``renew-subscriptions: charged=1 declined=0 …`` → ``{"charged": 1, …}``."""
        head, _, counts = output.strip().partition(": ")
        assert head == name, output
        return {key: int(value) for key, value in (pair.split("=") for pair in counts.split())}

    def job(self, name: str, **env: str) -> dict[str, int]:
        """``billing jobs run NAME`` with the server's settings and ``env``: what it did."""
        [report] = self.jobs_at_once(name, 1, **env)
        return report

    def jobs_at_once(self, name: str, count: int, **env: str) -> list[dict[str, int]]:
        processes = [
            subprocess.Popen(
                [BILLING, "jobs", "run", name],
                env={**self.billing.env, **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        reports = []
        for process in processes:
            output, errors = process.communicate(timeout=120)
            assert process.returncode == 0, errors
            reports.append(self._counts(name, output))
        return reports

    def deliver(self) -> None:
        """One ``deliver-outbox`` run: every event delivered, and each only once."""
        report = self.job("deliver-outbox")
        assert report.get("failed", 0) == 0, report
        assert self.scalar("SELECT count(*) FROM outbox_events WHERE status <> 'delivered'") == 0
        ids = [event["id"] for event in self.sink.received]
        assert len(ids) == len(set(ids)), "an event delivered twice"

    def scalar(self, query: str, *params: object) -> Any:
        [row] = self.rows(query, *params)
        return row[0]

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(libpq_url(self.database_url)) as connection:
            return connection.execute(query, params).fetchall()

    def sandbox_charges(self) -> int:
        return int(self.scalar(SANDBOX_CHARGES[self.provider]))


@pytest.fixture(scope="module", params=PROVIDERS)
def operator(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """One server process per provider for the whole module; each test has its own viewers
    (and starts from empty tables, as every test does)."""
    provider: str = request.param
    sink = NotificationSink()
    with sink.serving() as notify_url:
        billing = Billing(
            database_url,
            tmp_path_factory.mktemp(f"renewals-{provider}"),
            BILLING_PROVIDER=provider,
            BILLING_NOTIFY_URL=notify_url,
        )
        # The job processes reach the sandbox (inside the server) at the server's address.
        billing.env["BILLING_PUBLIC_URL"] = billing.url
        billing.start()
        try:
            yield Operator(provider, billing, sink, database_url)
        finally:
            billing.stop()
    assert billing.process is not None and billing.process.returncode == 0


@pytest.fixture
async def http(operator: Operator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=operator.billing.url, timeout=30) as client:
        yield client


MARKETING = {"Authorization": f"Bearer {issue_token(TOKENS, str(uuid.uuid4()), ['marketing'])}"}


async def admin(http: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]) -> Any:
    """Marketing's call to the Admin API."""
    answer = await http.request(method, f"/api/v1/admin{path}", json=body, headers=MARKETING)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def new_tariff(http: httpx.AsyncClient) -> str:
    tariff = await admin(http, "POST", "/tariffs", {
        "code": "premium", "name": "Premium", "role": "premium", "monthly_price": PRICE,
        "is_active": True,
    })  # fmt: skip
    return str(tariff["id"])


@dataclass
class Viewer:
    user_id: uuid.UUID
    headers: dict[str, str]
    http: httpx.AsyncClient

    async def get(self, path: str) -> Any:
        answer = await self.http.get(f"/api/v1{path}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def post(self, path: str) -> httpx.Response:
        return await self.http.post(f"/api/v1{path}", headers=self.headers)

    async def delete(self, path: str) -> httpx.Response:
        return await self.http.delete(f"/api/v1{path}", headers=self.headers)

    async def subscription(self) -> dict[str, Any]:
        [subscription] = await self.get("/subscriptions")
        return subscription

    async def renewal_payment(self) -> dict[str, Any]:
        newest = (await self.get("/payments"))[0]
        assert (await self.get(f"/invoices/{newest['invoice_id']}"))["kind"] == "renewal"
        return dict(newest)


async def subscribed_saving(http: httpx.AsyncClient, tariff_id: str, card: str = "ok") -> Viewer:
    """A viewer who bought a month with ``save_payment_method: true`` and paid at the
    sandbox's page with the test ``card``."""
    user_id = uuid.uuid4()
    viewer = Viewer(user_id, viewer_headers(user_id), http)
    invoice = await http.post(
        "/api/v1/invoices", json={"tariff_id": tariff_id, "months": 1}, headers=viewer.headers
    )
    assert invoice.status_code == 201, invoice.text
    started = await http.post(
        f"/api/v1/invoices/{invoice.json()['id']}/payments",
        json={"save_payment_method": True},
        headers=viewer.headers,
    )
    assert started.status_code == 201, started.text
    paid = await http.post(started.json()["confirmation_url"], data={"action": "pay", "card": card})
    assert paid.status_code in (200, 303), paid.text
    # The viewer's return asks the provider (the sandbox's notification may still be on
    # its way): idempotent either way.
    confirmed = await viewer.post(f"/payments/{started.json()['id']}/confirm")
    assert confirmed.json()["status"] == "succeeded", confirmed.text
    subscription = await viewer.subscription()
    assert subscription["auto_renew"] is True
    [method] = await viewer.get("/payment-methods")
    assert subscription["payment_method_id"] == method["id"]
    return viewer


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_the_viewer_is_told_and_charged_today_s_price_with_today_s_discount(
    operator: Operator, http: httpx.AsyncClient
) -> None:
    tariff_id = await new_tariff(http)
    viewer = await subscribed_saving(http, tariff_id)
    before = await viewer.subscription()
    # Since the purchase marketing raised the price and gave this viewer 20 % off.
    await admin(http, "PATCH", f"/tariffs/{tariff_id}", {"monthly_price": 59900})
    await admin(http, "PUT", f"/users/{viewer.user_id}/discount", {"percent": 20})
    today = 59900 - 11980

    # First the reminder (the 3-day lead made 40 days, so that this period gets one).
    assert operator.job("remind-expiring", BILLING_REMIND_BEFORE="P40D")["reminded"] == 1
    assert operator.job("renew-subscriptions", **DUE_NOW) == {
        "charged": 1, "declined": 0, "unknown": 0, "failed": 0,
    }  # fmt: skip
    renewal = await viewer.renewal_payment()
    assert (renewal["status"], renewal["amount"]) == ("succeeded", today)
    invoice = await viewer.get(f"/invoices/{renewal['invoice_id']}")
    assert (invoice["base_amount"], invoice["total_amount"]) == (59900, today)
    assert invoice["discount"] == {"source": "personal", "percent": 20, "amount": 11980}
    after = await viewer.subscription()
    end = add_months(moment(before["current_period_end"]), 1)  # the same month, from its end
    assert moment(after["current_period_end"]) == end
    assert after["auto_renew"] is True
    # The next period ends two months out: not due even 40 days ahead.
    assert operator.job("renew-subscriptions", **DUE_NOW)["charged"] == 0
    assert operator.sandbox_charges() == 1

    operator.deliver()
    [reminder] = operator.sink.of(viewer.user_id, "subscription.expiring")
    assert reminder["auto_renew"] is True
    assert (reminder["renewal_amount"], reminder["currency"]) == (today, "RUB")
    assert moment(reminder["renews_at"]) == moment(before["renews_at"])  # the server's P1D
    assert moment(reminder["current_period_end"]) == moment(before["current_period_end"])
    assert [paid["amount"] for paid in operator.sink.of(viewer.user_id, "payment.succeeded")] == [
        PRICE, today,
    ]  # fmt: skip
    [renewed] = operator.sink.of(viewer.user_id, "subscription.renewed")
    assert (renewed["amount"], renewed["currency"], renewed["months"]) == (today, "RUB", 1)
    assert renewed["payment_id"] == renewal["id"]
    assert moment(renewed["current_period_end"]) == end


async def test_two_job_runs_at_once_charge_once_and_the_renewal_is_refundable(
    operator: Operator, http: httpx.AsyncClient
) -> None:
    viewer = await subscribed_saving(http, await new_tariff(http))
    before = await viewer.subscription()

    reports = operator.jobs_at_once("renew-subscriptions", 2, **DUE_NOW)
    assert sorted(report["charged"] for report in reports) == [0, 1], reports
    assert operator.rows(RENEWAL_PAYMENTS) == [(viewer.user_id, "succeeded")]
    assert operator.sandbox_charges() == 1

    renewal = await viewer.renewal_payment()
    assert moment(renewal["refundable_until"]) > datetime.now(UTC)
    refunded = await viewer.post(f"/payments/{renewal['id']}/refund")
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    after = await viewer.subscription()
    assert after["current_period_end"] == before["current_period_end"]  # the month taken back
    operator.deliver()
    [told] = operator.sink.of(viewer.user_id, "payment.refunded")
    assert (told["payment_id"], told["amount"]) == (renewal["id"], PRICE)
    verify = operator.billing.command("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


ATTEMPTS = (
    "SELECT attempt, status, reason, created_at, next_attempt_at FROM renewal_attempts"
    " ORDER BY attempt"
)


def wait_until(moment_: datetime) -> None:
    time.sleep(max(0.0, (moment_ - datetime.now(UTC)).total_seconds()) + 0.05)


async def test_a_soft_decline_is_retried_on_schedule_then_succeeds(
    operator: Operator, http: httpx.AsyncClient
) -> None:
    viewer = await subscribed_saving(
        http, await new_tariff(http), card="declines_later_insufficient_funds"
    )
    before = await viewer.subscription()
    assert operator.job("renew-subscriptions", **RETRY_SOON)["declined"] == 1
    [(_, status, reason, first_at, retry_at)] = operator.rows(ATTEMPTS)
    assert (status, reason) == ("declined", "insufficient_funds")
    assert retry_at == first_at + timedelta(seconds=1)  # PT1S after the first attempt

    wait_until(retry_at)
    assert operator.job("renew-subscriptions", **RETRY_SOON)["declined"] == 1
    second = operator.rows(ATTEMPTS)[1]
    assert second[:3] == (2, "declined", "insufficient_funds")
    assert second[3] >= retry_at  # tried when planned, not before
    assert second[4] == first_at + timedelta(seconds=2)  # PT2S

    # The viewer tops up the card at their bank; the last retry goes through.
    [(card,)] = operator.rows(
        "SELECT provider_method_id FROM payment_methods WHERE user_id = %s", viewer.user_id
    )
    assert operator.rows(TOP_UP[operator.provider] + " RETURNING id", card) == [(card,)]
    wait_until(second[4])
    assert operator.job("renew-subscriptions", **RETRY_SOON)["charged"] == 1
    assert [row[:2] for row in operator.rows(ATTEMPTS)] == [
        (1, "declined"), (2, "declined"), (3, "succeeded"),
    ]  # fmt: skip
    after = await viewer.subscription()
    end = add_months(moment(before["current_period_end"]), 1)
    assert moment(after["current_period_end"]) == end
    assert operator.sandbox_charges() == 3

    operator.deliver()
    failures = operator.sink.of(viewer.user_id, "subscription.renewal_failed")
    assert [(told["attempt"], told["reason"], told["amount"]) for told in failures] == [
        (1, "insufficient_funds", PRICE), (2, "insufficient_funds", PRICE),
    ]  # fmt: skip
    assert [moment(told["next_attempt_at"]) for told in failures] == [retry_at, second[4]]
    [renewed] = operator.sink.of(viewer.user_id, "subscription.renewed")
    assert (renewed["amount"], moment(renewed["current_period_end"])) == (PRICE, end)


async def test_a_hard_decline_stops_and_the_viewer_pays_by_hand(
    operator: Operator, http: httpx.AsyncClient
) -> None:
    viewer = await subscribed_saving(http, await new_tariff(http), card="declines_later_expired")
    before = await viewer.subscription()
    assert operator.job("renew-subscriptions", **RETRY_SOON)["declined"] == 1
    [(_, status, reason, first_at, retry_at)] = operator.rows(ATTEMPTS)
    assert (status, reason, retry_at) == ("declined", "card_expired", None)
    operator.deliver()
    [failed] = operator.sink.of(viewer.user_id, "subscription.renewal_failed")
    assert (failed["reason"], failed["attempt"], failed["next_attempt_at"]) == (
        "card_expired", 1, None,
    )  # fmt: skip

    wait_until(first_at + timedelta(seconds=1))  # past where a soft decline's retry would be
    assert operator.job("renew-subscriptions", **RETRY_SOON) == {
        "charged": 0, "declined": 0, "unknown": 0, "failed": 0,
    }  # fmt: skip
    assert operator.sandbox_charges() == 1

    # The message's link: the renewal invoice's checkout, paid by hand with a card that pays.
    page = await http.get(failed["pay_url"])
    assert page.status_code == 303, page.text
    paid = await http.post(page.headers["location"], data={"action": "pay", "card": "ok"})
    assert paid.status_code in (200, 303), paid.text
    renewal = await viewer.renewal_payment()
    confirmed = await viewer.post(f"/payments/{renewal['id']}/confirm")
    assert confirmed.json()["status"] == "succeeded", confirmed.text
    after = await viewer.subscription()
    assert moment(after["current_period_end"]) == add_months(
        moment(before["current_period_end"]), 1
    )


async def test_cancel_resume_and_deleting_the_card_decide_who_is_charged(
    operator: Operator, http: httpx.AsyncClient
) -> None:
    tariff_id = await new_tariff(http)
    canceled, resumed, forgot = [await subscribed_saving(http, tariff_id) for _ in range(3)]

    for viewer in (canceled, resumed):
        subscription = await viewer.subscription()
        off = await viewer.post(f"/subscriptions/{subscription['id']}/cancel")
        assert off.status_code == 200, off.text
        assert (off.json()["auto_renew"], off.json()["renews_at"]) == (False, None)
        assert off.json()["access_until"] == subscription["access_until"]  # access unchanged
    on = await resumed.post(f"/subscriptions/{(await resumed.subscription())['id']}/resume")
    assert on.status_code == 200, on.text
    assert on.json()["auto_renew"] is True and on.json()["renews_at"] is not None

    [method] = await forgot.get("/payment-methods")
    deleted = await forgot.delete(f"/payment-methods/{method['id']}")
    assert deleted.status_code == 204
    assert await forgot.get("/payment-methods") == []
    subscription = await forgot.subscription()
    assert subscription["auto_renew"] is False
    again = await forgot.post(f"/subscriptions/{subscription['id']}/resume")
    assert again.status_code == 409
    assert again.json()["code"] == "payment_method_required"

    assert operator.job("renew-subscriptions", **DUE_NOW)["charged"] == 1
    assert operator.rows(RENEWAL_PAYMENTS) == [(resumed.user_id, "succeeded")]
    assert operator.sandbox_charges() == 1
