"""Notifications published to the machine's real RabbitMQ (``BILLING_TEST_AMQP_URL``, by
default the local broker with the guest account)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.config import Settings
from billing.db import transaction
from billing.models import OutboxEvent
from billing.outbox.events import EventType, Receiver
from billing.outbox.relay import DeliveryReport, deliver_outbox
from billing.outbox.service import add_event
from billing.outbox.sinks import EXCHANGE, LogSink, NotifyAmqpSink, Sink
from billing.outbox.tasks import run_deliver_outbox
from tests.outbox_events import example

Sessions = async_sessionmaker[AsyncSession]
AMQP_URL = os.environ.get("BILLING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def broker_listening() -> bool:
    host, port = "127.0.0.1", 5672
    if "BILLING_TEST_AMQP_URL" in os.environ:
        return True  # configured explicitly: a broker that is down must fail the tests
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not broker_listening(), reason="no RabbitMQ on 127.0.0.1:5672 (set BILLING_TEST_AMQP_URL)"
)


@pytest.fixture
async def channel() -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(AMQP_URL)
    async with connection:
        yield await connection.channel()


async def bound_queue(channel: AbstractChannel, exchange: str) -> AbstractQueue:
    """A private queue receiving everything published to ``exchange``."""
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(declared, routing_key="#")
    return queue


async def receive(
    queue: AbstractQueue, wanted: set[str], within: float = 5.0
) -> list[AbstractIncomingMessage]:
    """Our messages, in arrival order; others' (a concurrent test run) are ignored."""
    messages: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + within
    while len(messages) < len(wanted) and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
        elif message.message_id in wanted:
            messages.append(message)
    return messages


async def add_events(
    sessions: Sessions, clock: FrozenClock, *events: tuple[EventType, uuid.UUID, dict[str, Any]]
) -> list[uuid.UUID]:
    ids = []
    async with transaction(sessions) as session:
        for event_type, user_id, data in events:
            event = add_event(
                session, example(event_type, **data), user_id=user_id, occurred_at=clock.now()
            )
            await session.flush()
            ids.append(event.id)
    return ids


async def rows(sessions: Sessions) -> dict[uuid.UUID, OutboxEvent]:
    async with sessions() as session:
        result = await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))
        return {event.id: event for event in result}


async def test_notifications_are_published_persistently_to_billing_events(
    sessions: Sessions, clock: FrozenClock, settings: Settings, channel: AbstractChannel
) -> None:
    queue = await bound_queue(channel, EXCHANGE)
    anna, boris = uuid.uuid4(), uuid.uuid4()
    written = await add_events(
        sessions,
        clock,
        (EventType.PAYMENT_SUCCEEDED, anna, {"amount": 49900, "currency": "RUB"}),
        (EventType.SUBSCRIPTION_EXPIRING, anna, {"current_period_end": "2030-01-01T00:00+03:00"}),
        (EventType.PAYMENT_REFUNDED, boris, {"amount": 100}),
        (EventType.ROLE_GRANT, boris, {"role": "premium"}),  # for Auth: not published
    )
    # With both set, RabbitMQ is the channel (the HTTP address here answers nothing).
    configured = settings.model_copy(
        update={"notify_amqp_url": AMQP_URL, "notify_url": "http://127.0.0.1:9"}
    )

    async with httpx.AsyncClient() as http:
        counts = await run_deliver_outbox(sessions, configured, http, clock.now())

    assert counts == {"delivered": 4, "retried": 0, "parked": 0, "deferred": 0}
    annas_first, annas_second, boriss, grant = (str(event_id) for event_id in written)
    messages = await receive(queue, {annas_first, annas_second, boriss})
    received = [str(message.message_id) for message in messages]
    assert sorted(received) == sorted([annas_first, annas_second, boriss])
    assert received.index(annas_first) < received.index(annas_second)  # in order per user
    assert (await receive(queue, {grant}, within=0.3)) == []
    events = await rows(sessions)
    for message in messages:
        event = events[uuid.UUID(message.message_id or "")]
        assert message.routing_key == event.type
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert json.loads(message.body) == {
            "id": str(event.id),
            "type": event.type,
            "user_id": str(event.user_id),
            "occurred_at": event.occurred_at.isoformat(),
            "data": event.payload,
        }
    assert all(event.status == "delivered" for event in events.values())


@pytest.fixture
async def exchange(channel: AbstractChannel) -> AsyncIterator[str]:
    """A topic exchange of the test's own: nobody else binds to it."""
    name = f"billing.test.{uuid.uuid4().hex}"
    yield name
    await channel.exchange_delete(name)


async def relay_to(
    sessions: Sessions, clock: FrozenClock, exchange: str, url: str = AMQP_URL
) -> DeliveryReport:
    """One relay run publishing notifications to ``exchange``, with a sink of its own."""
    sink = NotifyAmqpSink(url, exchange=exchange)
    try:
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: sink,
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        return await deliver_outbox(
            sessions, sinks, now=clock.now(), max_attempts=5, retry_ceiling=timedelta(minutes=5)
        )
    finally:
        await sink.close()


async def test_a_message_no_queue_takes_waits_until_one_is_bound(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    (event_id,) = await add_events(sessions, clock, (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}))

    await relay_to(sessions, clock, exchange)
    event = (await rows(sessions))[event_id]
    assert (event.status, event.attempts) == ("pending", 1)
    assert "no queue is bound" in (event.last_error or "")

    queue = await bound_queue(channel, exchange)
    clock.advance(timedelta(seconds=10))
    await relay_to(sessions, clock, exchange)
    assert (await rows(sessions))[event_id].status == "delivered"
    assert [m.message_id for m in await receive(queue, {str(event_id)})] == [str(event_id)]


def left_for_retry(events: dict[uuid.UUID, OutboxEvent], clock: FrozenClock) -> set[uuid.UUID]:
    """The events whose first attempt failed and whose second is due after the back-off."""
    retry_at = clock.now() + timedelta(seconds=10)
    return {
        event_id
        for event_id, event in events.items()
        if (event.status, event.attempts, event.next_attempt_at) == ("pending", 1, retry_at)
    }


async def test_of_a_batch_the_broker_partly_refuses_only_the_refused_events_are_retried(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    """The queue takes 3 messages and refuses the rest (``reject-publish``: the broker nacks
    them). Of a batch of 6 published at once, the 3 confirmed are delivered and never sent
    again; the 3 nacked wait for their retry, which delivers them once there is room."""
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 3, "x-overflow": "reject-publish"}
    )
    await queue.bind(declared, routing_key="#")
    written = await add_events(
        sessions, clock, *[(EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}) for _ in range(6)]
    )
    wanted = {str(event_id) for event_id in written}

    report = await relay_to(sessions, clock, exchange)

    assert report.as_dict() == {"delivered": 3, "retried": 3, "parked": 0, "deferred": 0}
    events = await rows(sessions)
    delivered = {event_id for event_id, event in events.items() if event.status == "delivered"}
    queued = await receive(queue, wanted, within=1.0)  # takes them off: room for 3 again
    assert {message.message_id for message in queued} == {str(event_id) for event_id in delivered}
    refused = left_for_retry(events, clock)
    assert refused == set(written) - delivered
    assert all("refused by RabbitMQ" in (events[event_id].last_error or "") for event_id in refused)

    clock.advance(timedelta(seconds=10))
    assert (await relay_to(sessions, clock, exchange)).delivered == 3
    again = await receive(queue, wanted, within=1.0)
    assert sorted(message.message_id or "" for message in again) == sorted(
        str(event_id) for event_id in refused
    )


async def test_of_a_batch_the_events_no_queue_takes_are_retried_and_the_rest_delivered(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    """Only payments are bound: the refunds of the same batch come back (mandatory) and wait
    for their retry, while the payments published beside them are confirmed and delivered."""
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(declared, routing_key=EventType.PAYMENT_SUCCEEDED)
    kinds = [EventType.PAYMENT_SUCCEEDED, EventType.PAYMENT_REFUNDED] * 3
    written = await add_events(sessions, clock, *[(kind, uuid.uuid4(), {}) for kind in kinds])
    payments = {event_id for event_id, kind in zip(written, kinds, strict=True) if kind == kinds[0]}

    report = await relay_to(sessions, clock, exchange)

    assert report.as_dict() == {"delivered": 3, "retried": 3, "parked": 0, "deferred": 0}
    events = await rows(sessions)
    assert {event_id for event_id, event in events.items() if event.status == "delivered"} == (
        payments
    )
    assert left_for_retry(events, clock) == set(written) - payments
    queued = await receive(queue, {str(event_id) for event_id in written}, within=1.0)
    assert sorted(message.message_id or "" for message in queued) == sorted(map(str, payments))


BASIC_ACK = (60).to_bytes(2, "big") + (80).to_bytes(2, "big")  # class basic, method ack


class CutAfterFirstConfirm:
    """A TCP proxy to the broker that cuts the connection right after passing on the broker's
    first publisher confirm (an AMQP ``Basic.Ack`` frame), before anything else the relay
    sends reaches the broker: the connection breaks in the middle of a batch. Connections
    after that pass untouched."""

    def __init__(self) -> None:
        self.cut = False
        self.broker = urlsplit(AMQP_URL)

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        userinfo, at, _ = self.broker.netloc.rpartition("@")
        return urlunsplit(self.broker._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        broker, to_broker = await asyncio.open_connection(
            self.broker.hostname, self.broker.port or 5672
        )

        async def upstream() -> None:
            while data := await client.read(65536):
                to_broker.write(data)
            to_broker.close()

        async def downstream() -> None:
            pending = b""
            while data := await broker.read(65536):
                pending += data
                # A frame: type (1 byte), channel (2), size (4), payload, frame end (1).
                while len(pending) >= 7 and len(pending) >= (end := 8 + _size(pending)):
                    frame, pending = pending[:end], pending[end:]
                    to_client.write(frame)
                    if not self.cut and frame[0] == 1 and frame[7:11] == BASIC_ACK:
                        self.cut = True
                        to_client.close()  # after the confirm is written out
                        to_broker.close()
                        return
            to_client.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


def _size(frame: bytes) -> int:
    return int.from_bytes(frame[3:7], "big")


async def test_a_connection_broken_mid_batch_leaves_the_unconfirmed_events_for_retry(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    """The first event of the batch goes alone and is confirmed; the connection breaks before
    the other four reach the broker. The confirmed one is delivered, the four wait for their
    retry, and the next run delivers each of them once."""
    queue = await bound_queue(channel, exchange)
    written = await add_events(
        sessions, clock, *[(EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}) for _ in range(5)]
    )
    wanted = {str(event_id) for event_id in written}

    async with CutAfterFirstConfirm() as proxy_url:
        report = await relay_to(sessions, clock, exchange, url=proxy_url)

        assert report.as_dict() == {"delivered": 1, "retried": 4, "parked": 0, "deferred": 0}
        events = await rows(sessions)
        assert events[written[0]].status == "delivered"
        assert left_for_retry(events, clock) == set(written[1:])
        assert all(
            "RabbitMQ publish failed" in (events[event_id].last_error or "")
            for event_id in written[1:]
        )
        queued = await receive(queue, wanted, within=1.0)
        assert [message.message_id for message in queued] == [str(written[0])]

        clock.advance(timedelta(seconds=10))
        assert (await relay_to(sessions, clock, exchange, url=proxy_url)).delivered == 4
    queued = await receive(queue, wanted, within=1.0)
    assert sorted(message.message_id or "" for message in queued) == sorted(
        wanted - {str(written[0])}
    )


async def test_a_broker_that_is_down_keeps_the_events_pending(
    sessions: Sessions, clock: FrozenClock, settings: Settings
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    first, second = await add_events(
        sessions,
        clock,
        (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}),
        (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}),
    )
    configured = settings.model_copy(
        update={"notify_amqp_url": f"amqp://guest:guest@127.0.0.1:{port}/"}
    )

    async with httpx.AsyncClient() as http:
        counts = await run_deliver_outbox(sessions, configured, http, clock.now())

    assert counts == {"delivered": 0, "retried": 1, "parked": 0, "deferred": 1}
    events = await rows(sessions)
    assert (events[first].status, events[first].attempts) == ("pending", 1)
    assert "RabbitMQ unreachable" in (events[first].last_error or "")
    assert (events[second].status, events[second].attempts) == ("pending", 0)


async def test_after_its_connection_broke_the_sink_connects_again_on_the_next_run(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    """One sink for both runs, as a long-lived relay keeps it (a broker restart looks the
    same to it: the connection breaks): the second run opens a new connection and delivers
    the events the first could not."""
    queue = await bound_queue(channel, exchange)
    written = await add_events(
        sessions, clock, *[(EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}) for _ in range(3)]
    )
    async with CutAfterFirstConfirm() as proxy_url:
        sink = NotifyAmqpSink(proxy_url, exchange=exchange)
        sinks: dict[Receiver, Sink] = {
            Receiver.NOTIFICATION: sink,
            Receiver.AUTH: LogSink(Receiver.AUTH),
        }
        try:
            reports = []
            for _ in range(2):
                reports.append(
                    await deliver_outbox(
                        sessions,
                        sinks,
                        now=clock.now(),
                        max_attempts=5,
                        retry_ceiling=timedelta(minutes=5),
                    )
                )
                clock.advance(timedelta(seconds=10))
        finally:
            await sink.close()

    assert [report.delivered for report in reports] == [1, 2]
    assert all(event.status == "delivered" for event in (await rows(sessions)).values())
    queued = await receive(queue, {str(event_id) for event_id in written}, within=1.0)
    assert sorted(message.message_id or "" for message in queued) == sorted(map(str, written))


async def test_an_event_larger_than_a_frame_arrives_whole(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel, exchange: str
) -> None:
    """RabbitMQ's frames hold at most 128 KiB by default: a larger body goes in several."""
    queue = await bound_queue(channel, exchange)
    name = "".join(uuid.uuid4().hex for _ in range(10_000))  # 320 kB
    tariff = {"id": uuid.uuid4(), "name": name, "role": "premium"}
    small, large = await add_events(
        sessions,
        clock,
        (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {"amount": 100}),
        (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {"amount": 200, "tariff": tariff}),
    )

    assert (await relay_to(sessions, clock, exchange)).delivered == 2

    messages = {
        message.message_id: json.loads(message.body)
        for message in await receive(queue, {str(small), str(large)})
    }
    assert messages[str(large)]["data"]["tariff"]["name"] == name
    assert messages[str(small)]["data"]["amount"] == 100
