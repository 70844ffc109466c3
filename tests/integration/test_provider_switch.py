"""Every payment goes through its own provider's adapter: switching ``BILLING_PROVIDER`` and
restarting leaves older payments confirmable, refundable, reconciled and notified. And the
sandbox exists only while a provider's address points at it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.checkout.tasks import reconcile_payments
from billing.clock import FrozenClock
from billing.config import SANDBOX_SECRET_KEY, SANDBOX_SHOP_ID, Settings
from billing.models import Payment
from billing.sandbox.models import SandboxRefund, SandboxStripeRefund
from tests.conftest import TEST_JWT_SECRET, LoopbackTransport
from tests.integration.checkout_helpers import Viewer, add_tariff, count, events

Sessions = async_sessionmaker[AsyncSession]
REFUNDS_AT = {"yookassa": SandboxRefund, "stripe": SandboxStripeRefund}


def configured(database_url: str, data_dir: Path, provider: str, **addresses: str) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://billing.test",
        provider=provider,
        **addresses,
    )


@asynccontextmanager
async def started(settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh process, as far as billing can tell: its own app, adapters and clients."""
    loopback = LoopbackTransport(public_host="billing.test")
    app = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = app
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.mark.parametrize(("before", "after"), [("yookassa", "stripe"), ("stripe", "yookassa")])
async def test_payments_outlive_a_switch_of_provider(
    before: str,
    after: str,
    database_url: str,
    tmp_path: Path,
    clock: FrozenClock,
    sessions: Sessions,
    auth_headers: Callable[..., dict[str, str]],
) -> None:
    tariff = await add_tariff(sessions)
    user_id = uuid.uuid4()
    headers = auth_headers(user_id)
    async with started(configured(database_url, tmp_path, before), clock) as http:
        viewer = Viewer(user_id, headers, http)
        to_confirm, to_refund, to_reconcile, to_notify = [
            await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
            for _ in range(4)
        ]
        await viewer.press(to_confirm, "pay", notify=False)
        await viewer.press(to_refund, "pay")
        await viewer.press(to_reconcile, "pay", notify=False)
        assert (await viewer.payment(to_refund["id"]))["status"] == "succeeded"

    async with started(configured(database_url, tmp_path, after), clock) as http:
        viewer = Viewer(user_id, headers, http)
        confirmed = await http.post(f"/api/v1/payments/{to_confirm['id']}/confirm", headers=headers)
        assert confirmed.json()["status"] == "succeeded"

        refunded = await http.post(f"/api/v1/payments/{to_refund['id']}/refund", headers=headers)
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["status"] == "refunded"
        assert await count(sessions, REFUNDS_AT[before]) == 1
        assert await count(sessions, REFUNDS_AT[after]) == 0

        # The older provider's page still notifies its own (still live) webhook.
        await viewer.press(to_notify, "pay")
        assert (await viewer.payment(to_notify["id"]))["status"] == "succeeded"

        clock.advance(timedelta(minutes=2))
        report = await reconcile_payments(
            sessions,
            http.app.state.providers,  # type: ignore[attr-defined]
            now=clock.now(),
            settings=http.app.state.settings,  # type: ignore[attr-defined]
        )
        assert (report["checked"], report["succeeded"], report["failed"]) == (1, 1, 0)
        assert (await viewer.payment(to_reconcile["id"]))["status"] == "succeeded"

        fresh = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
        assert fresh["provider"] == after

    async with sessions() as session:
        providers = {p.id: p.provider for p in await session.scalars(select(Payment))}
    assert sorted(providers.values()) == sorted([before] * 4 + [after])
    assert len(await events(sessions, "payment.succeeded")) == 4
    assert len(await events(sessions, "payment.refunded")) == 1


async def test_the_sandbox_is_gone_when_both_providers_point_elsewhere(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    sandbox_keys = httpx.BasicAuth(SANDBOX_SHOP_ID, SANDBOX_SECRET_KEY)
    real = {"yookassa_api_url": "https://api.yookassa.ru/v3",
            "stripe_api_base": "https://api.stripe.com"}  # fmt: skip
    async with started(configured(database_url, tmp_path, "yookassa", **real), clock) as http:
        for method, path in [
            ("GET", f"/sandbox/checkout/{uuid.uuid4()}"),
            ("POST", f"/sandbox/checkout/{uuid.uuid4()}"),
            ("POST", "/sandbox/v3/payments"),
            ("GET", "/sandbox/stripe/c/pay/cs_test_1"),
            ("POST", "/sandbox/stripe/v1/checkout/sessions"),
        ]:
            answer = await http.request(method, path, auth=sandbox_keys, json={})
            assert answer.status_code == 404, (method, path)
            assert answer.json()["code"] == "not_found"

    # Only ЮKassa real: the Stripe sandbox stays, the ЮKassa one is gone.
    only = {"yookassa_api_url": "https://api.yookassa.ru/v3"}
    async with started(configured(database_url, tmp_path, "stripe", **only), clock) as http:
        gone = await http.post("/sandbox/v3/payments", auth=sandbox_keys, json={})
        assert gone.status_code == 404
        unauthenticated = await http.post("/sandbox/stripe/v1/checkout/sessions")
        assert unauthenticated.status_code == 401  # Stripe's answer: the sandbox is there
