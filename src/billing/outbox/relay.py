"""Delivering the outbox: due events are leased in bounded batches, delivered to their sinks
with no transaction open, and their outcomes recorded.

Leases. A batch is claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and leased by the same
statement (``UPDATE … FROM`` the claim ``RETURNING`` the events) in one short transaction:
each event's attempt is counted and its ``next_attempt_at`` moved to the end of the lease.
The events are delivered with no database connection checked out and no row locked, so a
slow or hung receiver costs no pooled connection and blocks nobody; the outcomes are then
written in a second short transaction, one statement for the whole batch. Another worker's
claim sees a leased event as not due, so several workers at once never deliver the same
event within a lease. A worker killed in the middle of a batch loses nothing: its events are
still ``pending`` and due again when the lease runs out. The cost: those events wait for the
lease, and the ones it had already delivered are delivered again — receivers drop such
duplicates by event id. The attempt is counted when the lease is taken: a try whose worker
died is a try too, and counts towards ``max_attempts``. An outcome is recorded only while the
lease is still the worker's (the event's attempts unchanged): once the lease ran out and
another worker took the event, that worker's outcome counts. An event of the batch that was
not tried (see below) is given back as it was: its attempt uncounted, due when it was due.

Deadlines. The lease (``LEASE``, 6 min) outlasts a batch's deliveries: none is started later
than ``START_DELIVERIES_WITHIN`` (4 min) after the batch's first (the rest are given back
untried), and each is cut off after ``DELIVERY_TIMEOUT`` (20 s); the sinks' own limits end a
stuck call sooner (HTTP: 3 s to connect, 10 s to read the answer; RabbitMQ: 5 s to connect,
10 s for the broker's confirm), the cut-off ends the rest (a receiver that trickles its
answer, a starved connection pool). That leaves over a minute for recording the outcomes and
for clock differences between workers, whatever the batch's size. A receiver gets at most
``DELIVERIES_AT_ONCE`` (8) of its deliveries at a time (HTTP: more made no event faster on a
local receiver, httpx's pool costs CPU per connection), or, if its sink is a ``BatchSink``
(RabbitMQ), all of them in one call (published at once, their confirms awaited together),
after the first one alone (below), and the receivers are served side by side. A lease is
counted from when it is taken, not from the run's start: later batches of a long run get
their full lease too. A run goes on batch after batch for up to ``RUN_FOR`` (10 s, the job's
interval), so a backlog drains at the relay's speed, not at one batch per run.

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
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    case,
    exists,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from billing.db import transaction
from billing.models import OutboxEvent, OutboxStatus
from billing.outbox.events import RECEIVER_OF, Receiver
from billing.outbox.sinks import BatchSink, DeliveryFailed, OutgoingEvent, Sink

log = logging.getLogger(__name__)

BASE_RETRY_DELAY = timedelta(seconds=10)
# Fewer, larger batches: a batch costs two short transactions whatever its size (measured:
# bench/tried.md, "Outbox relay").
DEFAULT_BATCH_SIZE = 500
# A run ends after the batch that took it past this; the next scheduled run (every 10 s, or
# at once if one is already due) goes on with the events due by then.
RUN_FOR = timedelta(seconds=10)
LEASE = timedelta(minutes=6)
DELIVERY_TIMEOUT = timedelta(seconds=20)
DELIVERIES_AT_ONCE = 8  # per receiver, unless its sink takes a batch in one call
# A batch's deliveries start within this; the rest are given back untried. So a lease
# outlasts every batch, whatever its size and its sinks' concurrency: 4 min + 20 s < 6 min.
START_DELIVERIES_WITHIN = timedelta(minutes=4)
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


def _claim(now: datetime, batch_size: int, skip_types: set[str]) -> Select[uuid.UUID, datetime]:
    earlier = aliased(OutboxEvent)
    held_back = exists().where(
        earlier.user_id == OutboxEvent.user_id,
        earlier.seq < OutboxEvent.seq,
        earlier.status == OutboxStatus.PENDING,
        _receiver(earlier.type) == _receiver(OutboxEvent.type),
    )
    query = select(OutboxEvent.id, OutboxEvent.next_attempt_at).where(
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
    """Claim a batch and lease it until ``until``: one statement in one short transaction."""
    claimed = _claim(now, batch_size, skip_types).subquery()
    leased = (
        update(OutboxEvent)
        .where(OutboxEvent.id == claimed.c.id)
        .values(attempts=OutboxEvent.attempts + 1, next_attempt_at=until)
        .returning(
            OutboxEvent.id,
            OutboxEvent.type,
            OutboxEvent.user_id,
            OutboxEvent.occurred_at,
            OutboxEvent.payload,
            OutboxEvent.attempts,
            claimed.c.next_attempt_at,
            OutboxEvent.seq,
        )
        .execution_options(synchronize_session=False)
    )
    async with transaction(sessions) as session:
        rows = (await session.execute(leased)).all()
    return [
        Lease(
            OutgoingEvent(row[0], row[1], row[2], row[3], dict(row[4])),
            RECEIVER_OF.get(row[1]),
            attempt=row[5],
            due_at=row[6],
        )
        for row in sorted(rows, key=lambda row: row[7])  # commit order
    ]


def _failure_of(error: Exception, deadline: asyncio.Timeout, what: object) -> DeliveryFailed:
    """What a sink's exception means for the events it was delivering."""
    if isinstance(error, DeliveryFailed):
        return error
    if isinstance(error, TimeoutError) and deadline.expired():
        return DeliveryFailed(
            f"no answer within {DELIVERY_TIMEOUT.total_seconds():.0f} s",
            permanent=False,
            unreachable=True,
        )
    # A bug in a sink must not stop the batch.
    log.exception("outbox event %s: unexpected error in its sink", what)
    return DeliveryFailed(f"{type(error).__name__}: {error}", permanent=False)


async def _attempt(sink: Sink | None, event: OutgoingEvent) -> DeliveryFailed | None:
    if sink is None:
        return DeliveryFailed(f"no receiver for event type {event.type!r}", permanent=True)
    deadline = asyncio.timeout(DELIVERY_TIMEOUT.total_seconds())
    try:
        async with deadline:
            await sink.deliver(event)
    except Exception as error:
        return _failure_of(error, deadline, event.id)
    return None


async def _attempt_all(
    sink: BatchSink, events: Sequence[OutgoingEvent]
) -> Sequence[DeliveryFailed | None]:
    """``_attempt`` for many events in one call of the sink, cut off as one delivery is."""
    deadline = asyncio.timeout(DELIVERY_TIMEOUT.total_seconds())
    try:
        async with deadline:
            failures = await sink.deliver_all(events)
        if len(failures) != len(events):
            raise RuntimeError(f"{len(failures)} outcomes for {len(events)} events")
    except Exception as error:
        which = f"{events[0].id} (of {len(events)} published together)"
        return [_failure_of(error, deadline, which)] * len(events)
    return failures


async def _deliver_to(
    receiver: Receiver | None,
    leases: Sequence[Lease],
    sink: Sink | None,
    *,
    unreachable: set[Receiver],
    outcomes: Outcomes,
    start_by: float,
) -> None:
    """One receiver's events of a batch: the first alone, then the rest (side by side, or in
    one call of a ``BatchSink``) unless the receiver turned out unreachable; none is started
    after ``start_by`` (monotonic)."""

    def may_start() -> bool:
        return receiver not in unreachable and time.monotonic() <= start_by

    def record(lease: Lease, failure: DeliveryFailed | None) -> None:
        if failure is not None and failure.unreachable and receiver is not None:
            unreachable.add(receiver)
        outcomes[lease.event.id] = failure

    first, *rest = leases
    if isinstance(sink, BatchSink):
        for part in ([first], rest):
            if part and may_start():
                failures = await _attempt_all(sink, [lease.event for lease in part])
                for lease, failure in zip(part, failures, strict=True):
                    record(lease, failure)
        return

    slots = asyncio.Semaphore(DELIVERIES_AT_ONCE)

    async def deliver(lease: Lease) -> None:
        async with slots:
            if may_start():  # else left untried
                record(lease, await _attempt(sink, lease.event))

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
    start_by = time.monotonic() + START_DELIVERIES_WITHIN.total_seconds()
    await asyncio.gather(
        *(
            _deliver_to(
                receiver,
                its_leases,
                sinks.get(receiver) if receiver else None,
                unreachable=unreachable,
                outcomes=outcomes,
                start_by=start_by,
            )
            for receiver, its_leases in by_receiver.items()
        )
    )
    return outcomes


# A batch's outcomes in one statement: each leased event's new values, applied only while the
# lease is still ours (attempts unchanged). The rows are locked in id order first: one lock
# order for every worker whose leases overlap (one whose lease ran out). The values come as
# one JSON array (psycopg's array dumpers cost ≈ 1 µs per element in Python: 7 arrays of a
# batch's size; json.dumps encodes them all in C).
_RECORD = text(
    """
    WITH outcome AS MATERIALIZED (
        SELECT * FROM json_to_recordset(CAST(:outcomes AS json)) AS o(
            id uuid, leased integer, status text, attempts integer,
            next_attempt_at timestamptz, delivered_at timestamptz, last_error text
        )
    ), locked AS MATERIALIZED (
        SELECT id FROM outbox_events
        WHERE id IN (SELECT id FROM outcome) AND status = 'pending'
        ORDER BY id
        FOR UPDATE
    )
    UPDATE outbox_events AS e
    SET status = o.status,
        attempts = o.attempts,
        next_attempt_at = o.next_attempt_at,
        delivered_at = o.delivered_at,
        last_error = COALESCE(o.last_error, e.last_error)
    FROM outcome AS o JOIN locked USING (id)
    WHERE e.id = o.id AND e.attempts = o.leased
    RETURNING e.id
    """
)


@dataclass(frozen=True)
class _Outcome:
    """What the row of a leased event becomes."""

    lease: Lease
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    failure: DeliveryFailed | None = None
    counted_as: str = "delivered"  # the DeliveryReport field


def _outcome(
    lease: Lease,
    outcomes: Outcomes,
    *,
    now: datetime,
    max_attempts: int,
    retry_ceiling: timedelta,
) -> _Outcome:
    if lease.event.id not in outcomes:  # not tried: given back as it was
        return _Outcome(
            lease, OutboxStatus.PENDING, lease.attempt - 1, lease.due_at, counted_as="deferred"
        )
    failure = outcomes[lease.event.id]
    if failure is None:
        return _Outcome(lease, OutboxStatus.DELIVERED, lease.attempt, lease.due_at, now)
    if failure.permanent or lease.attempt >= max_attempts:
        return _Outcome(
            lease,
            OutboxStatus.FAILED,
            lease.attempt,
            lease.due_at,
            failure=failure,
            counted_as="parked",
        )
    retry_at = now + retry_delay(lease.attempt, ceiling=retry_ceiling)
    return _Outcome(
        lease, OutboxStatus.PENDING, lease.attempt, retry_at, failure=failure, counted_as="retried"
    )


def _log_failure(outcome: _Outcome) -> None:
    event, failure = outcome.lease.event, outcome.failure
    assert failure is not None
    if outcome.status == OutboxStatus.FAILED:
        log.warning(
            "outbox event %s (%s) parked after %d attempt(s): %s",
            event.id,
            event.type,
            outcome.attempts,
            failure.message,
        )
    else:
        log.info(
            "outbox event %s (%s) attempt %d failed, next at %s: %s",
            event.id,
            event.type,
            outcome.attempts,
            outcome.next_attempt_at.isoformat(),
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
    planned = [
        _outcome(lease, outcomes, now=now, max_attempts=max_attempts, retry_ceiling=retry_ceiling)
        for lease in leases
    ]
    values = json.dumps(
        [
            {
                "id": str(outcome.lease.event.id),
                "leased": outcome.lease.attempt,
                "status": str(outcome.status),
                "attempts": outcome.attempts,
                "next_attempt_at": outcome.next_attempt_at.isoformat(),
                "delivered_at": outcome.delivered_at and outcome.delivered_at.isoformat(),
                "last_error": outcome.failure.message[:_ERROR_LIMIT] if outcome.failure else None,
            }
            for outcome in planned
        ]
    )
    async with transaction(sessions) as session:
        recorded = set((await session.scalars(_RECORD, {"outcomes": values})).all())
    for outcome in planned:
        if outcome.lease.event.id not in recorded:
            continue  # the lease ran out and another worker took the event
        setattr(report, outcome.counted_as, getattr(report, outcome.counted_as) + 1)
        if outcome.failure is not None:
            _log_failure(outcome)
    if len(recorded) < len(leases):
        log.warning(
            "outbox: %d outcome(s) not recorded: their lease ran out and another worker "
            "took the events",
            len(leases) - len(recorded),
        )


async def deliver_outbox(
    sessions: async_sessionmaker[AsyncSession],
    sinks: Mapping[Receiver, Sink],
    *,
    now: datetime,
    max_attempts: int,
    retry_ceiling: timedelta,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batches: int | None = None,
    run_for: timedelta = RUN_FOR,
) -> DeliveryReport:
    """Deliver the events due at ``now``, batch after batch (lease, deliver, record), until
    none is claimable, ``max_batches`` ran or the run lasted ``run_for`` (checked after each
    batch: a run takes at least one)."""
    report = DeliveryReport()
    unreachable: set[Receiver] = set()
    started = time.monotonic()
    batches = 0
    while batches != max_batches:
        skip_types = {
            str(event) for event, receiver in RECEIVER_OF.items() if receiver in unreachable
        }
        elapsed = timedelta(seconds=time.monotonic() - started)
        if elapsed >= run_for and batches:
            break
        leases = await _lease(
            sessions,
            now=now,
            until=now + elapsed + LEASE,
            batch_size=batch_size,
            skip_types=skip_types,
        )
        if not leases:
            break
        batches += 1
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
