"""Editing promo codes through the admin API: the window and the limit, deactivating and
reactivating, and the list of a code's redemptions; the limit holds while it is lowered
under concurrent reservations."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from billing.clock import FrozenClock
from billing.db import transaction
from billing.errors import Problem
from billing.models import PromoCode
from billing.pricing.promo_codes import update_promo_code
from billing.pricing.schemas import PromoCodeChange
from tests.integration.checkout_helpers import make_viewer
from tests.integration.test_promo_codes import (
    ADMIN,
    PROMO_CODES,
    Headers,
    Sessions,
    add_invoice,
    add_tariff,
    audit_rows,
    create_promo,
    promo_row,
    redemption_statuses,
    reserve,
    reserve_in,
)
from tests.integration.test_promo_concurrency import race, racing_sessions  # noqa: F401

QUOTES = "/api/v1/quotes"


async def patch(
    client: httpx.AsyncClient, auth_headers: Headers, code: str, **body: Any
) -> httpx.Response:
    """``PATCH`` the code as marketing."""
    headers = auth_headers(ADMIN, "marketing")
    return await client.patch(f"{PROMO_CODES}/{code}", json=body, headers=headers)


async def quote_status(
    client: httpx.AsyncClient, auth_headers: Headers, tariff: uuid.UUID, code: str
) -> str:
    """What a viewer's quote with the code says: ``ok`` or the refusal's code."""
    response = await client.post(
        QUOTES,
        json={"tariff_id": str(tariff), "months": 1, "promo_code": code},
        headers=auth_headers(uuid.uuid4()),
    )
    return "ok" if response.status_code == 200 else str(response.json()["code"])


# Window and limit -------------------------------------------------------------------------


async def test_marketing_extends_the_window_and_raises_the_limit_audited(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    created = await create_promo(
        client, auth_headers, code="SPRING", percent=15, max_redemptions=10,
        valid_until=(clock.now() + timedelta(days=7)).isoformat(),
    )  # fmt: skip
    until = clock.now() + timedelta(days=60)

    response = await patch(
        client, auth_headers, "spring", valid_until=until.isoformat(), max_redemptions=50
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {**created, "valid_until": body["valid_until"], "max_redemptions": 50}
    row = await promo_row(sessions, "SPRING")
    assert row is not None and row.valid_until == until and row.max_redemptions == 50
    entry = (await audit_rows(sessions, "promo_codes"))[-1]
    assert (entry.actor, entry.action, entry.entity_id) == (ADMIN, "update", created["id"])
    assert entry.before == created and entry.after == body


async def test_fields_left_out_stay_and_null_clears_the_end_and_the_limit(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    start = clock.now() + timedelta(days=1)
    await create_promo(
        client, auth_headers, code="OPEN", percent=5, max_redemptions=3,
        valid_from=start.isoformat(), valid_until=(start + timedelta(days=1)).isoformat(),
    )  # fmt: skip

    response = await patch(client, auth_headers, "OPEN", valid_until=None, max_redemptions=None)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["valid_until"], body["max_redemptions"]) == (None, None)
    row = await promo_row(sessions, "OPEN")
    assert row is not None and row.valid_from == start and row.is_active


async def test_a_change_to_nothing_new_answers_the_code_and_records_nothing(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    created = await create_promo(client, auth_headers, code="SAME", percent=5, max_redemptions=2)

    same = await patch(client, auth_headers, "same", max_redemptions=2)
    empty = await patch(client, auth_headers, "same")

    assert (same.status_code, empty.status_code) == (200, 200)
    assert same.json() == empty.json() == created
    assert [entry.action for entry in await audit_rows(sessions, "promo_codes")] == ["create"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"percent": 50}, "percent: fixed once the code is created"),
        ({"amount": 100}, "amount: fixed"),
        ({"currency": "USD"}, "currency: fixed"),
        ({"tariff_ids": []}, "tariff_ids: fixed"),
        ({"once_per_user": False}, "once_per_user: fixed"),
        ({"code": "OTHER"}, "code: fixed"),
        ({"max_redemptions": 0}, "max_redemptions"),
        ({"max_redemptions": "5"}, "max_redemptions"),
        ({"is_active": None}, "is_active: true or false"),
        ({"is_active": "no"}, "is_active"),
        ({"valid_until": "2030-01-01T00:00:00"}, "valid_until"),
        ({"valid_until": "not a date"}, "valid_until"),
        (
            {"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
            "valid_from must be before valid_until",
        ),
        ({"valid_until": "2000-01-01T00:00:00Z"}, "valid_until: must be in the future"),
        # The existing start is after this end: the window the change leaves is refused.
        ({"valid_until": "2099-12-01T00:00:00Z"}, "valid_from must be before valid_until"),
        ({"limit": 5}, "limit"),
    ],
)
async def test_changes_the_rules_refuse_are_validation_errors_and_change_nothing(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    body: dict[str, Any],
    where: str,
) -> None:
    await create_promo(
        client, auth_headers, code="FIXED", percent=10,
        valid_from="2099-12-15T00:00:00Z", valid_until="2100-01-01T00:00:00Z",
    )  # fmt: skip

    response = await client.patch(
        f"{PROMO_CODES}/FIXED", json=body, headers=auth_headers(ADMIN, "admin")
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert where in str(response.json()), response.json()
    row = await promo_row(sessions, "FIXED")
    assert row is not None and row.percent == 10 and row.max_redemptions is None
    assert len(await audit_rows(sessions, "promo_codes")) == 1


async def test_the_limit_cannot_go_below_the_redemptions_reserved_or_redeemed(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="THREE", percent=10, max_redemptions=10)
    for _ in range(3):
        await reserve(sessions, "THREE", tariff, uuid.uuid4(), clock.now())

    below = await patch(client, auth_headers, "three", max_redemptions=2)
    exactly = await patch(client, auth_headers, "three", max_redemptions=3)

    assert below.status_code == 409
    assert below.json()["code"] == "promo_code_limit_below_taken"
    assert "has 3 redemptions reserved or redeemed" in below.json()["detail"]
    assert exactly.status_code == 200 and exactly.json()["max_redemptions"] == 3
    assert await quote_status(client, auth_headers, tariff, "THREE") == "promo_code_exhausted"


# Deactivate, reactivate ---------------------------------------------------------------------


async def test_a_deactivated_code_stops_working_and_a_reactivated_one_works_again(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    created = await create_promo(client, auth_headers, code="PAUSE", percent=10)

    off = await patch(client, auth_headers, "pause", is_active=False)
    refused = await quote_status(client, auth_headers, tariff, "PAUSE")
    on = await patch(client, auth_headers, "pause", is_active=True)

    assert (off.status_code, off.json()["is_active"]) == (200, False)
    assert refused == "promo_code_expired"
    assert (on.status_code, on.json()["is_active"]) == (200, True)
    assert await quote_status(client, auth_headers, tariff, "PAUSE") == "ok"
    entries = await audit_rows(sessions, "promo_codes")
    assert [entry.action for entry in entries] == ["create", "deactivate", "reactivate"]
    assert entries[1].before == created and entries[1].after == off.json()
    assert entries[2].before == off.json() and entries[2].after == on.json()


async def test_an_ended_code_is_reactivated_only_with_a_window_that_admits_it(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(
        client, auth_headers, code="ENDED", percent=10,
        valid_until=(clock.now() + timedelta(hours=1)).isoformat(),
    )  # fmt: skip
    assert (await patch(client, auth_headers, "ENDED", is_active=False)).status_code == 200
    clock.advance(timedelta(hours=2))

    alone = await patch(client, auth_headers, "ENDED", is_active=True)
    later = (clock.now() + timedelta(days=30)).isoformat()
    extended = await patch(client, auth_headers, "ENDED", is_active=True, valid_until=later)

    assert alone.status_code == 409
    assert alone.json()["code"] == "promo_code_not_reactivatable"
    assert "later valid_until" in alone.json()["detail"]
    assert extended.status_code == 200, extended.text
    assert await quote_status(client, auth_headers, tariff, "ENDED") == "ok"


async def test_a_used_up_code_is_reactivated_only_with_a_limit_that_admits_it(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="USEDUP", percent=10, max_redemptions=1)
    await reserve(sessions, "USEDUP", tariff, uuid.uuid4(), clock.now())
    assert (await patch(client, auth_headers, "USEDUP", is_active=False)).status_code == 200

    alone = await patch(client, auth_headers, "USEDUP", is_active=True)
    raised = await patch(client, auth_headers, "USEDUP", is_active=True, max_redemptions=2)

    assert alone.status_code == 409
    assert alone.json()["code"] == "promo_code_not_reactivatable"
    assert "used up (1 of 1)" in alone.json()["detail"]
    assert raised.status_code == 200 and raised.json()["is_active"] is True
    assert await quote_status(client, auth_headers, tariff, "USEDUP") == "ok"


# Who may, which code ------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["NOSUCH", "x", "not a code"])
async def test_an_unknown_code_is_404_for_the_edit_and_the_redemptions(
    client: httpx.AsyncClient, auth_headers: Headers, code: str
) -> None:
    edited = await patch(client, auth_headers, code, max_redemptions=5)
    listed = await client.get(
        f"{PROMO_CODES}/{code}/redemptions", headers=auth_headers(ADMIN, "marketing")
    )

    assert (edited.status_code, edited.json()["code"]) == (404, "promo_code_not_found")
    assert (listed.status_code, listed.json()["code"]) == (404, "promo_code_not_found")


async def test_a_viewer_may_neither_edit_nor_list_redemptions(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    await create_promo(client, auth_headers, code="STAFF", percent=10)
    viewer = auth_headers(uuid.uuid4())

    edited = await client.patch(f"{PROMO_CODES}/STAFF", json={"is_active": False}, headers=viewer)
    listed = await client.get(f"{PROMO_CODES}/STAFF/redemptions", headers=viewer)

    assert (edited.status_code, listed.status_code) == (403, 403)
    row = await promo_row(sessions, "STAFF")
    assert row is not None and row.is_active


# Redemptions ---------------------------------------------------------------------------------


async def test_the_redemptions_say_who_paid_with_the_code_and_what_it_took_off(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions, price=50_000)
    await create_promo(client, auth_headers, code="PAID20", percent=20)
    payer, holder = make_viewer(client, auth_headers), make_viewer(client, auth_headers)
    paid_invoice = await payer.issue_invoice(tariff, promo_code="paid20")
    await payer.press(await payer.start_payment(paid_invoice["id"]))
    held_invoice = await holder.issue_invoice(tariff, promo_code="PAID20")

    response = await client.get(
        f"{PROMO_CODES}/paid20/redemptions", headers=auth_headers(ADMIN, "marketing")
    )
    first_page = await client.get(
        f"{PROMO_CODES}/PAID20/redemptions",
        params={"limit": 1},
        headers=auth_headers(ADMIN, "admin"),
    )

    assert response.status_code == 200, response.text
    held, paid = response.json()
    assert paid == {
        "user_id": str(payer.user_id), "invoice_id": paid_invoice["id"], "status": "redeemed",
        "reserved_at": paid["reserved_at"], "paid_at": paid["paid_at"],
        "discount_amount": 10_000, "currency": "RUB",
    }  # fmt: skip
    assert paid["paid_at"] is not None
    assert (held["user_id"], held["invoice_id"]) == (str(holder.user_id), held_invoice["id"])
    assert (held["status"], held["paid_at"], held["discount_amount"]) == ("reserved", None, 10_000)
    assert [row["invoice_id"] for row in first_page.json()] == [held_invoice["id"]]


# Concurrency --------------------------------------------------------------------------------


async def wait_for_lock_waiters(sessions: Sessions, count: int) -> None:
    """Until ``count`` transactions of this database wait for a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        async with sessions() as session:
            if (await session.scalar(query)) == count:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} transactions never waited for the lock")


async def test_ten_reservations_queued_behind_a_lowered_limit_never_pass_it(
    sessions: Sessions,
    racing_sessions: Sessions,  # noqa: F811 - the fixture
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    async with transaction(sessions) as session:
        session.add(PromoCode(code="LOWER", percent=10, max_redemptions=20))
    for _ in range(2):
        await reserve(sessions, "LOWER", tariff, uuid.uuid4(), clock.now())
    users = [uuid.uuid4() for _ in range(10)]
    invoices = [(user, await add_invoice(sessions, tariff, user)) for user in users]

    async with transaction(racing_sessions) as session:
        lowered = PromoCodeChange(max_redemptions=5)
        await update_promo_code(session, "lower", lowered, actor=ADMIN, now=clock.now())
        racers = asyncio.ensure_future(race(racing_sessions, "LOWER", tariff, invoices))
        # Every reservation now waits for this transaction's lock on the code's row.
        await wait_for_lock_waiters(sessions, 10)
    outcomes = await racers

    assert outcomes.count("reserved") == 3, outcomes
    assert outcomes.count("promo_code_exhausted") == 7, outcomes
    row = await promo_row(sessions, "LOWER")
    assert row is not None and (row.redemptions_count, row.max_redemptions) == (5, 5)
    assert await redemption_statuses(sessions) == ["reserved"] * 5


async def test_a_limit_lowered_while_reservations_are_in_flight_counts_them(
    sessions: Sessions,
    racing_sessions: Sessions,  # noqa: F811 - the fixture
    clock: FrozenClock,
) -> None:
    """The edit waits for the reservations holding the row, then refuses a limit below what
    they took, instead of writing a limit the count already passed."""
    tariff = await add_tariff(sessions)
    async with transaction(sessions) as session:
        session.add(PromoCode(code="INFLIGHT", percent=10, max_redemptions=20))
    users = [uuid.uuid4() for _ in range(6)]
    invoices = [(user, await add_invoice(sessions, tariff, user)) for user in users]

    async def lower() -> str:
        async with transaction(racing_sessions) as session:
            try:
                change = PromoCodeChange(max_redemptions=5)
                await update_promo_code(session, "INFLIGHT", change, actor=ADMIN, now=clock.now())
            except Problem as problem:
                return problem.code
        return "lowered"

    async with transaction(racing_sessions) as session:
        for user, invoice in invoices:
            await reserve_in(
                session, "INFLIGHT", tariff_id=tariff, user_id=user, invoice_id=invoice,
                now=clock.now(),
            )  # fmt: skip
        edit = asyncio.ensure_future(lower())
        await wait_for_lock_waiters(sessions, 1)
    outcome = await edit

    assert outcome == "promo_code_limit_below_taken"
    row = await promo_row(sessions, "INFLIGHT")
    assert row is not None and (row.redemptions_count, row.max_redemptions) == (6, 20)


async def test_reservations_racing_an_edit_of_the_limit_through_the_api_never_exceed_it(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    racing_sessions: Sessions,  # noqa: F811 - the fixture
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    await create_promo(client, auth_headers, code="RACE", percent=10, max_redemptions=20)
    for _ in range(2):
        await reserve(sessions, "RACE", tariff, uuid.uuid4(), clock.now())
    users = [uuid.uuid4() for _ in range(10)]
    invoices = [(user, await add_invoice(sessions, tariff, user)) for user in users]

    edit, outcomes = await asyncio.gather(
        patch(client, auth_headers, "race", max_redemptions=5),
        race(racing_sessions, "RACE", tariff, invoices),
    )

    row = await promo_row(sessions, "RACE")
    assert row is not None
    reserved = outcomes.count("reserved")
    assert reserved + outcomes.count("promo_code_exhausted") == 10, outcomes
    assert row.redemptions_count == 2 + reserved
    assert await redemption_statuses(sessions) == ["reserved"] * (2 + reserved)
    if edit.status_code == 200:
        # Lowered first, or after few enough: the new limit holds from then on.
        assert row.max_redemptions == 5 and row.redemptions_count <= 5
    else:
        # Too many got in before the edit: it is refused and the old limit stays.
        assert edit.json()["code"] == "promo_code_limit_below_taken"
        assert row.max_redemptions == 20 and row.redemptions_count > 5
