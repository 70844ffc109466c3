"""The admin side of auto-renewal (issue #11): the Admin API and the panel list a viewer's
auto-renewal, its saved method's title and the next charge, and turn renewal off for the
viewer (audited, once) — after which `renew-subscriptions` charges nothing.

The viewer saves a card on the built-in sandbox (ЮKassa's), as in test_renewals_sandbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import AuditEntry, Payment, Subscription
from tests.integration.checkout_helpers import Viewer, add_tariff, events, make_viewer
from tests.integration.test_admin_panel_http import add_admin, login, panel_client
from tests.integration.test_renewals_sandbox import renew, subscribe_saving

Sessions = async_sessionmaker[AsyncSession]
Headers = Callable[..., dict[str, str]]
ADMIN_API = "/api/v1/admin/subscriptions"
RENEW_BEFORE = timedelta(days=1)  # BILLING_RENEW_BEFORE's default


def cancel_url(subscription_id: object) -> str:
    return f"{ADMIN_API}/{subscription_id}/cancel-renewal"


async def renewal_audit(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "subscriptions")
            .order_by(AuditEntry.created_at)
        )
        return list(rows)


async def saving_viewer(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> tuple[Viewer, dict[str, Any], dict[str, Any]]:
    """A viewer whose paid subscription renews with the card saved while paying; and that
    card as the viewer's API shows it."""
    viewer, subscription = await subscribe_saving(client, auth_headers, sessions, "ok")
    assert subscription["auto_renew"] is True
    [method] = (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json()
    return viewer, subscription, method


async def test_the_admin_api_lists_renewal_and_turns_it_off_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    viewer, subscription, method = await saving_viewer(client, auth_headers, sessions)
    assert method["title"].startswith("Bank card *")
    other = make_viewer(client, auth_headers)  # paid without saving a card
    await other.paid((await add_tariff(sessions, role="basic")).id)
    marketing = auth_headers("marta@marketing", "marketing")

    listed = await client.get(ADMIN_API, headers=marketing)
    assert listed.status_code == 200, listed.text
    plain, renewing = listed.json()  # newest first
    assert (plain["user_id"], renewing["user_id"]) == (str(other.user_id), str(viewer.user_id))
    period_end = datetime.fromisoformat(subscription["current_period_end"])
    assert renewing == {
        **subscription,
        "user_id": str(viewer.user_id),
        "payment_method_title": method["title"],
    }
    assert renewing["payment_method_id"] == method["id"]
    assert datetime.fromisoformat(renewing["renews_at"]) == period_end - RENEW_BEFORE
    assert (plain["auto_renew"], plain["payment_method_title"], plain["renews_at"]) == (
        False,
        None,
        None,
    )

    async def ids(query: str) -> list[str]:
        response = await client.get(f"{ADMIN_API}?{query}", headers=marketing)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()]

    assert await ids("auto_renew=true") == [subscription["id"]]
    assert await ids("auto_renew=false") == [plain["id"]]
    assert await ids(f"user_id={viewer.user_id}&status=active") == [subscription["id"]]
    assert await ids("status=expired") == []
    assert await ids("limit=1&offset=1") == [subscription["id"]]

    admin = auth_headers("root@billing", "admin")
    turned_off = await client.post(cancel_url(subscription["id"]), headers=admin)
    assert turned_off.status_code == 200, turned_off.text
    assert turned_off.json() == {
        **renewing,
        "auto_renew": False,
        "renews_at": None,
    }  # access unchanged; the method is kept, as after the viewer's own cancel
    [own] = await viewer.subscriptions()
    assert (own["auto_renew"], own["renews_at"]) == (False, None)
    assert own["access_until"] == subscription["access_until"]

    [entry] = await renewal_audit(sessions)
    assert (entry.actor, entry.action, entry.entity_id) == (
        "root@billing",
        "cancel_renewal",
        subscription["id"],
    )
    assert entry.before == {"auto_renew": True, "payment_method_id": method["id"]}
    assert entry.after == {"auto_renew": False, "payment_method_id": method["id"]}

    again = await client.post(cancel_url(subscription["id"]), headers=marketing)
    assert (again.status_code, again.json()) == (200, turned_off.json())
    assert len(await renewal_audit(sessions)) == 1

    # When the charge would have been due, the job charges nothing.
    clock.set(period_end - RENEW_BEFORE)
    async with sessions() as session:
        payments_before = len((await session.scalars(select(Payment))).all())
    assert (await renew(app, clock))["charged"] == 0
    async with sessions() as session:
        assert len((await session.scalars(select(Payment))).all()) == payments_before
    assert await events(sessions, "subscription.renewed") == []
    [still] = await viewer.subscriptions()
    assert still["current_period_end"] == subscription["current_period_end"]


async def test_two_admins_at_once_write_one_audit_row(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    _, subscription, _ = await saving_viewer(client, auth_headers, sessions)
    answers = await asyncio.gather(
        *(
            client.post(cancel_url(subscription["id"]), headers=auth_headers(name, "marketing"))
            for name in ("marta", "boris")
        )
    )
    assert [answer.status_code for answer in answers] == [200, 200]
    assert all(answer.json()["auto_renew"] is False for answer in answers)
    assert len(await renewal_audit(sessions)) == 1


async def test_who_may_turn_renewal_off(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    viewer, subscription, _ = await saving_viewer(client, auth_headers, sessions)

    for request in (
        client.get(ADMIN_API, headers=viewer.headers),
        client.post(cancel_url(subscription["id"]), headers=viewer.headers),
    ):
        refused = await request
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    anonymous = await client.post(cancel_url(subscription["id"]))
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")

    marketing = auth_headers("marta@marketing", "marketing")
    unknown = await client.post(cancel_url(uuid.uuid4()), headers=marketing)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["code"] == "not_found"
    malformed = await client.post(cancel_url("not-a-uuid"), headers=marketing)
    assert (malformed.status_code, malformed.json()["code"]) == (422, "validation_error")
    bad_filter = await client.get(f"{ADMIN_API}?status=paused", headers=marketing)
    assert (bad_filter.status_code, bad_filter.json()["code"]) == (422, "validation_error")

    assert await renewal_audit(sessions) == []
    [own] = await viewer.subscriptions()
    assert own["auto_renew"] is True


def ru_moment(value: str) -> str:
    """A time as the Russian panel shows it."""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%d.%m.%Y %H:%M:%S UTC")


@pytest.fixture
async def marta(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    """A browser of ``marta`` (marketing), logged in; the panel in Russian (the default)."""
    await add_admin(sessions, "marta")
    browser = panel_client(app)
    assert (await login(browser, "marta")).status_code == 302
    return browser


async def test_the_panel_shows_renewal_and_turns_it_off_audited(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
    marta: httpx.AsyncClient,
) -> None:
    viewer, subscription, method = await saving_viewer(client, auth_headers, sessions)
    renews_at = ru_moment(
        (datetime.fromisoformat(subscription["current_period_end"]) - RENEW_BEFORE).isoformat()
    )

    listed = await marta.get("/admin/subscription/list")
    assert listed.status_code == 200
    assert "Автопродление" in listed.text and "Следующее списание" in listed.text
    assert renews_at in listed.text
    assert ">да<" in listed.text.replace(" ", "").replace("\n", "")

    details_url = f"/admin/subscription/details/{subscription['id']}"
    details = await marta.get(details_url)
    assert details.status_code == 200
    for shown in (method["title"], renews_at, "Месяцев за продление", "Отключить автопродление"):
        assert shown in details.text, shown
    action = f"/admin/subscription/action/turn-off-renewal?pks={subscription['id']}"
    assert action in details.text

    # From the subscription's page (the browser names it, the panel's Referrer-Policy being
    # same-origin), back to it; a page elsewhere is never where the panel sends anyone.
    elsewhere = await marta.get(action, headers={"Referer": "https://evil.example/admin/"})
    assert elsewhere.headers["location"].endswith("/admin/subscription/list")
    turned_off = await marta.get(action, headers={"Referer": str(marta.base_url.join(details_url))})
    assert turned_off.status_code == 302
    assert turned_off.headers["location"].endswith(details_url)
    page = await marta.get(details_url)
    assert "Автопродление отключено: 1" in page.text
    assert renews_at not in page.text  # no next charge any more
    [own] = await viewer.subscriptions()
    assert (own["auto_renew"], own["renews_at"]) == (False, None)
    [entry] = await renewal_audit(sessions)
    assert (entry.actor, entry.action, entry.entity_id) == (
        "marta",
        "cancel_renewal",
        subscription["id"],
    )
    assert entry.after == {"auto_renew": False, "payment_method_id": method["id"]}

    assert (await marta.get(action)).status_code == 302  # already off: nothing recorded
    assert len(await renewal_audit(sessions)) == 1
    async with sessions() as session:
        row = await session.get_one(Subscription, uuid.UUID(subscription["id"]))
    assert (row.auto_renew, row.payment_method_id) == (False, uuid.UUID(method["id"]))

    clock.set(datetime.fromisoformat(subscription["current_period_end"]) - RENEW_BEFORE)
    assert (await renew(app, clock))["charged"] == 0


async def test_the_panel_refuses_what_is_not_a_subscription(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    marta: httpx.AsyncClient,
) -> None:
    _, subscription, _ = await saving_viewer(client, auth_headers, sessions)
    async with panel_client(app) as anonymous:
        answer = await anonymous.get(
            f"/admin/subscription/action/turn-off-renewal?pks={subscription['id']}"
        )
    assert answer.status_code == 302 and answer.headers["location"].endswith("/admin/login")

    unknown = uuid.uuid4()
    answer = await marta.get(
        f"/admin/subscription/action/turn-off-renewal?pks={unknown},not-a-uuid"
    )
    assert answer.status_code == 302
    assert answer.headers["location"].endswith("/admin/subscription/list")
    page = await marta.get(answer.headers["location"])
    assert "not-a-uuid: не ID подписки" in page.text
    assert f"{unknown}: no such subscription" in page.text
    assert await renewal_audit(sessions) == []
    [row] = (await client.get(ADMIN_API, headers=auth_headers("marta", "marketing"))).json()
    assert row["auto_renew"] is True
