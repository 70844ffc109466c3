"""The outbox's events as types: one model per ``EventType``, whose fields are the event's
``data`` as its receiver gets it (PRODUCT.md "Services billing talks to"), with the type and
the receiver on the class. A payload is built in one place, and an event type without a
model, or a model without a receiver, stops the import instead of parking events later.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from billing.checkout.providers.base import DeclineReason
from billing.models import RefundReason, Tariff
from billing.pricing.rules import DiscountSource


class EventType(StrEnum):
    # For the Notification service.
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_REFUNDED = "payment.refunded"
    SUBSCRIPTION_EXPIRING = "subscription.expiring"
    SUBSCRIPTION_EXPIRED = "subscription.expired"
    SUBSCRIPTION_RENEWED = "subscription.renewed"
    SUBSCRIPTION_RENEWAL_FAILED = "subscription.renewal_failed"
    # For the Auth service.
    ROLE_GRANT = "role.grant"
    ROLE_REVOKE = "role.revoke"


class Receiver(StrEnum):
    """The service an event is for; events are delivered in order per user and receiver."""

    NOTIFICATION = "notification"
    AUTH = "auth"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# ``datetime.isoformat()``, as events always carried (an offset like ``+00:00``, never
# Pydantic's ``Z``): receivers already parse this.
Instant = Annotated[
    AwareDatetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
MinorUnits = Annotated[int, Field(ge=0, description="Minor units (kopecks, cents)")]


def _omitted_when_none() -> Any:
    """A field the receiver does not get at all while it is None (so never gets a null)."""
    return Field(default=None, exclude_if=lambda value: value is None, json_schema_extra=_no_null)


def _no_null(schema: dict[str, Any]) -> None:
    (kept,) = [part for part in schema.pop("anyOf") if part.get("type") != "null"]
    schema.pop("default", None)
    schema.update(kept)


class Event(BaseModel):
    """An outbox event's ``data``. Subclasses set ``type`` and ``receiver``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: ClassVar[EventType]
    receiver: ClassVar[Receiver]

    def payload(self) -> dict[str, Any]:
        """The ``data`` JSON the receiver gets."""
        return self.model_dump(mode="json")


class TariffRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    name: str
    role: str

    @classmethod
    def of(cls, tariff: Tariff) -> TariffRef:
        return cls(id=tariff.id, name=tariff.name, role=tariff.role)


class Discount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: DiscountSource
    amount: MinorUnits


# For the Notification service.


class PaymentSucceeded(Event):
    """An invoice was paid (by the viewer, or by a renewal's charge)."""

    type = EventType.PAYMENT_SUCCEEDED
    receiver = Receiver.NOTIFICATION

    payment_id: uuid.UUID | None  # None: an invoice paid in full by its discount
    invoice_id: uuid.UUID
    tariff: TariffRef
    months: int
    amount: MinorUnits
    currency: str
    discount: Discount
    subscription_id: uuid.UUID
    current_period_end: Instant


class PaymentRefunded(Event):
    """A payment was refunded and its period taken back."""

    type = EventType.PAYMENT_REFUNDED
    receiver = Receiver.NOTIFICATION

    payment_id: uuid.UUID
    invoice_id: uuid.UUID
    tariff: TariffRef
    amount: MinorUnits
    currency: str
    reason: RefundReason


class SubscriptionExpiring(Event):
    """The period ends within ``BILLING_REMIND_BEFORE``; once per period. An auto-renewing
    subscription also says what will be charged and when (the last three fields, absent
    otherwise)."""

    type = EventType.SUBSCRIPTION_EXPIRING
    receiver = Receiver.NOTIFICATION

    subscription_id: uuid.UUID
    tariff_id: uuid.UUID
    role: str
    current_period_end: Instant
    auto_renew: bool
    renewal_amount: MinorUnits | None = _omitted_when_none()
    currency: str | None = _omitted_when_none()
    renews_at: Instant | None = _omitted_when_none()


class SubscriptionExpired(Event):
    """The period ended: grace begins, access lasts until ``access_until``."""

    type = EventType.SUBSCRIPTION_EXPIRED
    receiver = Receiver.NOTIFICATION

    subscription_id: uuid.UUID
    tariff_id: uuid.UUID
    role: str
    current_period_end: Instant
    access_until: Instant


class SubscriptionRenewed(Event):
    """A renewal charge succeeded and extended the period."""

    type = EventType.SUBSCRIPTION_RENEWED
    receiver = Receiver.NOTIFICATION

    subscription_id: uuid.UUID
    payment_id: uuid.UUID
    tariff: TariffRef
    months: int
    amount: MinorUnits
    currency: str
    current_period_end: Instant


class SubscriptionRenewalFailed(Event):
    """A renewal charge was declined; ``next_attempt_at`` is null when no retry follows."""

    type = EventType.SUBSCRIPTION_RENEWAL_FAILED
    receiver = Receiver.NOTIFICATION

    subscription_id: uuid.UUID
    tariff: TariffRef
    amount: MinorUnits
    currency: str
    reason: DeclineReason
    attempt: int = Field(ge=1)
    next_attempt_at: Instant | None
    pay_url: str = Field(description="Where the viewer can pay the renewal by hand")


# For the Auth service.


class RoleGrant(Event):
    """Sent to the Auth service as ``POST /api/v1/users/{user_id}/roles {role}`` (409 counts
    as done); sent on every extension, so a lost grant is repaired by the next one."""

    type = EventType.ROLE_GRANT
    receiver = Receiver.AUTH

    role: str
    subscription_id: uuid.UUID
    until: Instant


class RoleRevoke(Event):
    """Sent to the Auth service as ``DELETE /api/v1/users/{user_id}/roles/{role}`` (404
    counts as done)."""

    type = EventType.ROLE_REVOKE
    receiver = Receiver.AUTH

    role: str
    subscription_id: uuid.UUID


def registry(models: Iterable[type[Event]]) -> Mapping[EventType, type[Event]]:
    """Each event type's model; refuses a model without a type or a receiver, two models of
    one type, and an event type without a model."""
    found: dict[EventType, type[Event]] = {}
    for model in models:
        kind = getattr(model, "type", None)
        if not isinstance(kind, EventType):
            raise TypeError(f"{model.__name__} names no EventType")
        if not isinstance(getattr(model, "receiver", None), Receiver):
            raise TypeError(f"{model.__name__} ({kind}) names no Receiver")
        if kind in found:
            raise TypeError(f"{kind} has two models: {found[kind].__name__}, {model.__name__}")
        found[kind] = model
    missing = [str(kind) for kind in EventType if kind not in found]
    if missing:
        raise TypeError(f"no event model for {', '.join(missing)}")
    return found


EVENTS = registry(Event.__subclasses__())
RECEIVER_OF: Mapping[str, Receiver] = {kind: model.receiver for kind, model in EVENTS.items()}
