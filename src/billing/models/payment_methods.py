"""Payment methods viewers saved with a provider, for charges without them (auto-renewal)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Timestamp, created_at, uuid_pk


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
