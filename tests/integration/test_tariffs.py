"""The public catalogue ``GET /api/v1/tariffs`` and the tariff look-ups checkout relies on."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.service import get_sellable_tariff, get_tariff
from billing.errors import Problem

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marta@marketing", "marketing")


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], code: str, **fields: Any
) -> dict[str, Any]:
    body = {"code": code, "name": code.title(), "role": code, **fields}
    response = await client.post("/api/v1/admin/tariffs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_an_empty_catalogue_is_an_empty_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/tariffs")
    assert response.status_code == 200
    assert response.json() == []


async def test_only_active_tariffs_cheapest_first_without_a_token(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    premium = await create(
        client, admin, "premium", monthly_price=49900, is_active=True, description="4K"
    )
    await create(client, admin, "basic", monthly_price=29900, is_active=True)
    await create(client, admin, "alpha", monthly_price=49900, is_active=True)
    await create(client, admin, "hidden", monthly_price=100, is_active=False)
    await create(client, admin, "new-role")  # unpriced, inactive

    response = await client.get("/api/v1/tariffs")
    assert response.status_code == 200
    listed = response.json()
    assert [t["code"] for t in listed] == ["basic", "alpha", "premium"]
    # Exactly the public shape: no admin fields.
    assert listed[2] == {
        "id": premium["id"],
        "code": "premium",
        "name": "Premium",
        "description": "4K",
        "role": "premium",
        "monthly_price": 49900,
        "currency": "RUB",
        "is_active": True,
    }


async def test_the_catalogue_pages(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for n, code in enumerate(("a", "b", "c")):
        await create(client, admin, code, monthly_price=100 * (n + 1), is_active=True)
    response = await client.get("/api/v1/tariffs?limit=1&offset=1")
    assert [t["code"] for t in response.json()] == ["b"]
    assert (await client.get("/api/v1/tariffs?limit=0")).status_code == 422


async def test_a_price_change_shows_in_the_catalogue(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    tariff = await create(client, admin, "premium", monthly_price=49900, is_active=True)
    await create(client, admin, "basic", monthly_price=29900, is_active=True)
    await client.patch(
        f"/api/v1/admin/tariffs/{tariff['id']}", json={"monthly_price": 19900}, headers=admin
    )
    listed = (await client.get("/api/v1/tariffs")).json()
    assert [(t["code"], t["monthly_price"]) for t in listed] == [
        ("premium", 19900),
        ("basic", 29900),
    ]


# --- look-ups for checkout ----------------------------------------------------------------


async def test_get_tariff_and_get_sellable_tariff(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    on_sale = await create(client, admin, "premium", monthly_price=49900, is_active=True)
    off_sale = await create(client, admin, "old", monthly_price=100, is_active=False)
    unpriced = await create(client, admin, "new-role")

    async with sessions() as session:
        found = await get_sellable_tariff(session, uuid.UUID(on_sale["id"]))
        assert (found.code, found.monthly_price) == ("premium", 49900)
        for tariff in (off_sale, unpriced):
            assert (await get_tariff(session, uuid.UUID(tariff["id"]))).is_active is False
            with pytest.raises(Problem) as inactive:
                await get_sellable_tariff(session, uuid.UUID(tariff["id"]))
            assert (inactive.value.status, inactive.value.code) == (409, "tariff_inactive")
        for lookup in (get_tariff, get_sellable_tariff):
            with pytest.raises(Problem) as missing:
                await lookup(session, uuid.uuid4())
            assert (missing.value.status, missing.value.code) == (404, "tariff_not_found")
