"""Writing outbox events, always inside the transaction of the change that causes them;
listing and retrying them for admins."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, column, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from billing.audit.service import record_change
from billing.models import OutboxEvent, OutboxStatus
from billing.outbox.errors import OUTBOX_EVENT_DELIVERED, OUTBOX_EVENT_NOT_FOUND
from billing.outbox.events import Event


def add_event(
    session: AsyncSession, event: Event, *, user_id: uuid.UUID, occurred_at: datetime
) -> OutboxEvent:
    """Write ``event``, in the caller's transaction, for the relay to take to its receiver."""
    row = OutboxEvent(**_columns(event, user_id, occurred_at))
    session.add(row)
    return row


async def add_events(
    session: AsyncSession,
    events: Iterable[tuple[Event, uuid.UUID]],
    *,
    occurred_at: datetime,
) -> int:
    """``add_event`` for many (event, user id) pairs at once: the same rows, written by one
    ``INSERT … SELECT FROM jsonb_to_recordset(…)`` (a batch job's events, without an ORM
    object per event). Answers how many were written."""
    rows = [_columns(event, user_id, occurred_at) for event, user_id in events]
    if not rows:
        return 0
    # The columns that vary travel as one JSON document, serialized in C and unpacked by
    # PostgreSQL: a short statement compiled once whatever the batch's size, where a
    # multi-row VALUES is a new statement of thousands of parameters for each batch, and
    # arrays are dumped element by element in Python by the driver.
    table = OutboxEvent.__table__
    varying = ("id", "type", "user_id", "payload")
    document = [
        {"id": str(row["id"]), "type": row["type"], "user_id": str(row["user_id"]),
         "payload": row["payload"]}
        for row in rows
    ]  # fmt: skip
    unpacked = (
        func.jsonb_to_recordset(bindparam("events", document, type_=JSONB))
        .table_valued(*(column(name, table.c[name].type) for name in varying))
        .render_derived(name="event", with_types=True)
    )
    same = {name: value for name, value in rows[0].items() if name not in varying}
    columns = [
        *(unpacked.c[name] for name in varying),
        *(bindparam(name, value, type_=table.c[name].type) for name, value in same.items()),
    ]
    await session.execute(insert(OutboxEvent).from_select([*varying, *same], select(*columns)))
    return len(rows)


def _columns(event: Event, user_id: uuid.UUID, occurred_at: datetime) -> dict[str, Any]:
    """An event's outbox row; the relay sends it from ``next_attempt_at`` on."""
    return {
        "id": uuid.uuid4(),
        "type": event.type.value,
        "user_id": user_id,
        "payload": event.payload(),
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "occurred_at": occurred_at,
        "next_attempt_at": occurred_at,
    }


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
