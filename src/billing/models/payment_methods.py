"""Payment methods viewers saved with a provider, and the renewals charged to them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Timestamp, created_at, one_of, updated_at, uuid_pk


class PaymentMethod(Base):
    """A method the provider keeps for the viewer, and the viewer's consent to charge it."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        # A provider's method is saved once while it is in use.
        Index(
            "uq_payment_methods_provider_method",
            "provider",
            "provider_method_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_method_id: Mapped[str] = mapped_column(String(255))
    # Stripe charges a method through the Customer it is attached to.
    provider_customer_id: Mapped[str | None] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(100))  # "Bank card *4477"
    card_last4: Mapped[str | None] = mapped_column(String(4))
    expires: Mapped[str | None] = mapped_column(String(7))  # "2027-03", when the card says
    # Consent to charges without the viewer: when, with which payment, under which text.
    consent_at: Mapped[Timestamp]
    consent_payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    consent_text_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at()
    # Forgotten by the viewer: kept for the record (consent, the charges it made).
    deleted_at: Mapped[Timestamp | None]


class ProviderCustomer(Base):
    """The provider's customer standing for a viewer (Stripe: one Customer per viewer)."""

    __tablename__ = "provider_customers"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_at()


class RenewalAttemptStatus(StrEnum):
    CHARGING = "charging"  # asked (or about to ask) the provider; outcome not known yet
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


class RenewalAttempt(Base):
    """One try at charging a saved method for a subscription's next period. The unique key
    (subscription, period end, attempt number) is what makes a renewal exactly-once: two
    workers, a crash and a retry can never open the same attempt twice, and each attempt's
    payment carries its own idempotence key to the provider."""

    __tablename__ = "renewal_attempts"
    __table_args__ = (
        one_of("status", RenewalAttemptStatus),
        UniqueConstraint("subscription_id", "period_end", "attempt"),
        Index("ix_renewal_attempts_payment_id", "payment_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    period_end: Mapped[Timestamp]  # the end of the period this renews
    attempt: Mapped[int]  # 1, 2, …
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    status: Mapped[str] = mapped_column(String(16), default=RenewalAttemptStatus.CHARGING)
    reason: Mapped[str | None] = mapped_column(String(64))  # the decline's, neutral
    next_attempt_at: Mapped[Timestamp | None]  # a soft decline's retry; None: no retry
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
