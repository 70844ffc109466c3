"""Provider events billing has already handled, by the provider's event id (Stripe numbers
its events; a replayed one is recognised and not handled again)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base


class ProcessedWebhookEvent(Base):
    __tablename__ = "processed_webhook_events"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Events older than the provider's signature tolerance can no longer be replayed, so rows
    # past it may be pruned by time.
    processed_at: Mapped[datetime] = mapped_column(index=True)
