"""Admin creating POSTs honour Idempotency-Key too: a retried bulk generation makes no
second batch of codes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.models import AuditEntry, PromoCode, Tariff
from tests.integration.checkout_helpers import count


async def test_retrying_a_bulk_generation_returns_the_same_codes(
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    headers = {**auth_headers("marta", "marketing"), "Idempotency-Key": "summer-batch"}
    body = {"percent": 15, "count": 5}

    first = await client.post("/api/v1/admin/promo-codes", json=body, headers=headers)
    again = await client.post("/api/v1/admin/promo-codes", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert [code["code"] for code in first.json()] == [code["code"] for code in again.json()]
    assert await count(sessions, PromoCode) == 5

    other = await client.post(
        "/api/v1/admin/promo-codes", json={"percent": 20, "count": 5}, headers=headers
    )
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    assert await count(sessions, PromoCode) == 5


async def test_retrying_a_tariff_creation_creates_one_tariff(
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    headers = {**auth_headers("marta", "admin"), "Idempotency-Key": "new-tariff"}
    body = {"code": "kids", "name": "Kids", "role": "kids", "monthly_price": 19900}

    first = await client.post("/api/v1/admin/tariffs", json=body, headers=headers)
    again = await client.post("/api/v1/admin/tariffs", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert await count(sessions, Tariff) == 1
    assert await count(sessions, AuditEntry) == 1

    # Without a key, the same body is a new request: the code is taken.
    plain = await client.post(
        "/api/v1/admin/tariffs", json=body, headers=auth_headers("x", "admin")
    )
    assert (plain.status_code, plain.json()["code"]) == (409, "tariff_code_exists")
