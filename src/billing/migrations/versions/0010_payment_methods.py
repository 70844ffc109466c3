"""Auto-renewal, first part: saved payment methods with the viewer's consent, the provider's
customer per viewer, and a subscription's renewal settings.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_method_id", sa.String(length=255), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=255), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("expires", sa.String(length=7), nullable=True),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consent_payment_id", sa.UUID(), nullable=False),
        sa.Column("consent_text_version", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["consent_payment_id"],
            ["payments.id"],
            name=op.f("fk_payment_methods_consent_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
    )
    op.create_index(op.f("ix_payment_methods_user_id"), "payment_methods", ["user_id"])
    op.create_index(
        "uq_payment_methods_provider_method", "payment_methods",
        ["provider", "provider_method_id"], unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )  # fmt: skip
    op.create_table(
        "provider_customers",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("provider", "user_id", name=op.f("pk_provider_customers")),
    )
    op.add_column(
        "subscriptions",
        sa.Column("auto_renew", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column("subscriptions", sa.Column("payment_method_id", sa.UUID(), nullable=True))
    op.add_column("subscriptions", sa.Column("renewal_months", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_subscriptions_payment_method_id_payment_methods"),
        "subscriptions", "payment_methods", ["payment_method_id"], ["id"],
    )  # fmt: skip
    op.add_column(
        "payments",
        sa.Column("save_payment_method", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column("payments", sa.Column("payment_method_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_payments_payment_method_id_payment_methods"),
        "payments", "payment_methods", ["payment_method_id"], ["id"],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_payments_payment_method_id_payment_methods"), "payments", type_="foreignkey"
    )
    op.drop_column("payments", "payment_method_id")
    op.drop_column("payments", "save_payment_method")
    op.drop_constraint(
        op.f("fk_subscriptions_payment_method_id_payment_methods"),
        "subscriptions",
        type_="foreignkey",
    )
    op.drop_column("subscriptions", "renewal_months")
    op.drop_column("subscriptions", "payment_method_id")
    op.drop_column("subscriptions", "auto_renew")
    op.drop_table("provider_customers")
    op.drop_index("uq_payment_methods_provider_method", table_name="payment_methods")
    op.drop_index(op.f("ix_payment_methods_user_id"), table_name="payment_methods")
    op.drop_table("payment_methods")
