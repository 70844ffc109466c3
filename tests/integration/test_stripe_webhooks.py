"""Billing's ``POST /api/v1/webhooks/stripe`` with the Stripe sandbox: signatures checked
(valid, wrong secret, stale, altered, missing), genuine deliveries replayed, refund events,
and the storage of handled events."""

from __future__ import annotations

import json
import time
import types
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.checkout.providers.base import Notification
from billing.checkout.webhook_events import (
    already_processed,
    notified_payment,
    remember_processed,
)
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Payment
from tests.conftest import LoopbackTransport
from tests.integration.checkout_helpers import (
    Delivery,
    Viewer,
    add_tariff,
    events,
    make_viewer,
    notification,
    stripe_signed,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
WEBHOOK = "/api/v1/webhooks/stripe"
SESSIONS_API = "/sandbox/stripe/v1/checkout/sessions/"


@dataclass
class Tap:
    """What passes between billing and the sandbox: the sandbox's deliveries to the webhook,
    and billing's reads of sessions."""

    deliveries: list[Delivery] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)


class TappedLoopback(LoopbackTransport):
    def __init__(self, public_host: str, tap: Tap) -> None:
        super().__init__(public_host)
        self.tap = tap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.public_host:
            if request.url.path == WEBHOOK:
                headers = {k: v for k, v in request.headers.items() if k.startswith("stripe-")}
                self.tap.deliveries.append(Delivery(WEBHOOK, await request.aread(), headers))
            elif request.method == "GET" and request.url.path.startswith(SESSIONS_API):
                self.tap.reads.append(request.url.path.removeprefix(SESSIONS_API))
        return await super().handle_async_request(request)


@pytest.fixture
def provider_name() -> str:
    return "stripe"


@pytest.fixture
def tap() -> Tap:
    return Tap()


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, tap: Tap) -> AsyncIterator[FastAPI]:
    loopback = TappedLoopback("billing.test", tap)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


async def session_id(sessions: Sessions, payment: dict[str, object]) -> str:
    async with sessions() as session:
        stored = await session.get_one(Payment, uuid.UUID(str(payment["id"])))
        assert stored.provider_payment_id is not None
        return stored.provider_payment_id


async def paid_unheard(viewer: Viewer, tariff_id: uuid.UUID) -> dict[str, object]:
    """Paid at Stripe, and billing has not heard of it yet."""
    invoice = await viewer.issue_invoice(tariff_id)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment, "pay", notify=False)
    return payment


# --- signatures -----------------------------------------------------------------------------


async def test_a_genuine_event_settles_the_payment(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, settings: Settings
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await paid_unheard(viewer, tariff.id)

    genuine = notification(settings, "succeeded", await session_id(sessions, payment))
    response = await genuine.send(client)

    assert response.status_code == 200
    assert (await viewer.payment(str(payment["id"])))["status"] == "succeeded"
    assert len(await events(sessions, "payment.succeeded")) == 1


def stale(delivery: Delivery) -> Delivery:
    body = json.loads(delivery.content)
    content, headers = stripe_signed(body, "whsec_sandbox", timestamp=int(time.time()) - 301)
    return Delivery(WEBHOOK, content, headers)


def altered(delivery: Delivery) -> Delivery:
    body = json.loads(delivery.content)
    body["data"]["object"]["amount_total"] = 1
    return Delivery(WEBHOOK, json.dumps(body).encode(), delivery.headers)


def unsigned(delivery: Delivery) -> Delivery:
    return Delivery(WEBHOOK, delivery.content, {"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "spoil",
    [
        lambda settings, sid: notification(settings, "succeeded", sid, secret="whsec_other"),
        lambda settings, sid: stale(notification(settings, "succeeded", sid)),
        lambda settings, sid: altered(notification(settings, "succeeded", sid)),
        lambda settings, sid: unsigned(notification(settings, "succeeded", sid)),
    ],
    ids=["wrong-secret", "stale-timestamp", "altered-body", "missing-header"],
)
async def test_an_event_not_freshly_signed_with_billing_s_secret_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    settings: Settings,
    tap: Tap,
    spoil: Callable[[Settings, str], Delivery],
) -> None:
    assert settings.stripe_webhook_secret == "whsec_sandbox"
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await paid_unheard(viewer, tariff.id)  # truly paid: only the news is bad
    provider_session = await session_id(sessions, payment)
    tap.reads.clear()

    response = await spoil(settings, provider_session).send(client)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_notification"
    assert tap.reads == []  # not even a trigger: the session was not read
    assert (await viewer.payment(str(payment["id"])))["status"] == "pending"
    assert await viewer.subscriptions() == []
    assert await events(sessions, "payment.succeeded") == []


# --- replays --------------------------------------------------------------------------------


async def test_the_sandbox_s_own_delivery_replayed_settles_once(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, tap: Tap
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment)  # the sandbox sends checkout.session.completed, signed
    [delivery] = tap.deliveries
    assert delivery.headers["stripe-signature"].startswith("t=")

    replays = [await delivery.send(client) for _ in range(3)]

    assert [response.status_code for response in replays] == [200] * 3
    assert (await viewer.payment(payment["id"]))["status"] == "succeeded"
    assert len(await events(sessions, "payment.succeeded")) == 1
    assert len(await viewer.subscriptions()) == 1


async def test_a_delivery_replayed_after_the_tolerance_is_refused(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    tap: Tap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment, "decline")
    [delivery] = tap.deliveries
    # Six minutes on, for the SDK's signature check (its clock is the real one).
    later = time.time() + 360
    monkeypatch.setattr("stripe._webhook.time", types.SimpleNamespace(time=lambda: later))

    response = await delivery.send(client)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_notification"


async def test_a_replayed_event_is_not_even_re_read(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, tap: Tap
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment)
    [delivery] = tap.deliveries
    reads_after_first = len(tap.reads)

    assert (await delivery.send(client)).status_code == 200

    assert len(tap.reads) == reads_after_first


# --- refunds --------------------------------------------------------------------------------


async def test_the_refund_event_after_billing_s_own_refund_changes_nothing_more(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    tap: Tap,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    clock.advance(timedelta(minutes=10))

    refunded = await client.post(f"/api/v1/payments/{payment['id']}/refund", headers=viewer.headers)
    assert refunded.status_code == 200, refunded.text
    await app.state.sandbox_stripe_notifier.drain()  # charge.refunded, after the response

    assert [json.loads(d.content)["type"] for d in tap.deliveries] == [
        "checkout.session.completed", "charge.refunded",
    ]  # fmt: skip
    assert (await tap.deliveries[-1].send(client)).status_code == 200  # and once more
    assert (await viewer.payment(payment["id"]))["status"] == "refunded"
    assert len(await events(sessions, "payment.refunded")) == 1
    assert len(await events(sessions, "role.revoke")) == 1


async def test_a_refund_made_in_stripe_s_dashboard_takes_the_months_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    async with sessions() as session:
        stored = await session.get_one(Payment, uuid.UUID(payment["id"]))
        intent = stored.provider_data["payment_intent"]

    # The shop owner refunds in Stripe's dashboard (the sandbox's API here).
    refund = await client.post(
        "/sandbox/stripe/v1/refunds",
        content=f"payment_intent={intent}",
        headers={"Authorization": f"Bearer {settings.stripe_secret_key}"},
    )
    assert refund.status_code == 200, refund.text
    await app.state.sandbox_stripe_notifier.drain()  # its charge.refunded event

    assert (await viewer.payment(payment["id"]))["status"] == "refunded"
    assert len(await events(sessions, "payment.refunded")) == 1


# --- storage of handled events, and which payment an event names ----------------------------


async def test_an_event_is_remembered_once_per_provider(
    sessions: Sessions, clock: FrozenClock
) -> None:
    seen = lambda provider: already_processed(sessions, provider=provider, event_id="evt_1")  # noqa: E731
    assert await seen("stripe") is False

    first = await remember_processed(sessions, provider="stripe", event_id="evt_1", now=clock.now())
    again = await remember_processed(sessions, provider="stripe", event_id="evt_1", now=clock.now())

    assert (first, again) == (True, False)
    assert await seen("stripe") is True
    assert await seen("yookassa") is False  # event ids are the provider's own


async def test_an_event_names_a_payment_by_session_or_by_payment_intent(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    async with sessions() as session:
        stored = await session.get_one(Payment, uuid.UUID(payment["id"]))
        assert stored.provider_payment_id is not None
        intent = stored.provider_data["payment_intent"]
        assert intent.startswith("pi_")

        by_session = lambda reference: Notification(  # noqa: E731
            event="checkout.session.completed", provider_payment_id=reference
        )
        by_intent = lambda reference: Notification(  # noqa: E731
            event="charge.refunded", provider_payment_id=reference, named_by="payment_intent"
        )
        named = [
            await notified_payment(session, provider="stripe", notification=notification)
            for notification in (
                by_session(stored.provider_payment_id),
                by_intent(intent),
                by_intent("pi_unknown"),
                by_session(intent),  # an intent is not a session id
            )
        ]
        other_provider = await notified_payment(
            session, provider="yookassa", notification=by_intent(intent)
        )

    assert [None if found is None else found.id for found in named] == [
        stored.id,
        stored.id,
        None,
        None,
    ]
    assert other_provider is None
