"""Admin API for duration and personal discounts: every change answered, stored and audited;
bad input refused with nothing written; only admin and marketing tokens get in."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import AuditEntry, DurationDiscount, UserDiscount
from tests.integration.test_promo_codes import audit_rows, count_rows

DURATION = "/api/v1/admin/duration-discounts"
Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
USER = uuid.UUID("3d6f1e52-5c38-4a8e-8f0b-6b1f4a3c2d10")
PERSONAL = f"/api/v1/admin/users/{USER}/discount"
ACTOR = "marta@marketing"


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(ACTOR, "marketing")


# Duration discounts ------------------------------------------------------------------------


async def test_duration_rules_are_created_listed_by_months_and_audited(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str]
) -> None:
    for months, percent in ((12, 20), (3, 5), (6, 10)):
        response = await client.put(
            f"{DURATION}/{months}", json={"percent": percent}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"months": months, "percent": percent}

    listed = await client.get(DURATION, headers=admin)

    assert listed.status_code == 200
    assert listed.json() == [
        {"months": 3, "percent": 5},
        {"months": 6, "percent": 10},
        {"months": 12, "percent": 20},
    ]
    entries = await audit_rows(sessions, "duration_discounts")
    assert [(e.actor, e.action, e.entity_id, e.before, e.after) for e in entries] == [
        (ACTOR, "create", "12", None, {"months": 12, "percent": 20}),
        (ACTOR, "create", "3", None, {"months": 3, "percent": 5}),
        (ACTOR, "create", "6", None, {"months": 6, "percent": 10}),
    ]


async def test_putting_a_rule_again_changes_it_and_audits_before_and_after(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str]
) -> None:
    await client.put(f"{DURATION}/3", json={"percent": 5}, headers=admin)

    changed = await client.put(f"{DURATION}/3", json={"percent": 7.5}, headers=admin)
    unchanged = await client.put(f"{DURATION}/3", json={"percent": 7.50}, headers=admin)

    assert changed.json() == unchanged.json() == {"months": 3, "percent": 7.5}
    assert await count_rows(sessions, DurationDiscount) == 1
    entries = await audit_rows(sessions, "duration_discounts")
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("create", None, {"months": 3, "percent": 5}),
        ("update", {"months": 3, "percent": 5}, {"months": 3, "percent": 7.5}),
    ]  # the repeat changed nothing, so it recorded nothing


async def test_deleting_a_rule_removes_it_and_an_unknown_one_is_not_found(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str]
) -> None:
    await client.put(f"{DURATION}/6", json={"percent": 10}, headers=admin)
    await client.put(f"{DURATION}/12", json={"percent": 20}, headers=admin)

    deleted = await client.delete(f"{DURATION}/6", headers=admin)
    again = await client.delete(f"{DURATION}/6", headers=admin)

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (again.status_code, again.json()["code"]) == (404, "not_found")
    assert (await client.get(DURATION, headers=admin)).json() == [{"months": 12, "percent": 20}]
    last = (await audit_rows(sessions, "duration_discounts"))[-1]
    assert (last.action, last.entity_id, last.before, last.after) == (
        "delete", "6", {"months": 6, "percent": 10}, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("months", "body"),
    [
        ("0", {"percent": 5}),
        ("13", {"percent": 5}),  # above BILLING_MAX_MONTHS (12)
        ("121", {"percent": 5}),
        ("-3", {"percent": 5}),
        ("99999999999999999999", {"percent": 5}),
        ("three", {"percent": 5}),
        ("3", {"percent": 100.01}),
        ("3", {"percent": -0.01}),
        ("3", {"percent": 5.555}),
        ("3", {"percent": "NaN"}),
        ("3", {"percent": None}),
        ("3", {}),
        ("3", {"percent": 5, "months": 3}),
    ],
)
async def test_a_bad_duration_rule_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    months: str,
    body: dict[str, Any],
) -> None:
    response = await client.put(f"{DURATION}/{months}", json=body, headers=admin)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await count_rows(sessions, DurationDiscount) == 0
    assert await count_rows(sessions, AuditEntry) == 0


@pytest.mark.parametrize("months", ["0", "121", "x", "99999999999999999999"])
async def test_deleting_a_rule_outside_the_range_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], months: str
) -> None:
    response = await client.delete(f"{DURATION}/{months}", headers=admin)

    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


# Personal discounts ------------------------------------------------------------------------


async def test_a_personal_discount_is_set_read_replaced_and_deleted(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], clock: FrozenClock
) -> None:
    until = clock.now() + timedelta(days=90)
    assert (await client.get(PERSONAL, headers=admin)).json()["code"] == "not_found"

    created = await client.put(
        PERSONAL,
        json={"percent": 15, "valid_until": until.isoformat(), "reason": "support apology"},
        headers=admin,
    )
    read = await client.get(PERSONAL, headers=admin)
    replaced = await client.put(PERSONAL, json={"percent": 7.25}, headers=admin)
    deleted = await client.delete(PERSONAL, headers=admin)
    gone = await client.get(PERSONAL, headers=admin)
    deleted_again = await client.delete(PERSONAL, headers=admin)

    assert created.status_code == 200, created.text
    first = created.json()
    assert first == {
        "user_id": str(USER), "percent": 15, "valid_until": first["valid_until"],
        "reason": "support apology",
    }  # fmt: skip
    assert datetime.fromisoformat(first["valid_until"]) == until
    assert read.json() == first
    # A PUT replaces the whole discount: what it leaves out is cleared.
    second = {"user_id": str(USER), "percent": 7.25, "valid_until": None, "reason": ""}
    assert replaced.json() == second
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    assert (deleted_again.status_code, deleted_again.json()["code"]) == (404, "not_found")
    assert await count_rows(sessions, UserDiscount) == 0
    entries = await audit_rows(sessions, "user_discounts")
    assert [(e.actor, e.action, e.entity_id, e.before, e.after) for e in entries] == [
        (ACTOR, "create", str(USER), None, first),
        (ACTOR, "update", str(USER), first, second),
        (ACTOR, "delete", str(USER), second, None),
    ]


async def test_an_expired_personal_discount_can_still_be_read(
    client: httpx.AsyncClient, admin: dict[str, str], clock: FrozenClock
) -> None:
    until = clock.now() + timedelta(hours=1)
    await client.put(
        PERSONAL, json={"percent": 10, "valid_until": until.isoformat()}, headers=admin
    )
    clock.advance(timedelta(days=1))

    response = await client.get(PERSONAL, headers=admin)

    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["valid_until"]) == until


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"percent": 101},
        {"percent": -5},
        {"percent": 10.001},
        {"percent": 10, "valid_until": "2999-01-01T00:00:00"},  # no offset
        {"percent": 10, "valid_until": "next week"},
        {"percent": 10, "reason": "x" * 501},
        {"percent": 10, "reason": None},
        {"percent": 10, "user_id": str(uuid.uuid4())},
    ],
)
async def test_a_bad_personal_discount_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.put(PERSONAL, json=body, headers=admin)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await count_rows(sessions, UserDiscount) == 0
    assert await count_rows(sessions, AuditEntry) == 0


async def test_a_personal_discount_that_is_already_over_is_refused(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], clock: FrozenClock
) -> None:
    past = clock.now() - timedelta(seconds=1)

    response = await client.put(
        PERSONAL, json={"percent": 10, "valid_until": past.isoformat()}, headers=admin
    )

    assert (response.status_code, response.json()["code"]) == (422, "validation_error")
    assert response.json()["detail"] == "valid_until: must be in the future"
    assert await count_rows(sessions, UserDiscount) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_malformed_user_id_is_a_validation_error(
    client: httpx.AsyncClient, admin: dict[str, str], method: str
) -> None:
    response = await client.request(
        method, "/api/v1/admin/users/not-a-uuid/discount", json={"percent": 5}, headers=admin
    )

    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{"])
async def test_an_empty_or_broken_body_writes_nothing(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], raw: bytes
) -> None:
    headers = {**admin, "Content-Type": "application/json"}

    personal = await client.put(PERSONAL, content=raw, headers=headers)
    duration = await client.put(f"{DURATION}/3", content=raw, headers=headers)

    assert (personal.status_code, personal.json()["code"]) == (422, "validation_error")
    assert (duration.status_code, duration.json()["code"]) == (422, "validation_error")
    assert await count_rows(sessions, AuditEntry) == 0


# Who may ---------------------------------------------------------------------------------


ROUTES = [
    ("GET", DURATION, None),
    ("PUT", f"{DURATION}/3", {"percent": 5}),
    ("DELETE", f"{DURATION}/3", None),
    ("GET", PERSONAL, None),
    ("PUT", PERSONAL, {"percent": 5}),
    ("DELETE", PERSONAL, None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_discount_admin_refuses_anonymous_and_viewer_tokens(
    client: httpx.AsyncClient,
    sessions: Sessions,
    auth_headers: Headers,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    anonymous = await client.request(method, path, json=body)
    viewer = await client.request(method, path, json=body, headers=auth_headers(USER, "premium"))
    service = await client.request(method, path, json=body, headers=auth_headers("svc", "service"))

    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert (viewer.status_code, viewer.json()["code"]) == (403, "forbidden")
    assert (service.status_code, service.json()["code"]) == (403, "forbidden")
    assert await count_rows(sessions, DurationDiscount) == 0
    assert await count_rows(sessions, UserDiscount) == 0
    assert await count_rows(sessions, AuditEntry) == 0


@pytest.mark.parametrize("role", ["admin", "marketing"])
async def test_admin_and_marketing_both_manage_discounts(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, role: str
) -> None:
    headers = auth_headers(f"someone-{role}", role)

    duration = await client.put(f"{DURATION}/1", json={"percent": 1}, headers=headers)
    personal = await client.put(PERSONAL, json={"percent": 1}, headers=headers)

    assert (duration.status_code, personal.status_code) == (200, 200)
    actors = {entry.actor for entry in await audit_rows(sessions, "user_discounts")}
    assert actors == {f"someone-{role}"}
