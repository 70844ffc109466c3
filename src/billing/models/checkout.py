"""Invoices, payments at a provider, and refunds."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import (
    Base,
    Currency,
    Json,
    Money,
    Percent,
    Timestamp,
    created_at,
    non_negative,
    one_of,
    updated_at,
    uuid_pk,
)
from billing.pricing.rules import DiscountSource


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class InvoiceKind(StrEnum):
    PURCHASE = "purchase"  # the viewer buys months
    RENEWAL = "renewal"  # billing charges a saved method (auto-renewal)


class Invoice(Base):
    """What a viewer is asked to pay; the price breakdown is frozen at creation."""

    __tablename__ = "invoices"
    __table_args__ = (
        one_of("status", InvoiceStatus),
        one_of("kind", InvoiceKind),
        one_of("discount_source", DiscountSource),
        CheckConstraint("months >= 1", name="months_positive"),
        non_negative("monthly_price"),
        non_negative("base_amount"),
        non_negative("discount_amount"),
        non_negative("total_amount"),
        CheckConstraint("base_amount = monthly_price * months", name="base_is_price_times_months"),
        CheckConstraint(
            "total_amount = base_amount - discount_amount", name="total_is_base_less_discount"
        ),
        Index("ix_invoices_user_created", "user_id", "created_at"),
        Index("ix_invoices_open_expires", "expires_at", postgresql_where=text("status = 'open'")),
        # The dashboard (admin/stats.py, migration 0015): MRR reads each active
        # subscription's last paid invoice from the index alone; renewals count a period's.
        Index(
            "ix_invoices_paid_last",
            "user_id",
            "tariff_id",
            text("paid_at DESC NULLS LAST"),
            postgresql_include=["total_amount", "months", "currency"],
            postgresql_where=text("status = 'paid'"),
        ),
        Index(
            "ix_invoices_renewal_created",
            "created_at",
            postgresql_include=["status"],
            postgresql_where=text("kind = 'renewal'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID]
    tariff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tariffs.id"), index=True)
    months: Mapped[int]
    currency: Mapped[Currency]
    monthly_price: Mapped[Money]
    base_amount: Mapped[Money]
    discount_source: Mapped[str] = mapped_column(String(16))
    discount_percent: Mapped[Percent | None]
    discount_amount: Mapped[Money]
    total_amount: Mapped[Money]
    # Every discount that applied, winner included: [{source, percent, amount}].
    considered: Mapped[Json] = mapped_column(default=list)
    promo_code_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("promo_codes.id"))
    promo_code: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=InvoiceStatus.OPEN)
    kind: Mapped[str] = mapped_column(
        String(16), default=InvoiceKind.PURCHASE, server_default=InvoiceKind.PURCHASE.value
    )
    # The viewer's e-mail when the invoice was issued (the token's claim): the browser's
    # checkout link carries no token, and its payment's receipt goes there.
    customer_email: Mapped[str | None] = mapped_column(String(254))
    expires_at: Mapped[Timestamp]
    paid_at: Mapped[Timestamp | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class Payment(Base):
    """One attempt to pay an invoice at a provider."""

    __tablename__ = "payments"
    __table_args__ = (
        one_of("status", PaymentStatus),
        non_negative("amount"),
        CheckConstraint(
            "status <> 'succeeded' OR paid_at IS NOT NULL", name="succeeded_has_paid_at"
        ),
        CheckConstraint(
            "status <> 'refunded' OR refunded_at IS NOT NULL", name="refunded_has_refunded_at"
        ),
        # The same provider payment can never be recorded twice.
        Index(
            "uq_payments_provider_payment_id",
            "provider",
            "provider_payment_id",
            unique=True,
            postgresql_where=text("provider_payment_id IS NOT NULL"),
        ),
        # An invoice is paid at most once.
        Index(
            "uq_payments_one_success_per_invoice",
            "invoice_id",
            unique=True,
            postgresql_where=text("status IN ('succeeded', 'refunded')"),
        ),
        Index("ix_payments_user_created", "user_id", "created_at"),
        # Notifications that name a payment by a provider's reference kept in provider_data
        # (Stripe's charge events name the payment intent) find it by containment (@>).
        Index(
            "ix_payments_provider_data",
            "provider_data",
            postgresql_using="gin",
            postgresql_ops={"provider_data": "jsonb_path_ops"},
        ),
        Index(
            "ix_payments_pending_created", "created_at", postgresql_where=text("status = 'pending'")
        ),
        # One live attempt per invoice: a double click or two concurrent requests meet here,
        # and the second reuses the first's idempotence key at the provider.
        Index(
            "uq_payments_one_pending_per_invoice",
            "invoice_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        # The dashboard's days (admin/stats.py, migration 0015): a period's payments and
        # refunds are one range of an index each, read without the table.
        Index(
            "ix_payments_settled_paid_at",
            "currency",
            "paid_at",
            postgresql_include=["amount"],
            postgresql_where=text("status IN ('succeeded', 'refunded')"),
        ),
        Index(
            "ix_payments_refunded_at",
            "refunded_at",
            postgresql_include=["id"],
            postgresql_where=text("refunded_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id"), index=True)
    user_id: Mapped[uuid.UUID]
    provider: Mapped[str] = mapped_column(String(32))
    provider_payment_id: Mapped[str | None] = mapped_column(String(255))
    # Sent as the provider's idempotence key, so retries never create a second payment.
    idempotence_key: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4, unique=True)
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.PENDING)
    amount: Mapped[Money]
    currency: Mapped[Currency]
    confirmation_url: Mapped[str | None] = mapped_column(Text)
    return_url: Mapped[str | None] = mapped_column(Text)
    # When billing first asked the provider, on the real clock (providers judge their own
    # windows by it): a retry with the same idempotence key must send the same request.
    requested_at: Mapped[Timestamp | None]
    # Where the provider sends the fiscal receipt (the JWT's email claim, or the one given
    # when starting the payment); kept for the refund's receipt.
    customer_email: Mapped[str | None] = mapped_column(String(254))
    # The 54-FZ receipt sent with the payment, as sent (None when receipts are off).
    receipt: Mapped[Json | None]
    # The viewer asked the provider to keep the method for charges without them.
    save_payment_method: Mapped[bool] = mapped_column(default=False, server_default="false")
    # The saved method this payment charged (a renewal), or saved. (use_alter: a method
    # also names the payment that saved it.)
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payment_methods.id", use_alter=True)
    )
    # Provider-specific facts worth keeping (e.g. Stripe's payment intent for refunds).
    provider_data: Mapped[Json] = mapped_column(default=dict)
    # The slice of subscription time this payment bought, so a refund can take exactly it back.
    period_start: Mapped[Timestamp | None]
    period_end: Mapped[Timestamp | None]
    paid_at: Mapped[Timestamp | None]
    refunded_at: Mapped[Timestamp | None]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class RefundReason(StrEnum):
    REQUESTED = "requested"  # the viewer asked, within the refund window
    PROVIDER = "provider"  # made in the provider's dashboard, noticed by billing
    INVOICE_EXPIRED = "invoice_expired"  # paid after expiry, at a price no longer honoured


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        one_of("status", RefundStatus),
        one_of("reason", RefundReason),
        non_negative("amount"),
        # Refunds are whole: one live or done per payment, which is also what makes a double
        # refund impossible; a refund the provider declined stays as a record beside a retry.
        Index(
            "uq_refunds_one_per_payment",
            "payment_id",
            unique=True,
            postgresql_where=text("status <> 'canceled'"),
        ),
        Index(
            "uq_refunds_provider_refund_id",
            "provider_refund_id",
            unique=True,
            postgresql_where=text("provider_refund_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(255))
    idempotence_key: Mapped[uuid.UUID] = mapped_column(default=uuid.uuid4, unique=True)
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PENDING)
    reason: Mapped[str] = mapped_column(String(32), default=RefundReason.REQUESTED)
    receipt: Mapped[Json | None]  # the refund's 54-FZ receipt, as sent
    amount: Mapped[Money]
    currency: Mapped[Currency]
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
