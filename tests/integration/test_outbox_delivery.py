"""Outbox delivery to real local HTTP servers playing the Notification and Auth services:
failures then recovery, timeouts, 4xx, parking, order per user, concurrent and killed relays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.config import Settings
from billing.db import transaction
from billing.models import OutboxEvent
from billing.outbox.events import EventType, Receiver
from billing.outbox.relay import LEASE, DeliveryReport, deliver_outbox
from billing.outbox.service import add_event
from billing.outbox.sinks import (
    AuthHttpSink,
    LogSink,
    NotifyHttpSink,
    OutgoingEvent,
    Sink,
)
from billing.outbox.tasks import run_deliver_outbox
from tests.outbox_events import example

Sessions = async_sessionmaker[AsyncSession]
NOTIFY = EventType.PAYMENT_SUCCEEDED
CEILING = timedelta(minutes=5)


# A receiver: a real HTTP server in a thread, answering as the test says.


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]


@dataclass
class Reply:
    status: int = 200
    body: str = ""
    delay: float = 0.0
    hold: threading.Event | None = None  # answer only once the test sets it


@dataclass
class FakeService:
    """Records every call; ``answer`` decides the reply (a 200 by default)."""

    answer: Callable[[Call], Reply] = lambda call: Reply()
    calls: list[Call] = field(default_factory=list)
    url: str = ""

    def accepted(self) -> list[Call]:
        return [call for call in self.calls if 200 <= call.status < 300]

    def accepted_keys(self) -> list[str]:
        return [call.key for call in self.accepted()]


def start_server(service: FakeService) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            call = Call(
                self.command,
                self.path,
                {name.lower(): value for name, value in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            with lock:
                service.calls.append(call)
                reply = service.answer(call)
                call.status = reply.status
            if reply.hold is not None:
                reply.hold.wait(10)
            if reply.delay:
                threading.Event().wait(reply.delay)
            payload = reply.body.encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (timeout, cancelled relay)
                pass

        do_POST = _handle
        do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.block_on_close = False  # a reply held or slowed by a test must not hold teardown
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


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
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.5, connect=0.5)) as client:
        yield client


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Events and the relay.


async def add_events(
    sessions: Sessions, clock: FrozenClock, *events: tuple[EventType, uuid.UUID, dict[str, Any]]
) -> list[uuid.UUID]:
    ids = []
    async with transaction(sessions) as session:
        for event_type, user_id, data in events:
            event = add_event(
                session, example(event_type, **data), user_id=user_id, occurred_at=clock.now()
            )
            await session.flush()  # commit order = the order written here
            ids.append(event.id)
    return ids


async def rows(sessions: Sessions) -> dict[uuid.UUID, OutboxEvent]:
    async with sessions() as session:
        result = await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))
        return {event.id: event for event in result}


def sinks_for(notify_sink: Sink, auth_sink: Sink | None = None) -> dict[Receiver, Sink]:
    return {Receiver.NOTIFICATION: notify_sink, Receiver.AUTH: auth_sink or LogSink(Receiver.AUTH)}


async def relay(
    sessions: Sessions,
    clock: FrozenClock,
    sinks: dict[Receiver, Sink],
    *,
    max_attempts: int = 5,
    **options: Any,
) -> DeliveryReport:
    return await deliver_outbox(
        sessions,
        sinks,
        now=clock.now(),
        max_attempts=max_attempts,
        retry_ceiling=CEILING,
        **options,
    )


def failing_first(count: int, status: int = 500) -> Callable[[Call], Reply]:
    failures = iter(range(count))
    return lambda call: Reply(status) if next(failures, None) is not None else Reply()


# Tests.


async def test_a_service_failing_then_recovering_receives_every_event_exactly_once(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    written = await add_events(
        sessions,
        clock,
        *[(kind, user, {}) for user in users for kind in (NOTIFY, EventType.SUBSCRIPTION_EXPIRING)],
    )
    notify.answer = failing_first(3)
    sinks = sinks_for(NotifyHttpSink(http, notify.url))

    first = await relay(sessions, clock, sinks)
    # Three users' first events failed and hold back their second; the fourth user got both.
    assert (first.delivered, first.retried, first.parked) == (2, 3, 0)
    for _ in range(5):
        clock.advance(timedelta(minutes=1))
        await relay(sessions, clock, sinks)

    keys = notify.accepted_keys()
    assert sorted(keys) == sorted(str(event_id) for event_id in written)  # each id once
    assert len(notify.calls) == 8 + 3
    events = await rows(sessions)
    assert all(event.status == "delivered" and event.delivered_at for event in events.values())
    assert sum(event.attempts for event in events.values()) == 11
    retried = [event for event in events.values() if event.attempts == 2]
    assert len(retried) == 3
    assert all("HTTP 500" in (event.last_error or "") for event in retried)
    for user in users:  # each user's events arrived in the order they were written
        theirs = [str(e.id) for e in events.values() if e.user_id == user]
        assert [key for key in keys if key in theirs] == theirs

    call = notify.accepted()[0]
    assert call.method == "POST"
    assert call.headers["content-type"] == "application/json"
    sent = events[uuid.UUID(call.key)]
    assert call.body == {
        "id": str(sent.id),
        "type": sent.type,
        "user_id": str(sent.user_id),
        "occurred_at": sent.occurred_at.isoformat(),
        "data": example(EventType(sent.type)).payload(),
    }


async def test_back_off_doubles_and_the_event_is_parked_after_max_attempts(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    user = uuid.uuid4()
    doomed, held_back = await add_events(
        sessions, clock, (NOTIFY, user, {}), (EventType.PAYMENT_REFUNDED, user, {})
    )
    notify.answer = lambda call: Reply(503) if call.key == str(doomed) else Reply()
    sinks = sinks_for(NotifyHttpSink(http, notify.url))
    start = clock.now()

    await relay(sessions, clock, sinks, max_attempts=3)
    event = (await rows(sessions))[doomed]
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.next_attempt_at == start + timedelta(seconds=10)

    clock.advance(timedelta(seconds=9))  # not due yet: nobody is called
    await relay(sessions, clock, sinks, max_attempts=3)
    assert len(notify.calls) == 1

    clock.advance(timedelta(seconds=1))
    await relay(sessions, clock, sinks, max_attempts=3)
    event = (await rows(sessions))[doomed]
    assert event.attempts == 2
    assert event.next_attempt_at == clock.now() + timedelta(seconds=20)
    assert notify.accepted_keys() == []  # the user's later event waits behind it

    clock.advance(timedelta(seconds=20))
    report = await relay(sessions, clock, sinks, max_attempts=3)
    assert (report.parked, report.delivered) == (1, 1)
    events = await rows(sessions)
    assert (events[doomed].status, events[doomed].attempts) == ("failed", 3)
    assert "HTTP 503" in (events[doomed].last_error or "")
    # Parked, it no longer holds the user's next event back.
    assert events[held_back].status == "delivered"
    assert notify.accepted_keys() == [str(held_back)]

    clock.advance(timedelta(days=1))  # parked is parked: no more tries
    await relay(sessions, clock, sinks, max_attempts=3)
    assert len(notify.calls) == 4


async def test_a_4xx_is_parked_at_once_with_its_error(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    (event_id,) = await add_events(sessions, clock, (NOTIFY, uuid.uuid4(), {}))
    notify.answer = lambda call: Reply(422, '{"detail": "unknown template"}')

    with_password = notify.url.replace("http://", "http://billing:s3cret@")
    report = await relay(sessions, clock, sinks_for(NotifyHttpSink(http, with_password)))

    assert (report.parked, report.retried) == (1, 0)
    event = (await rows(sessions))[event_id]
    assert (event.status, event.attempts, event.delivered_at) == ("failed", 1, None)
    assert "HTTP 422" in (event.last_error or "")
    assert "unknown template" in (event.last_error or "")
    assert "s3cret" not in (event.last_error or "")  # the admin API shows it


async def test_a_429_is_only_a_temporary_failure(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    (event_id,) = await add_events(sessions, clock, (NOTIFY, uuid.uuid4(), {}))
    notify.answer = failing_first(1, status=429)
    sinks = sinks_for(NotifyHttpSink(http, notify.url))

    await relay(sessions, clock, sinks)
    assert (await rows(sessions))[event_id].status == "pending"
    clock.advance(timedelta(seconds=10))
    await relay(sessions, clock, sinks)
    assert (await rows(sessions))[event_id].status == "delivered"


async def test_a_failing_user_waits_while_other_users_events_flow(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    anna, boris = uuid.uuid4(), uuid.uuid4()
    kinds = (NOTIFY, EventType.SUBSCRIPTION_EXPIRING, EventType.SUBSCRIPTION_EXPIRED)
    annas = await add_events(sessions, clock, *[(kind, anna, {}) for kind in kinds])
    boriss = await add_events(sessions, clock, *[(kind, boris, {}) for kind in kinds])
    notify.answer = lambda call: Reply(500) if call.body["user_id"] == str(anna) else Reply()
    sinks = sinks_for(NotifyHttpSink(http, notify.url))

    await relay(sessions, clock, sinks)
    assert notify.accepted_keys() == [str(event_id) for event_id in boriss]
    assert [call.key for call in notify.calls if call.status == 500] == [str(annas[0])]
    events = await rows(sessions)
    assert [events[event_id].attempts for event_id in annas] == [1, 0, 0]

    notify.answer = lambda call: Reply()  # recovered
    clock.advance(timedelta(seconds=10))
    await relay(sessions, clock, sinks)
    assert notify.accepted_keys()[3:] == [str(event_id) for event_id in annas]


async def test_a_notification_outage_holds_back_no_role_grant_and_costs_one_try_per_run(
    sessions: Sessions,
    clock: FrozenClock,
    auth: FakeService,
    http: httpx.AsyncClient,
) -> None:
    """Order is per user and per service: a down Notification service does not keep a paid
    user from their role. An unreachable service is tried once per run, not once per event."""
    paying, other = uuid.uuid4(), uuid.uuid4()
    notice, grant, other_notice = await add_events(
        sessions,
        clock,
        (NOTIFY, paying, {}),
        (EventType.ROLE_GRANT, paying, {"role": "premium"}),
        (NOTIFY, other, {}),
    )
    sinks = sinks_for(
        NotifyHttpSink(http, closed_port_url()), AuthHttpSink(http, auth.url, token=None)
    )

    report = await relay(sessions, clock, sinks)

    assert report.as_dict() == {"delivered": 1, "retried": 1, "parked": 0, "deferred": 1}
    events = await rows(sessions)
    assert events[grant].status == "delivered"
    assert auth.accepted_keys() == [str(grant)]
    assert (events[notice].status, events[notice].attempts) == ("pending", 1)
    assert "ConnectError" in (events[notice].last_error or "")
    # Not tried at all: still due, no attempt counted.
    assert (events[other_notice].attempts, events[other_notice].last_error) == (0, None)
    assert events[other_notice].next_attempt_at == clock.now()


async def test_a_slow_service_times_out_and_the_event_is_delivered_later(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    slow, waiting = await add_events(
        sessions, clock, (NOTIFY, uuid.uuid4(), {}), (NOTIFY, uuid.uuid4(), {})
    )
    replies = iter([Reply(delay=2.0)])
    notify.answer = lambda call: next(replies, Reply())
    sinks = sinks_for(NotifyHttpSink(http, notify.url))

    report = await relay(sessions, clock, sinks)  # the client waits 0.5 s

    assert (report.retried, report.deferred) == (1, 1)
    events = await rows(sessions)
    assert (events[slow].status, events[slow].attempts) == ("pending", 1)
    assert "timed out" in (events[slow].last_error or "")
    assert events[waiting].attempts == 0

    clock.advance(timedelta(seconds=10))
    await relay(sessions, clock, sinks)
    events = await rows(sessions)
    assert [events[slow].status, events[waiting].status] == ["delivered", "delivered"]
    assert events[slow].attempts == 2


async def test_two_relays_at_once_deliver_every_event_once_and_in_order(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    users = [uuid.uuid4() for _ in range(15)]
    kinds = (NOTIFY, EventType.SUBSCRIPTION_EXPIRING, EventType.SUBSCRIPTION_EXPIRED)
    written = await add_events(
        sessions, clock, *[(kind, user, {}) for user in users for kind in kinds]
    )
    notify.answer = lambda call: Reply(delay=0.01)
    sinks = sinks_for(NotifyHttpSink(http, notify.url))

    reports = await asyncio.gather(
        *[relay(sessions, clock, sinks, batch_size=4, max_batches=100) for _ in range(2)]
    )

    keys = notify.accepted_keys()
    assert len(keys) == len(set(keys)) == len(written)
    assert all(report.delivered > 0 for report in reports)  # both really took part
    assert sum(report.delivered for report in reports) == len(written)
    events = await rows(sessions)
    assert all((event.status, event.attempts) == ("delivered", 1) for event in events.values())
    for user in users:
        theirs = [str(e.id) for e in events.values() if e.user_id == user]
        assert [key for key in keys if key in theirs] == theirs


async def test_a_relay_killed_mid_batch_loses_nothing(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    written = await add_events(sessions, clock, *[(NOTIFY, uuid.uuid4(), {}) for _ in range(3)])
    release, in_flight = threading.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def hold_the_first(call: Call) -> Reply:
        loop.call_soon_threadsafe(in_flight.set)
        return Reply(hold=release)

    notify.answer = hold_the_first
    sinks = sinks_for(NotifyHttpSink(http, notify.url))
    killed = asyncio.create_task(relay(sessions, clock, sinks))
    await asyncio.wait_for(in_flight.wait(), 5)  # a delivery is in flight

    killed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await killed
    release.set()

    # Still pending, the attempt counted, leased: no other relay takes them until the lease
    # runs out.
    events = await rows(sessions)
    assert all(
        (event.status, event.attempts, event.delivered_at) == ("pending", 1, None)
        for event in events.values()
    )
    assert all(event.next_attempt_at >= clock.now() + LEASE for event in events.values())
    notify.answer = lambda call: Reply()
    calls = len(notify.calls)
    clock.advance(LEASE - timedelta(seconds=1))
    assert (await relay(sessions, clock, sinks)).delivered == 0
    assert len(notify.calls) == calls

    clock.advance(timedelta(seconds=2))  # the lease ran out
    report = await relay(sessions, clock, sinks)
    assert report.delivered == 3
    assert set(notify.accepted_keys()) == {str(event_id) for event_id in written}
    events = await rows(sessions)
    assert all((event.status, event.attempts) == ("delivered", 2) for event in events.values())


async def test_a_sink_that_breaks_fails_only_its_event(
    sessions: Sessions, clock: FrozenClock, notify: FakeService, http: httpx.AsyncClient
) -> None:
    broken, fine = await add_events(
        sessions, clock, (NOTIFY, uuid.uuid4(), {}), (NOTIFY, uuid.uuid4(), {})
    )
    http_sink = NotifyHttpSink(http, notify.url)

    class Buggy:
        async def deliver(self, event: OutgoingEvent) -> None:
            if event.id == broken:
                raise RuntimeError("template missing")
            await http_sink.deliver(event)

    report = await relay(sessions, clock, sinks_for(Buggy()))

    assert (report.delivered, report.retried) == (1, 1)
    events = await rows(sessions)
    assert events[fine].status == "delivered"
    assert (events[broken].status, events[broken].last_error) == (
        "pending",
        "RuntimeError: template missing",
    )


async def test_an_event_of_an_unknown_type_is_parked(
    sessions: Sessions, clock: FrozenClock
) -> None:
    async with transaction(sessions) as session:
        odd = OutboxEvent(
            type="coupon.sent",
            user_id=uuid.uuid4(),
            payload={},
            occurred_at=clock.now(),
            next_attempt_at=clock.now(),
        )
        session.add(odd)

    report = await relay(sessions, clock, sinks_for(LogSink(Receiver.NOTIFICATION)))

    assert report.parked == 1
    event = (await rows(sessions))[odd.id]
    assert event.status == "failed"
    assert "no receiver for event type 'coupon.sent'" in (event.last_error or "")


# The Auth service, and the sinks chosen by the configuration.


async def test_role_grants_and_revokes_reach_the_auth_service(
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
    auth: FakeService,
    notify: FakeService,
    http: httpx.AsyncClient,
) -> None:
    granted, revoked, gone, refused = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    grant, revoke, revoke_gone, grant_refused = await add_events(
        sessions,
        clock,
        (EventType.ROLE_GRANT, granted, {"role": "premium"}),
        (EventType.ROLE_REVOKE, revoked, {"role": "premium plus"}),
        (EventType.ROLE_REVOKE, gone, {"role": "premium"}),
        (EventType.ROLE_GRANT, refused, {"role": "premium"}),
    )

    def answer(call: Call) -> Reply:
        if str(gone) in call.path:
            return Reply(404, '{"detail": "no such role"}')
        if str(refused) in call.path:
            return Reply(403, '{"detail": "token may not grant roles"}')
        return Reply(201 if call.method == "POST" else 204)

    auth.answer = answer
    configured = settings.model_copy(
        update={"auth_url": auth.url, "auth_token": "auth-token", "notify_url": notify.url}
    )

    counts = await run_deliver_outbox(sessions, configured, http, clock.now())

    assert counts == {"delivered": 3, "retried": 0, "parked": 1, "deferred": 0}
    by_key = {call.key: call for call in auth.calls}
    assert (by_key[str(grant)].method, by_key[str(grant)].path) == (
        "POST",
        f"/api/v1/users/{granted}/roles",
    )
    assert by_key[str(grant)].body == {"role": "premium"}
    assert by_key[str(grant)].headers["authorization"] == "Bearer auth-token"
    assert (by_key[str(revoke)].method, by_key[str(revoke)].path) == (
        "DELETE",
        f"/api/v1/users/{revoked}/roles/premium%20plus",
    )
    assert by_key[str(revoke)].headers["authorization"] == "Bearer auth-token"
    events = await rows(sessions)
    assert events[revoke_gone].status == "delivered"  # 404 on revoke: already done
    assert events[grant_refused].status == "failed"
    assert "HTTP 403" in (events[grant_refused].last_error or "")
    assert notify.calls == []


async def test_an_auth_service_error_is_retried(
    sessions: Sessions, clock: FrozenClock, auth: FakeService, http: httpx.AsyncClient
) -> None:
    (grant,) = await add_events(
        sessions, clock, (EventType.ROLE_GRANT, uuid.uuid4(), {"role": "premium"})
    )
    auth.answer = failing_first(1, status=502)
    sinks = sinks_for(LogSink(Receiver.NOTIFICATION), AuthHttpSink(http, auth.url, "t"))

    await relay(sessions, clock, sinks)
    clock.advance(timedelta(seconds=10))
    await relay(sessions, clock, sinks)

    assert auth.accepted_keys() == [str(grant)]
    event = (await rows(sessions))[grant]
    assert (event.status, event.attempts) == ("delivered", 2)


async def test_without_services_events_are_logged_and_delivered(
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    notice, grant = await add_events(
        sessions,
        clock,
        (NOTIFY, uuid.uuid4(), {"amount": 100}),
        (EventType.ROLE_GRANT, uuid.uuid4(), {"role": "premium"}),
    )
    caplog.set_level(logging.INFO, logger="billing.outbox")

    counts = await run_deliver_outbox(sessions, settings, http, clock.now())

    assert counts == {"delivered": 2, "retried": 0, "parked": 0, "deferred": 0}
    assert all(event.status == "delivered" for event in (await rows(sessions)).values())
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert str(notice) in logged
    assert str(grant) in logged
