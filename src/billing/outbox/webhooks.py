"""The outbox events in the OpenAPI document (``webhooks``): one entry per event type, its
body the message the Notification service receives, with the event's ``data`` schema, for
the teams that receive them. Documentation only: the relay delivers the events."""

from __future__ import annotations

import inspect
import uuid
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, create_model

from billing.outbox.events import EVENTS, Event, Instant, Receiver

_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": "Refused for good: the event is parked for an admin to retry "
        "(408, 425 and 429 are retried like a 5XX)"
    },
    "5XX": {"description": "Not now: retried later with back-off, in order per user"},
}
_DELIVERY = {
    Receiver.NOTIFICATION: "POSTed to `BILLING_NOTIFY_URL` as this JSON (2xx = delivered), or "
    "published with it to the RabbitMQ exchange `billing.events` (routing key = `type`, "
    "`message_id` = `id`).",
    Receiver.AUTH: "For the Auth service, which receives the call described above rather than "
    "this JSON; the message is what the outbox keeps and the admin API shows.",
}


def message_model(event: type[Event]) -> type[BaseModel]:
    """The JSON a receiver gets for ``event``: its envelope and its ``data``."""
    its_type: Any = Literal[event.type.value]
    return create_model(
        f"{event.__name__}Message",
        id=(uuid.UUID, Field(description="The event's id, the same on every delivery")),
        type=(its_type, ...),
        user_id=(uuid.UUID | None, ...),
        occurred_at=(Instant, ...),
        data=(event, ...),
    )


def document_events(webhooks: APIRouter) -> None:
    """Add every event type to ``webhooks`` (``app.webhooks``)."""
    for kind, event in EVENTS.items():
        webhooks.add_api_route(
            kind.value,
            _receiver_of(message_model(event)),
            methods=["POST"],
            summary=kind.value,
            description=f"{inspect.cleandoc(event.__doc__ or '')}\n\n{_DELIVERY[event.receiver]}",
            tags=[f"events for {event.receiver.value}"],
            response_description="Delivered (any 2xx)",
            responses=_RESPONSES,
            operation_id=f"event_{kind.value.replace('.', '_')}",
        )


def _receiver_of(message: type[BaseModel]) -> Any:
    """An endpoint that takes ``message`` as its body, which is all FastAPI documents."""

    def receive(body: Any) -> None:
        raise NotImplementedError  # never routed: webhooks are only documented

    parameter = inspect.Parameter(
        "body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=message
    )
    receive.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return receive
