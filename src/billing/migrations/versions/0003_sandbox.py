"""The built-in ЮKassa sandbox's own records: its payments and refunds.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandbox_payments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotence_key", sa.String(length=64), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=128), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("return_url", sa.Text(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'canceled')",
            name=op.f("ck_sandbox_payments_status_valid"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_payments_amount_positive")),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount",
            name=op.f("ck_sandbox_payments_refunded_within_amount"),
        ),
        sa.CheckConstraint(
            "status <> 'succeeded' OR captured_at IS NOT NULL",
            name=op.f("ck_sandbox_payments_succeeded_has_captured_at"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_payments")),
        sa.UniqueConstraint("idempotence_key", name=op.f("uq_sandbox_payments_idempotence_key")),
    )
    op.create_table(
        "sandbox_refunds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotence_key", sa.String(length=64), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.String(length=250), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('succeeded')", name=op.f("ck_sandbox_refunds_status_valid")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["sandbox_payments.id"],
            name=op.f("fk_sandbox_refunds_payment_id_sandbox_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_refunds")),
        sa.UniqueConstraint("idempotence_key", name=op.f("uq_sandbox_refunds_idempotence_key")),
    )
    op.create_index(
        op.f("ix_sandbox_refunds_payment_id"), "sandbox_refunds", ["payment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_sandbox_refunds_payment_id"), table_name="sandbox_refunds")
    op.drop_table("sandbox_refunds")
    op.drop_table("sandbox_payments")
