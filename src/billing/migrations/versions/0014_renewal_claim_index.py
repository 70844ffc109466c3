"""The renewal job's claim reads only auto-renewing live subscriptions, through an index.

``renew-subscriptions`` claims ``auto_renew IS TRUE AND payment_method_id IS NOT NULL AND
status IN ('active', 'grace')`` rows by ``current_period_end``; since 0009 replaced the
index on live subscriptions by one per claimed state, that claim was a sequential scan of
``subscriptions``. This index holds exactly the rows it can take, in its order.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TO_RENEW = "auto_renew IS TRUE AND payment_method_id IS NOT NULL AND status IN ('active', 'grace')"


def upgrade() -> None:
    op.create_index(
        "ix_subscriptions_to_renew",
        "subscriptions",
        ["current_period_end"],
        postgresql_where=sa.text(TO_RENEW),
    )


def downgrade() -> None:
    op.drop_index("ix_subscriptions_to_renew", table_name="subscriptions")
