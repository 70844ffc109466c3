"""Checkout rules: issue invoices, start and settle payments, refund within the window.

Settling is one function (:func:`apply_provider_state`) whichever way the news arrives —
webhook, the viewer's confirm call, or the scheduler's reconciliation — and it locks the
payment row, so applying ``succeeded`` twice or concurrently extends access exactly once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout import webhook_events
from billing.checkout.providers.base import (
    PaymentProvider,
    ProviderError,
    ProviderPayment,
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderUnavailable,
)
from billing.checkout.refund_window import refund_deadline, refund_window_open
from billing.config import Settings
from billing.db import transaction
from billing.errors import Problem, not_found
from billing.models import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Tariff,
)
from billing.outbox.service import EventType, add_event
from billing.pricing.service import (
    quote_for,
    redeem_promo_reservation,
    reserve_promo_code,
)
from billing.schemas import Page
from billing.subscriptions.service import extend_subscription, take_back

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


# --- invoices -------------------------------------------------------------------------------


async def issue_invoice(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tariff_id: uuid.UUID,
    months: int,
    promo_code: str | None,
    now: datetime,
    settings: Settings,
) -> Invoice:
    """Freeze the quote into an invoice and reserve its promo code; a free invoice is settled
    on the spot, without the provider."""
    priced = await quote_for(
        session,
        user_id=user_id,
        tariff_id=tariff_id,
        months=months,
        promo_code=promo_code,
        now=now,
        settings=settings,
    )
    quote = priced.quote
    invoice = Invoice(
        id=uuid.uuid4(),
        user_id=user_id,
        tariff_id=tariff_id,
        months=months,
        currency=quote.currency,
        monthly_price=priced.tariff.monthly_price,  # frozen: later price changes leave it
        base_amount=quote.base_amount,
        discount_source=quote.discount.source.value,
        discount_percent=quote.discount.percent,
        discount_amount=quote.discount.amount,
        total_amount=quote.total_amount,
        # JSON has no decimals: percents are kept as strings ("12.5"), exactly.
        considered=[
            {
                "source": item.source.value,
                "percent": None if item.percent is None else str(item.percent),
                "amount": item.amount,
            }
            for item in quote.considered
        ],
        promo_code_id=priced.promo.id if priced.promo else None,
        promo_code=priced.promo.code if priced.promo else None,
        status=InvoiceStatus.OPEN,
        expires_at=now + settings.invoice_ttl,
        created_at=now,
        updated_at=now,
    )
    session.add(invoice)
    await session.flush()
    if priced.promo is not None:
        await reserve_promo_code(
            session,
            priced.promo,
            user_id=user_id,
            invoice_id=invoice.id,
            tariff_id=tariff_id,
            now=now,
        )
    if invoice.total_amount == 0:
        await _settle(session, invoice, priced.tariff, payment=None, now=now)
    return invoice


async def get_own_invoice(
    session: AsyncSession, invoice_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> Invoice:
    """Another user's invoice is indistinguishable from a missing one."""
    query = select(Invoice).where(Invoice.id == invoice_id, Invoice.user_id == user_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    invoice = await session.scalar(query)
    if invoice is None:
        raise not_found("invoice")
    return invoice


def _require_open(invoice: Invoice, now: datetime) -> None:
    if invoice.status == InvoiceStatus.EXPIRED or (
        invoice.status == InvoiceStatus.OPEN and invoice.expires_at <= now
    ):
        raise Problem(409, "invoice_expired", "the invoice has expired; issue a new one")
    if invoice.status != InvoiceStatus.OPEN:
        raise Problem(409, "invoice_not_open", f"the invoice is {invoice.status}")


# --- payments -------------------------------------------------------------------------------


async def start_payment(
    sessions: Sessions,
    provider: PaymentProvider,
    *,
    invoice_id: uuid.UUID,
    user_id: uuid.UUID,
    return_url: str | None,
    now: datetime,
    settings: Settings,
) -> Payment:
    """Create the payment at the provider and answer where to send the viewer.

    The invoice stays locked while the provider is asked (bounded by the client's timeouts),
    so two clicks never create two provider payments, and if the provider fails the
    transaction rolls back: nothing is half-written. A pending payment already started for
    the invoice is answered again instead of creating another.
    """
    async with transaction(sessions) as session:
        invoice = await get_own_invoice(session, invoice_id, user_id, lock=True)
        _require_open(invoice, now)
        started = await session.scalar(
            select(Payment)
            .where(
                Payment.invoice_id == invoice.id,
                Payment.status == PaymentStatus.PENDING,
                Payment.confirmation_url.is_not(None),
            )
            .order_by(Payment.created_at.desc())
            .limit(1)
        )
        if started is not None:
            return started
        tariff = await session.get_one(Tariff, invoice.tariff_id)
        payment = Payment(
            id=uuid.uuid4(),
            invoice_id=invoice.id,
            user_id=user_id,
            provider=provider.name,
            idempotence_key=uuid.uuid4(),
            status=PaymentStatus.PENDING,
            amount=invoice.total_amount,
            currency=invoice.currency,
            return_url=return_url,
            provider_data={},
            created_at=now,
            updated_at=now,
        )
        session.add(payment)
        await session.flush()
        try:
            remote = await provider.create_payment(
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                description=f"{tariff.name}: {invoice.months} mo.",
                return_url=return_url or f"{settings.public_url}/api/v1/payments/{payment.id}",
                idempotence_key=str(payment.idempotence_key),
                expires_at=invoice.expires_at,
            )
        except ProviderError as error:
            raise _unavailable(error) from error
        payment.provider_payment_id = remote.provider_payment_id
        payment.confirmation_url = remote.confirmation_url
        payment.provider_data = dict(remote.data)
        return payment


def _unavailable(error: ProviderError) -> Problem:
    if not isinstance(error, ProviderUnavailable):
        log.error("payment provider refused a request: %s", error)
    return Problem(503, "provider_unavailable", "the payment provider is unavailable; try again")


async def get_own_payment(
    session: AsyncSession, payment_id: uuid.UUID, user_id: uuid.UUID
) -> Payment:
    payment = await session.scalar(
        select(Payment).where(Payment.id == payment_id, Payment.user_id == user_id)
    )
    if payment is None:
        raise not_found("payment")
    return payment


async def list_own_payments(session: AsyncSession, user_id: uuid.UUID, page: Page) -> list[Payment]:
    rows = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id)
        .order_by(Payment.created_at.desc(), Payment.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return list(rows)


async def sync_payment(
    sessions: Sessions, provider: PaymentProvider, payment_id: uuid.UUID, *, now: datetime
) -> Payment:
    """Ask the provider about a payment and apply what it says (confirm, webhook, scheduler).
    The provider is asked outside any transaction; applying locks the payment."""
    async with sessions() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None:
            raise not_found("payment")
    if payment.provider_payment_id is None or payment.status in (
        PaymentStatus.CANCELED,
        PaymentStatus.REFUNDED,
    ):
        return payment
    try:
        remote = await provider.get_payment(payment.provider_payment_id, payment.provider_data)
    except ProviderError as error:
        raise _unavailable(error) from error
    return await apply_provider_state(sessions, payment.id, remote, now=now)


async def apply_provider_state(
    sessions: Sessions, payment_id: uuid.UUID, remote: ProviderPayment, *, now: datetime
) -> Payment:
    async with transaction(sessions) as session:
        payment = await session.scalar(
            select(Payment)
            .where(Payment.id == payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert payment is not None
        await settle_from_provider(session, payment, remote, now=now)
        return payment


async def settle_from_provider(
    session: AsyncSession, payment: Payment, remote: ProviderPayment, *, now: datetime
) -> None:
    """Apply the provider's view to a payment row this transaction has locked."""
    if remote.amount != payment.amount or remote.currency != payment.currency:
        # Never settle on a payment that doesn't match what the invoice asked for.
        log.error("payment %s: provider reports another amount; not applied", payment.id)
        return
    if payment.status == PaymentStatus.PENDING:
        if remote.status == ProviderPaymentStatus.SUCCEEDED:
            invoice = await session.get_one(Invoice, payment.invoice_id, with_for_update=True)
            tariff = await session.get_one(Tariff, invoice.tariff_id)
            payment.status = PaymentStatus.SUCCEEDED
            payment.paid_at = remote.paid_at or now
            payment.provider_data = {**payment.provider_data, **remote.data}
            await _settle(session, invoice, tariff, payment=payment, now=now)
        elif remote.status == ProviderPaymentStatus.CANCELED:
            payment.status = PaymentStatus.CANCELED
    elif payment.status == PaymentStatus.SUCCEEDED and remote.refunded_amount >= payment.amount > 0:
        # Refunded outside billing (the provider's dashboard): record it and take the months
        # back as if the viewer had asked.
        session.add(
            Refund(
                id=uuid.uuid4(),
                payment_id=payment.id,
                idempotence_key=uuid.uuid4(),
                status=RefundStatus.SUCCEEDED,
                amount=payment.amount,
                currency=payment.currency,
                created_at=now,
                updated_at=now,
            )
        )
        await _apply_refund(session, payment, now=now)


async def _settle(
    session: AsyncSession,
    invoice: Invoice,
    tariff: Tariff,
    *,
    payment: Payment | None,
    now: datetime,
) -> None:
    """The invoice is paid: redeem its promo code, extend access, tell the viewer."""
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = payment.paid_at if payment else now
    if invoice.promo_code_id is not None:
        await redeem_promo_reservation(session, invoice.id)
    subscription, start, end = await extend_subscription(
        session, user_id=invoice.user_id, tariff=tariff, months=invoice.months, now=now
    )
    if payment is not None:
        payment.period_start, payment.period_end = start, end
    add_event(
        session,
        EventType.PAYMENT_SUCCEEDED,
        user_id=invoice.user_id,
        occurred_at=now,
        data={
            "payment_id": payment.id if payment else None,
            "invoice_id": invoice.id,
            "tariff": {"id": tariff.id, "name": tariff.name, "role": tariff.role},
            "months": invoice.months,
            "amount": invoice.total_amount,
            "currency": invoice.currency,
            "discount": {"source": invoice.discount_source, "amount": invoice.discount_amount},
            "subscription_id": subscription.id,
            "current_period_end": subscription.current_period_end,
        },
    )


# --- refunds --------------------------------------------------------------------------------


async def refund_payment(
    sessions: Sessions,
    provider: PaymentProvider,
    *,
    payment_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    settings: Settings,
) -> Payment:
    """Refund a paid payment within the refund window.

    The payment row stays locked while the provider refunds, so a second or concurrent
    request waits and then finds the payment refunded: one refund at the provider.
    """
    async with transaction(sessions) as session:
        payment = await session.scalar(
            select(Payment)
            .where(Payment.id == payment_id, Payment.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if payment is None:
            raise not_found("payment")
        if payment.status != PaymentStatus.SUCCEEDED or payment.provider_payment_id is None:
            raise Problem(409, "payment_not_refundable", f"the payment is {payment.status}")
        assert payment.paid_at is not None
        if not refund_window_open(payment.paid_at, now, settings.refund_window):
            deadline = refund_deadline(payment.paid_at, settings.refund_window)
            raise Problem(
                409,
                "refund_window_expired",
                f"refunds are possible until {deadline.isoformat()}",
            )
        refund = Refund(
            id=uuid.uuid4(),
            payment_id=payment.id,
            idempotence_key=uuid.uuid4(),
            amount=payment.amount,
            currency=payment.currency,
            created_at=now,
            updated_at=now,
        )
        session.add(refund)
        await session.flush()
        try:
            remote = await provider.create_refund(
                provider_payment_id=payment.provider_payment_id,
                amount=refund.amount,
                currency=refund.currency,
                idempotence_key=str(refund.idempotence_key),
                data=payment.provider_data,
            )
        except ProviderError as error:
            raise _unavailable(error) from error
        if remote.status == ProviderRefundStatus.CANCELED:
            raise Problem(409, "payment_not_refundable", "the provider declined the refund")
        refund.provider_refund_id = remote.provider_refund_id
        refund.status = remote.status.value
        await _apply_refund(session, payment, now=now)
        return payment


async def _apply_refund(session: AsyncSession, payment: Payment, *, now: datetime) -> None:
    invoice = await session.get_one(Invoice, payment.invoice_id, with_for_update=True)
    tariff = await session.get_one(Tariff, invoice.tariff_id)
    payment.status = PaymentStatus.REFUNDED
    payment.refunded_at = now
    invoice.status = InvoiceStatus.REFUNDED
    if payment.period_start is not None and payment.period_end is not None:
        await take_back(
            session,
            user_id=payment.user_id,
            tariff=tariff,
            slice_start=payment.period_start,
            slice_end=payment.period_end,
            now=now,
        )
    add_event(
        session,
        EventType.PAYMENT_REFUNDED,
        user_id=payment.user_id,
        occurred_at=now,
        data={
            "payment_id": payment.id,
            "invoice_id": invoice.id,
            "tariff": {"id": tariff.id, "name": tariff.name, "role": tariff.role},
            "amount": payment.amount,
            "currency": payment.currency,
        },
    )


# --- notifications --------------------------------------------------------------------------


async def handle_notification(
    sessions: Sessions,
    provider: PaymentProvider,
    *,
    body: bytes,
    headers: dict[str, str],
    now: datetime,
) -> Payment | None:
    """A provider's notification is only a trigger: the payment it names is re-read from the
    provider, so a forged body changes nothing. ``InvalidNotification`` propagates (400).

    Numbered events (Stripe's) are remembered once handled, so a redelivery or a replay is
    not even re-read; a failed one stays unremembered, so the provider's retry is handled.
    """
    notification = provider.parse_notification(body, headers)
    event_id = notification.event_id
    if event_id is not None and await webhook_events.already_processed(
        sessions, provider=provider.name, event_id=event_id
    ):
        return None
    async with sessions() as session:
        payment_id = await webhook_events.notified_payment_id(
            session, provider=provider.name, reference=notification.provider_payment_id
        )
    payment = None
    if payment_id is None:
        log.info("notification about unknown payment %s ignored", notification.provider_payment_id)
    else:
        payment = await sync_payment(sessions, provider, payment_id, now=now)
    if event_id is not None:
        await webhook_events.remember_processed(
            sessions, provider=provider.name, event_id=event_id, now=now
        )
    return payment
