"""The schema exists only through migrations: they build it from empty and take it back down."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from billing.db import libpq_url, sqlalchemy_url
from billing.migrations import downgrade, upgrade
from billing.models import Base
from billing.sandbox import models as _sandbox_models  # noqa: F401 - its tables on Base
from tests.conftest import create_database, drop_database

PRODUCT_TABLES = {
    "tariffs", "tariff_prices", "duration_discounts", "user_discounts", "promo_codes",
    "promo_code_tariffs", "promo_redemptions", "invoices", "payments", "refunds",
    "subscriptions", "outbox_events", "idempotency_keys", "admin_users", "audit_log",
    "processed_webhook_events", "admin_sessions", "admin_login_failures",
    "payment_methods", "provider_customers", "renewal_attempts",
}  # fmt: skip
# The built-in sandbox's own records (billing.sandbox.models, on the same Base).
SANDBOX_TABLES = {
    "sandbox_payments", "sandbox_refunds", "sandbox_stripe_sessions", "sandbox_stripe_refunds",
    "sandbox_stripe_idempotency_keys", "sandbox_stripe_customers",
    "sandbox_stripe_payment_methods",
}  # fmt: skip
PROCRASTINATE_TABLES = {
    "procrastinate_jobs", "procrastinate_events", "procrastinate_periodic_defers",
    "procrastinate_workers",
}  # fmt: skip


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def _procrastinate_functions(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_upgrade_from_empty_then_downgrade_to_empty_and_back(server_url: str) -> None:
    url = create_database(server_url, prefix="billing_migrations")
    try:
        assert _tables(url) == set()

        upgrade(url)
        assert _tables(url) == (
            PRODUCT_TABLES | SANDBOX_TABLES | PROCRASTINATE_TABLES | {"alembic_version"}
        )
        assert _procrastinate_functions(url) > 0

        downgrade(url, "base")
        assert _tables(url) == {"alembic_version"}
        assert _procrastinate_functions(url) == 0

        upgrade(url)  # and again: downgrade left nothing behind that blocks a new upgrade
        assert _tables(url) >= PRODUCT_TABLES
    finally:
        drop_database(server_url, url)


def test_models_and_migrations_describe_the_same_schema(database_url: str) -> None:
    """A model change without its migration fails here, not in production."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, _parent: (
                        not (type_ == "table" and str(name).startswith("procrastinate_"))
                    ),
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
