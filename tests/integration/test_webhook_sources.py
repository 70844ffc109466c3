"""ЮKassa notifications are read only when they come from BILLING_YOOKASSA_TRUSTED_NETWORKS
(by default ЮKassa's published networks once the API address is ЮKassa's); behind a proxy,
X-Forwarded-For counts only when the proxy is in BILLING_TRUSTED_PROXIES. A notification
from anywhere else is a 403 ``forbidden`` and changes nothing. Each request comes from the
peer address given to httpx's ASGI transport, as a socket would give it to the app."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Payment, PaymentStatus
from tests.conftest import TEST_JWT_SECRET, LoopbackTransport
from tests.integration.checkout_helpers import add_tariff, make_viewer, notification

Sessions = async_sessionmaker[AsyncSession]
YOOKASSA_PEER = "185.71.76.10"  # inside ЮKassa's published 185.71.76.0/27
STRANGER = "203.0.113.9"
PROXY = "10.0.0.2"
WEBHOOK = "/api/v1/webhooks/yookassa"


def settings_with(database_url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url, data_dir=tmp_path / "data", jwt_secret=TEST_JWT_SECRET,
        public_url="http://billing.test", **extra,
    )  # fmt: skip


@asynccontextmanager
async def running(settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    loopback = LoopbackTransport(public_host="billing.test")
    app = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = app
    async with LifespanManager(app):
        yield app


def from_peer(app: FastAPI, host: str) -> httpx.AsyncClient:
    """A client whose requests reach the app from ``host``, as the socket's peer."""
    transport = httpx.ASGITransport(app=app, client=(host, 40123))
    return httpx.AsyncClient(transport=transport, base_url="http://billing.test")


async def payment_status(sessions: Sessions, payment_id: str) -> PaymentStatus:
    async with sessions() as session:
        return (await session.get_one(Payment, uuid.UUID(payment_id))).status


async def paid_without_telling(
    app: FastAPI, sessions: Sessions, auth_headers: Callable[..., dict[str, str]]
) -> tuple[str, str]:
    """A payment the viewer paid on the sandbox's page that billing has not heard about:
    (billing's payment id, the provider's payment id)."""
    tariff = await add_tariff(sessions)
    async with from_peer(app, "198.51.100.20") as browser:
        viewer = make_viewer(browser, auth_headers)
        invoice = await viewer.issue_invoice(tariff.id)
        payment = await viewer.start_payment(invoice["id"])
        await viewer.press(payment, "pay", notify=False)
    async with sessions() as session:
        provider_id = (await session.get_one(Payment, uuid.UUID(payment["id"]))).provider_payment_id
    assert provider_id is not None
    assert await payment_status(sessions, payment["id"]) == PaymentStatus.PENDING
    return payment["id"], provider_id


@pytest.fixture
def configured(database_url: str, tmp_path: Path) -> Settings:
    """The sandbox as ЮKassa, with the networks and a proxy configured explicitly."""
    return settings_with(
        database_url, tmp_path,
        yookassa_trusted_networks="185.71.76.0/27, 2a02:5180::/32", trusted_proxies="10.0.0.0/8",
    )  # fmt: skip


def assert_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("peer", "forwarded"),
    [(YOOKASSA_PEER, None), ("2a02:5180::7", None), (PROXY, YOOKASSA_PEER),
     (PROXY, f"{STRANGER}, {YOOKASSA_PEER}")],
)  # fmt: skip
async def test_a_notification_from_yookassa_s_networks_settles_the_payment(
    configured: Settings,
    clock: FrozenClock,
    sessions: Sessions,
    auth_headers: Callable[..., dict[str, str]],
    peer: str,
    forwarded: str | None,
) -> None:
    async with running(configured, clock) as app:
        payment_id, provider_id = await paid_without_telling(app, sessions, auth_headers)
        webhook = notification(configured, "succeeded", provider_id)
        headers = webhook.headers | ({"X-Forwarded-For": forwarded} if forwarded else {})
        async with from_peer(app, peer) as yookassa:
            response = await yookassa.post(WEBHOOK, content=webhook.content, headers=headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted"}
    assert await payment_status(sessions, payment_id) == PaymentStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("peer", "forwarded"),
    [(STRANGER, None), ("127.0.0.1", None), ("2a02:5181::7", None),
     (STRANGER, YOOKASSA_PEER),  # not a trusted proxy: its header is not believed
     (PROXY, f"{YOOKASSA_PEER}, {STRANGER}"),  # the proxy saw the stranger; the rest is forged
     (PROXY, None), (PROXY, "unknown")],
)  # fmt: skip
async def test_a_notification_from_elsewhere_is_403_and_changes_nothing(
    configured: Settings,
    clock: FrozenClock,
    sessions: Sessions,
    auth_headers: Callable[..., dict[str, str]],
    peer: str,
    forwarded: str | None,
) -> None:
    async with running(configured, clock) as app:
        payment_id, provider_id = await paid_without_telling(app, sessions, auth_headers)
        webhook = notification(configured, "succeeded", provider_id)
        headers = webhook.headers | ({"X-Forwarded-For": forwarded} if forwarded else {})
        async with from_peer(app, peer) as stranger:
            response = await stranger.post(WEBHOOK, content=webhook.content, headers=headers)
            # Refused before the body is read: not even a malformed one gets its 400.
            malformed = await stranger.post(WEBHOOK, content=b"{", headers=headers)

    assert_forbidden(response)
    assert_forbidden(malformed)
    assert await payment_status(sessions, payment_id) == PaymentStatus.PENDING


async def test_without_trusted_proxies_a_forwarded_header_is_never_believed(
    database_url: str,
    tmp_path: Path,
    clock: FrozenClock,
    sessions: Sessions,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    settings = settings_with(database_url, tmp_path, yookassa_trusted_networks="185.71.76.0/27")
    async with running(settings, clock) as app:
        payment_id, provider_id = await paid_without_telling(app, sessions, auth_headers)
        webhook = notification(settings, "succeeded", provider_id)
        async with from_peer(app, PROXY) as proxy:
            response = await proxy.post(
                WEBHOOK, content=webhook.content,
                headers=webhook.headers | {"X-Forwarded-For": YOOKASSA_PEER},
            )  # fmt: skip

    assert_forbidden(response)
    assert await payment_status(sessions, payment_id) == PaymentStatus.PENDING


def yookassa_notification(payment_id: str) -> bytes:
    body = {"type": "notification", "event": "payment.succeeded", "object": {"id": payment_id}}
    return json.dumps(body).encode()


async def test_with_the_real_yookassa_the_published_networks_are_the_default(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = settings_with(database_url, tmp_path, yookassa_api_url="https://api.yookassa.ru/v3")
    body = yookassa_notification("2f6b0d3a-000f-5000-9000-1b2c3d4e5f60")  # no payment of ours
    with respx.mock(assert_all_called=False) as yookassa_api:
        reads = yookassa_api.route(host="api.yookassa.ru").respond(404)
        async with running(settings, clock) as app:
            async with from_peer(app, STRANGER) as stranger:
                refused = await stranger.post(WEBHOOK, content=body)
            async with from_peer(app, "77.75.156.35") as yookassa:
                accepted = await yookassa.post(WEBHOOK, content=body)

    assert_forbidden(refused)
    assert accepted.status_code == 200, accepted.text
    assert reads.call_count == 0  # an unknown payment is not even asked about


async def test_with_the_sandbox_a_notification_from_anywhere_is_read(
    database_url: str,
    tmp_path: Path,
    clock: FrozenClock,
    sessions: Sessions,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    settings = settings_with(database_url, tmp_path)
    async with running(settings, clock) as app:
        payment_id, provider_id = await paid_without_telling(app, sessions, auth_headers)
        webhook = notification(settings, "succeeded", provider_id)
        async with from_peer(app, STRANGER) as anyone:
            response = await webhook.send(anyone)

    assert response.status_code == 200, response.text
    assert await payment_status(sessions, payment_id) == PaymentStatus.SUCCEEDED


async def test_stripe_s_webhook_is_not_held_to_yookassa_s_networks(
    configured: Settings, clock: FrozenClock
) -> None:
    async with running(configured, clock) as app, from_peer(app, STRANGER) as stranger:
        unsigned = await stranger.post(
            "/api/v1/webhooks/stripe", content=b"{}", headers={"Content-Type": "application/json"}
        )

    # Checked by its signature instead: refused as unsigned, not for where it came from.
    assert unsigned.status_code == 400, unsigned.text
    assert unsigned.json()["code"] == "invalid_notification"
