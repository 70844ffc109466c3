"""Scheduler claims read only their own rows: one partial index per claimed state.

``ix_subscriptions_live_period_end`` (status IN ('active', 'grace')) served every claim of
the subscription jobs, and each claim walked past the rows the job had already moved or
reminded (they stay in that index), or, for ``grace`` (few rows by the statistics), chose a
sequential scan and a full sort: claims grew with the table (bench/README.md). Each claim
now has an index holding exactly the rows it still has to take, in the order it takes them.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TO_REMIND = "status = 'active' AND reminded_for_period_end IS DISTINCT FROM current_period_end"


def upgrade() -> None:
    op.create_index(
        "ix_subscriptions_active_period_end",
        "subscriptions",
        ["current_period_end"],
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_subscriptions_grace_period_end",
        "subscriptions",
        ["current_period_end"],
        postgresql_where=sa.text("status = 'grace'"),
    )
    op.create_index(
        "ix_subscriptions_to_remind",
        "subscriptions",
        ["current_period_end"],
        postgresql_where=sa.text(TO_REMIND),
    )
    op.drop_index("ix_subscriptions_live_period_end", table_name="subscriptions")


def downgrade() -> None:
    op.create_index(
        "ix_subscriptions_live_period_end",
        "subscriptions",
        ["current_period_end"],
        postgresql_where=sa.text("status IN ('active', 'grace')"),
    )
    op.drop_index("ix_subscriptions_to_remind", table_name="subscriptions")
    op.drop_index("ix_subscriptions_grace_period_end", table_name="subscriptions")
    op.drop_index("ix_subscriptions_active_period_end", table_name="subscriptions")
