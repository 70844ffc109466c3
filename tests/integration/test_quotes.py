"""POST /api/v1/quotes: the price a viewer would pay, with worked examples in exact kopecks.

Discounts are set up through the admin API; tariffs are rows (their API is the catalogue's).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import AuditEntry, Invoice, PromoCode, PromoRedemption
from tests.integration.test_promo_codes import (
    add_tariff,
    count_rows,
    create_promo,
    promo_row,
    reserve,
)

QUOTES = "/api/v1/quotes"
ADMIN = "/api/v1/admin"
Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
VIEWER = uuid.UUID("0c7a2a0e-8f0e-4f43-9f55-2b6c3f1d7e01")


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marketing-1", "marketing")


@pytest.fixture
def viewer(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(VIEWER)


async def put_duration(
    client: httpx.AsyncClient, admin: dict[str, str], rules: dict[int, float]
) -> None:
    for months, percent in rules.items():
        response = await client.put(
            f"{ADMIN}/duration-discounts/{months}",
            json={"percent": percent},
            headers=admin,
        )
        assert response.status_code == 200, response.text


async def put_personal(
    client: httpx.AsyncClient, admin: dict[str, str], percent: float, **extra: Any
) -> None:
    response = await client.put(
        f"{ADMIN}/users/{VIEWER}/discount", json={"percent": percent, **extra}, headers=admin
    )
    assert response.status_code == 200, response.text


async def quote(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    if "tariff_id" in body:
        body["tariff_id"] = str(body["tariff_id"])
    return await client.post(QUOTES, json=body, headers=headers)


def discount(source: str, percent: float | None, amount: int) -> dict[str, Any]:
    return {"source": source, "percent": percent, "amount": amount}


# Worked examples ---------------------------------------------------------------------------


async def test_three_months_with_a_duration_discount(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {3: 5})

    response = await quote(client, viewer, tariff_id=tariff, months=3)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "tariff_id": str(tariff),
        "months": 3,
        "currency": "RUB",
        "base_amount": 149_700,
        "discount": discount("duration", 5, 7_485),
        "total_amount": 142_215,
        "considered": [discount("duration", 5, 7_485)],
        "promo_code": None,
    }


async def test_without_any_discount_the_total_is_the_base(
    client: httpx.AsyncClient, sessions: Sessions, viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions, price=49_900)

    body = (await quote(client, viewer, tariff_id=tariff, months=2)).json()

    assert (body["base_amount"], body["total_amount"]) == (99_800, 99_800)
    assert body["discount"] == discount("none", None, 0)
    assert body["considered"] == []


@pytest.mark.parametrize(
    ("months", "percent", "amount"),
    [(1, None, 0), (2, None, 0), (3, 5, 7_485), (5, 5, 12_475), (6, 10, 29_940), (11, 10, 54_890),
     (12, 20, 119_760)],
)  # fmt: skip
async def test_the_duration_rule_with_the_largest_months_not_above_applies(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    viewer: dict[str, str],
    months: int,
    percent: int | None,
    amount: int,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {3: 5, 6: 10, 12: 20})

    body = (await quote(client, viewer, tariff_id=tariff, months=months)).json()

    assert body["base_amount"] == 49_900 * months
    expected = discount("duration", percent, amount) if percent else discount("none", None, 0)
    assert body["discount"] == expected
    assert body["total_amount"] == 49_900 * months - amount


async def test_a_personal_discount_larger_in_money_beats_the_duration_one(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {3: 5})
    await put_personal(client, admin, 10, reason="loyal viewer")

    body = (await quote(client, viewer, tariff_id=tariff, months=3)).json()

    assert body["discount"] == discount("personal", 10, 14_970)
    assert body["total_amount"] == 134_730
    assert body["considered"] == [
        discount("personal", 10, 14_970),
        discount("duration", 5, 7_485),
    ]


async def test_the_personal_discount_is_only_its_owners(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_personal(client, admin, 10)

    body = (await quote(client, auth_headers(uuid.uuid4()), tariff_id=tariff, months=1)).json()

    assert body["discount"] == discount("none", None, 0)


async def test_a_fixed_promo_smaller_than_the_duration_discount_loses(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {6: 10})
    await create_promo(client, auth_headers, code="MINUS200", amount=20_000)

    body = (await quote(client, viewer, tariff_id=tariff, months=6, promo_code="minus200")).json()

    # 10 % of 299 400 is 29 940, more than the promo's 20 000: the duration discount wins.
    assert body["base_amount"] == 299_400
    assert body["discount"] == discount("duration", 10, 29_940)
    assert body["total_amount"] == 269_460
    assert body["considered"] == [
        discount("promo", None, 20_000),
        discount("duration", 10, 29_940),
    ]
    assert body["promo_code"] == "MINUS200"


async def test_a_fixed_promo_larger_than_the_duration_discount_wins(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {6: 10})
    await create_promo(client, auth_headers, code="MINUS400", amount=40_000)

    body = (await quote(client, viewer, tariff_id=tariff, months=6, promo_code="MINUS400")).json()

    assert body["discount"] == discount("promo", None, 40_000)
    assert body["total_amount"] == 259_400


async def test_on_equal_money_the_promo_code_wins_then_the_personal_discount(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {1: 10})
    await put_personal(client, admin, 10)
    await create_promo(client, auth_headers, code="TEN", percent=10)

    with_promo = (await quote(client, viewer, tariff_id=tariff, months=1, promo_code="ten")).json()
    without = (await quote(client, viewer, tariff_id=tariff, months=1)).json()

    assert with_promo["discount"] == discount("promo", 10, 4_990)
    assert [d["source"] for d in with_promo["considered"]] == ["promo", "personal", "duration"]
    assert without["discount"] == discount("personal", 10, 4_990)


async def test_percent_discounts_round_half_up_to_the_kopeck(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_personal(client, admin, 12.25)

    body = (await quote(client, viewer, tariff_id=tariff, months=2)).json()

    # 12.25 % of 99 800 = 12 225.5 kopecks → 12 226.
    assert body["discount"] == discount("personal", 12.25, 12_226)
    assert body["total_amount"] == 87_574


async def test_an_expired_personal_discount_is_ignored(
    client: httpx.AsyncClient,
    sessions: Sessions,
    admin: dict[str, str],
    viewer: dict[str, str],
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_duration(client, admin, {3: 5})
    until = clock.now() + timedelta(days=1)
    await put_personal(client, admin, 30, valid_until=until.isoformat())

    before = (await quote(client, viewer, tariff_id=tariff, months=3)).json()
    clock.set(until)
    after = (await quote(client, viewer, tariff_id=tariff, months=3)).json()

    assert before["discount"] == discount("personal", 30, 44_910)
    assert after["discount"] == discount("duration", 5, 7_485)
    assert after["considered"] == [discount("duration", 5, 7_485)]


async def test_a_full_discount_makes_the_total_zero(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await put_personal(client, admin, 100)

    body = (await quote(client, viewer, tariff_id=tariff, months=12)).json()

    assert body["discount"] == discount("personal", 100, 598_800)
    assert body["total_amount"] == 0


async def test_a_fixed_promo_above_the_base_takes_it_to_zero_not_below(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions, price=49_900)
    await create_promo(client, auth_headers, code="HUGE", amount=1_000_000)

    body = (await quote(client, viewer, tariff_id=tariff, months=1, promo_code="HUGE")).json()

    assert body["discount"] == discount("promo", None, 49_900)
    assert body["total_amount"] == 0


async def test_a_blank_promo_code_means_none(
    client: httpx.AsyncClient, sessions: Sessions, viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions)

    response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="  ")

    assert response.status_code == 200
    assert response.json()["promo_code"] is None


async def test_a_quote_changes_nothing_and_reserves_nothing(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="ONCE", percent=10, max_redemptions=1)
    audit_before = await count_rows(sessions, AuditEntry)

    for _ in range(3):
        response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="ONCE")
        assert response.status_code == 200

    row = await promo_row(sessions, "ONCE")
    assert row is not None and row.redemptions_count == 0
    assert await count_rows(sessions, PromoRedemption) == 0
    assert await count_rows(sessions, Invoice) == 0
    assert await count_rows(sessions, AuditEntry) == audit_before


# Promo codes that cannot be used -----------------------------------------------------------


async def test_an_unknown_promo_code_is_not_found(
    client: httpx.AsyncClient, sessions: Sessions, viewer: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions)

    for code in ("NOSUCH", "no such", "ß"):
        response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code=code)
        assert response.status_code == 404
        assert response.json()["code"] == "promo_code_not_found"


async def test_a_promo_code_outside_its_window_is_expired(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    start = clock.now() + timedelta(days=1)
    end = start + timedelta(days=7)
    await create_promo(
        client, auth_headers, code="WEEK", percent=10,
        valid_from=start.isoformat(), valid_until=end.isoformat(),
    )  # fmt: skip

    statuses = []
    for at in (start - timedelta(seconds=1), start, end - timedelta(seconds=1), end):
        clock.set(at)
        response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="WEEK")
        statuses.append((response.status_code, response.json().get("code")))

    expired = (422, "promo_code_expired")
    assert statuses == [expired, (200, None), (200, None), expired]


async def test_a_promo_code_for_other_tariffs_is_not_applicable(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    premium = await add_tariff(sessions, "premium")
    basic = await add_tariff(sessions, "basic", price=19_900)
    await create_promo(
        client, auth_headers, code="PREMIUMONLY", percent=10, tariff_ids=[str(premium)]
    )

    refused = await quote(client, viewer, tariff_id=basic, months=1, promo_code="PREMIUMONLY")
    accepted = await quote(client, viewer, tariff_id=premium, months=1, promo_code="PREMIUMONLY")

    assert (refused.status_code, refused.json()["code"]) == (422, "promo_code_not_applicable")
    assert accepted.status_code == 200


async def test_a_fixed_promo_in_another_currency_is_not_applicable(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
) -> None:
    tariff = await add_tariff(sessions, currency="RUB")
    await create_promo(client, auth_headers, code="FIVEUSD", amount=500, currency="USD")

    response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="FIVEUSD")

    assert (response.status_code, response.json()["code"]) == (422, "promo_code_not_applicable")


async def test_a_used_up_promo_code_is_exhausted(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="LASTONE", percent=10, max_redemptions=1)
    await reserve(sessions, "LASTONE", tariff, uuid.uuid4(), clock.now())

    response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="LASTONE")

    assert (response.status_code, response.json()["code"]) == (422, "promo_code_exhausted")


async def test_a_once_per_user_code_this_viewer_holds_is_already_used(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="ONCEEACH", percent=10)
    await create_promo(client, auth_headers, code="MANY", percent=10, once_per_user=False)
    await reserve(sessions, "ONCEEACH", tariff, VIEWER, clock.now())
    await reserve(sessions, "MANY", tariff, VIEWER, clock.now())

    once = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="onceeach")
    many = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="many")
    someone_else = await quote(
        client, auth_headers(uuid.uuid4()), tariff_id=tariff, months=1, promo_code="onceeach"
    )

    assert (once.status_code, once.json()["code"]) == (422, "promo_code_already_used")
    assert many.status_code == 200
    assert someone_else.status_code == 200


async def test_a_deleted_used_promo_code_reads_as_expired(
    client: httpx.AsyncClient,
    sessions: Sessions,
    viewer: dict[str, str],
    auth_headers: Headers,
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="RETIRED", percent=10, once_per_user=False)
    await reserve(sessions, "RETIRED", tariff, uuid.uuid4(), clock.now())
    deleted = await client.delete(
        f"{ADMIN}/promo-codes/RETIRED", headers=auth_headers("admin-1", "admin")
    )
    assert deleted.status_code == 204

    response = await quote(client, viewer, tariff_id=tariff, months=1, promo_code="RETIRED")

    assert (response.status_code, response.json()["code"]) == (422, "promo_code_expired")


# Tariffs and input ------------------------------------------------------------------------


async def test_an_unknown_tariff_is_not_found(
    client: httpx.AsyncClient, viewer: dict[str, str]
) -> None:
    response = await quote(client, viewer, tariff_id=uuid.uuid4(), months=1)

    assert (response.status_code, response.json()["code"]) == (404, "tariff_not_found")


@pytest.mark.parametrize(
    "tariff", [{"is_active": False}, {"is_active": False, "price": None}], ids=["off", "unpriced"]
)
async def test_a_tariff_not_on_sale_is_inactive(
    client: httpx.AsyncClient, sessions: Sessions, viewer: dict[str, str], tariff: dict[str, Any]
) -> None:
    tariff_id = await add_tariff(sessions, **tariff)

    response = await quote(client, viewer, tariff_id=tariff_id, months=1)

    assert (response.status_code, response.json()["code"]) == (409, "tariff_inactive")


@pytest.mark.parametrize(
    "body",
    [
        {"months": 0},
        {"months": 13},
        {"months": -1},
        {"months": 10**30},
        {"months": "3"},
        {"months": 3.0},
        {"months": True},
        {"months": None},
        {"tariff_id": "not-a-uuid"},
        {"tariff_id": None},
        {"promo_code": "X" * 65},
        {"promo_code": 42},
        {"discount": 100},
    ],
)
async def test_bad_quote_input_is_a_validation_error(
    client: httpx.AsyncClient, sessions: Sessions, viewer: dict[str, str], body: dict[str, Any]
) -> None:
    tariff = await add_tariff(sessions)

    response = await client.post(
        QUOTES, json={"tariff_id": str(tariff), "months": 3, **body}, headers=viewer
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("raw", [b"", b"{}", b"null", b"[1]", b"{"])
async def test_an_empty_or_broken_quote_body_is_a_validation_error(
    client: httpx.AsyncClient, viewer: dict[str, str], raw: bytes
) -> None:
    headers = {**viewer, "Content-Type": "application/json"}
    response = await client.post(QUOTES, content=raw, headers=headers)

    assert (response.status_code, response.json()["code"]) == (422, "validation_error")


async def test_a_quote_needs_a_viewer_token(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions)
    body = {"tariff_id": str(tariff), "months": 1}

    anonymous = await client.post(QUOTES, json=body)
    not_a_user = await client.post(
        QUOTES, json=body, headers=auth_headers("billing-admin", "admin")
    )

    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert (not_a_user.status_code, not_a_user.json()["code"]) == (401, "unauthorized")
    assert await count_rows(sessions, PromoCode) == 0
