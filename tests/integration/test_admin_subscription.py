"""Admin API: change a user's tariff (and period end), with role events and the audit log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import AuditEntry, OutboxEvent, Subscription, SubscriptionStatus, Tariff
from tests.integration.checkout_helpers import add_tariff, make_viewer

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
ADMIN = "marta@marketing"
GRACE = timedelta(days=2)


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(ADMIN, "marketing")


@pytest.fixture
async def basic(sessions: Sessions) -> Tariff:
    return await add_tariff(sessions, price=29900, role="basic")


@pytest.fixture
async def premium(sessions: Sessions) -> Tariff:
    return await add_tariff(sessions, price=49900, role="premium")


def url(user_id: uuid.UUID | str) -> str:
    return f"/api/v1/admin/users/{user_id}/subscription"


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def put(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: uuid.UUID, **body: Any
) -> httpx.Response:
    payload = {
        key: str(value) if isinstance(value, uuid.UUID) else value for key, value in body.items()
    }
    return await client.put(url(user_id), json=payload, headers=headers)


async def add_subscription(
    sessions: Sessions,
    user_id: uuid.UUID,
    tariff: Tariff,
    *,
    period_end: datetime,
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    reminded: bool = False,
) -> uuid.UUID:
    async with sessions() as session, session.begin():
        subscription = Subscription(
            id=uuid.uuid4(), user_id=user_id, tariff_id=tariff.id, role=tariff.role,
            status=status, current_period_end=period_end,
            reminded_for_period_end=period_end if reminded else None,
        )  # fmt: skip
        session.add(subscription)
    return subscription.id


async def subscriptions_of(sessions: Sessions, user_id: uuid.UUID) -> dict[str, Subscription]:
    """The user's subscriptions by role."""
    async with sessions() as session:
        rows = await session.scalars(select(Subscription).where(Subscription.user_id == user_id))
        return {row.role: row for row in rows}


async def role_events(sessions: Sessions) -> list[tuple[str, dict[str, Any]]]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.type.in_(["role.grant", "role.revoke"]))
            .order_by(OutboxEvent.seq)
        )
        return [(row.type, row.payload) for row in rows]


async def audit(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.created_at)))


async def counts(sessions: Sessions) -> tuple[int, int, int]:
    async with sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Subscription)) or 0,
            await session.scalar(select(func.count()).select_from(OutboxEvent)) or 0,
            await session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


async def entitled_roles(
    client: httpx.AsyncClient, auth_headers: Headers, user_id: uuid.UUID
) -> list[str]:
    response = await client.get(
        f"/api/v1/users/{user_id}/entitlements", headers=auth_headers("movies", "service")
    )
    assert response.status_code == 200, response.text
    roles: list[str] = response.json()["roles"]
    return roles


# --- moving a live subscription ---------------------------------------------------------------


async def test_a_paid_subscription_moves_to_another_tariff_keeping_its_period_end(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    viewer = make_viewer(client, auth_headers)
    await viewer.paid(basic.id, months=3)
    [paid] = await viewer.subscriptions()
    grants_before = await role_events(sessions)

    response = await put(client, admin, viewer.user_id, tariff_id=premium.id)

    assert response.status_code == 200, response.text
    moved = response.json()
    period_end = datetime.fromisoformat(paid["current_period_end"])
    assert moved == {
        "id": moved["id"],
        "tariff_id": str(premium.id),
        "role": "premium",
        "status": "active",
        "current_period_end": moved["current_period_end"],
        "access_until": moved["access_until"],
        # Paid without saving a card: nothing renews by itself.
        "auto_renew": False,
        "payment_method_id": None,
        "renews_at": None,
        "renewal_months": None,
    }
    assert datetime.fromisoformat(moved["current_period_end"]) == period_end
    assert datetime.fromisoformat(moved["access_until"]) == period_end + GRACE
    # The viewer sees the change, and so does the movie API.
    mine = {row["role"]: row for row in await viewer.subscriptions()}
    assert mine["premium"] == moved
    assert mine["basic"]["status"] == "canceled"
    assert await entitled_roles(client, auth_headers, viewer.user_id) == ["premium"]

    rows = await subscriptions_of(sessions, viewer.user_id)
    # The old one gives its time away: buying it again would start from now.
    assert rows["basic"].current_period_end == clock.now()
    assert await role_events(sessions) == [
        *grants_before,
        ("role.revoke", {"role": "basic", "subscription_id": paid["id"]}),
        (
            "role.grant",
            {"role": "premium", "subscription_id": moved["id"], "until": iso(period_end)},
        ),
    ]
    entry = (await audit(sessions))[-1]
    assert (entry.actor, entry.action, entry.entity_type, entry.entity_id) == (
        ADMIN,
        "update",
        "subscriptions",
        str(viewer.user_id),
    )
    assert entry.before == {
        "subscriptions": [
            {
                "id": paid["id"],
                "tariff_id": str(basic.id),
                "role": "basic",
                "status": "active",
                "current_period_end": iso(period_end),
            }
        ]
    }
    assert entry.after == {
        "subscriptions": [
            {
                "id": moved["id"],
                "tariff_id": str(premium.id),
                "role": "premium",
                "status": "active",
                "current_period_end": iso(period_end),
            }
        ]
    }


async def test_a_new_period_end_is_set_when_given(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    await add_subscription(sessions, user, basic, period_end=clock.now() + timedelta(days=10))
    new_end = clock.now() + timedelta(days=40)

    response = await put(client, admin, user, tariff_id=premium.id, current_period_end=iso(new_end))

    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["current_period_end"]) == new_end
    rows = await subscriptions_of(sessions, user)
    assert (rows["premium"].status, rows["premium"].current_period_end) == ("active", new_end)
    assert rows["basic"].status == "canceled"


async def test_a_subscription_in_grace_moves_and_stays_in_grace(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    ended = clock.now() - timedelta(days=1)
    await add_subscription(sessions, user, basic, period_end=ended, status=SubscriptionStatus.GRACE)

    response = await put(client, admin, user, tariff_id=premium.id)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "grace"
    assert datetime.fromisoformat(response.json()["access_until"]) == ended + GRACE
    assert await entitled_roles(client, auth_headers, user) == ["premium"]
    # The old row keeps its (past) period end: nothing of it is left to give away.
    assert (await subscriptions_of(sessions, user))["basic"].current_period_end == ended


async def test_several_live_subscriptions_become_one_with_the_latest_period_end(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    family = await add_tariff(sessions, price=99900, role="family")
    user = uuid.uuid4()
    later = clock.now() + timedelta(days=60)
    await add_subscription(sessions, user, basic, period_end=clock.now() + timedelta(days=5))
    await add_subscription(sessions, user, premium, period_end=later)

    response = await put(client, admin, user, tariff_id=family.id)

    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["current_period_end"]) == later
    rows = await subscriptions_of(sessions, user)
    assert {role: row.status for role, row in rows.items()} == {
        "basic": "canceled",
        "premium": "canceled",
        "family": "active",
    }
    events = await role_events(sessions)
    assert sorted((kind, data["role"]) for kind, data in events[:2]) == [
        ("role.revoke", "basic"),
        ("role.revoke", "premium"),
    ]
    assert (events[2][0], events[2][1]["role"]) == ("role.grant", "family")


async def test_moving_onto_a_tariff_already_live_ends_only_the_others(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    premium_id = await add_subscription(
        sessions, user, premium, period_end=clock.now() + timedelta(days=5)
    )
    await add_subscription(sessions, user, basic, period_end=clock.now() + timedelta(days=9))

    response = await put(client, admin, user, tariff_id=premium.id)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(premium_id)
    assert datetime.fromisoformat(response.json()["current_period_end"]) == clock.now() + timedelta(
        days=9
    )
    assert [(kind, data["role"]) for kind, data in await role_events(sessions)] == [
        ("role.revoke", "basic"),
        ("role.grant", "premium"),
    ]


async def test_a_reminded_period_keeps_its_reminder_when_it_moves(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    period_end = clock.now() + timedelta(days=2)
    await add_subscription(sessions, user, basic, period_end=period_end, reminded=True)

    response = await put(client, admin, user, tariff_id=premium.id)

    assert response.status_code == 200, response.text
    rows = await subscriptions_of(sessions, user)
    assert rows["premium"].reminded_for_period_end == period_end


# --- the same tariff --------------------------------------------------------------------------


async def test_only_the_period_end_changes_on_the_same_tariff(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
) -> None:
    user = uuid.uuid4()
    subscription_id = await add_subscription(
        sessions, user, basic, period_end=clock.now() + timedelta(days=3)
    )
    new_end = clock.now() + timedelta(days=33)

    response = await put(client, admin, user, tariff_id=basic.id, current_period_end=iso(new_end))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(subscription_id)
    assert datetime.fromisoformat(response.json()["current_period_end"]) == new_end
    assert await role_events(sessions) == [
        (
            "role.grant",
            {"role": "basic", "subscription_id": str(subscription_id), "until": iso(new_end)},
        )
    ]
    [entry] = await audit(sessions)
    assert entry.before is not None and entry.after is not None
    assert entry.before["subscriptions"][0]["current_period_end"] == iso(
        clock.now() + timedelta(days=3)
    )
    assert entry.after["subscriptions"][0]["current_period_end"] == iso(new_end)


async def test_asking_for_what_the_user_has_changes_and_records_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
) -> None:
    user = uuid.uuid4()
    period_end = clock.now() + timedelta(days=3)
    await add_subscription(sessions, user, basic, period_end=period_end)
    before = await counts(sessions)

    for body in ({}, {"current_period_end": iso(period_end)}):
        response = await put(client, admin, user, tariff_id=basic.id, **body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"

    assert await counts(sessions) == before


# --- a user with nothing live -----------------------------------------------------------------


async def test_a_user_without_a_subscription_gets_one_with_the_given_period_end(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    until = clock.now() + timedelta(days=30)

    response = await put(client, admin, user, tariff_id=premium.id, current_period_end=iso(until))

    assert response.status_code == 200, response.text
    created = response.json()
    assert (created["role"], created["status"]) == ("premium", "active")
    assert datetime.fromisoformat(created["current_period_end"]) == until
    assert await entitled_roles(client, auth_headers, user) == ["premium"]
    assert await role_events(sessions) == [
        ("role.grant", {"role": "premium", "subscription_id": created["id"], "until": iso(until)})
    ]
    [entry] = await audit(sessions)
    assert (entry.action, entry.before) == ("create", None)
    assert entry.after == {
        "subscriptions": [
            {
                "id": created["id"],
                "tariff_id": str(premium.id),
                "role": "premium",
                "status": "active",
                "current_period_end": iso(until),
            }
        ]
    }


async def test_an_expired_subscription_to_the_tariff_is_reused(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    old = await add_subscription(
        sessions,
        user,
        premium,
        period_end=clock.now() - timedelta(days=30),
        status=SubscriptionStatus.EXPIRED,
    )
    until = clock.now() + timedelta(days=7)

    response = await put(client, admin, user, tariff_id=premium.id, current_period_end=iso(until))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(old)
    assert response.json()["status"] == "active"
    assert len(await subscriptions_of(sessions, user)) == 1


async def test_without_a_live_subscription_the_period_end_is_required(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    premium: Tariff,
) -> None:
    user = uuid.uuid4()
    await add_subscription(
        sessions,
        user,
        premium,
        period_end=clock.now() - timedelta(days=30),
        status=SubscriptionStatus.EXPIRED,
    )
    before = await counts(sessions)

    response = await put(client, admin, user, tariff_id=premium.id)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "current_period_end" in response.json()["detail"]
    assert await counts(sessions) == before


# --- refusals ---------------------------------------------------------------------------------


async def inactive_tariffs(sessions: Sessions) -> dict[str, Tariff]:
    async with sessions() as session, session.begin():
        tariffs = {
            "inactive": Tariff(id=uuid.uuid4(), code="old", name="Old", role="old",
                               monthly_price=100, currency="RUB", is_active=False),
            "unpriced": Tariff(id=uuid.uuid4(), code="new", name="New", role="new",
                               monthly_price=None, currency="RUB", is_active=False),
            "role_gone": Tariff(id=uuid.uuid4(), code="gone", name="Gone", role="gone",
                                monthly_price=100, currency="RUB", is_active=True,
                                role_exists=False),
        }  # fmt: skip
        session.add_all(tariffs.values())
    return tariffs


async def test_refusals_change_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
) -> None:
    user = uuid.uuid4()
    await add_subscription(sessions, user, basic, period_end=clock.now() + timedelta(days=3))
    off_sale = await inactive_tariffs(sessions)
    future = iso(clock.now() + timedelta(days=3))
    before = await counts(sessions)

    cases: list[tuple[Any, int, str]] = [
        ({"tariff_id": str(uuid.uuid4())}, 404, "tariff_not_found"),
        *[({"tariff_id": str(t.id)}, 409, "tariff_inactive") for t in off_sale.values()],
        ({"tariff_id": str(basic.id), "current_period_end": iso(clock.now())}, 422, ""),
        (
            {"tariff_id": str(basic.id), "current_period_end": iso(clock.now() - GRACE)},
            422,
            "",
        ),
        ({"tariff_id": str(basic.id), "current_period_end": "2030-01-01T00:00:00"}, 422, ""),
        ({"tariff_id": str(basic.id), "current_period_end": "soon"}, 422, ""),
        ({"tariff_id": "not-a-uuid"}, 422, ""),
        ({"tariff_id": str(basic.id), "months": 3}, 422, ""),
        ({"current_period_end": future}, 422, ""),
        ({}, 422, ""),
        ([], 422, ""),
        (None, 422, ""),
    ]
    for body, status, code in cases:
        response = await client.put(url(user), json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == (code or "validation_error"), body

    bad_user = await client.put(url("someone"), json={"tariff_id": str(basic.id)}, headers=admin)
    assert bad_user.status_code == 422
    assert bad_user.json()["code"] == "validation_error"
    assert await counts(sessions) == before


async def test_a_token_is_needed_and_a_viewer_is_refused(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, basic: Tariff
) -> None:
    user = uuid.uuid4()
    body = {"tariff_id": str(basic.id), "current_period_end": "2099-01-01T00:00:00Z"}
    anonymous = await client.put(url(user), json=body)
    assert anonymous.status_code == 401
    viewer = await client.put(url(user), json=body, headers=auth_headers(user, "subscriber"))
    assert viewer.status_code == 403
    assert viewer.json()["code"] == "forbidden"
    assert await counts(sessions) == (0, 0, 0)


async def test_concurrent_changes_leave_one_live_subscription(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
    basic: Tariff,
    premium: Tariff,
) -> None:
    family = await add_tariff(sessions, price=99900, role="family")
    user = uuid.uuid4()
    await add_subscription(sessions, user, basic, period_end=clock.now() + timedelta(days=3))

    responses = await asyncio.gather(
        *[put(client, admin, user, tariff_id=tariff.id) for tariff in (premium, family) * 3]
    )

    assert [response.status_code for response in responses] == [200] * 6
    rows = await subscriptions_of(sessions, user)
    live = [role for role, row in rows.items() if row.status == "active"]
    assert len(live) == 1
    # Whatever order they ran in, the roles end as the rows say: the last grant is the one live.
    events = await role_events(sessions)
    assert events[-1] == (
        "role.grant",
        {
            "role": live[0],
            "subscription_id": str(rows[live[0]].id),
            "until": iso(clock.now() + timedelta(days=3)),
        },
    )
