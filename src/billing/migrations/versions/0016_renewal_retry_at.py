"""A subscription knows when a declined renewal is tried again, so its ``renews_at`` says
when the next charge is planned (before: the period end minus ``BILLING_RENEW_BEFORE``,
already past while retries were pending).

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "subscriptions", sa.Column("renewal_retry_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Retries already planned for the current period, and renewals a hard decline stopped
    # (no retry this period: renewal off, as it now is from the moment of such a decline).
    op.execute(
        """
        UPDATE subscriptions SET renewal_retry_at = latest.next_attempt_at,
               auto_renew = auto_renew AND latest.next_attempt_at IS NOT NULL
        FROM (
            SELECT DISTINCT ON (subscription_id, period_end)
                   subscription_id, period_end, status, next_attempt_at
            FROM renewal_attempts
            ORDER BY subscription_id, period_end, attempt DESC
        ) AS latest
        WHERE latest.status = 'declined'
          AND latest.subscription_id = subscriptions.id
          AND latest.period_end = subscriptions.current_period_end
        """
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "renewal_retry_at")
