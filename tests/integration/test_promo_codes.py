"""Promo codes: the admin API (create, bulk generation, list, delete) and the reservation
accounting checkout relies on (reserve, release, redeem), on the real database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.db import transaction
from billing.errors import Problem
from billing.models import AuditEntry, Invoice, PromoCode, PromoRedemption, Tariff
from billing.pricing.codes import PROMO_ALPHABET
from billing.pricing.service import (
    find_promo_code,
    redeem_promo_reservation,
    release_promo_reservation,
    reserve_promo_code,
)

PROMO_CODES = "/api/v1/admin/promo-codes"
ADMIN = "admin-7"
Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]


# Helpers, shared by the other pricing tests ------------------------------------------------


async def add_tariff(
    sessions: Sessions,
    role: str = "premium",
    *,
    price: int | None = 49_900,
    currency: str = "RUB",
    is_active: bool = True,
) -> uuid.UUID:
    """A tariff row straight in the database (the tariff API belongs to the catalogue)."""
    tariff = Tariff(
        code=role, name=role.title(), role=role, monthly_price=price, currency=currency,
        is_active=is_active,
    )  # fmt: skip
    async with transaction(sessions) as session:
        session.add(tariff)
    return tariff.id


async def add_invoice(sessions: Sessions, tariff_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    """The smallest valid open invoice (promo_redemptions.invoice_id must point at one)."""
    invoice = Invoice(
        user_id=user_id, tariff_id=tariff_id, months=1, currency="RUB", monthly_price=49_900,
        base_amount=49_900, discount_source="none", discount_amount=0, total_amount=49_900,
        considered=[], expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )  # fmt: skip
    async with transaction(sessions) as session:
        session.add(invoice)
    return invoice.id


async def reserve_in(
    session: AsyncSession,
    code: str,
    *,
    tariff_id: uuid.UUID,
    user_id: uuid.UUID,
    invoice_id: uuid.UUID,
    now: datetime,
) -> None:
    promo = await find_promo_code(session, code)
    await reserve_promo_code(
        session, promo, user_id=user_id, invoice_id=invoice_id, tariff_id=tariff_id, now=now
    )


async def reserve(
    sessions: Sessions, code: str, tariff_id: uuid.UUID, user_id: uuid.UUID, now: datetime
) -> uuid.UUID:
    """Reserve ``code`` for a new invoice of ``user_id``, in a transaction of its own."""
    invoice_id = await add_invoice(sessions, tariff_id, user_id)
    async with transaction(sessions) as session:
        await reserve_in(
            session, code, tariff_id=tariff_id, user_id=user_id, invoice_id=invoice_id, now=now
        )
    return invoice_id


async def promo_row(sessions: Sessions, code: str) -> PromoCode | None:
    async with sessions() as session:
        return await session.scalar(select(PromoCode).where(PromoCode.code == code))


async def redemption_statuses(sessions: Sessions) -> list[str]:
    async with sessions() as session:
        return sorted((await session.scalars(select(PromoRedemption.status))).all())


async def audit_rows(sessions: Sessions, entity_type: str) -> list[AuditEntry]:
    async with sessions() as session:
        query = select(AuditEntry).where(AuditEntry.entity_type == entity_type)
        return list((await session.scalars(query.order_by(AuditEntry.created_at))).all())


async def count_rows(sessions: Sessions, model: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def create_promo(
    client: httpx.AsyncClient, auth_headers: Headers, **body: Any
) -> dict[str, Any]:
    response = await client.post(PROMO_CODES, json=body, headers=auth_headers(ADMIN, "marketing"))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# Creating --------------------------------------------------------------------------------


async def test_a_given_code_is_stored_upper_case_with_its_terms(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    until = clock.now() + timedelta(days=30)
    response = await client.post(
        PROMO_CODES,
        json={"code": " summer-10 ", "percent": 10, "valid_until": until.isoformat(),
              "max_redemptions": 100},
        headers=auth_headers(ADMIN, "marketing"),
    )  # fmt: skip

    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"], "code": "SUMMER-10", "percent": 10, "amount": None, "currency": None,
        "valid_from": None, "valid_until": body["valid_until"], "max_redemptions": 100,
        "redemptions_count": 0, "once_per_user": True, "tariff_ids": [], "is_active": True,
        "created_at": body["created_at"],
    }  # fmt: skip
    assert datetime.fromisoformat(body["valid_until"]) == until
    row = await promo_row(sessions, "SUMMER-10")
    assert row is not None and str(row.id) == body["id"] and row.created_by == ADMIN
    [entry] = await audit_rows(sessions, "promo_codes")
    assert (entry.actor, entry.action, entry.entity_id) == (ADMIN, "create", body["id"])
    assert entry.before is None and entry.after == body


async def test_a_fixed_amount_takes_the_default_currency_or_the_given_one(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    rub = await create_promo(client, auth_headers, code="MINUS200", amount=20_000)
    usd = await create_promo(client, auth_headers, code="MINUS5USD", amount=500, currency="USD")

    assert (rub["amount"], rub["currency"], rub["percent"]) == (20_000, "RUB", None)
    assert (usd["amount"], usd["currency"]) == (500, "USD")


async def test_a_code_is_restricted_to_the_tariffs_given(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    premium = await add_tariff(sessions, "premium")
    basic = await add_tariff(sessions, "basic")

    body = await create_promo(
        client, auth_headers, code="ONLY2", percent=15, tariff_ids=[str(premium), str(basic)] * 2
    )

    assert body["tariff_ids"] == sorted([str(premium), str(basic)])


async def test_a_code_that_exists_in_any_case_is_a_conflict(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    await create_promo(client, auth_headers, code="WINTER", percent=5)

    response = await client.post(
        PROMO_CODES, json={"code": "winter", "amount": 100}, headers=auth_headers(ADMIN, "admin")
    )

    assert response.status_code == 409
    assert response.json()["code"] == "promo_code_exists"
    assert await count_rows(sessions, PromoCode) == 1
    assert len(await audit_rows(sessions, "promo_codes")) == 1


async def test_without_a_code_one_is_generated(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    body = await create_promo(client, auth_headers, percent=20)

    assert len(body["code"]) == 10
    assert set(body["code"]) <= set(PROMO_ALPHABET)


async def test_count_generates_that_many_unique_codes_with_the_same_terms(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)

    response = await client.post(
        PROMO_CODES,
        json={"amount": 15_000, "count": 300, "max_redemptions": 1, "tariff_ids": [str(tariff)]},
        headers=auth_headers(ADMIN, "marketing"),
    )

    assert response.status_code == 201, response.text
    codes = response.json()
    assert isinstance(codes, list) and len(codes) == 300
    assert len({code["code"] for code in codes}) == 300
    assert {
        (c["amount"], c["currency"], c["max_redemptions"], tuple(c["tariff_ids"])) for c in codes
    } == {(15_000, "RUB", 1, (str(tariff),))}
    assert await count_rows(sessions, PromoCode) == 300
    assert len(await audit_rows(sessions, "promo_codes")) == 300


async def test_count_of_one_answers_a_list_of_one(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    response = await client.post(
        PROMO_CODES,
        json={"code": "single", "percent": 5, "count": 1},
        headers=auth_headers(ADMIN, "admin"),
    )

    assert response.status_code == 201
    assert [code["code"] for code in response.json()] == ["SINGLE"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"percent": 10, "amount": 100}, "exactly one"),
        ({"code": "NOTHING"}, "exactly one"),
        ({"percent": 0}, "more than zero"),
        ({"amount": 0}, "more than zero"),
        ({"percent": 101}, "percent"),
        ({"percent": -1}, "percent"),
        ({"percent": 10.125}, "percent"),
        ({"amount": -100}, "amount"),
        ({"amount": 10_000_000_001}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": 99.5}, "amount"),
        ({"percent": 10, "currency": "RUB"}, "currency goes with amount"),
        ({"amount": 100, "currency": "rub"}, "currency"),
        ({"percent": 10, "code": "ab"}, "code"),
        ({"percent": 10, "code": "with space"}, "code"),
        ({"percent": 10, "code": "straße"}, "code"),
        ({"percent": 10, "code": "X" * 33}, "code"),
        ({"percent": 10, "code": "TWICE", "count": 2}, "leave out count or code"),
        ({"percent": 10, "count": 0}, "count"),
        ({"percent": 10, "count": 1001}, "count"),
        ({"percent": 10, "count": "5"}, "count"),
        ({"percent": 10, "max_redemptions": 0}, "max_redemptions"),
        ({"percent": 10, "max_redemptions": True}, "max_redemptions"),
        ({"percent": 10, "once_per_user": "yes"}, "once_per_user"),
        ({"percent": 10, "tariff_ids": ["not-a-uuid"]}, "tariff_ids"),
        ({"percent": 10, "valid_until": "2030-01-01T00:00:00"}, "valid_until"),
        (
            {
                "percent": 10,
                "valid_from": "2030-01-02T00:00:00Z",
                "valid_until": "2030-01-01T00:00:00Z",
            },
            "valid_from must be before",
        ),
        (
            {
                "percent": 10,
                "valid_from": "2030-01-01T00:00:00Z",
                "valid_until": "2030-01-01T00:00:00Z",
            },
            "valid_from must be before",
        ),
        ({"percent": 10, "prefix": "X"}, "prefix"),
        ({}, "exactly one"),
    ],
)
async def test_bad_promo_bodies_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    body: dict[str, Any],
    where: str,
) -> None:
    response = await client.post(PROMO_CODES, json=body, headers=auth_headers(ADMIN, "admin"))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert where in str(problem), problem
    assert await count_rows(sessions, PromoCode) == 0
    assert await count_rows(sessions, AuditEntry) == 0


@pytest.mark.parametrize("raw", [b"", b"null", b"[]", b"{", b"42"])
async def test_an_empty_or_broken_body_is_a_validation_error(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, raw: bytes
) -> None:
    headers = {**auth_headers(ADMIN, "admin"), "Content-Type": "application/json"}
    response = await client.post(PROMO_CODES, content=raw, headers=headers)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await count_rows(sessions, PromoCode) == 0


async def test_a_validity_window_that_is_already_over_is_refused(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    response = await client.post(
        PROMO_CODES,
        json={"percent": 10, "valid_until": clock.now().isoformat()},
        headers=auth_headers(ADMIN, "admin"),
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "valid_until: must be in the future"
    assert await count_rows(sessions, PromoCode) == 0


async def test_an_unknown_tariff_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    known = await add_tariff(sessions)
    unknown = uuid.uuid4()

    response = await client.post(
        PROMO_CODES,
        json={"percent": 10, "count": 3, "tariff_ids": [str(known), str(unknown)]},
        headers=auth_headers(ADMIN, "admin"),
    )

    assert response.status_code == 404
    assert response.json()["code"] == "tariff_not_found"
    assert str(unknown) in response.json()["detail"]
    assert await count_rows(sessions, PromoCode) == 0
    assert await count_rows(sessions, AuditEntry) == 0


# Listing ---------------------------------------------------------------------------------


async def test_the_list_is_newest_first_and_paged(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    for code in ("FIRST", "SECOND", "THIRD"):
        await create_promo(client, auth_headers, code=code, percent=5)
    headers = auth_headers(ADMIN, "marketing")

    everything = await client.get(PROMO_CODES, headers=headers)
    page = await client.get(PROMO_CODES, params={"limit": 1, "offset": 1}, headers=headers)

    assert everything.status_code == 200
    assert [c["code"] for c in everything.json()] == ["THIRD", "SECOND", "FIRST"]
    assert [c["code"] for c in page.json()] == ["SECOND"]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"active": "maybe"}]
)
async def test_bad_list_parameters_are_validation_errors(
    client: httpx.AsyncClient, auth_headers: Headers, params: dict[str, Any]
) -> None:
    response = await client.get(PROMO_CODES, params=params, headers=auth_headers(ADMIN, "admin"))

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# Deleting --------------------------------------------------------------------------------


async def test_deleting_an_unused_code_removes_it(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    created = await create_promo(
        client, auth_headers, code="GONE", percent=5, tariff_ids=[str(tariff)]
    )

    response = await client.delete(f"{PROMO_CODES}/gone", headers=auth_headers(ADMIN, "admin"))

    assert response.status_code == 204
    assert response.content == b""
    assert await promo_row(sessions, "GONE") is None
    listed = await client.get(PROMO_CODES, headers=auth_headers(ADMIN, "admin"))
    assert listed.json() == []
    entry = (await audit_rows(sessions, "promo_codes"))[-1]
    assert (entry.action, entry.entity_id, entry.after) == ("delete", created["id"], None)
    assert entry.before == created


async def test_deleting_a_used_code_deactivates_it_and_keeps_its_history(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    created = await create_promo(client, auth_headers, code="USED", percent=5)
    await create_promo(client, auth_headers, code="FRESH", percent=5)
    await reserve(sessions, "USED", tariff, uuid.uuid4(), clock.now())
    headers = auth_headers(ADMIN, "admin")

    response = await client.delete(f"{PROMO_CODES}/Used", headers=headers)

    assert response.status_code == 204
    row = await promo_row(sessions, "USED")
    assert row is not None and row.is_active is False and row.redemptions_count == 1
    assert await redemption_statuses(sessions) == ["reserved"]
    inactive = await client.get(PROMO_CODES, params={"active": "false"}, headers=headers)
    active = await client.get(PROMO_CODES, params={"active": "true"}, headers=headers)
    assert [(c["code"], c["is_active"]) for c in inactive.json()] == [("USED", False)]
    assert [c["code"] for c in active.json()] == ["FRESH"]
    entry = (await audit_rows(sessions, "promo_codes"))[-1]
    assert entry.action == "deactivate"
    assert entry.before == created | {"redemptions_count": 1}
    assert entry.after == created | {"redemptions_count": 1, "is_active": False}

    again = await client.delete(f"{PROMO_CODES}/USED", headers=headers)

    assert again.status_code == 204
    assert (await audit_rows(sessions, "promo_codes"))[-1].id == entry.id  # nothing changed


@pytest.mark.parametrize("code", ["NOSUCH", "no such", "ß", "x" * 100])
async def test_deleting_an_unknown_code_is_not_found(
    client: httpx.AsyncClient, auth_headers: Headers, code: str
) -> None:
    await create_promo(client, auth_headers, code="OTHER", percent=5)

    response = await client.delete(f"{PROMO_CODES}/{code}", headers=auth_headers(ADMIN, "admin"))

    assert response.status_code == 404
    assert response.json()["code"] == "promo_code_not_found"


# Who may -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", PROMO_CODES, None),
        ("POST", PROMO_CODES, {"percent": 10}),
        ("DELETE", f"{PROMO_CODES}/KEEP", None),
    ],
)
async def test_promo_admin_needs_an_admin_or_marketing_token(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    await create_promo(client, auth_headers, code="KEEP", percent=5)

    anonymous = await client.request(method, path, json=body)
    viewer = await client.request(method, path, json=body, headers=auth_headers(uuid.uuid4()))

    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized")
    assert (viewer.status_code, viewer.json()["code"]) == (403, "forbidden")
    assert await count_rows(sessions, PromoCode) == 1
    assert len(await audit_rows(sessions, "promo_codes")) == 1


# Reservation accounting ------------------------------------------------------------------


async def test_reserve_release_and_redeem_keep_the_count_honest(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="COUNTED", percent=10, max_redemptions=2)
    first = await reserve(sessions, "counted", tariff, uuid.uuid4(), clock.now())
    second = await reserve(sessions, "COUNTED", tariff, uuid.uuid4(), clock.now())
    row = await promo_row(sessions, "COUNTED")
    assert row is not None and row.redemptions_count == 2

    async with transaction(sessions) as session:
        assert await release_promo_reservation(session, first) is True
        assert await release_promo_reservation(session, first) is False  # twice: harmless
        assert await redeem_promo_reservation(session, second) is True
        assert await redeem_promo_reservation(session, second) is False
        assert await redeem_promo_reservation(session, first) is False  # released stays so
        assert await release_promo_reservation(session, second) is False  # paid stays so

    row = await promo_row(sessions, "COUNTED")
    assert row is not None and row.redemptions_count == 1
    assert await redemption_statuses(sessions) == ["redeemed", "released"]


async def test_a_released_slot_can_be_taken_again(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    user = uuid.uuid4()
    await create_promo(client, auth_headers, code="ONESLOT", percent=10, max_redemptions=1)
    invoice = await reserve(sessions, "ONESLOT", tariff, user, clock.now())
    async with transaction(sessions) as session:
        await release_promo_reservation(session, invoice)

    await reserve(sessions, "ONESLOT", tariff, user, clock.now())  # same user, once per user

    row = await promo_row(sessions, "ONESLOT")
    assert row is not None and row.redemptions_count == 1
    assert await redemption_statuses(sessions) == ["released", "reserved"]


async def test_a_code_for_many_uses_per_user_can_be_reserved_twice(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    user = uuid.uuid4()
    await create_promo(client, auth_headers, code="AGAIN", percent=10, once_per_user=False)

    await reserve(sessions, "AGAIN", tariff, user, clock.now())
    await reserve(sessions, "AGAIN", tariff, user, clock.now())

    assert await redemption_statuses(sessions) == ["reserved", "reserved"]


@pytest.mark.parametrize(
    ("terms", "reserved_before_by", "tariff_matches", "expected"),
    [
        ({"max_redemptions": 1}, "another user", True, "promo_code_exhausted"),
        ({}, "the same user", True, "promo_code_already_used"),
        ({"valid_from": "2199-01-01T00:00:00Z"}, None, True, "promo_code_expired"),
        ({}, None, False, "promo_code_not_applicable"),
    ],
)
async def test_a_refused_reservation_leaves_the_callers_transaction_usable(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
    terms: dict[str, Any],
    reserved_before_by: str | None,
    tariff_matches: bool,
    expected: str,
) -> None:
    tariff = await add_tariff(sessions)
    other_tariff = await add_tariff(sessions, "basic")
    user = uuid.uuid4()
    await create_promo(
        client, auth_headers, code="LIMITED", percent=10, tariff_ids=[str(tariff)], **terms
    )
    if reserved_before_by is not None:
        earlier = user if reserved_before_by == "the same user" else uuid.uuid4()
        await reserve(sessions, "LIMITED", tariff, earlier, clock.now())
    invoice = await add_invoice(sessions, tariff, user)
    marker = await add_tariff(sessions, "marker", is_active=False)

    async with transaction(sessions) as session:
        with pytest.raises(Problem) as refused:
            await reserve_in(
                session, "LIMITED", tariff_id=tariff if tariff_matches else other_tariff,
                user_id=user, invoice_id=invoice, now=clock.now(),
            )  # fmt: skip
        # The caller goes on in the same transaction and commits.
        (await session.get_one(Tariff, marker)).name = "still usable"

    assert (refused.value.status, refused.value.code) == (422, expected)
    async with sessions() as session:
        assert (await session.get_one(Tariff, marker)).name == "still usable"
    row = await promo_row(sessions, "LIMITED")
    assert row is not None
    assert row.redemptions_count == (0 if reserved_before_by is None else 1)
    assert len(await redemption_statuses(sessions)) == row.redemptions_count


async def test_a_lost_once_per_user_race_is_already_used_and_takes_no_slot(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    """Deterministically the race the partial unique index exists for: the second
    reservation passes the "already used?" check before the first commits, waits on the
    code's row, then hits the index; the SAVEPOINT undoes its count and keeps its
    transaction alive."""
    tariff = await add_tariff(sessions)
    user = uuid.uuid4()
    await create_promo(client, auth_headers, code="RACE", percent=10)
    first_invoice = await add_invoice(sessions, tariff, user)
    second_invoice = await add_invoice(sessions, tariff, user)
    marker = await add_tariff(sessions, "marker", is_active=False)

    async def second() -> Problem | None:
        async with transaction(sessions) as session:
            try:
                await reserve_in(
                    session, "RACE", tariff_id=tariff, user_id=user,
                    invoice_id=second_invoice, now=clock.now(),
                )  # fmt: skip
            except Problem as problem:
                (await session.get_one(Tariff, marker)).name = "second committed"
                return problem
        return None

    async with transaction(sessions) as first:
        await reserve_in(
            first, "RACE", tariff_id=tariff, user_id=user, invoice_id=first_invoice,
            now=clock.now(),
        )  # fmt: skip
        racing = asyncio.create_task(second())
        await _until_someone_waits_for_a_lock(sessions)
    refused = await racing

    assert refused is not None and refused.code == "promo_code_already_used"
    row = await promo_row(sessions, "RACE")
    assert row is not None and row.redemptions_count == 1
    assert await redemption_statuses(sessions) == ["reserved"]
    async with sessions() as session:
        assert (await session.get_one(Tariff, marker)).name == "second committed"


async def _until_someone_waits_for_a_lock(sessions: Sessions) -> None:
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
    for _ in range(500):
        async with sessions() as session:
            if await session.scalar(query):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the second reservation never waited for the first")
