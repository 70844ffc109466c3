"""Money path off the network: one live payment per invoice, refunds that can be declined
and retried, and why a refund was made.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("requested_at", sa.DateTime(timezone=True)))
    op.drop_index("ix_payments_payment_intent", table_name="payments")
    op.create_index(
        "ix_payments_provider_data",
        "payments",
        ["provider_data"],
        postgresql_using="gin",
        postgresql_ops={"provider_data": "jsonb_path_ops"},
    )
    op.create_index(
        "uq_payments_one_pending_per_invoice",
        "payments",
        ["invoice_id"],
        unique=True,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.add_column(
        "refunds",
        sa.Column("reason", sa.String(length=32), nullable=False, server_default="requested"),
    )
    op.alter_column("refunds", "reason", server_default=None)
    op.create_check_constraint(
        op.f("ck_refunds_reason_valid"),
        "refunds",
        "reason IN ('requested', 'provider', 'invoice_expired')",
    )
    op.drop_constraint(op.f("uq_refunds_payment_id"), "refunds", type_="unique")
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"])
    op.create_index(
        "uq_refunds_one_per_payment",
        "refunds",
        ["payment_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'canceled'"),
    )


def downgrade() -> None:
    op.drop_index("uq_refunds_one_per_payment", table_name="refunds")
    op.drop_index(op.f("ix_refunds_payment_id"), table_name="refunds")
    op.execute("DELETE FROM refunds WHERE status = 'canceled'")
    op.create_unique_constraint(op.f("uq_refunds_payment_id"), "refunds", ["payment_id"])
    op.drop_constraint(op.f("ck_refunds_reason_valid"), "refunds", type_="check")
    op.drop_column("refunds", "reason")
    op.drop_index("uq_payments_one_pending_per_invoice", table_name="payments")
    op.drop_index("ix_payments_provider_data", table_name="payments")
    op.create_index(
        "ix_payments_payment_intent",
        "payments",
        [sa.text("(provider_data ->> 'payment_intent')")],
        postgresql_where=sa.text("provider_data ? 'payment_intent'"),
    )
    op.drop_column("payments", "requested_at")
