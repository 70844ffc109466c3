"""The sandbox's own records: what "ЮKassa" knows. Billing's tables are never read here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Currency, Money, one_of


class SandboxPaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class SandboxRefundStatus(StrEnum):
    SUCCEEDED = "succeeded"


class SandboxPayment(Base):
    __tablename__ = "sandbox_payments"
    __table_args__ = (
        one_of("status", SandboxPaymentStatus),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        CheckConstraint(
            "status <> 'succeeded' OR captured_at IS NOT NULL", name="succeeded_has_captured_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # ЮKassa answers a repeated key with the first result; the request's digest tells a
    # repeat from a different request under the same key.
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Money]
    currency: Mapped[Currency]
    description: Mapped[str | None] = mapped_column(String(128))
    # ``metadata`` is taken by SQLAlchemy's declarative classes, hence the attribute name.
    merchant_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    return_url: Mapped[str] = mapped_column(Text)
    refunded_amount: Mapped[Money]
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    captured_at: Mapped[datetime | None]


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (
        one_of("status", SandboxRefundStatus),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(ForeignKey("sandbox_payments.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Money]
    currency: Mapped[Currency]
    description: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime]
