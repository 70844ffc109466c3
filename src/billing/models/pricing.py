"""Discounts: duration discounts, personal discounts, promo codes and their redemptions."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, String, Table, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import (
    Base,
    Currency,
    Money,
    Percent,
    Timestamp,
    created_at,
    non_negative,
    one_of,
    percent_range,
    updated_at,
    uuid_pk,
)


class DurationDiscount(Base):
    """``months`` bought or more → ``percent`` off (the largest ``months`` not above applies)."""

    __tablename__ = "duration_discounts"
    __table_args__ = (
        percent_range(),
        CheckConstraint("months >= 1", name="months_positive"),
    )

    months: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    percent: Mapped[Percent]
    updated_at: Mapped[datetime] = updated_at()


class UserDiscount(Base):
    """A viewer's personal discount."""

    __tablename__ = "user_discounts"
    __table_args__ = (percent_range(),)

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    percent: Mapped[Percent]
    valid_until: Mapped[Timestamp | None]
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


promo_code_tariffs = Table(
    "promo_code_tariffs",
    Base.metadata,
    Column("promo_code_id", ForeignKey("promo_codes.id", ondelete="CASCADE"), primary_key=True),
    Column("tariff_id", ForeignKey("tariffs.id", ondelete="CASCADE"), primary_key=True),
)
"""The tariffs a promo code is restricted to; none listed means every tariff."""


class PromoCode(Base):
    __tablename__ = "promo_codes"
    __table_args__ = (
        percent_range(),
        non_negative("amount"),
        CheckConstraint("(percent IS NULL) <> (amount IS NULL)", name="percent_or_amount"),
        CheckConstraint("amount IS NULL OR currency IS NOT NULL", name="amount_has_currency"),
        CheckConstraint("max_redemptions IS NULL OR max_redemptions >= 1", name="max_positive"),
        non_negative("redemptions_count"),
        # The limit is enforced by the database itself: no race can exceed it.
        CheckConstraint(
            "max_redemptions IS NULL OR redemptions_count <= max_redemptions",
            name="within_max_redemptions",
        ),
        CheckConstraint(
            "valid_until IS NULL OR valid_from IS NULL OR valid_from < valid_until",
            name="window_ordered",
        ),
        # Codes match case-insensitively, so they are unique case-insensitively.
        Index("uq_promo_codes_upper_code", func.upper(text("code")), unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(32))
    percent: Mapped[Percent | None]
    amount: Mapped[Money | None]
    currency: Mapped[Currency | None]
    valid_from: Mapped[Timestamp | None]
    valid_until: Mapped[Timestamp | None]
    max_redemptions: Mapped[int | None]
    # Reserved plus redeemed redemptions; kept in the row so the limit is one conditional UPDATE.
    redemptions_count: Mapped[int] = mapped_column(default=0, server_default="0")
    once_per_user: Mapped[bool] = mapped_column(default=True, server_default="true")
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = created_at()


class RedemptionStatus(StrEnum):
    RESERVED = "reserved"  # an open invoice holds it
    REDEEMED = "redeemed"  # the invoice was paid
    RELEASED = "released"  # the invoice expired or was canceled


class PromoRedemption(Base):
    __tablename__ = "promo_redemptions"
    __table_args__ = (
        one_of("status", RedemptionStatus),
        # One live redemption per user for once-per-user codes, enforced by the database.
        Index(
            "uq_promo_redemptions_once_per_user",
            "promo_code_id",
            "user_id",
            unique=True,
            postgresql_where=text("once_per_user AND status <> 'released'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    promo_code_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promo_codes.id"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), unique=True)
    once_per_user: Mapped[bool]
    status: Mapped[str] = mapped_column(String(16), default=RedemptionStatus.RESERVED)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
