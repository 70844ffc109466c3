"""One rule for a blank promo code, wherever a viewer types one in: ``""`` or only whitespace
means "no code" — the same price from ``POST /quotes`` and ``POST /invoices``, and no code
reserved. A code that is not blank is looked up alike by both (unknown → 404)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.models import Invoice, PromoRedemption
from tests.integration.test_promo_codes import add_tariff, count_rows, create_promo

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
VIEWER = uuid.UUID("5b0e7d1c-3a52-4f0a-9d8e-6c1f2a3b4c5d")
BLANKS = ["", " ", "   ", "\t", " \n "]


async def ask(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], tariff: uuid.UUID, code: object
) -> httpx.Response:
    body = {"tariff_id": str(tariff), "months": 1, "promo_code": code}
    return await client.post(f"/api/v1/{path}", json=body, headers=headers)


@pytest.mark.parametrize("blank", BLANKS)
async def test_a_blank_code_is_no_code_for_a_quote_and_an_invoice(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, blank: str
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    viewer = auth_headers(VIEWER)

    quote = await ask(client, "quotes", viewer, tariff, blank)
    invoice = await ask(client, "invoices", viewer, tariff, blank)

    assert quote.status_code == 200, quote.text
    assert invoice.status_code == 201, invoice.text
    assert quote.json()["promo_code"] is None
    assert invoice.json()["promo_code"] is None
    assert quote.json()["total_amount"] == invoice.json()["total_amount"] == 49_900
    assert await count_rows(sessions, PromoRedemption) == 0


async def test_a_code_with_spaces_around_it_is_that_code_for_both(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await create_promo(client, auth_headers, code="WELCOME10", percent=10)
    viewer = auth_headers(VIEWER)

    quote = await ask(client, "quotes", viewer, tariff, "  welcome10 ")
    invoice = await ask(client, "invoices", viewer, tariff, "  welcome10 ")

    assert quote.status_code == 200, quote.text
    assert invoice.status_code == 201, invoice.text
    assert quote.json()["promo_code"] == invoice.json()["promo_code"] == "WELCOME10"
    assert quote.json()["total_amount"] == invoice.json()["total_amount"] == 44_910
    assert await count_rows(sessions, PromoRedemption) == 1


@pytest.mark.parametrize("code", ["NOSUCHCODE", " x "])
async def test_an_unknown_code_is_404_for_both_and_issues_nothing(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, code: str
) -> None:
    tariff = await add_tariff(sessions)
    viewer = auth_headers(VIEWER)

    for path in ("quotes", "invoices"):
        response = await ask(client, path, viewer, tariff, code)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "promo_code_not_found"
    assert await count_rows(sessions, Invoice) == 0


@pytest.mark.parametrize("code", [42, "X" * 65, " " * 10 + "Y" * 60])
async def test_a_code_that_is_no_string_or_too_long_is_a_validation_error_for_both(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, code: object
) -> None:
    tariff = await add_tariff(sessions)
    viewer = auth_headers(VIEWER)

    for path in ("quotes", "invoices"):
        response = await ask(client, path, viewer, tariff, code)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["code"] == "validation_error"
    assert await count_rows(sessions, Invoice) == 0
