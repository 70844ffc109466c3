"""Where outbox events go: the Notification service (HTTP or RabbitMQ), the Auth service
(role grants and revokes over HTTP), or the log when a service is not configured.

A sink either returns (the other side accepted the event) or raises ``DeliveryFailed``:
``permanent`` when trying again cannot help (a 4xx), ``unreachable`` when the other side did
not answer at all (connection refused, timeout), which the relay takes as "down for now".
Every delivery carries the event's stable id (``Idempotency-Key`` / AMQP ``message_id``), so
the receiver can drop the duplicates that at-least-once delivery may produce.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import aiormq
import httpx
from aiormq.abc import AbstractConnection
from aiormq.exceptions import AMQPError, DeliveryError, PublishError
from pamqp.exceptions import PAMQPException

from billing.config import Settings
from billing.models import OutboxEvent
from billing.outbox.amqp import Message, publish_all
from billing.outbox.events import EventType, Receiver

log = logging.getLogger(__name__)

EXCHANGE = "billing.events"
# Answers that say "not now" rather than "never": the rest of 4xx will never succeed.
_TEMPORARY_STATUSES = frozenset({408, 425, 429})
_ERROR_BODY_LIMIT = 300
# What a broken or refused AMQP connection raises (aio-pika's CONNECTION_EXCEPTIONS).
CONNECTION_EXCEPTIONS = (
    AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,
    StopAsyncIteration,
    PAMQPException,
)


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, permanent: bool, unreachable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.unreachable = unreachable


@dataclass(frozen=True)
class OutgoingEvent:
    """What a sink needs of an outbox row, detached from the session."""

    id: uuid.UUID
    type: str
    user_id: uuid.UUID | None
    occurred_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: OutboxEvent) -> OutgoingEvent:
        return cls(event.id, event.type, event.user_id, event.occurred_at, dict(event.payload))

    def message(self) -> dict[str, Any]:
        """The JSON the Notification service receives (PRODUCT.md)."""
        return {
            "id": str(self.id),
            "type": self.type,
            "user_id": str(self.user_id) if self.user_id is not None else None,
            "occurred_at": self.occurred_at.isoformat(),
            "data": self.data,
        }


class Sink(Protocol):
    async def deliver(self, event: OutgoingEvent) -> None: ...


@runtime_checkable
class BatchSink(Sink, Protocol):
    """A sink that takes many events in one call, cheaper than one call per event."""

    async def deliver_all(self, events: Sequence[OutgoingEvent]) -> list[DeliveryFailed | None]: ...


class LogSink:
    """No service configured: the event is written to the log and counts as delivered."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    async def deliver(self, event: OutgoingEvent) -> None:
        log.info(
            "outbox event for %s (no service configured): %s",
            self.receiver.value,
            json.dumps(event.message(), sort_keys=True),
        )


def _shown(url: str | httpx.URL) -> str:
    """A URL fit for ``last_error`` (shown in the admin API): without any credentials."""
    return str(httpx.URL(url).copy_with(userinfo=b""))


async def _request(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    try:
        return await client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise DeliveryFailed(
            f"timed out: {method} {_shown(url)}", permanent=False, unreachable=True
        ) from None
    except httpx.TransportError as error:
        raise DeliveryFailed(
            f"{type(error).__name__}: {method} {_shown(url)}: {error}",
            permanent=False,
            unreachable=True,
        ) from None


def _raise_unless_accepted(response: httpx.Response, *, also_done: frozenset[int]) -> None:
    status = response.status_code
    if response.is_success or status in also_done:
        return
    temporary = status >= 500 or status in _TEMPORARY_STATUSES
    body = response.text[:_ERROR_BODY_LIMIT]
    raise DeliveryFailed(
        f"HTTP {status} from {response.request.method} {_shown(response.request.url)}: {body}",
        permanent=not temporary,
    )


class NotifyHttpSink:
    """``POST {BILLING_NOTIFY_URL}`` with the event JSON; any 2xx means delivered."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def deliver(self, event: OutgoingEvent) -> None:
        response = await _request(
            self.client,
            "POST",
            self.url,
            json=event.message(),
            headers={"Idempotency-Key": str(event.id)},
        )
        _raise_unless_accepted(response, also_done=frozenset())


class AuthHttpSink:
    """Role grants and revokes at the Auth service (PRODUCT.md "Services billing talks to").

    A revoke answered 404 (the user no longer has the role) and a grant answered 409 (the user
    already has it) leave the user in the wanted state, so both count as done.
    """

    def __init__(self, client: httpx.AsyncClient, base_url: str, token: str | None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def deliver(self, event: OutgoingEvent) -> None:
        role = event.data.get("role")
        if event.user_id is None or not isinstance(role, str) or not role:
            raise DeliveryFailed(f"{event.type} needs a user_id and a role", permanent=True)
        headers = {"Idempotency-Key": str(event.id)}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        roles_url = f"{self.base_url}/api/v1/users/{event.user_id}/roles"
        if event.type == EventType.ROLE_GRANT:
            response = await _request(
                self.client, "POST", roles_url, json={"role": role}, headers=headers
            )
            _raise_unless_accepted(response, also_done=frozenset({409}))
        elif event.type == EventType.ROLE_REVOKE:
            url = f"{roles_url}/{quote(role, safe='')}"
            response = await _request(self.client, "DELETE", url, headers=headers)
            _raise_unless_accepted(response, also_done=frozenset({404}))
        else:
            raise DeliveryFailed(f"the Auth service takes no {event.type!r}", permanent=True)


class NotifyAmqpSink:
    """The event JSON published to the durable topic exchange ``billing.events`` (routing key
    = type, ``message_id`` = event id, persistent), confirmed by the broker.

    A connection opened on the first delivery (once, however many run at the same time),
    opened again by the next delivery once it broke (a broker restart), closed by
    ``close()``. A message no queue is bound for comes back (mandatory publishing) and counts
    as a temporary failure: dropped silently it would be lost.

    The relay hands it a batch's events at once (``deliver_all``): they are published in one
    write and their confirms awaited together (``billing.outbox.amqp``). The broker confirms
    persistent messages once they are on disk, a few ms, so one publish at a time would wait
    that long per event; and a publish per event costs several times the CPU.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = EXCHANGE,
        connect_timeout: float = 5.0,
        publish_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self._connection: AbstractConnection | None = None
        self._channel: aiormq.Channel | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> aiormq.Channel:
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                await self.close()  # a broken connection's leftovers
                self._channel = await self._connect()
            return self._channel

    async def _connect(self) -> aiormq.Channel:
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._connection = await aiormq.connect(self.url)
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                await channel.exchange_declare(
                    self.exchange_name, exchange_type="topic", durable=True
                )
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as error:
            await self.close()
            raise DeliveryFailed(
                f"RabbitMQ unreachable: {type(error).__name__}: {error}",
                permanent=False,
                unreachable=True,
            ) from None
        assert isinstance(channel, aiormq.Channel)  # publish_all needs its bookkeeping
        return channel

    async def deliver(self, event: OutgoingEvent) -> None:
        (failure,) = await self.deliver_all([event])
        if failure is not None:
            raise failure

    async def deliver_all(self, events: Sequence[OutgoingEvent]) -> list[DeliveryFailed | None]:
        """Publish the events at once; answers each one's outcome, in their order."""
        channel = await self._open()
        messages = [
            Message(event.type, str(event.id), json.dumps(event.message()).encode())
            for event in events
        ]
        try:
            confirmations = await publish_all(
                channel,
                self.exchange_name,
                messages,
                content_type="application/json",
                confirm_within=self.publish_timeout,
            )
        except CONNECTION_EXCEPTIONS as error:  # the channel closed before the write
            return [self._failed(error)] * len(events)
        return [
            self._outcome(confirmation, event)
            for confirmation, event in zip(confirmations, events, strict=True)
        ]

    def _outcome(
        self, confirmation: asyncio.Future[object], event: OutgoingEvent
    ) -> DeliveryFailed | None:
        if confirmation.cancelled():
            return DeliveryFailed(
                f"RabbitMQ did not confirm within {self.publish_timeout:g} s",
                permanent=False,
                unreachable=True,
            )
        error = confirmation.exception()
        if error is None:
            return None
        if isinstance(error, PublishError):
            return DeliveryFailed(
                f"returned by RabbitMQ: no queue is bound to {self.exchange_name!r} "
                f"for {event.type!r}",
                permanent=False,
            )
        if isinstance(error, DeliveryError):
            return DeliveryFailed(f"refused by RabbitMQ: {error}", permanent=False)
        return self._failed(error)

    @staticmethod
    def _failed(error: BaseException) -> DeliveryFailed:
        return DeliveryFailed(
            f"RabbitMQ publish failed: {type(error).__name__}: {error}",
            permanent=False,
            unreachable=True,
        )

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # closing a broken connection must not hide the run's outcome
                log.warning("closing the RabbitMQ connection failed", exc_info=True)


@asynccontextmanager
async def open_sinks(
    settings: Settings, client: httpx.AsyncClient
) -> AsyncIterator[dict[Receiver, Sink]]:
    """The sinks the configuration names, for one relay run. With both a notify URL and an
    AMQP URL set, notifications go to RabbitMQ."""
    amqp = NotifyAmqpSink(settings.notify_amqp_url) if settings.notify_amqp_url else None
    notification: Sink
    if amqp is not None:
        notification = amqp
    elif settings.notify_url:
        notification = NotifyHttpSink(client, settings.notify_url)
    else:
        notification = LogSink(Receiver.NOTIFICATION)
    auth: Sink = (
        AuthHttpSink(client, settings.auth_url, settings.auth_token)
        if settings.auth_url
        else LogSink(Receiver.AUTH)
    )
    try:
        yield {Receiver.NOTIFICATION: notification, Receiver.AUTH: auth}
    finally:
        if amqp is not None:
            await amqp.close()
