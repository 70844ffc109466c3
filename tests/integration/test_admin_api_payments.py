"""Admin API: every user's payments, filtered by user, status and time, through HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.models import Invoice, Payment, PaymentStatus, Tariff
from tests.integration.checkout_helpers import add_tariff, make_viewer

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
URL = "/api/v1/admin/payments"
PAYMENT_FIELDS = {
    "id",
    "invoice_id",
    "status",
    "amount",
    "currency",
    "provider",
    "confirmation_url",
    "created_at",
    "paid_at",
    "refundable_until",
    "refunded_at",
    "user_id",
}
MAY_1 = datetime(2025, 5, 1, tzinfo=UTC)


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marta@marketing", "marketing")


async def add_payment(
    sessions: Sessions,
    tariff: Tariff,
    *,
    user_id: uuid.UUID,
    created_at: datetime,
    status: PaymentStatus = PaymentStatus.SUCCEEDED,
    amount: int = 49900,
) -> uuid.UUID:
    """A payment of its own invoice, created at a chosen moment (the column defaults to the
    database's now(), which a test cannot place)."""
    paid = status in (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)
    async with sessions() as session, session.begin():
        invoice = Invoice(
            id=uuid.uuid4(), user_id=user_id, tariff_id=tariff.id, months=1, currency="RUB",
            monthly_price=amount, base_amount=amount, discount_source="none",
            discount_amount=0, total_amount=amount, considered=[],
            status="paid" if paid else "open", expires_at=created_at + timedelta(minutes=30),
        )  # fmt: skip
        session.add(invoice)
        await session.flush()
        payment = Payment(
            id=uuid.uuid4(), invoice_id=invoice.id, user_id=user_id, provider="yookassa",
            status=status, amount=amount, currency="RUB", created_at=created_at,
            paid_at=created_at + timedelta(minutes=1) if paid else None,
            refunded_at=created_at + timedelta(minutes=2)
            if status == PaymentStatus.REFUNDED else None,
        )  # fmt: skip
        session.add(payment)
    return payment.id


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


@pytest.fixture
async def ledger(sessions: Sessions) -> dict[str, Any]:
    """Two users' payments in May and June 2025, one of every status."""
    tariff = await add_tariff(sessions)
    anna, boris = uuid.uuid4(), uuid.uuid4()
    at = {
        "anna_may_1": MAY_1,
        "anna_may_31": datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC),
        "boris_june_1": datetime(2025, 6, 1, tzinfo=UTC),
        "boris_june_2": datetime(2025, 6, 2, 12, tzinfo=UTC),
        "anna_june_3": datetime(2025, 6, 3, tzinfo=UTC),
    }
    status = {
        "anna_may_1": PaymentStatus.SUCCEEDED,
        "anna_may_31": PaymentStatus.REFUNDED,
        "boris_june_1": PaymentStatus.CANCELED,
        "boris_june_2": PaymentStatus.PENDING,
        "anna_june_3": PaymentStatus.SUCCEEDED,
    }
    payments = {
        name: str(
            await add_payment(
                sessions,
                tariff,
                user_id=anna if name.startswith("anna") else boris,
                created_at=moment,
                status=status[name],
            )
        )
        for name, moment in at.items()
    }
    return {"anna": str(anna), "boris": str(boris), **payments}


async def test_a_real_payment_in_the_payment_shape_with_its_user(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, admin: dict[str, str]
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    paid = await viewer.paid(tariff.id)

    [row] = await listed(client, admin)
    assert set(row) == PAYMENT_FIELDS
    assert row == {**paid, "user_id": str(viewer.user_id)}
    assert row["status"] == "succeeded"
    assert row["refundable_until"] is not None


async def test_every_payment_newest_first_and_paged(
    client: httpx.AsyncClient, admin: dict[str, str], ledger: dict[str, Any]
) -> None:
    newest_first = [
        ledger[name]
        for name in ("anna_june_3", "boris_june_2", "boris_june_1", "anna_may_31", "anna_may_1")
    ]
    assert ids(await listed(client, admin)) == newest_first
    assert ids(await listed(client, admin, limit=2)) == newest_first[:2]
    assert ids(await listed(client, admin, limit=2, offset=2)) == newest_first[2:4]
    assert ids(await listed(client, admin, offset=5)) == []


async def test_filter_by_user(
    client: httpx.AsyncClient, admin: dict[str, str], ledger: dict[str, Any]
) -> None:
    rows = await listed(client, admin, user_id=ledger["boris"])
    assert ids(rows) == [ledger["boris_june_2"], ledger["boris_june_1"]]
    assert {row["user_id"] for row in rows} == {ledger["boris"]}
    assert await listed(client, admin, user_id=str(uuid.uuid4())) == []


@pytest.mark.parametrize(
    ("status", "names"),
    [
        ("succeeded", ["anna_june_3", "anna_may_1"]),
        ("refunded", ["anna_may_31"]),
        ("canceled", ["boris_june_1"]),
        ("pending", ["boris_june_2"]),
    ],
)
async def test_filter_by_status(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    ledger: dict[str, Any],
    status: str,
    names: list[str],
) -> None:
    rows = await listed(client, admin, status=status)
    assert ids(rows) == [ledger[name] for name in names]
    assert {row["status"] for row in rows} == {status}


async def test_from_is_inclusive_and_to_exclusive_with_dates_meaning_utc_midnight(
    client: httpx.AsyncClient, admin: dict[str, str], ledger: dict[str, Any]
) -> None:
    may = await listed(client, admin, **{"from": "2025-05-01", "to": "2025-06-01"})
    assert ids(may) == [ledger["anna_may_31"], ledger["anna_may_1"]]
    june = await listed(client, admin, **{"from": "2025-06-01"})
    assert ids(june) == [ledger["anna_june_3"], ledger["boris_june_2"], ledger["boris_june_1"]]
    before_june_2 = await listed(client, admin, to="2025-06-02")
    assert ids(before_june_2) == [
        ledger["boris_june_1"],
        ledger["anna_may_31"],
        ledger["anna_may_1"],
    ]


async def test_from_and_to_as_date_times_with_offsets(
    client: httpx.AsyncClient, admin: dict[str, str], ledger: dict[str, Any]
) -> None:
    # Midnight of 1 June in Moscow is 21:00 UTC on 31 May: the last May payment is after it.
    rows = await listed(
        client, admin, **{"from": "2025-06-01T00:00:00+03:00", "to": "2025-06-02T12:00:00Z"}
    )
    assert ids(rows) == [ledger["boris_june_1"], ledger["anna_may_31"]]
    exact = await listed(client, admin, **{"from": "2025-06-02T12:00:00Z"})
    assert ids(exact) == [ledger["anna_june_3"], ledger["boris_june_2"]]


async def test_filters_combine(
    client: httpx.AsyncClient, admin: dict[str, str], ledger: dict[str, Any]
) -> None:
    rows = await listed(
        client,
        admin,
        user_id=ledger["anna"],
        status="succeeded",
        **{"from": "2025-05-01", "to": "2025-06-01"},
    )
    assert ids(rows) == [ledger["anna_may_1"]]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"user_id": "not-a-uuid"}, "user_id"),
        ({"status": "paid"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2025-02-30"}, "from"),
        ({"to": "2025-05-01T25:00:00Z"}, "to"),
        ({"to": "2025-05-01T10:00:00"}, "to"),  # no offset: refused, not guessed
        ({"from": "2025-06-01", "to": "2025-05-01"}, "from"),
        ({"from": "2025-06-01", "to": "2025-06-01"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
async def test_bad_filters_are_a_validation_error(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    ledger: dict[str, Any],
    params: dict[str, str],
    where: str,
) -> None:
    response = await client.get(URL, params=params, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert where in body["detail"]


async def test_a_token_is_needed_and_a_viewer_is_refused(
    client: httpx.AsyncClient, auth_headers: Headers, ledger: dict[str, Any]
) -> None:
    anonymous = await client.get(URL)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthorized"
    # Not even a viewer's own payments come through the admin API.
    viewer = await client.get(URL, headers=auth_headers(ledger["anna"], "subscriber"))
    assert viewer.status_code == 403
    assert viewer.json()["code"] == "forbidden"


async def test_an_admin_token_sees_them_too(
    client: httpx.AsyncClient, auth_headers: Headers, ledger: dict[str, Any]
) -> None:
    rows = await listed(client, auth_headers("root", "admin"), status="pending")
    assert ids(rows) == [ledger["boris_june_2"]]
