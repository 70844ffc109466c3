"""Sandbox: Stripe's Customers and the payment methods saved for them (setup_future_usage),
for charges without the viewer. ЮKassa's saved methods need no table: a saved method is the
payment that saved it.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sandbox_stripe_customers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=512), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_stripe_customers")),
    )
    op.create_table(
        "sandbox_stripe_payment_methods",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("card", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detached_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(customer_id IS NULL) = (detached_at IS NOT NULL)",
            name=op.f("ck_sandbox_stripe_payment_methods_attached_until_detached"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["sandbox_stripe_customers.id"],
            name=op.f("fk_sandbox_stripe_payment_methods_customer_id_sandbox_stripe_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_stripe_payment_methods")),
    )
    op.create_index(
        op.f("ix_sandbox_stripe_payment_methods_customer_id"),
        "sandbox_stripe_payment_methods",
        ["customer_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_sandbox_stripe_payment_methods_customer_id"),
        table_name="sandbox_stripe_payment_methods",
    )
    op.drop_table("sandbox_stripe_payment_methods")
    op.drop_table("sandbox_stripe_customers")
