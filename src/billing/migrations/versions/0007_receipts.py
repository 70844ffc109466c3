"""54-FZ receipts: the e-mail a payment's receipt goes to, and the receipts sent.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("customer_email", sa.String(length=254)))
    op.add_column("payments", sa.Column("receipt", postgresql.JSONB(astext_type=sa.Text())))
    op.add_column("refunds", sa.Column("receipt", postgresql.JSONB(astext_type=sa.Text())))


def downgrade() -> None:
    op.drop_column("refunds", "receipt")
    op.drop_column("payments", "receipt")
    op.drop_column("payments", "customer_email")
