"""The sandbox's own records: what "ЮKassa" knows. Billing's tables are never read here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Currency, Money, one_of

# The sandbox's own facts about a record that its tables have no column for (the capture
# flag, the confirmation type, when a two-stage payment was authorised, a Checkout Session's
# e-mail, locale and payment attempts…). They ride in the record's ``metadata`` JSONB under
# this key, whose value is an object: the merchant's metadata values are always strings, and
# the key itself is refused in requests, so the two never mix. Answers show the merchant's
# part only (``merchant_part``).
STATE_KEY = "$sandbox"


def merchant_part(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != STATE_KEY}


def state_of(document: dict[str, Any]) -> dict[str, Any]:
    state = document.get(STATE_KEY)
    return state if isinstance(state, dict) else {}


def with_state(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A new document (so the ORM sees the change) with ``changes`` merged into the state."""
    return {**merchant_part(document), STATE_KEY: {**state_of(document), **changes}}


class SandboxPaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class SandboxRefundStatus(StrEnum):
    SUCCEEDED = "succeeded"


class SandboxPayment(Base):
    __tablename__ = "sandbox_payments"
    __table_args__ = (
        one_of("status", SandboxPaymentStatus),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_within_amount"
        ),
        CheckConstraint(
            "status <> 'succeeded' OR captured_at IS NOT NULL", name="succeeded_has_captured_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # ЮKassa answers a repeated key with the first result; the request's digest tells a
    # repeat from a different request under the same key.
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Money]
    currency: Mapped[Currency]
    description: Mapped[str | None] = mapped_column(String(128))
    # ``metadata`` is taken by SQLAlchemy's declarative classes, hence the attribute name.
    merchant_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    return_url: Mapped[str] = mapped_column(Text)
    refunded_amount: Mapped[Money]
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    captured_at: Mapped[datetime | None]


class SandboxRefund(Base):
    __tablename__ = "sandbox_refunds"
    __table_args__ = (
        one_of("status", SandboxRefundStatus),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotence_key: Mapped[str] = mapped_column(String(64), unique=True)
    request_digest: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(ForeignKey("sandbox_payments.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Money]
    currency: Mapped[Currency]
    description: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime]


# --- Stripe mode ----------------------------------------------------------------------------


class SandboxStripeSessionStatus(StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class SandboxStripeSession(Base):
    """A Checkout Session, with the payment intent and the charge that paying it makes (the
    sandbox's payments have exactly one of each, so they live on the session's row)."""

    __tablename__ = "sandbox_stripe_sessions"
    __table_args__ = (
        one_of("status", SandboxStripeSessionStatus),
        CheckConstraint("amount_total > 0", name="amount_positive"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_total",
            name="refunded_within_amount",
        ),
        CheckConstraint(
            "status <> 'complete' OR (payment_intent_id IS NOT NULL AND charge_id IS NOT NULL"
            " AND paid_at IS NOT NULL)",
            name="complete_is_charged",
        ),
    )

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    amount_total: Mapped[Money]
    currency: Mapped[str] = mapped_column(String(3))  # lower-case, as Stripe writes it
    # [{"name", "unit_amount", "quantity"}]: what the checkout page lists.
    line_items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    client_reference_id: Mapped[str | None] = mapped_column(String(200))
    merchant_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    payment_intent_metadata: Mapped[dict[str, str]] = mapped_column(JSONB)
    payment_intent_description: Mapped[str | None] = mapped_column(Text)
    success_url: Mapped[str | None] = mapped_column(Text)
    cancel_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    payment_intent_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    charge_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    paid_at: Mapped[datetime | None]
    amount_refunded: Mapped[Money]


class SandboxStripeRefundStatus(StrEnum):
    SUCCEEDED = "succeeded"


class SandboxStripeRefund(Base):
    __tablename__ = "sandbox_stripe_refunds"
    __table_args__ = (
        one_of("status", SandboxStripeRefundStatus),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sandbox_stripe_sessions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Money]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(32))
    merchant_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]


class SandboxStripeIdempotencyKey(Base):
    """Stripe's ``Idempotency-Key``: the first successful answer under a key, replayed for the
    same request again. The row is claimed and answered in one transaction, so no other
    transaction ever sees it unanswered."""

    __tablename__ = "sandbox_stripe_idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(255))  # "POST /v1/refunds"
    request_digest: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime]


class SandboxStripeCustomer(Base):
    """A Stripe Customer: whom saved payment methods are attached to."""

    __tablename__ = "sandbox_stripe_customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(512))
    name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(Text)
    merchant_metadata: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]


class SandboxStripePaymentMethod(Base):
    """A card saved for later (``setup_future_usage``): attached to its customer until
    detached, which is for good (``customer_id`` NULL, ``detached_at`` set). Cards paid with
    and not saved are not kept: their ids are derived from the charge."""

    __tablename__ = "sandbox_stripe_payment_methods"
    __table_args__ = (
        CheckConstraint(
            "(customer_id IS NULL) = (detached_at IS NOT NULL)", name="attached_until_detached"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(
        ForeignKey("sandbox_stripe_customers.id"), index=True
    )
    card: Mapped[str] = mapped_column(String(40))  # the test card it was paid with
    created_at: Mapped[datetime]
    detached_at: Mapped[datetime | None]
