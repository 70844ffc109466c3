"""Transactional outbox: events written with the change that caused them, delivered later."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Json, Timestamp, created_at, non_negative, one_of, uuid_pk


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # parked after too many failures; an admin can retry it


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        one_of("status", OutboxStatus),
        non_negative("attempts"),
        Index(
            "ix_outbox_events_pending_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbox_events_user_seq", "user_id", "seq"),
    )

    # The stable id receivers deduplicate by.
    id: Mapped[uuid.UUID] = uuid_pk()
    # Commit order, for in-order delivery per user.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID | None]
    payload: Mapped[Json] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    last_error: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = created_at()
    delivered_at: Mapped[Timestamp | None]
