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
from billing.outbox.events import EventType
from billing.outbox.relay import deliver_outbox
from billing.outbox.service import add_event
from billing.outbox.sinks import EXCHANGE, LogSink, NotifyAmqpSink, Receiver, Sink
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


async def test_a_message_no_queue_takes_waits_until_one_is_bound(
    sessions: Sessions, clock: FrozenClock, channel: AbstractChannel
) -> None:
    exchange = f"billing.test.{uuid.uuid4().hex}"  # nobody else binds to this one
    (event_id,) = await add_events(sessions, clock, (EventType.PAYMENT_SUCCEEDED, uuid.uuid4(), {}))

    async def run() -> None:
        sink = NotifyAmqpSink(AMQP_URL, exchange=exchange)
        try:
            sinks: dict[Receiver, Sink] = {
                Receiver.NOTIFICATION: sink,
                Receiver.AUTH: LogSink(Receiver.AUTH),
            }
            await deliver_outbox(
                sessions,
                sinks,
                now=clock.now(),
                max_attempts=5,
                retry_ceiling=timedelta(minutes=5),
            )
        finally:
            await sink.close()

    try:
        await run()
        event = (await rows(sessions))[event_id]
        assert (event.status, event.attempts) == ("pending", 1)
        assert "no queue is bound" in (event.last_error or "")

        queue = await bound_queue(channel, exchange)
        clock.advance(timedelta(seconds=10))
        await run()
        assert (await rows(sessions))[event_id].status == "delivered"
        assert [m.message_id for m in await receive(queue, {str(event_id)})] == [str(event_id)]
    finally:
        await channel.exchange_delete(exchange)


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
