"""Storage for provider notifications: the events already handled, and which payment one is
about. Adapter-independent; ``handle_notification`` is the intended caller.

A provider that numbers its events (Stripe) may deliver one more than once, and anyone who
captured a signed event can replay it within the signature tolerance. Re-reading the payment
makes a repeat harmless anyway; remembering the event id makes it free.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.providers.base import Notification
from billing.db import transaction
from billing.models import Payment, ProcessedWebhookEvent


async def already_processed(
    sessions: async_sessionmaker[AsyncSession], *, provider: str, event_id: str
) -> bool:
    async with sessions() as session:
        found = await session.scalar(
            select(ProcessedWebhookEvent.event_id).where(
                ProcessedWebhookEvent.provider == provider,
                ProcessedWebhookEvent.event_id == event_id,
            )
        )
    return found is not None


async def remember_processed(
    sessions: async_sessionmaker[AsyncSession], *, provider: str, event_id: str, now: datetime
) -> bool:
    """Record an event as handled; answers whether this call recorded it (False: it was
    already there — a concurrent delivery of the same event got there first).

    Call it after the event was handled successfully: an event whose handling failed must
    stay unrecorded, so the provider's retry is handled rather than skipped.
    """
    async with transaction(sessions) as session:
        recorded = await session.scalar(
            insert(ProcessedWebhookEvent)
            .values(provider=provider, event_id=event_id, processed_at=now)
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(ProcessedWebhookEvent.event_id)
        )
    return recorded is not None


async def notified_payment(
    session: AsyncSession, *, provider: str, notification: Notification
) -> Payment | None:
    """The payment a notification names: by the provider's payment id, or, where the adapter
    says the event names it otherwise (``named_by``), by that reference in the payment's
    ``provider_data`` (served by the GIN index ``ix_payments_provider_data``)."""
    reference = notification.provider_payment_id
    named = (
        Payment.provider_data.contains({notification.named_by: reference})
        if notification.named_by is not None
        else Payment.provider_payment_id == reference
    )
    payment: Payment | None = await session.scalar(
        select(Payment).where(Payment.provider == provider, named).limit(1)
    )
    return payment
