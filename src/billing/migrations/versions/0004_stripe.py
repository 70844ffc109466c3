"""Stripe: the sandbox's Stripe records, and the provider events billing has handled.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processed_webhook_events",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "event_id", name=op.f("pk_processed_webhook_events")),
    )
    op.create_index(
        op.f("ix_processed_webhook_events_processed_at"),
        "processed_webhook_events",
        ["processed_at"],
        unique=False,
    )
    op.create_table(
        "sandbox_stripe_sessions",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount_total", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("line_items", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("client_reference_id", sa.String(length=200), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "payment_intent_metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False
        ),
        sa.Column("payment_intent_description", sa.Text(), nullable=True),
        sa.Column("success_url", sa.Text(), nullable=True),
        sa.Column("cancel_url", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment_intent_id", sa.String(length=40), nullable=True),
        sa.Column("charge_id", sa.String(length=40), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'complete', 'expired')",
            name=op.f("ck_sandbox_stripe_sessions_status_valid"),
        ),
        sa.CheckConstraint(
            "amount_total > 0", name=op.f("ck_sandbox_stripe_sessions_amount_positive")
        ),
        sa.CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_total",
            name=op.f("ck_sandbox_stripe_sessions_refunded_within_amount"),
        ),
        sa.CheckConstraint(
            "status <> 'complete' OR (payment_intent_id IS NOT NULL AND charge_id IS NOT NULL"
            " AND paid_at IS NOT NULL)",
            name=op.f("ck_sandbox_stripe_sessions_complete_is_charged"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_stripe_sessions")),
        sa.UniqueConstraint("charge_id", name=op.f("uq_sandbox_stripe_sessions_charge_id")),
        sa.UniqueConstraint(
            "payment_intent_id", name=op.f("uq_sandbox_stripe_sessions_payment_intent_id")
        ),
    )
    op.create_table(
        "sandbox_stripe_refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('succeeded')", name=op.f("ck_sandbox_stripe_refunds_status_valid")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_sandbox_stripe_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sandbox_stripe_sessions.id"],
            name=op.f("fk_sandbox_stripe_refunds_session_id_sandbox_stripe_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_stripe_refunds")),
    )
    op.create_index(
        op.f("ix_sandbox_stripe_refunds_session_id"),
        "sandbox_stripe_refunds",
        ["session_id"],
        unique=False,
    )
    op.create_table(
        "sandbox_stripe_idempotency_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sandbox_stripe_idempotency_keys")),
    )

    # Stripe's charge events name the payment intent billing keeps in provider_data.
    op.create_index(
        "ix_payments_payment_intent",
        "payments",
        [sa.literal_column("(provider_data ->> 'payment_intent')")],
        postgresql_where=sa.text("provider_data ? 'payment_intent'"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_payment_intent", table_name="payments")
    op.drop_table("sandbox_stripe_idempotency_keys")
    op.drop_index(op.f("ix_sandbox_stripe_refunds_session_id"), table_name="sandbox_stripe_refunds")
    op.drop_table("sandbox_stripe_refunds")
    op.drop_table("sandbox_stripe_sessions")
    op.drop_index(
        op.f("ix_processed_webhook_events_processed_at"), table_name="processed_webhook_events"
    )
    op.drop_table("processed_webhook_events")
