"""Writing outbox events, always inside the transaction of the change that causes them;
listing and retrying them for admins."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi.encoders import jsonable_encoder
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.audit.service import record_change
from billing.models import OutboxEvent, OutboxStatus
from billing.outbox.errors import OUTBOX_EVENT_DELIVERED, OUTBOX_EVENT_NOT_FOUND


class EventType(StrEnum):
    # For the Notification service.
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_REFUNDED = "payment.refunded"
    SUBSCRIPTION_EXPIRING = "subscription.expiring"
    SUBSCRIPTION_EXPIRED = "subscription.expired"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_RENEWAL_FAILED = "subscription.renewal_failed"
    # For the Auth service.
    ROLE_GRANT = "role.grant"
    ROLE_REVOKE = "role.revoke"


def add_event(
    session: AsyncSession,
    event_type: EventType,
    *,
    user_id: uuid.UUID,
    occurred_at: datetime,
    data: dict[str, Any],
) -> OutboxEvent:
    event = OutboxEvent(
        id=uuid.uuid4(),
        type=event_type.value,
        user_id=user_id,
        payload=jsonable_encoder(data),
        occurred_at=occurred_at,
        next_attempt_at=occurred_at,
    )
    session.add(event)
    return event


# Reading and retrying events (admin API).


async def list_events(
    session: AsyncSession,
    *,
    status: OutboxStatus | None,
    user_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> Sequence[OutboxEvent]:
    """Events newest first (by commit order), optionally of one status and one user."""
    query = select(OutboxEvent)
    if status is not None:
        query = query.where(OutboxEvent.status == status)
    if user_id is not None:
        query = query.where(OutboxEvent.user_id == user_id)
    result = await session.scalars(
        query.order_by(OutboxEvent.seq.desc()).limit(limit).offset(offset)
    )
    return result.all()


def _delivery_state(event: OutboxEvent) -> dict[str, Any]:
    return {
        "status": event.status,
        "attempts": event.attempts,
        "next_attempt_at": event.next_attempt_at.isoformat(),
        "last_error": event.last_error,
    }


async def retry_event(
    session: AsyncSession, event_id: uuid.UUID, *, actor: str, now: datetime
) -> OutboxEvent:
    """A parked (or waiting) event becomes due now; its attempts are kept, so if the receiver
    still fails it, it is parked again after this one try. A delivered event stays delivered.
    Waits for a relay that is delivering the event right now, then sees its outcome."""
    event = await session.scalar(
        select(OutboxEvent).where(OutboxEvent.id == event_id).with_for_update()
    )
    if event is None:
        raise OUTBOX_EVENT_NOT_FOUND()
    if event.status == OutboxStatus.DELIVERED:
        raise OUTBOX_EVENT_DELIVERED()
    before = _delivery_state(event)
    event.status = OutboxStatus.PENDING
    event.next_attempt_at = now
    await record_change(
        session,
        actor=actor,
        action="retry",
        entity=event,
        before=before,
        after=_delivery_state(event),
    )
    return event
