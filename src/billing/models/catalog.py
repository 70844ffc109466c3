"""Tariffs (one Auth-service role each) and their price history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import (
    Base,
    Currency,
    Money,
    created_at,
    non_negative,
    updated_at,
    uuid_pk,
)


class Tariff(Base):
    __tablename__ = "tariffs"
    __table_args__ = (
        non_negative("monthly_price"),
        # A tariff synchronised from a new Auth role has no price until marketing sets one,
        # and cannot be sold before that.
        CheckConstraint("NOT is_active OR monthly_price IS NOT NULL", name="active_is_priced"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    role: Mapped[str] = mapped_column(String(100), unique=True)
    monthly_price: Mapped[Money | None]
    currency: Mapped[Currency]
    is_active: Mapped[bool] = mapped_column(default=False, server_default="false")
    # False once the role disappeared from the Auth service (the tariff is kept for history).
    role_exists: Mapped[bool] = mapped_column(default=True, server_default="true")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class TariffPrice(Base):
    """One price change: who changed it, when, from what to what."""

    __tablename__ = "tariff_prices"
    __table_args__ = (
        non_negative("monthly_price"),
        non_negative("previous_price"),
        Index("ix_tariff_prices_tariff_changed", "tariff_id", "changed_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tariff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tariffs.id", ondelete="CASCADE"))
    previous_price: Mapped[Money | None]
    monthly_price: Mapped[Money]
    currency: Mapped[Currency]
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime] = created_at()
