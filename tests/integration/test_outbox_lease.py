"""The relay leases a batch, delivers it with no transaction open, then records the outcomes:
while a receiver is being called (or hangs) the relay holds no database connection and no row
lock, leased events belong to one worker until the lease runs out, and a batch's deliveries
run side by side. Receivers are real local HTTP servers; the database is the test's own."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import errors
from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.db import create_engine, libpq_url, session_factory
from billing.outbox import relay as relay_module
from billing.outbox.events import EventType
from billing.outbox.relay import LEASE
from billing.outbox.sinks import AuthHttpSink, NotifyHttpSink, OutgoingEvent
from tests.integration.test_outbox_delivery import (
    NOTIFY,
    Call,
    FakeService,
    Reply,
    add_events,
    relay,
    rows,
    sinks_for,
    start_server,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def notify() -> Iterator[FakeService]:
    service = FakeService()
    server = start_server(service)
    yield service
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth() -> Iterator[FakeService]:
    service = FakeService()
    server = start_server(service)
    yield service
    server.shutdown()
    server.server_close()


@pytest.fixture
async def patient_http() -> AsyncIterator[httpx.AsyncClient]:
    """A client that waits long enough for a test to look around while a call hangs."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
        yield client


@dataclass(frozen=True)
class Look:
    """What another connection sees of the test database while a receiver is being called."""

    open_transactions: int  # of other client sessions
    outbox_table_locks: int  # held by other sessions
    lockable_rows: int  # outbox rows this connection could lock at once, NOWAIT; -1: some not
    checked_out: int  # connections of the relay's pool in use


class Observer:
    """Looks at ``pg_stat_activity`` and ``pg_locks`` from its own connection; called from the
    receivers' threads, one look at a time."""

    def __init__(self, database_url: str, engine: AsyncEngine) -> None:
        self.connection = psycopg.connect(libpq_url(database_url), autocommit=True)
        self.engine = engine
        self.lock = threading.Lock()
        self.looks: list[Look] = []

    def _count(self, sql: str) -> int:
        row = self.connection.execute(sql).fetchone()
        assert row is not None
        return int(row[0])

    def look(self) -> None:
        with self.lock:
            open_transactions = self._count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND xact_start IS NOT NULL"
            )
            table_locks = self._count(
                "SELECT count(*) FROM pg_locks WHERE relation = 'outbox_events'::regclass"
                " AND pid <> pg_backend_pid()"
            )
            try:
                with self.connection.transaction(force_rollback=True):
                    lockable = self._count(
                        "SELECT count(*) FROM (SELECT id FROM outbox_events FOR UPDATE NOWAIT) l"
                    )
            except errors.LockNotAvailable:
                lockable = -1
            pool: Any = self.engine.pool
            self.looks.append(Look(open_transactions, table_locks, lockable, pool.checkedout()))

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def observer(database_url: str, engine: AsyncEngine) -> Iterator[Observer]:
    watching = Observer(database_url, engine)
    yield watching
    watching.close()


async def test_while_receivers_are_called_no_transaction_is_open_and_no_row_is_locked(
    sessions: Sessions,
    clock: FrozenClock,
    notify: FakeService,
    auth: FakeService,
    observer: Observer,
    patient_http: httpx.AsyncClient,
) -> None:
    users = [uuid.uuid4() for _ in range(3)]
    written = await add_events(
        sessions,
        clock,
        *[(NOTIFY, user, {}) for user in users],
        (EventType.ROLE_GRANT, users[0], {"role": "premium"}),
        (EventType.PAYMENT_REFUNDED, users[0], {}),  # waits behind the user's first notice
    )

    def look_then_accept(call: Call) -> Reply:
        observer.look()
        return Reply(201)

    notify.answer = auth.answer = look_then_accept
    sinks = sinks_for(
        NotifyHttpSink(patient_http, notify.url), AuthHttpSink(patient_http, auth.url, None)
    )

    report = await relay(sessions, clock, sinks)

    assert report.delivered == len(written)
    assert len(observer.looks) == len(written)
    assert observer.looks == [Look(0, 0, len(written), 0)] * len(written)
    events = await rows(sessions)
    assert all((e.status, e.attempts) == ("delivered", 1) for e in events.values())


async def test_a_hung_receiver_holds_no_connection(
    database_url: str, clock: FrozenClock, notify: FakeService, patient_http: httpx.AsyncClient
) -> None:
    """With a pool of one connection, the rest of billing keeps using the database while the
    relay waits on a receiver that does not answer."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=2)
    one_connection = session_factory(engine)
    try:
        (hung,) = await add_events(one_connection, clock, (NOTIFY, uuid.uuid4(), {}))
        release, in_flight = threading.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def hang(call: Call) -> Reply:
            loop.call_soon_threadsafe(in_flight.set)
            return Reply(hold=release)

        notify.answer = hang
        running = asyncio.create_task(
            relay(one_connection, clock, sinks_for(NotifyHttpSink(patient_http, notify.url)))
        )
        await asyncio.wait_for(in_flight.wait(), 5)

        # The pool's only connection is free: writing and reading events works meanwhile.
        try:
            (later,) = await add_events(one_connection, clock, (NOTIFY, uuid.uuid4(), {}))
            during = await rows(one_connection)
        except exc.TimeoutError:
            during = None
        finally:
            release.set()
        report = await running
        assert during is not None, "the relay held the pool's only connection"
        assert (during[hung].status, during[hung].attempts) == ("pending", 1)  # leased
        assert during[hung].next_attempt_at > clock.now()
        assert report.delivered == 2  # the later one in the run's next batch
        events = await rows(one_connection)
        assert [events[hung].status, events[later].status] == ["delivered", "delivered"]
    finally:
        await engine.dispose()


async def test_a_leased_event_is_another_relays_only_after_the_lease(
    sessions: Sessions,
    database_url: str,
    clock: FrozenClock,
    notify: FakeService,
    patient_http: httpx.AsyncClient,
) -> None:
    """Two relays with their own pools: while the first delivers its batch, the second takes
    neither those events nor their users' later ones, and delivers everybody else's."""
    users = [uuid.uuid4() for _ in range(6)]
    firsts = await add_events(sessions, clock, *[(NOTIFY, user, {}) for user in users])
    seconds = await add_events(
        sessions, clock, *[(EventType.SUBSCRIPTION_EXPIRING, user, {}) for user in users]
    )
    leased_by_first = {str(event_id) for event_id in firsts[:3]}  # its batch of three
    release, in_flight = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold_the_first_relays(call: Call) -> Reply:
        if call.key in leased_by_first:
            loop.call_soon_threadsafe(in_flight.set)
            return Reply(hold=release)
        return Reply()

    notify.answer = hold_the_first_relays
    sinks = sinks_for(NotifyHttpSink(patient_http, notify.url))
    other_engine = create_engine(database_url)
    try:
        first = asyncio.create_task(relay(sessions, clock, sinks, batch_size=3, max_batches=1))
        await asyncio.wait_for(in_flight.wait(), 5)
        try:
            second = await relay(session_factory(other_engine), clock, sinks)
        finally:
            release.set()
        assert second.as_dict() == {"delivered": 6, "retried": 0, "parked": 0, "deferred": 0}
        assert (await first).delivered == 3
    finally:
        await other_engine.dispose()
    assert {call.key for call in notify.calls[1:7]} == {
        str(event_id) for event_id in firsts[3:] + seconds[3:]
    }

    third = await relay(sessions, clock, sinks)  # the first relay's users' later events

    assert third.delivered == 3
    keys = notify.accepted_keys()
    assert sorted(keys) == sorted(str(event_id) for event_id in firsts + seconds)  # each once
    for first_id, second_id in zip(firsts, seconds, strict=True):
        assert keys.index(str(first_id)) < keys.index(str(second_id))  # in order per user


async def test_an_outcome_after_the_lease_ran_out_is_not_recorded(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, patient_http: httpx.AsyncClient
) -> None:
    """A relay stuck past its lease: another takes the event over and delivers it; the stuck
    one's late failure then changes nothing."""
    (event_id,) = await add_events(sessions, clock, (NOTIFY, uuid.uuid4(), {}))
    release, in_flight = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    answers = iter([Reply(500, hold=release), Reply(200)])

    def answer(call: Call) -> Reply:
        loop.call_soon_threadsafe(in_flight.set)
        return next(answers)

    notify.answer = answer
    sinks = sinks_for(NotifyHttpSink(patient_http, notify.url))
    stuck = asyncio.create_task(relay(sessions, FrozenClock(clock.now()), sinks))
    await asyncio.wait_for(in_flight.wait(), 5)

    clock.advance(LEASE + timedelta(seconds=1))
    try:
        taken_over = await relay(sessions, clock, sinks)
    finally:
        release.set()
    late = await stuck

    assert taken_over.delivered == 1
    assert late.as_dict() == {"delivered": 0, "retried": 0, "parked": 0, "deferred": 0}
    event = (await rows(sessions))[event_id]
    assert (event.status, event.attempts, event.last_error) == ("delivered", 2, None)


async def test_a_batch_is_delivered_side_by_side(
    sessions: Sessions, clock: FrozenClock, notify: FakeService
) -> None:
    """After the first delivery (alone: is the receiver up?) the others of the batch are in
    flight together: the receiver answers them only once four are waiting at once. One by one,
    the second call would wait for the client's timeout and the rest would be deferred."""
    written = await add_events(sessions, clock, *[(NOTIFY, uuid.uuid4(), {}) for _ in range(5)])
    all_waiting = threading.Event()

    def answer_together(call: Call) -> Reply:
        if len(notify.calls) == 1:
            return Reply()
        if len(notify.calls) == len(written):
            all_waiting.set()
        return Reply(hold=all_waiting)

    notify.answer = answer_together
    async with httpx.AsyncClient(timeout=2.0) as http:  # the receiver holds a call up to 10 s
        report = await relay(sessions, clock, sinks_for(NotifyHttpSink(http, notify.url)))

    assert report.as_dict() == {"delivered": 5, "retried": 0, "parked": 0, "deferred": 0}
    assert all_waiting.is_set()
    assert sorted(notify.accepted_keys()) == sorted(str(event_id) for event_id in written)


async def test_an_event_that_breaks_its_sink_is_logged_and_retried_alone(
    sessions: Sessions,
    clock: FrozenClock,
    notify: FakeService,
    patient_http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    written = await add_events(sessions, clock, *[(NOTIFY, uuid.uuid4(), {}) for _ in range(4)])
    broken = written[1]
    http_sink = NotifyHttpSink(patient_http, notify.url)
    fixed = False

    class Buggy:
        async def deliver(self, event: OutgoingEvent) -> None:
            if event.id == broken and not fixed:
                raise KeyError("template")
            await http_sink.deliver(event)

    caplog.set_level(logging.ERROR, logger="billing.outbox")
    report = await relay(sessions, clock, sinks_for(Buggy()))

    assert (report.delivered, report.retried) == (3, 1)
    [logged] = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert str(broken) in logged.getMessage()
    event = (await rows(sessions))[broken]
    assert (event.status, event.attempts, event.last_error) == (
        "pending",
        1,
        "KeyError: 'template'",
    )

    fixed = True
    clock.advance(timedelta(seconds=10))
    assert (await relay(sessions, clock, sinks_for(Buggy()))).delivered == 1
    assert sorted(notify.accepted_keys()) == sorted(str(event_id) for event_id in written)


async def test_a_batch_starts_no_delivery_after_its_deadline_and_gives_the_rest_back(
    sessions: Sessions,
    clock: FrozenClock,
    notify: FakeService,
    patient_http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However large the batch and however slow the receiver, no delivery starts once the
    batch's time to start them is over, so the lease outlasts every delivery; the events not
    started are given back as they were, for the next batch."""
    monkeypatch.setattr(relay_module, "START_DELIVERIES_WITHIN", timedelta(seconds=0.2))
    written = await add_events(sessions, clock, *[(NOTIFY, uuid.uuid4(), {}) for _ in range(5)])
    notify.answer = lambda call: Reply(delay=0.4)  # the first delivery (alone) outlasts it

    report = await relay(
        sessions, clock, sinks_for(NotifyHttpSink(patient_http, notify.url)), max_batches=1
    )

    assert report.as_dict() == {"delivered": 1, "retried": 0, "parked": 0, "deferred": 4}
    events = await rows(sessions)
    assert events[written[0]].status == "delivered"
    assert all(
        (events[event_id].status, events[event_id].attempts, events[event_id].next_attempt_at)
        == ("pending", 0, clock.now())
        for event_id in written[1:]
    )
    assert notify.accepted_keys() == [str(written[0])]


async def test_a_run_takes_batch_after_batch_until_its_time_is_up(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, patient_http: httpx.AsyncClient
) -> None:
    """A run is bounded by time, not by a count of batches: with no time it still takes one
    batch; with the default it drains the backlog."""
    await add_events(sessions, clock, *[(NOTIFY, uuid.uuid4(), {}) for _ in range(6)])
    sinks = sinks_for(NotifyHttpSink(patient_http, notify.url))

    assert (await relay(sessions, clock, sinks, batch_size=2, run_for=timedelta(0))).delivered == 2
    assert (await relay(sessions, clock, sinks, batch_size=2)).delivered == 4
    assert len(notify.accepted_keys()) == 6
