"""A viewer's access to one tariff."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Timestamp, created_at, one_of, updated_at, uuid_pk


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    GRACE = "grace"
    EXPIRED = "expired"
    CANCELED = "canceled"


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        one_of("status", SubscriptionStatus),
        UniqueConstraint("user_id", "tariff_id"),
        # One index per scheduler claim, holding only the rows it still has to take, in the
        # order it takes them: a claim never walks past rows already moved or reminded, and
        # its plan does not hang on statistics (migration 0009; tasks.py writes each claim's
        # WHERE in the index's own terms).
        Index(
            "ix_subscriptions_active_period_end",
            "current_period_end",
            postgresql_where=text("status = 'active'"),
        ),
        Index(
            "ix_subscriptions_grace_period_end",
            "current_period_end",
            postgresql_where=text("status = 'grace'"),
        ),
        Index(
            "ix_subscriptions_to_renew",  # renew-subscriptions (checkout/renewals.py)
            "current_period_end",
            postgresql_where=text(
                "auto_renew IS TRUE AND payment_method_id IS NOT NULL"
                " AND status IN ('active', 'grace')"
            ),
        ),
        Index(
            "ix_subscriptions_to_remind",
            "current_period_end",
            postgresql_where=text(
                "status = 'active' AND reminded_for_period_end IS DISTINCT FROM current_period_end"
            ),
        ),
        # The dashboard (admin/stats.py, migration 0015): active per tariff reads the active
        # subscriptions only, from the index; new and churned, a period's range; churn asks
        # the live ones of each user.
        Index(
            "ix_subscriptions_active_tariff",
            "tariff_id",
            "current_period_end",
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_subscriptions_created", "created_at"),
        Index(
            "ix_subscriptions_ended_updated",
            "updated_at",
            postgresql_include=["user_id"],
            postgresql_where=text("status IN ('expired', 'canceled')"),
        ),
        Index(
            "ix_subscriptions_live_user",
            "user_id",
            postgresql_where=text("status IN ('active', 'grace')"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    tariff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tariffs.id"))
    role: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE)
    current_period_end: Mapped[Timestamp]
    # The period end a "subscription ends soon" reminder was sent for: one reminder per period.
    reminded_for_period_end: Mapped[Timestamp | None]
    # Auto-renewal: on once a payment saved a method (the viewer's consent); the viewer
    # turns it off and on (cancel / resume). A renewal buys ``renewal_months`` again.
    auto_renew: Mapped[bool] = mapped_column(default=False, server_default="false")
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_methods.id"))
    renewal_months: Mapped[int | None]
    # A declined renewal's next try this period (its attempt's ``next_attempt_at``, kept here
    # so every read of a subscription can say when it is next charged); None otherwise.
    renewal_retry_at: Mapped[Timestamp | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
