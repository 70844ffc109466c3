"""Scheduler jobs on the real database, moving time with the injectable clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import respx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.tasks import AuthRole, run_sync_roles, sync_roles
from billing.checkout.tasks import expire_invoices, reconcile_payments
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import AuditEntry, Invoice, PromoCode, PromoRedemption, Subscription, Tariff
from billing.subscriptions.tasks import expire_subscriptions, remind_expiring
from billing.worker import JOB_NAMES, Runtime, run_job
from tests.integration.checkout_helpers import add_tariff, both_providers, events, make_viewer

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
DAY = timedelta(days=1)


async def subscription_of(sessions: Sessions, user_id: uuid.UUID) -> Subscription:
    async with sessions() as session:
        subscription = await session.scalar(
            select(Subscription).where(Subscription.user_id == user_id)
        )
        assert subscription is not None
        return subscription


async def test_reminder_is_sent_once_per_period(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    await viewer.paid(tariff.id, months=1)
    end = (await subscription_of(sessions, viewer.user_id)).current_period_end
    in_3_days = settings.model_copy(update={"remind_before": 3 * DAY})
    remind = lambda: remind_expiring(sessions, now=clock.now(), settings=in_3_days)  # noqa: E731

    clock.set(end - 3 * DAY - timedelta(seconds=1))
    assert await remind() == {"reminded": 0, "failed": 0}  # not yet
    clock.set(end - 3 * DAY)
    assert await remind() == {"reminded": 1, "failed": 0}
    clock.advance(DAY)
    assert await remind() == {"reminded": 0, "failed": 0}  # once per period
    [reminder] = await events(sessions, "subscription.expiring")
    assert reminder.user_id == viewer.user_id
    assert reminder.payload["role"] == "premium"

    # A new period (paid again) gets its own reminder, once.
    await viewer.paid(tariff.id, months=1)
    new_end = (await subscription_of(sessions, viewer.user_id)).current_period_end
    clock.set(new_end - DAY)
    assert await remind() == {"reminded": 1, "failed": 0}
    assert await remind() == {"reminded": 0, "failed": 0}
    assert len(await events(sessions, "subscription.expiring")) == 2


async def test_grace_period_then_revoke(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    await viewer.paid(tariff.id, months=1)
    end = (await subscription_of(sessions, viewer.user_id)).current_period_end
    expire = lambda: expire_subscriptions(sessions, now=clock.now(), grace_period=2 * DAY)  # noqa: E731
    service = auth_headers("movie-api", "service")
    roles = lambda: client.get(f"/api/v1/users/{viewer.user_id}/entitlements", headers=service)  # noqa: E731

    clock.set(end - timedelta(seconds=1))
    assert await expire() == {"grace": 0, "expired": 0, "failed": 0}
    clock.set(end)
    assert await expire() == {"grace": 1, "expired": 0, "failed": 0}
    assert (await subscription_of(sessions, viewer.user_id)).status == "grace"
    [ended] = await events(sessions, "subscription.expired")
    assert ended.payload["role"] == "premium"
    assert (await roles()).json()["roles"] == ["premium"]  # access continues in grace

    clock.set(end + 2 * DAY - timedelta(seconds=1))
    assert await expire() == {"grace": 0, "expired": 0, "failed": 0}
    assert (await roles()).json()["roles"] == ["premium"]
    clock.set(end + 2 * DAY)
    assert await expire() == {"grace": 0, "expired": 1, "failed": 0}
    assert (await subscription_of(sessions, viewer.user_id)).status == "expired"
    assert [event.payload["role"] for event in await events(sessions, "role.revoke")] == ["premium"]
    assert (await roles()).json()["roles"] == []
    assert await expire() == {"grace": 0, "expired": 0, "failed": 0}  # nothing twice


async def test_paying_during_grace_restarts_from_now(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    await viewer.paid(tariff.id, months=1)
    end = (await subscription_of(sessions, viewer.user_id)).current_period_end
    clock.set(end + DAY)
    await expire_subscriptions(sessions, now=clock.now(), grace_period=2 * DAY)
    await viewer.paid(tariff.id, months=1)
    subscription = await subscription_of(sessions, viewer.user_id)
    assert subscription.status == "active"
    assert subscription.current_period_end > clock.now() + 27 * DAY


@both_providers
async def test_pending_payment_is_settled_by_reconciliation(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    paid_invoice = await viewer.issue_invoice(tariff.id)
    paid = await viewer.start_payment(paid_invoice["id"])
    await viewer.press(paid, "pay", notify=False)  # paid, but billing heard nothing
    declined_invoice = await viewer.issue_invoice(tariff.id)
    declined = await viewer.start_payment(declined_invoice["id"])
    await viewer.press(declined, "decline", notify=False)
    waiting_invoice = await viewer.issue_invoice(tariff.id)
    await viewer.start_payment(waiting_invoice["id"])  # the viewer is still on the page

    providers = app.state.providers
    reconcile = lambda: reconcile_payments(sessions, providers, now=clock.now(), settings=settings)  # noqa: E731
    assert (await reconcile())["checked"] == 0  # too young
    clock.advance(timedelta(minutes=2))
    report = await reconcile()
    # ЮKassa cancels a declined payment; Stripe keeps the session open for another card,
    # so the payment stays pending (until the viewer pays or the session expires).
    declined_ends = 1 if settings.provider == "yookassa" else 0
    assert report == {
        "checked": 3, "succeeded": 1, "canceled": declined_ends, "refunded": 0,
        "unreachable": 0, "failed": 0,
    }  # fmt: skip
    assert (await viewer.payment(paid["id"]))["status"] == "succeeded"
    assert (await viewer.payment(declined["id"]))["status"] == (
        "canceled" if declined_ends else "pending"
    )
    assert len(await events(sessions, "payment.succeeded")) == 1

    clock.advance(timedelta(minutes=1))
    again = await reconcile()
    assert again == {
        "checked": 2 - declined_ends, "succeeded": 0, "canceled": 0, "refunded": 0,
        "unreachable": 0, "failed": 0,
    }  # fmt: skip


@both_providers
async def test_two_workers_reconcile_each_payment_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewers = [make_viewer(client, auth_headers) for _ in range(8)]
    for viewer in viewers:
        invoice = await viewer.issue_invoice(tariff.id)
        payment = await viewer.start_payment(invoice["id"])
        await viewer.press(payment, "pay", notify=False)
    clock.advance(timedelta(minutes=2))
    reports = await asyncio.gather(
        reconcile_payments(sessions, app.state.providers, now=clock.now(), settings=settings),
        reconcile_payments(sessions, app.state.providers, now=clock.now(), settings=settings),
    )
    assert sum(report["checked"] for report in reports) == 8
    assert sum(report["succeeded"] for report in reports) == 8
    assert len(await events(sessions, "payment.succeeded")) == 8
    assert len(await events(sessions, "role.grant")) == 8


async def test_expired_invoices_release_their_promo_reservations(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    async with sessions() as session, session.begin():
        session.add(PromoCode(id=uuid.uuid4(), code="ONLYONE", percent=10, max_redemptions=1))
    first = make_viewer(client, auth_headers)
    await first.issue_invoice(tariff.id, promo_code="ONLYONE")
    second = make_viewer(client, auth_headers)
    taken = await client.post(
        "/api/v1/invoices",
        json={"tariff_id": str(tariff.id), "months": 1, "promo_code": "ONLYONE"},
        headers=second.headers,
    )
    assert taken.json()["code"] == "promo_code_exhausted"

    clock.advance(timedelta(minutes=30))
    assert await expire_invoices(sessions, now=clock.now()) == {
        "expired": 1,
        "released": 1,
        "failed": 0,
    }
    assert await expire_invoices(sessions, now=clock.now()) == {
        "expired": 0,
        "released": 0,
        "failed": 0,
    }
    async with sessions() as session:
        assert (await session.scalar(select(Invoice.status))) == "expired"
        assert (await session.scalar(select(PromoRedemption.status))) == "released"
        assert (await session.scalar(select(PromoCode.redemptions_count))) == 0

    invoice = await second.issue_invoice(tariff.id, promo_code="ONLYONE")  # free again
    assert invoice["promo_code"] == "ONLYONE"


async def test_sync_roles_keeps_tariffs_in_step(sessions: Sessions) -> None:
    await add_tariff(sessions, role="premium")
    report = await sync_roles(
        sessions,
        [AuthRole(name="premium"), AuthRole(name="Family HD", description="4 screens")],
        currency="RUB",
    )
    assert report == {"created": 1, "deactivated": 0, "restored": 0}
    async with sessions() as session:
        family = await session.scalar(select(Tariff).where(Tariff.role == "Family HD"))
        assert family is not None
        assert (family.code, family.is_active, family.monthly_price) == ("family-hd", False, None)
        assert family.description == "4 screens"

    # premium disappears from Auth: deactivated, kept, with its price and name.
    report = await sync_roles(sessions, [AuthRole(name="Family HD")], currency="RUB")
    assert report == {"created": 0, "deactivated": 1, "restored": 0}
    async with sessions() as session:
        premium = await session.scalar(select(Tariff).where(Tariff.role == "premium"))
        assert premium is not None
        assert (premium.is_active, premium.role_exists, premium.monthly_price) == (
            False,
            False,
            49900,
        )
        actions = set(await session.scalars(select(AuditEntry.action)))
        assert {"create", "role_removed"} <= actions

    report = await sync_roles(
        sessions, [AuthRole(name="Family HD"), AuthRole(name="premium")], currency="RUB"
    )
    assert report == {"created": 0, "deactivated": 0, "restored": 1}
    assert await sync_roles(
        sessions, [AuthRole(name="Family HD"), AuthRole(name="premium")], currency="RUB"
    ) == {
        "created": 0,
        "deactivated": 0,
        "restored": 0,
    }


@respx.mock
async def test_sync_roles_reads_the_auth_service(
    respx_mock: respx.MockRouter, sessions: Sessions, settings: Settings
) -> None:
    configured = settings.model_copy(update={"auth_url": "http://auth.test", "auth_token": "t0k"})
    route = respx_mock.get("http://auth.test/api/v1/roles").mock(
        return_value=httpx.Response(200, json=[{"name": "premium", "description": "HD"}])
    )
    async with httpx.AsyncClient() as client:
        assert await run_sync_roles(sessions, configured, client) == {
            "created": 1,
            "deactivated": 0,
            "restored": 0,
        }
    assert route.calls.last.request.headers["Authorization"] == "Bearer t0k"
    async with httpx.AsyncClient() as client:
        assert await run_sync_roles(sessions, settings, client) == {"skipped": 1}


def test_every_job_of_the_product_is_scheduled() -> None:
    assert set(JOB_NAMES) == {
        "reconcile-payments",
        "expire-invoices",
        "remind-expiring",
        "expire-subscriptions",
        "renew-subscriptions",
        "deliver-outbox",
        "sync-roles",
    }


async def test_run_job_by_name_reports_counts(
    app: FastAPI, sessions: Sessions, clock: FrozenClock, settings: Settings
) -> None:
    runtime = Runtime(
        settings=settings, sessions=sessions, clock=clock, outbound=app.state.outbound,
        providers=app.state.providers,
    )  # fmt: skip
    assert await run_job("expire-invoices", runtime) == {"expired": 0, "released": 0, "failed": 0}
    assert await run_job("expire-subscriptions", runtime) == {"grace": 0, "expired": 0, "failed": 0}
