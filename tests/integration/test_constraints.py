"""The database itself refuses rows that would make the books dishonest."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from billing.db import libpq_url

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        yield connection


def add_tariff(
    db: psycopg.Connection, role: str = "premium", price: int | None = 49900
) -> uuid.UUID:
    tariff_id = uuid.uuid4()
    db.execute(
        "INSERT INTO tariffs (id, code, name, role, monthly_price, currency, is_active)"
        " VALUES (%s, %s, %s, %s, %s, 'RUB', %s)",
        (tariff_id, role, role.title(), role, price, price is not None),
    )
    return tariff_id


def add_invoice(db: psycopg.Connection, tariff_id: uuid.UUID, **overrides: object) -> uuid.UUID:
    row: dict[str, object] = {
        "id": uuid.uuid4(), "user_id": uuid.uuid4(), "tariff_id": tariff_id, "months": 3,
        "currency": "RUB", "monthly_price": 49900, "base_amount": 149700,
        "discount_source": "duration", "discount_percent": 5, "discount_amount": 7485,
        "total_amount": 142215, "considered": "[]", "status": "open",
        "expires_at": NOW + timedelta(minutes=30),
    }  # fmt: skip
    row.update(overrides)
    columns = ", ".join(row)
    placeholders = ", ".join(f"%({name})s" for name in row)
    db.execute(f"INSERT INTO invoices ({columns}) VALUES ({placeholders})", row)
    return row["id"]  # type: ignore[return-value]


def add_promo(db: psycopg.Connection, code: str, **overrides: object) -> uuid.UUID:
    row: dict[str, object] = {"id": uuid.uuid4(), "code": code, "percent": 10}
    row.update(overrides)
    columns = ", ".join(row)
    placeholders = ", ".join(f"%({name})s" for name in row)
    db.execute(f"INSERT INTO promo_codes ({columns}) VALUES ({placeholders})", row)
    return row["id"]  # type: ignore[return-value]


def test_a_valid_invoice_is_accepted(db: psycopg.Connection) -> None:
    add_invoice(db, add_tariff(db))
    assert db.execute("SELECT total_amount FROM invoices").fetchone() == (142215,)


def test_one_tariff_per_role(db: psycopg.Connection) -> None:
    add_tariff(db, "premium")
    with pytest.raises(errors.UniqueViolation):
        db.execute(
            "INSERT INTO tariffs (id, code, name, role, currency) "
            "VALUES (%s, 'premium-2', 'Again', 'premium', 'RUB')",
            (uuid.uuid4(),),
        )


def test_an_unpriced_tariff_cannot_be_active(db: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation, match="active_is_priced"):
        db.execute(
            "INSERT INTO tariffs (id, code, name, role, currency, is_active) "
            "VALUES (%s, 'new', 'New', 'new', 'RUB', true)",
            (uuid.uuid4(),),
        )


@pytest.mark.parametrize("price", [-1, -49900])
def test_prices_are_not_negative(db: psycopg.Connection, price: int) -> None:
    with pytest.raises(errors.CheckViolation, match="monthly_price_non_negative"):
        add_tariff(db, price=price)


@pytest.mark.parametrize(
    ("table", "columns", "values"),
    [
        ("duration_discounts", "months, percent", "3, 100.01"),
        ("duration_discounts", "months, percent", "3, -1"),
        ("user_discounts", "user_id, percent", "gen_random_uuid(), 150"),
        ("promo_codes", "id, code, percent", "gen_random_uuid(), 'BAD', 101"),
    ],
)
def test_percent_stays_within_0_and_100(
    db: psycopg.Connection, table: str, columns: str, values: str
) -> None:
    with pytest.raises(errors.CheckViolation, match="percent_0_100"):
        db.execute(f"INSERT INTO {table} ({columns}) VALUES ({values})")


def test_promo_codes_are_unique_whatever_the_case(db: psycopg.Connection) -> None:
    add_promo(db, "SUMMER25")
    with pytest.raises(errors.UniqueViolation, match="uq_promo_codes_upper_code"):
        add_promo(db, "summer25")


def test_a_promo_code_is_a_percent_or_an_amount_not_both(db: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation, match="percent_or_amount"):
        add_promo(db, "BOTH", percent=10, amount=10000, currency="RUB")
    with pytest.raises(errors.CheckViolation, match="percent_or_amount"):
        add_promo(db, "NEITHER", percent=None)


def test_redemptions_never_exceed_the_maximum(db: psycopg.Connection) -> None:
    promo_id = add_promo(db, "ONCE", max_redemptions=1)
    db.execute("UPDATE promo_codes SET redemptions_count = 1 WHERE id = %s", (promo_id,))
    with pytest.raises(errors.CheckViolation, match="within_max_redemptions"):
        db.execute("UPDATE promo_codes SET redemptions_count = 2 WHERE id = %s", (promo_id,))


def test_a_once_per_user_code_has_one_live_redemption_per_user(db: psycopg.Connection) -> None:
    tariff_id = add_tariff(db)
    promo_id = add_promo(db, "ONEEACH")
    user_id = uuid.uuid4()
    first, second, third = (add_invoice(db, tariff_id, user_id=user_id) for _ in range(3))
    insert = (
        "INSERT INTO promo_redemptions (id, promo_code_id, user_id, invoice_id, once_per_user,"
        " status) VALUES (gen_random_uuid(), %s, %s, %s, true, %s)"
    )
    db.execute(insert, (promo_id, user_id, first, "released"))
    db.execute(insert, (promo_id, user_id, second, "reserved"))  # a released one doesn't count
    with pytest.raises(errors.UniqueViolation, match="once_per_user"):
        db.execute(insert, (promo_id, user_id, third, "reserved"))


def test_invoice_totals_add_up(db: psycopg.Connection) -> None:
    tariff_id = add_tariff(db)
    with pytest.raises(errors.CheckViolation, match="total_is_base_less_discount"):
        add_invoice(db, tariff_id, total_amount=100)
    with pytest.raises(errors.CheckViolation, match="base_is_price_times_months"):
        add_invoice(db, tariff_id, base_amount=1)
    with pytest.raises(errors.CheckViolation, match="status_valid"):
        add_invoice(db, tariff_id, status="lost")


def test_one_subscription_per_user_and_tariff(db: psycopg.Connection) -> None:
    tariff_id = add_tariff(db)
    user_id = uuid.uuid4()
    insert = (
        "INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end)"
        " VALUES (gen_random_uuid(), %s, %s, 'premium', 'active', %s)"
    )
    db.execute(insert, (user_id, tariff_id, NOW))
    with pytest.raises(errors.UniqueViolation):
        db.execute(insert, (user_id, tariff_id, NOW))


def _add_payment(
    db: psycopg.Connection, invoice_id: uuid.UUID, provider_id: str, status: str = "pending"
) -> None:
    db.execute(
        "INSERT INTO payments (id, invoice_id, user_id, provider, provider_payment_id,"
        " idempotence_key, status, amount, currency, provider_data, paid_at)"
        " VALUES (gen_random_uuid(), %s, gen_random_uuid(), 'yookassa', %s, gen_random_uuid(),"
        " %s, 142215, 'RUB', '{}', %s)",
        (invoice_id, provider_id, status, NOW if status == "succeeded" else None),
    )


def test_a_provider_payment_is_recorded_once(db: psycopg.Connection) -> None:
    invoice_id = add_invoice(db, add_tariff(db))
    _add_payment(db, invoice_id, "2d8c1a44-000f-5000-8000-1b3a4c5d6e7f")
    with pytest.raises(errors.UniqueViolation, match="provider_payment_id"):
        _add_payment(db, invoice_id, "2d8c1a44-000f-5000-8000-1b3a4c5d6e7f")


def test_an_invoice_is_paid_at_most_once(db: psycopg.Connection) -> None:
    invoice_id = add_invoice(db, add_tariff(db))
    _add_payment(db, invoice_id, "first", status="succeeded")
    _add_payment(db, invoice_id, "second", status="canceled")  # failed attempts are fine
    with pytest.raises(errors.UniqueViolation, match="one_success_per_invoice"):
        _add_payment(db, invoice_id, "third", status="succeeded")
    with pytest.raises(errors.CheckViolation, match="succeeded_has_paid_at"):
        db.execute("UPDATE payments SET paid_at = NULL WHERE provider_payment_id = 'first'")
