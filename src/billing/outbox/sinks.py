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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import aio_pika
import httpx
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from billing.config import Settings
from billing.models import OutboxEvent
from billing.outbox.events import EventType, Receiver

log = logging.getLogger(__name__)

EXCHANGE = "billing.events"
# Answers that say "not now" rather than "never": the rest of 4xx will never succeed.
_TEMPORARY_STATUSES = frozenset({408, 425, 429})
_ERROR_BODY_LIMIT = 300


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

    One robust connection per relay run, opened on the first event (once, however many
    deliveries run at the same time) and closed by ``close()``.
    A message no queue is bound for comes back (mandatory publishing) and counts as a
    temporary failure: dropped silently it would be lost.

    A batch's messages are published all at once and their confirms awaited together (each
    publish waits for its own ``Basic.Ack``): the broker confirms persistent messages once
    they are on disk, a few ms, so one publish at a time would wait that long per event.
    """

    deliveries_at_once = 1000  # the relay's: a whole batch in flight

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
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._opening = asyncio.Lock()

    async def _open(self) -> AbstractExchange:
        async with self._opening:
            if self._exchange is None:
                self._exchange = await self._connect()
            return self._exchange

    async def _connect(self) -> AbstractExchange:
        try:
            self._connection = await aio_pika.connect_robust(self.url, timeout=self.connect_timeout)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            return await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as error:
            await self.close()
            raise DeliveryFailed(
                f"RabbitMQ unreachable: {type(error).__name__}: {error}",
                permanent=False,
                unreachable=True,
            ) from None

    async def deliver(self, event: OutgoingEvent) -> None:
        exchange = await self._open()
        message = aio_pika.Message(
            json.dumps(event.message()).encode(),
            message_id=str(event.id),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await exchange.publish(message, routing_key=event.type, timeout=self.publish_timeout)
        except PublishError:
            raise DeliveryFailed(
                f"returned by RabbitMQ: no queue is bound to {self.exchange_name!r} "
                f"for {event.type!r}",
                permanent=False,
            ) from None
        except DeliveryError as error:
            raise DeliveryFailed(f"refused by RabbitMQ: {error}", permanent=False) from None
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as error:
            raise DeliveryFailed(
                f"RabbitMQ publish failed: {type(error).__name__}: {error}",
                permanent=False,
                unreachable=True,
            ) from None

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
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
