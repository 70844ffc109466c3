"""GET /api/v1/admin/stats: the dashboard's figures after known purchases and refunds, through
HTTP, on real PostgreSQL (sandbox payments on a frozen clock)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.models import DurationDiscount, Invoice
from tests.integration.checkout_helpers import add_tariff, make_viewer

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
URL = "/api/v1/admin/stats"


@pytest.fixture
def marketing(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marta@marketing", "marketing")


async def known_sales(
    client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions, clock: FrozenClock
) -> dict[str, Any]:
    """Day 0: Anna buys premium (499.00) for a month, Boris basic (199.00) and refunds it.
    Day 1: Vera buys premium for 2 months at 1.5 % off: 998.00 − 14.97 = 983.03."""
    premium = await add_tariff(sessions, price=49900, role="premium")
    basic = await add_tariff(sessions, price=19900, role="basic")
    async with sessions() as session, session.begin():
        session.add(DurationDiscount(months=2, percent=Decimal("1.50")))
    day0 = clock.now().date()
    anna, boris, vera = (make_viewer(client, auth_headers) for _ in range(3))
    await anna.paid(premium.id)
    bought = await boris.paid(basic.id)
    refunded = await client.post(f"/api/v1/payments/{bought['id']}/refund", headers=boris.headers)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    clock.advance(timedelta(days=1))
    paid = await vera.paid(premium.id, months=2)
    assert paid["amount"] == 98303
    return {"day0": day0, "premium": premium, "basic": basic}


async def stats(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> Any:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_figures_after_known_purchases_and_refunds(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
    marketing: dict[str, str],
) -> None:
    sales = await known_sales(client, auth_headers, sessions, clock)
    day0 = sales["day0"]
    body = await stats(
        client,
        marketing,
        **{"from": str(day0 - timedelta(days=1)), "to": str(day0 + timedelta(days=2))},
    )
    assert body["from"] == str(day0 - timedelta(days=1))
    assert body["to"] == str(day0 + timedelta(days=2))
    assert body["currency"] == "RUB"
    zero = {"payments": 0, "gross": 0, "refunds": 0, "refunded": 0, "net": 0}
    assert body["days"] == [
        {"date": str(day0 - timedelta(days=1)), **zero},
        {
            "date": str(day0),
            "payments": 2,
            "gross": 49900 + 19900,
            "refunds": 1,
            "refunded": 19900,
            "net": 49900,
        },
        {
            "date": str(day0 + timedelta(days=1)),
            "payments": 1,
            "gross": 98303,
            "refunds": 0,
            "refunded": 0,
            "net": 98303,
        },
        {"date": str(day0 + timedelta(days=2)), **zero},
    ]
    assert body["active_subscriptions"] == [
        {"tariff_id": str(sales["basic"].id), "code": "basic", "count": 0},
        {"tariff_id": str(sales["premium"].id), "code": "premium", "count": 2},
    ]
    assert body["new_subscriptions"] == 3
    # Boris's refund took his only month back: his subscription ended, and he has none left.
    assert body["churned_subscriptions"] == 1
    assert body["renewals"] == {"attempted": 0, "succeeded": 0}
    # 499.00 a month from Anna, 983.03 / 2 = 491.515 from Vera: 990.515 → 990.52.
    assert body["mrr"] == 99052


async def test_default_period_is_the_last_30_days(
    client: httpx.AsyncClient, clock: FrozenClock, marketing: dict[str, str]
) -> None:
    body = await stats(client, marketing)
    today = clock.now().date()
    assert body["to"] == str(today)
    assert body["from"] == str(today - timedelta(days=29))
    assert [day["date"] for day in body["days"]] == [
        str(today - timedelta(days=29 - n)) for n in range(30)
    ]
    assert all(day["payments"] == 0 and day["net"] == 0 for day in body["days"])
    assert body["mrr"] == 0


async def test_a_day_outside_the_period_is_not_counted(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
    marketing: dict[str, str],
) -> None:
    sales = await known_sales(client, auth_headers, sessions, clock)
    day1 = str(sales["day0"] + timedelta(days=1))
    body = await stats(client, marketing, **{"from": day1, "to": day1})
    assert body["days"] == [
        {"date": day1, "payments": 1, "gross": 98303, "refunds": 0, "refunded": 0, "net": 98303}
    ]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "2025-13-01"}, "from: must be a date YYYY-MM-DD"),
        ({"to": "2025-5-1"}, "to: must be a date YYYY-MM-DD"),
        ({"from": "2025-05-01T00:00:00Z"}, "from: must be a date YYYY-MM-DD"),
        ({"from": "2025-05-02", "to": "2025-05-01"}, "after to"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "at most 366 days"),
    ],
)
async def test_bad_periods_are_422_problems(
    client: httpx.AsyncClient, marketing: dict[str, str], params: dict[str, str], detail: str
) -> None:
    response = await client.get(URL, params=params, headers=marketing)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "validation_error"
    assert detail in response.json()["detail"]


async def test_a_full_year_is_allowed(client: httpx.AsyncClient, marketing: dict[str, str]) -> None:
    body = await stats(client, marketing, **{"from": "2024-01-01", "to": "2024-12-31"})
    assert len(body["days"]) == 366  # a leap year


async def test_viewers_may_not_read_the_stats(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    response = await client.get(URL, headers=auth_headers("viewer"))
    assert response.status_code == 403
    assert (await client.get(URL)).status_code == 401


async def test_renewals_count_renewal_invoices_and_those_paid(
    client: httpx.AsyncClient, sessions: Sessions, clock: FrozenClock, marketing: dict[str, str]
) -> None:
    premium = await add_tariff(sessions, price=49900, role="premium")
    now = clock.now()
    async with sessions() as session, session.begin():
        for status in ("paid", "open", "expired"):
            session.add(
                Invoice(
                    id=uuid.uuid4(),
                    user_id=uuid.uuid4(),
                    tariff_id=premium.id,
                    kind="renewal",
                    months=1,
                    currency="RUB",
                    monthly_price=49900,
                    base_amount=49900,
                    discount_source="none",
                    discount_amount=0,
                    total_amount=49900,
                    considered=[],
                    status=status,
                    expires_at=now + timedelta(minutes=30),
                    paid_at=now if status == "paid" else None,
                )
            )
    body = await stats(client, marketing)
    assert body["renewals"] == {"attempted": 3, "succeeded": 1}


async def test_day_edges_are_utc_and_a_refund_counts_on_its_own_day(
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
    marketing: dict[str, str],
) -> None:
    """Paid one second before UTC midnight, refunded one second after: the payment is the
    first day's, the refund the second's; a period of either day alone sees only its own."""
    premium = await add_tariff(sessions, price=49900, role="premium")
    midnight = datetime.combine(clock.now().date(), time(), tzinfo=UTC)
    clock.set(midnight - timedelta(seconds=1))
    viewer = make_viewer(client, auth_headers)
    first, second = str(midnight.date() - timedelta(days=1)), str(midnight.date())
    bought = await viewer.paid(premium.id)
    assert bought["paid_at"].startswith(f"{first}T23:59:59"), bought
    clock.set(midnight + timedelta(seconds=1))
    refunded = await client.post(f"/api/v1/payments/{bought['id']}/refund", headers=viewer.headers)
    assert refunded.json()["status"] == "refunded", refunded.text
    paid_day = {"payments": 1, "gross": 49900, "refunds": 0, "refunded": 0, "net": 49900}
    refund_day = {"payments": 0, "gross": 0, "refunds": 1, "refunded": 49900, "net": -49900}
    both = await stats(client, marketing, **{"from": first, "to": second})
    assert both["days"] == [{"date": first, **paid_day}, {"date": second, **refund_day}]
    assert (await stats(client, marketing, **{"from": first, "to": first}))["days"] == [
        {"date": first, **paid_day}
    ]
    alone = await stats(client, marketing, **{"from": second, "to": second})
    assert alone["days"] == [{"date": second, **refund_day}]
    assert alone["mrr"] == 0  # the refund took the only month back
