"""``GET /api/v1/admin/audit-log``: who changed what, with before and after, newest first."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

Headers = Callable[..., dict[str, str]]
URL = "/api/v1/admin/audit-log"


@pytest.fixture
def marta(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marta", "marketing")


@pytest.fixture
def ivan(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("ivan", "admin")


async def create(client: httpx.AsyncClient, headers: dict[str, str], code: str) -> str:
    body = {"code": code, "name": code.title(), "role": code, "monthly_price": 100}
    response = await client.post("/api/v1/admin/tariffs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    tariff_id: str = response.json()["id"]
    return tariff_id


async def entries(
    client: httpx.AsyncClient, headers: dict[str, str], **query: Any
) -> list[dict[str, Any]]:
    response = await client.get(URL, params=query, headers=headers)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def test_changes_are_listed_newest_first_with_before_and_after(
    client: httpx.AsyncClient, marta: dict[str, str], ivan: dict[str, str]
) -> None:
    assert await entries(client, marta) == []
    premium = await create(client, marta, "premium")
    response = await client.patch(
        f"/api/v1/admin/tariffs/{premium}",
        json={"monthly_price": 200, "is_active": True},
        headers=ivan,
    )
    assert response.status_code == 200

    listed = await entries(client, marta)
    assert [(e["actor"], e["action"]) for e in listed] == [("ivan", "update"), ("marta", "create")]
    update, creation = listed
    assert set(update) == {
        "id",
        "actor",
        "action",
        "entity_type",
        "entity_id",
        "before",
        "after",
        "created_at",
    }
    assert (update["entity_type"], update["entity_id"]) == ("tariffs", premium)
    assert (update["before"]["monthly_price"], update["after"]["monthly_price"]) == (100, 200)
    assert (update["before"]["is_active"], update["after"]["is_active"]) == (False, True)
    assert creation["before"] is None
    assert creation["after"]["code"] == "premium"
    assert datetime.fromisoformat(update["created_at"]) >= datetime.fromisoformat(
        creation["created_at"]
    )


async def test_filters_by_entity_and_actor_and_combined(
    client: httpx.AsyncClient, marta: dict[str, str], ivan: dict[str, str]
) -> None:
    premium = await create(client, marta, "premium")
    basic = await create(client, ivan, "basic")
    await client.patch(f"/api/v1/admin/tariffs/{basic}", json={"name": "B"}, headers=marta)

    by_entity = await entries(client, marta, entity_type="tariffs", entity_id=basic)
    assert [(e["actor"], e["action"]) for e in by_entity] == [
        ("marta", "update"),
        ("ivan", "create"),
    ]
    assert [e["entity_id"] for e in await entries(client, marta, actor="marta")] == [basic, premium]
    combined = await entries(client, marta, actor="marta", entity_id=premium)
    assert [e["action"] for e in combined] == ["create"]
    assert await entries(client, marta, entity_type="promo_codes") == []
    assert await entries(client, marta, actor="nobody") == []
    assert await entries(client, marta, entity_id=str(uuid.uuid4())) == []


async def test_pages(client: httpx.AsyncClient, marta: dict[str, str]) -> None:
    for code in ("a", "b", "c"):
        await create(client, marta, code)
    newest_first = [e["after"]["code"] for e in await entries(client, marta)]
    assert newest_first == ["c", "b", "a"]
    page = await entries(client, marta, limit=1, offset=1)
    assert [e["after"]["code"] for e in page] == ["b"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "offset=-1",
        "limit=ten",
        f"actor={'x' * 201}",
        f"entity_type={'t' * 65}",
    ],
)
async def test_bad_queries_are_validation_errors(
    client: httpx.AsyncClient, marta: dict[str, str], query: str
) -> None:
    response = await client.get(f"{URL}?{query}", headers=marta)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_needs_an_admin_or_marketing_token(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    anonymous = await client.get(URL)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    viewer = await client.get(URL, headers=auth_headers(uuid.uuid4(), "subscriber"))
    assert (viewer.status_code, viewer.json()["code"]) == (403, "forbidden")
    service = await client.get(URL, headers=auth_headers("movies", "service"))
    assert service.status_code == 403


async def test_a_nul_character_in_a_filter_is_a_validation_error(
    client: httpx.AsyncClient, auth_headers: Callable[..., dict[str, str]]
) -> None:
    """PostgreSQL text cannot hold NUL; found by Schemathesis as a 500."""
    response = await client.get(
        "/api/v1/admin/audit-log?entity_id=%11%00x", headers=auth_headers("marta", "admin")
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
