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
        Index(
            "ix_subscriptions_live_period_end",
            "current_period_end",
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
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
