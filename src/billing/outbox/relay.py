"""Delivering the outbox: due events are claimed in bounded batches and handed to their sinks.

Claims. A batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and delivered while the
claim is held, inside that one transaction; the outcome of each event is committed with the
batch. Several workers at once therefore never deliver the same event, and a worker killed in
the middle of a batch loses nothing: its transaction aborts, the locks go, and its events are
still ``pending`` for the next run. The cost: a transaction (and a database connection) stays
open while the batch's HTTP/AMQP calls run, and the events a killed worker had already
delivered in its batch are delivered again — receivers drop those duplicates by event id.
A receiver that does not answer at all (refused, timed out) is left alone for the rest of the
run, so a dead service costs one timeout per run, not one per event.

Order. Events go out in commit order per user and receiver: an event is claimable only when
no earlier event of the same user for the same service is still pending, so a failing event
holds back that user's later ones while other users' (and the other service's) events flow.
A batch therefore holds at most one event per user and receiver; the next batch of the same
run takes the following ones. Events without a user are not ordered. A parked event no
longer holds anything back.

Retries. A temporary failure waits ``retry_delay``: 10 s, 20 s, 40 s, … doubling up to the
ceiling, without jitter (claims by ``SKIP LOCKED`` already spread concurrent workers, and a
predictable schedule is easier to explain to an operator). After ``max_attempts`` attempts, or
at once for a failure that cannot succeed (a 4xx), the event is parked as ``failed`` with its
last error: kept, visible in the admin API, retryable by an admin; never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, case, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from billing.db import transaction
from billing.models import OutboxEvent, OutboxStatus
from billing.outbox.sinks import RECEIVER_OF, DeliveryFailed, OutgoingEvent, Receiver, Sink

log = logging.getLogger(__name__)

BASE_RETRY_DELAY = timedelta(seconds=10)
DEFAULT_BATCH_SIZE = 100
# A run ends: at most this many batches, then the next scheduled run goes on.
MAX_BATCHES_PER_RUN = 10
_ERROR_LIMIT = 2000


def retry_delay(
    failed_attempts: int, *, ceiling: timedelta, base: timedelta = BASE_RETRY_DELAY
) -> timedelta:
    """The wait after the n-th failed attempt: base · 2^(n-1), never above ``ceiling``."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts starts at 1")
    # Compared in float seconds: base · 2^n overflows timedelta long before it matters.
    seconds = base.total_seconds() * 2.0 ** min(failed_attempts - 1, 1000)
    if seconds >= ceiling.total_seconds():
        return ceiling
    return timedelta(seconds=seconds)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0  # failed for now, tried again after the back-off
    parked: int = 0  # failed for good: status failed
    deferred: int = 0  # not tried: their receiver was unreachable earlier in this run

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _receiver(event_type: SQLColumnExpression[str]) -> ColumnElement[str]:
    # Unknown types are their own stream; they are parked when claimed anyway.
    whens = {str(event): receiver.value for event, receiver in RECEIVER_OF.items()}
    return case(whens, value=event_type, else_=event_type)


def _claim(now: datetime, batch_size: int, skip_types: set[str]) -> Select[OutboxEvent]:
    earlier = aliased(OutboxEvent)
    held_back = exists().where(
        earlier.user_id == OutboxEvent.user_id,
        earlier.seq < OutboxEvent.seq,
        earlier.status == OutboxStatus.PENDING,
        _receiver(earlier.type) == _receiver(OutboxEvent.type),
    )
    query = select(OutboxEvent).where(
        OutboxEvent.status == OutboxStatus.PENDING,
        OutboxEvent.next_attempt_at <= now,
        ~held_back,
    )
    if skip_types:
        query = query.where(OutboxEvent.type.not_in(skip_types))
    return (
        # The partial index on pending events' next_attempt_at serves this order.
        query.order_by(OutboxEvent.next_attempt_at, OutboxEvent.seq)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=OutboxEvent)
    )


async def _attempt(sink: Sink | None, event: OutboxEvent) -> DeliveryFailed | None:
    if sink is None:
        return DeliveryFailed(f"no receiver for event type {event.type!r}", permanent=True)
    try:
        await sink.deliver(OutgoingEvent.of(event))
    except DeliveryFailed as failure:
        return failure
    except Exception as error:  # a bug in a sink must not roll back the whole batch
        log.exception("outbox event %s: unexpected error in its sink", event.id)
        return DeliveryFailed(f"{type(error).__name__}: {error}", permanent=False)
    return None


def _record_failure(
    event: OutboxEvent,
    failure: DeliveryFailed,
    *,
    now: datetime,
    max_attempts: int,
    retry_ceiling: timedelta,
    report: DeliveryReport,
) -> None:
    event.last_error = failure.message[:_ERROR_LIMIT]
    if failure.permanent or event.attempts >= max_attempts:
        event.status = OutboxStatus.FAILED
        report.parked += 1
        log.warning(
            "outbox event %s (%s) parked after %d attempt(s): %s",
            event.id,
            event.type,
            event.attempts,
            failure.message,
        )
        return
    event.next_attempt_at = now + retry_delay(event.attempts, ceiling=retry_ceiling)
    report.retried += 1
    log.info(
        "outbox event %s (%s) attempt %d failed, next at %s: %s",
        event.id,
        event.type,
        event.attempts,
        event.next_attempt_at.isoformat(),
        failure.message,
    )


async def _deliver_batch(
    session: AsyncSession,
    sinks: Mapping[Receiver, Sink],
    *,
    now: datetime,
    batch_size: int,
    max_attempts: int,
    retry_ceiling: timedelta,
    unreachable: set[Receiver],
    report: DeliveryReport,
) -> int:
    skip_types = {str(event) for event, receiver in RECEIVER_OF.items() if receiver in unreachable}
    events = (await session.scalars(_claim(now, batch_size, skip_types))).all()
    for event in events:
        receiver = RECEIVER_OF.get(event.type)
        if receiver in unreachable:
            report.deferred += 1
            continue
        failure = await _attempt(sinks.get(receiver) if receiver else None, event)
        event.attempts += 1
        if failure is None:
            event.status = OutboxStatus.DELIVERED
            event.delivered_at = now
            report.delivered += 1
            continue
        if failure.unreachable and receiver is not None:
            unreachable.add(receiver)
        _record_failure(
            event,
            failure,
            now=now,
            max_attempts=max_attempts,
            retry_ceiling=retry_ceiling,
            report=report,
        )
    return len(events)


async def deliver_outbox(
    sessions: async_sessionmaker[AsyncSession],
    sinks: Mapping[Receiver, Sink],
    *,
    now: datetime,
    max_attempts: int,
    retry_ceiling: timedelta,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int = MAX_BATCHES_PER_RUN,
) -> DeliveryReport:
    """Deliver the events due at ``now``, batch after batch (one transaction each), until
    none is claimable or ``max_batches`` ran."""
    report = DeliveryReport()
    unreachable: set[Receiver] = set()
    for _ in range(max_batches):
        async with transaction(sessions) as session:
            claimed = await _deliver_batch(
                session,
                sinks,
                now=now,
                batch_size=batch_size,
                max_attempts=max_attempts,
                retry_ceiling=retry_ceiling,
                unreachable=unreachable,
                report=report,
            )
        if claimed == 0:
            break
    return report
