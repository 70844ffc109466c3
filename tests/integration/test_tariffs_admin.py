"""Admin API for tariffs: create, change, activate, price history, through HTTP on PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import AuditEntry, Invoice, Tariff, TariffPrice

ADMIN = "marta@marketing"
Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers(ADMIN, "marketing")


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"code": "premium", "name": "Premium", "role": "premium", **fields}
    response = await client.post("/api/v1/admin/tariffs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def counts(sessions: Sessions) -> tuple[int, int, int]:
    """Rows of tariffs, price history and audit log: what a refused request must not change."""
    async with sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Tariff)) or 0,
            await session.scalar(select(func.count()).select_from(TariffPrice)) or 0,
            await session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


async def history(sessions: Sessions, tariff_id: str) -> list[TariffPrice]:
    async with sessions() as session:
        rows = await session.scalars(
            select(TariffPrice)
            .where(TariffPrice.tariff_id == uuid.UUID(tariff_id))
            .order_by(TariffPrice.changed_at)
        )
        return list(rows)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def audit(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.created_at)))


# --- who may call it ----------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/v1/admin/tariffs", None),
    ("POST", "/api/v1/admin/tariffs", {"code": "x", "name": "X", "role": "x"}),
    ("GET", f"/api/v1/admin/tariffs/{uuid.uuid4()}", None),
    ("PATCH", f"/api/v1/admin/tariffs/{uuid.uuid4()}", {"name": "X"}),
    ("GET", f"/api/v1/admin/tariffs/{uuid.uuid4()}/prices", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_admin_endpoints_need_a_token(
    client: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_admin_endpoints_refuse_a_viewer(
    client: httpx.AsyncClient, auth_headers: Headers, method: str, path: str, body: Any
) -> None:
    viewer = auth_headers(uuid.uuid4(), "subscriber")
    response = await client.request(method, path, json=body, headers=viewer)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_a_viewer_creates_nothing(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    body = {"code": "premium", "name": "Premium", "role": "premium", "monthly_price": 1}
    response = await client.post(
        "/api/v1/admin/tariffs", json=body, headers=auth_headers(uuid.uuid4())
    )
    assert response.status_code == 403
    assert await counts(sessions) == (0, 0, 0)


async def test_an_admin_token_works_as_well_as_marketing(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    response = await client.get("/api/v1/admin/tariffs", headers=auth_headers("root", "admin"))
    assert response.status_code == 200
    assert response.json() == []


# --- create -------------------------------------------------------------------------------


async def test_create_a_priced_active_tariff(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions, clock: FrozenClock
) -> None:
    created = await create(
        client,
        admin,
        description="4K and premieres",
        monthly_price=49900,
        is_active=True,
    )
    assert created == {
        "id": created["id"],
        "code": "premium",
        "name": "Premium",
        "description": "4K and premieres",
        "role": "premium",
        "monthly_price": 49900,
        "currency": "RUB",
        "is_active": True,
        "role_exists": True,
        "created_at": created["created_at"],
        "updated_at": created["updated_at"],
    }
    # The first price is the first row of the price history.
    [first] = await history(sessions, created["id"])
    assert (first.previous_price, first.monthly_price, first.currency) == (None, 49900, "RUB")
    assert (first.changed_by, first.changed_at) == (ADMIN, clock.now())

    [entry] = await audit(sessions)
    assert (entry.actor, entry.action, entry.entity_type, entry.entity_id) == (
        ADMIN,
        "create",
        "tariffs",
        created["id"],
    )
    assert entry.before is None
    assert entry.after == {
        "code": "premium",
        "name": "Premium",
        "description": "4K and premieres",
        "role": "premium",
        "monthly_price": 49900,
        "currency": "RUB",
        "is_active": True,
    }

    fetched = await client.get(f"/api/v1/admin/tariffs/{created['id']}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_create_defaults_inactive_unpriced_in_the_configured_currency(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin, code="family", role="family", name="  Family  ")
    assert created["name"] == "Family"
    assert (created["description"], created["monthly_price"], created["currency"]) == (
        "",
        None,
        "RUB",
    )
    assert created["is_active"] is False
    assert await history(sessions, created["id"]) == []


async def test_create_in_another_currency(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin, monthly_price=999, currency="EUR")
    assert created["currency"] == "EUR"
    [first] = await history(sessions, created["id"])
    assert first.currency == "EUR"


async def test_duplicate_code_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    await create(client, admin, monthly_price=100)
    before = await counts(sessions)
    response = await client.post(
        "/api/v1/admin/tariffs",
        json={"code": "premium", "name": "Other", "role": "other", "monthly_price": 5},
        headers=admin,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "tariff_code_exists"
    assert await counts(sessions) == before


async def test_duplicate_role_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    await create(client, admin)
    before = await counts(sessions)
    response = await client.post(
        "/api/v1/admin/tariffs",
        json={"code": "premium-2", "name": "Again", "role": "premium"},
        headers=admin,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "tariff_role_exists"
    assert await counts(sessions) == before


async def test_concurrent_creates_of_one_code_give_one_tariff_and_one_conflict(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    bodies = [
        {"code": "premium", "name": f"Premium {n}", "role": f"premium-{n}", "monthly_price": n}
        for n in range(5)
    ]
    responses = await asyncio.gather(
        *(client.post("/api/v1/admin/tariffs", json=body, headers=admin) for body in bodies)
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409, 409, 409]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"tariff_code_exists"}
    assert await counts(sessions) == (1, 1, 1)


async def test_an_active_tariff_needs_a_price(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    response = await client.post(
        "/api/v1/admin/tariffs",
        json={"code": "premium", "name": "Premium", "role": "premium", "is_active": True},
        headers=admin,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "tariff_unpriced"
    assert await counts(sessions) == (0, 0, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"code": "Premium"},
        {"code": ""},
        {"code": "a" * 65},
        {"code": "pre mium"},
        {"code": "премиум"},
        {"role": ""},
        {"role": "Premium"},
        {"role": "r" * 101},
        {"role": "premium/../admin"},
        {"name": ""},
        {"name": "   "},
        {"name": "n" * 201},
        {"name": None},
        {"monthly_price": -1},
        {"monthly_price": 499.5},
        {"monthly_price": 49900.0},
        {"monthly_price": "49900"},
        {"monthly_price": 10_000_000_001},
        {"monthly_price": 10**30},
        {"monthly_price": True},
        {"currency": "rub"},
        {"currency": "RUBL"},
        {"is_active": "yes"},
        {"is_active": 1},
        {"surprise": 1},
    ],
)
async def test_bad_create_bodies_are_refused_and_write_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions, change: dict[str, Any]
) -> None:
    body = {"code": "premium", "name": "Premium", "role": "premium", **change}
    response = await client.post("/api/v1/admin/tariffs", json=body, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"
    assert await counts(sessions) == (0, 0, 0)


@pytest.mark.parametrize("content", [b"", b"null", b"[]", b"{not json"])
async def test_empty_or_broken_create_bodies_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions, content: bytes
) -> None:
    response = await client.post(
        "/api/v1/admin/tariffs",
        content=content,
        headers={**admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await counts(sessions) == (0, 0, 0)


async def test_the_largest_allowed_price_is_accepted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin, monthly_price=10_000_000_000, is_active=True)
    assert created["monthly_price"] == 10_000_000_000


# --- list and read ------------------------------------------------------------------------


async def test_admin_list_shows_every_tariff_newest_first_and_pages(
    client: httpx.AsyncClient, admin: dict[str, str], clock: FrozenClock
) -> None:
    for code in ("old", "middle", "new"):
        await create(client, admin, code=code, role=code)
        clock.advance(timedelta(minutes=1))
    await client.patch(
        f"/api/v1/admin/tariffs/{(await create(client, admin, code='z', role='z'))['id']}",
        json={"monthly_price": 1, "is_active": True},
        headers=admin,
    )
    listed = await client.get("/api/v1/admin/tariffs", headers=admin)
    assert [t["code"] for t in listed.json()] == ["z", "new", "middle", "old"]
    assert [t["is_active"] for t in listed.json()] == [True, False, False, False]

    page = await client.get("/api/v1/admin/tariffs?limit=2&offset=1", headers=admin)
    assert [t["code"] for t in page.json()] == ["new", "middle"]


@pytest.mark.parametrize("query", ["limit=0", "limit=501", "offset=-1", "limit=abc"])
async def test_bad_paging_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], query: str
) -> None:
    response = await client.get(f"/api/v1/admin/tariffs?{query}", headers=admin)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("suffix", ["", "/prices"])
async def test_unknown_tariff_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], suffix: str
) -> None:
    response = await client.get(f"/api/v1/admin/tariffs/{uuid.uuid4()}{suffix}", headers=admin)
    assert response.status_code == 404
    assert response.json()["code"] == "tariff_not_found"


@pytest.mark.parametrize("suffix", ["", "/prices"])
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_tariff_id_is_a_validation_error(
    client: httpx.AsyncClient, admin: dict[str, str], suffix: str, bad_id: str
) -> None:
    response = await client.get(f"/api/v1/admin/tariffs/{bad_id}{suffix}", headers=admin)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --- change ----------------------------------------------------------------------------


async def test_price_changes_are_kept_with_who_when_and_old_to_new(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    admin: dict[str, str],
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    created = await create(client, admin, monthly_price=49900, is_active=True)
    url = f"/api/v1/admin/tariffs/{created['id']}"
    created_at = clock.now()

    clock.advance(timedelta(days=3))
    first_change = clock.now()
    response = await client.patch(url, json={"monthly_price": 54900}, headers=admin)
    assert response.status_code == 200
    assert response.json()["monthly_price"] == 54900

    clock.advance(timedelta(hours=5))
    second_change = clock.now()
    boss = auth_headers("ivan@admin", "admin")
    response = await client.patch(url, json={"monthly_price": 44900}, headers=boss)
    assert response.status_code == 200

    prices = await client.get(f"{url}/prices", headers=admin)
    assert prices.status_code == 200
    assert [{**p, "changed_at": at(p["changed_at"])} for p in prices.json()] == [
        {
            "monthly_price": 44900,
            "previous_price": 54900,
            "currency": "RUB",
            "changed_at": second_change,
            "changed_by": "ivan@admin",
        },
        {
            "monthly_price": 54900,
            "previous_price": 49900,
            "currency": "RUB",
            "changed_at": first_change,
            "changed_by": ADMIN,
        },
        {
            "monthly_price": 49900,
            "previous_price": None,
            "currency": "RUB",
            "changed_at": created_at,
            "changed_by": ADMIN,
        },
    ]
    paged = await client.get(f"{url}/prices?limit=1&offset=1", headers=admin)
    assert [p["monthly_price"] for p in paged.json()] == [54900]

    updates = [entry for entry in await audit(sessions) if entry.action == "update"]
    assert [(e.actor, e.before["monthly_price"], e.after["monthly_price"]) for e in updates] == [
        (ADMIN, 49900, 54900),
        ("ivan@admin", 54900, 44900),
    ]
    tariff = (await client.get(url, headers=admin)).json()
    assert at(tariff["updated_at"]) == second_change


async def test_the_same_price_again_records_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin, monthly_price=49900)
    before = await counts(sessions)
    response = await client.patch(
        f"/api/v1/admin/tariffs/{created['id']}", json={"monthly_price": 49900}, headers=admin
    )
    assert response.status_code == 200
    assert response.json()["monthly_price"] == 49900
    assert await counts(sessions) == before


async def test_renaming_is_audited_without_a_price_row(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin, monthly_price=49900)
    response = await client.patch(
        f"/api/v1/admin/tariffs/{created['id']}",
        json={"name": "Premium HD", "description": "Now with HDR"},
        headers=admin,
    )
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["description"]) == (
        "Premium HD",
        "Now with HDR",
    )
    assert len(await history(sessions, created["id"])) == 1
    update = (await audit(sessions))[-1]
    assert update.action == "update"
    assert (update.before["name"], update.after["name"]) == ("Premium", "Premium HD")
    assert (update.before["description"], update.after["description"]) == ("", "Now with HDR")
    assert update.before["monthly_price"] == update.after["monthly_price"] == 49900


async def test_activation_needs_a_price(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin)  # unpriced, like a role synchronised from Auth
    url = f"/api/v1/admin/tariffs/{created['id']}"
    before = await counts(sessions)
    response = await client.patch(url, json={"is_active": True}, headers=admin)
    assert response.status_code == 409
    assert response.json()["code"] == "tariff_unpriced"
    assert await counts(sessions) == before
    assert (await client.get(url, headers=admin)).json()["is_active"] is False

    # Pricing and activating in one request works; the price is the history's first row.
    response = await client.patch(
        url, json={"monthly_price": 19900, "is_active": True}, headers=admin
    )
    assert response.status_code == 200
    assert (response.json()["monthly_price"], response.json()["is_active"]) == (19900, True)
    [first] = await history(sessions, created["id"])
    assert (first.previous_price, first.monthly_price) == (None, 19900)


async def test_deactivation_takes_a_tariff_off_sale(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin, monthly_price=49900, is_active=True)
    url = f"/api/v1/admin/tariffs/{created['id']}"
    assert [t["code"] for t in (await client.get("/api/v1/tariffs")).json()] == ["premium"]

    response = await client.patch(url, json={"is_active": False}, headers=admin)
    assert response.json()["is_active"] is False
    assert (await client.get("/api/v1/tariffs")).json() == []

    await client.patch(url, json={"is_active": True}, headers=admin)
    assert [t["code"] for t in (await client.get("/api/v1/tariffs")).json()] == ["premium"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"monthly_price": -1},
        {"monthly_price": 59900.0},
        {"monthly_price": 599.99},
        {"monthly_price": "59900"},
        {"monthly_price": 10_000_000_001},
        {"monthly_price": None},
        {"name": None},
        {"name": ""},
        {"description": None},
        {"is_active": None},
        {"is_active": "false"},
        {"code": "renamed"},
        {"role": "admin"},
        {"currency": "EUR"},
        {"name": "X", "surprise": True},
    ],
)
async def test_bad_changes_are_refused_and_write_nothing(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    sessions: Sessions,
    body: dict[str, Any],
) -> None:
    created = await create(client, admin, monthly_price=49900, is_active=True)
    url = f"/api/v1/admin/tariffs/{created['id']}"
    before = await counts(sessions)
    response = await client.patch(url, json=body, headers=admin)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert await counts(sessions) == before
    assert (await client.get(url, headers=admin)).json() == created


async def test_an_empty_change_says_there_is_nothing_to_change(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await create(client, admin)
    response = await client.patch(f"/api/v1/admin/tariffs/{created['id']}", json={}, headers=admin)
    assert response.status_code == 422
    assert "nothing to change" in response.json()["detail"]


async def test_changing_an_unknown_tariff_is_not_found(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    response = await client.patch(
        f"/api/v1/admin/tariffs/{uuid.uuid4()}", json={"monthly_price": 100}, headers=admin
    )
    assert response.status_code == 404
    assert response.json()["code"] == "tariff_not_found"
    assert await counts(sessions) == (0, 0, 0)


async def test_changing_a_malformed_id_is_a_validation_error(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.patch(
        "/api/v1/admin/tariffs/premium", json={"monthly_price": 100}, headers=admin
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_concurrent_price_changes_form_one_consistent_history(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions
) -> None:
    created = await create(client, admin, monthly_price=10000, is_active=True)
    url = f"/api/v1/admin/tariffs/{created['id']}"
    new_prices = [20000 + n for n in range(8)]
    # The clock stands still: every request reads the same "now".
    responses = await asyncio.gather(
        *(client.patch(url, json={"monthly_price": price}, headers=admin) for price in new_prices)
    )
    assert [response.status_code for response in responses] == [200] * len(new_prices)

    rows = await history(sessions, created["id"])
    assert len(rows) == 1 + len(new_prices)
    # One chain from the first price to the final one: each change starts where the one
    # before it ended, and none is lost.
    chain = [(row.previous_price, row.monthly_price) for row in rows]
    assert chain[0] == (None, 10000)
    for (_, ended), (started, _) in itertools.pairwise(chain):
        assert started == ended
    assert sorted(price for _, price in chain[1:]) == new_prices
    assert len({row.changed_at for row in rows}) == len(rows), "history order is ambiguous"
    final = (await client.get(url, headers=admin)).json()["monthly_price"]
    assert final == chain[-1][1]

    listed = (await client.get(f"{url}/prices", headers=admin)).json()
    assert [(p["previous_price"], p["monthly_price"]) for p in listed] == chain[::-1]
    updates = [entry for entry in await audit(sessions) if entry.action == "update"]
    assert sorted((e.before["monthly_price"], e.after["monthly_price"]) for e in updates) == (
        sorted(chain[1:])
    )


async def test_a_price_change_leaves_issued_invoices_alone(
    client: httpx.AsyncClient, admin: dict[str, str], sessions: Sessions, clock: FrozenClock
) -> None:
    created = await create(client, admin, monthly_price=49900, is_active=True)
    async with sessions() as session, session.begin():
        invoice = Invoice(
            user_id=uuid.uuid4(),
            tariff_id=uuid.UUID(created["id"]),
            months=1,
            currency="RUB",
            monthly_price=49900,
            base_amount=49900,
            discount_source="none",
            discount_percent=None,
            discount_amount=0,
            total_amount=49900,
            considered=[],
            expires_at=clock.now() + timedelta(minutes=30),
        )
        session.add(invoice)
    response = await client.patch(
        f"/api/v1/admin/tariffs/{created['id']}", json={"monthly_price": 59900}, headers=admin
    )
    assert response.status_code == 200
    async with sessions() as session:
        kept = await session.get_one(Invoice, invoice.id)
        assert (kept.monthly_price, kept.base_amount, kept.total_amount) == (49900, 49900, 49900)
