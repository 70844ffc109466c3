"""The browser's checkout: an invoice's kind and the e-mail its receipt goes to.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "invoices",
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="purchase"),
    )
    op.create_check_constraint(
        op.f("ck_invoices_kind_valid"), "invoices", "kind IN ('purchase', 'renewal')"
    )
    op.add_column("invoices", sa.Column("customer_email", sa.String(length=254)))


def downgrade() -> None:
    op.drop_column("invoices", "customer_email")
    op.drop_constraint(op.f("ck_invoices_kind_valid"), "invoices", type_="check")
    op.drop_column("invoices", "kind")
