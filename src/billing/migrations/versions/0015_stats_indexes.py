"""The dashboard's figures read index ranges, not whole tables (issue 14).

``GET /api/v1/admin/stats`` (admin/stats.py) took 2–6 s at a million payments: the days
were two sequential scans of ``payments``, renewals one of ``invoices``, and MRR fetched
the last paid invoice of every active subscription from the heap. Each figure now has an
index holding only the rows it counts, with the columns it reads (bench/README.md).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (name, table, columns, INCLUDE, WHERE)
INDEXES: list[tuple[str, str, list[str | sa.TextClause], list[str], str | None]] = [
    (
        "ix_payments_settled_paid_at",
        "payments",
        ["currency", "paid_at"],
        ["amount"],
        "status IN ('succeeded', 'refunded')",
    ),
    ("ix_payments_refunded_at", "payments", ["refunded_at"], ["id"], "refunded_at IS NOT NULL"),
    (
        "ix_invoices_paid_last",
        "invoices",
        ["user_id", "tariff_id", sa.text("paid_at DESC NULLS LAST")],
        ["total_amount", "months", "currency"],
        "status = 'paid'",
    ),
    ("ix_invoices_renewal_created", "invoices", ["created_at"], ["status"], "kind = 'renewal'"),
    (
        "ix_subscriptions_active_tariff",
        "subscriptions",
        ["tariff_id", "current_period_end"],
        [],
        "status = 'active'",
    ),
    ("ix_subscriptions_created", "subscriptions", ["created_at"], [], None),
    (
        "ix_subscriptions_ended_updated",
        "subscriptions",
        ["updated_at"],
        ["user_id"],
        "status IN ('expired', 'canceled')",
    ),
    (
        "ix_subscriptions_live_user",
        "subscriptions",
        ["user_id"],
        [],
        "status IN ('active', 'grace')",
    ),
]


def upgrade() -> None:
    for name, table, columns, include, where in INDEXES:
        op.create_index(
            name,
            table,
            columns,
            postgresql_include=include,
            postgresql_where=sa.text(where) if where else None,
        )


def downgrade() -> None:
    for name, table, *_ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
