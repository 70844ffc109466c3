"""Delivering the outbox: due events are leased in bounded batches, delivered to their sinks
with no transaction open, and their outcomes recorded.

Leases. A batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and leased in one short
transaction: each event's attempt is counted and its ``next_attempt_at`` moved to the end of
the lease, then the transaction commits. The events are delivered with no database
connection checked out and no row locked, so a slow or hung receiver costs no pooled
connection and blocks nobody; the outcomes are then written in a second short transaction.
Another worker's claim sees a leased event as not due, so several workers at once never
deliver the same event within a lease. A worker killed in the middle of a batch loses
nothing: its events are still ``pending`` and due again when the lease runs out. The cost:
those events wait for the lease, and the ones it had already delivered are delivered again —
receivers drop such duplicates by event id. The attempt is counted when the lease is taken:
a try whose worker died is a try too, and counts towards ``max_attempts``. An outcome is
recorded only while the lease is still the worker's (the event's attempts unchanged): once
the lease ran out and another worker took the event, that worker's outcome counts. An event
of the batch that was not tried (see below) is given back as it was: its attempt uncounted,
due when it was due.

Deadlines. The lease (``LEASE``, 6 min) outlasts a batch's deliveries. Each delivery is cut
off after ``DELIVERY_TIMEOUT`` (20 s); the sinks' own limits end a stuck call sooner (HTTP:
3 s to connect, 10 s to read the answer; RabbitMQ: 5 s to connect, 10 s for the broker's
confirm), the cut-off ends the rest (a receiver that trickles its answer, a starved
connection pool). A receiver gets at most ``DELIVERIES_AT_ONCE`` (8) of its deliveries at a
time, after the first one alone (below), and the receivers are served side by side; so a
batch of 100 takes at most 20 s + ⌈99 / 8⌉ · 20 s = 4 min 40 s, which leaves over a minute for
recording the outcomes and for clock differences between workers. (More than 8 at once made
no event faster on a local receiver: httpx's pool costs CPU per connection; see
``bench/outbox_throughput.py``.) A lease is counted from when it is taken, not from the run's
start: later batches of a long run get their full lease too.

Unreachable receivers. A receiver that does not answer at all (refused, timed out) is left
alone for the rest of the run, so a dead service costs one timeout per run, not one per event:
in each batch the first delivery to a receiver goes alone, the others follow only if it
answered, and none is started once one of them found the receiver unreachable (those are
given back untried, counted as ``deferred``).

Order. Events go out in commit order per user and receiver: an event is claimable only when
no earlier event of the same user for the same service is still pending (leased ones are
pending too), so a failing event holds back that user's later ones while other users' (and
the other service's) events flow. A batch therefore holds at most one event per user and
receiver, which is why its deliveries may run concurrently; the next batch of the same run
takes the following ones. Events without a user are not ordered. A parked event no longer
holds anything back.

Retries. A temporary failure waits ``retry_delay``: 10 s, 20 s, 40 s, … doubling up to the
ceiling, without jitter (claims by ``SKIP LOCKED`` already spread concurrent workers, and a
predictable schedule is easier to explain to an operator). After ``max_attempts`` attempts, or
at once for a failure that cannot succeed (a 4xx), the event is parked as ``failed`` with its
last error: kept, visible in the admin API, retryable by an admin; never deleted. A sink that
raises anything else fails only that event, temporarily, logged with the event's id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, case, exists, select, update
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
LEASE = timedelta(minutes=6)
DELIVERY_TIMEOUT = timedelta(seconds=20)
DELIVERIES_AT_ONCE = 8  # per receiver
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


@dataclass(frozen=True)
class Lease:
    """A leased event, as the relay holds it while no transaction is open."""

    event: OutgoingEvent
    receiver: Receiver | None
    attempt: int  # the event's attempts with this one; its outcome is written only if unchanged
    due_at: datetime  # next_attempt_at before the lease, given back unless a retry is due


# Outcomes of a batch's deliveries by event id: None = delivered. A leased event missing from
# them was not tried.
Outcomes = dict[uuid.UUID, DeliveryFailed | None]


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


async def _lease(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    until: datetime,
    batch_size: int,
    skip_types: set[str],
) -> list[Lease]:
    """Claim a batch and lease it until ``until``, in one short transaction."""
    async with transaction(sessions) as session:
        events = (await session.scalars(_claim(now, batch_size, skip_types))).all()
        if not events:
            return []
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_([event.id for event in events]))
            .values(attempts=OutboxEvent.attempts + 1, next_attempt_at=until)
            .execution_options(synchronize_session=False)
        )
        return [
            Lease(
                OutgoingEvent.of(event),
                RECEIVER_OF.get(event.type),
                attempt=event.attempts + 1,
                due_at=event.next_attempt_at,
            )
            for event in events
        ]


async def _attempt(sink: Sink | None, event: OutgoingEvent) -> DeliveryFailed | None:
    if sink is None:
        return DeliveryFailed(f"no receiver for event type {event.type!r}", permanent=True)
    deadline = asyncio.timeout(DELIVERY_TIMEOUT.total_seconds())
    try:
        async with deadline:
            await sink.deliver(event)
    except DeliveryFailed as failure:
        return failure
    except Exception as error:  # a bug in a sink must not stop the batch
        if isinstance(error, TimeoutError) and deadline.expired():
            return DeliveryFailed(
                f"no answer within {DELIVERY_TIMEOUT.total_seconds():.0f} s",
                permanent=False,
                unreachable=True,
            )
        log.exception("outbox event %s: unexpected error in its sink", event.id)
        return DeliveryFailed(f"{type(error).__name__}: {error}", permanent=False)
    return None


async def _deliver_to(
    receiver: Receiver | None,
    leases: Sequence[Lease],
    sink: Sink | None,
    *,
    unreachable: set[Receiver],
    outcomes: Outcomes,
) -> None:
    """One receiver's events of a batch: the first alone, then the rest side by side unless
    the receiver turned out unreachable."""
    slots = asyncio.Semaphore(DELIVERIES_AT_ONCE)

    async def deliver(lease: Lease) -> None:
        async with slots:
            if receiver in unreachable:
                return  # left untried
            failure = await _attempt(sink, lease.event)
            if failure is not None and failure.unreachable and receiver is not None:
                unreachable.add(receiver)
            outcomes[lease.event.id] = failure

    first, *rest = leases
    await deliver(first)
    await asyncio.gather(*(deliver(lease) for lease in rest))


async def _deliver(
    leases: Sequence[Lease], sinks: Mapping[Receiver, Sink], *, unreachable: set[Receiver]
) -> Outcomes:
    """Deliver a leased batch; no transaction is open meanwhile."""
    by_receiver: dict[Receiver | None, list[Lease]] = {}
    for lease in leases:
        by_receiver.setdefault(lease.receiver, []).append(lease)
    outcomes: Outcomes = {}
    await asyncio.gather(
        *(
            _deliver_to(
                receiver,
                its_leases,
                sinks.get(receiver) if receiver else None,
                unreachable=unreachable,
                outcomes=outcomes,
            )
            for receiver, its_leases in by_receiver.items()
        )
    )
    return outcomes


def _record_failure(
    event: OutboxEvent,
    lease: Lease,
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
        event.next_attempt_at = lease.due_at
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


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    leases: Sequence[Lease],
    outcomes: Outcomes,
    *,
    now: datetime,
    max_attempts: int,
    retry_ceiling: timedelta,
    report: DeliveryReport,
) -> None:
    """Write a batch's outcomes in one short transaction, for the events still leased to us."""
    by_id = {lease.event.id: lease for lease in leases}
    recorded = 0
    async with transaction(sessions) as session:
        events = await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.id.in_(by_id), OutboxEvent.status == OutboxStatus.PENDING)
            .order_by(OutboxEvent.id)  # one lock order for every worker
            .with_for_update()
        )
        for event in events:
            lease = by_id[event.id]
            if event.attempts != lease.attempt:
                continue  # the lease ran out and another worker took the event
            recorded += 1
            if event.id not in outcomes:  # not tried: given back as it was
                event.attempts -= 1
                event.next_attempt_at = lease.due_at
                report.deferred += 1
                continue
            failure = outcomes[event.id]
            if failure is None:
                event.status = OutboxStatus.DELIVERED
                event.delivered_at = now
                event.next_attempt_at = lease.due_at
                report.delivered += 1
                continue
            _record_failure(
                event,
                lease,
                failure,
                now=now,
                max_attempts=max_attempts,
                retry_ceiling=retry_ceiling,
                report=report,
            )
    if recorded < len(leases):
        log.warning(
            "outbox: %d outcome(s) not recorded: their lease ran out and another worker "
            "took the events",
            len(leases) - recorded,
        )


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
    """Deliver the events due at ``now``, batch after batch (lease, deliver, record), until
    none is claimable or ``max_batches`` ran."""
    report = DeliveryReport()
    unreachable: set[Receiver] = set()
    started = time.monotonic()
    for _ in range(max_batches):
        skip_types = {
            str(event) for event, receiver in RECEIVER_OF.items() if receiver in unreachable
        }
        elapsed = timedelta(seconds=time.monotonic() - started)
        leases = await _lease(
            sessions,
            now=now,
            until=now + elapsed + LEASE,
            batch_size=batch_size,
            skip_types=skip_types,
        )
        if not leases:
            break
        outcomes = await _deliver(leases, sinks, unreachable=unreachable)
        await _record(
            sessions,
            leases,
            outcomes,
            now=now,
            max_attempts=max_attempts,
            retry_ceiling=retry_ceiling,
            report=report,
        )
    return report
