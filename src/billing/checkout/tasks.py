"""Scheduler jobs of checkout: reconcile pending payments, expire unpaid invoices.

Rows are claimed in bounded batches (``batches.for_each_claimed``): concurrent workers split
the work, and a worker that dies mid-batch releases its rows with its transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import for_each_claimed
from billing.checkout.providers.base import PaymentProvider, ProviderError
from billing.checkout.service import settle_from_provider
from billing.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from billing.pricing.service import release_promo_reservation

log = logging.getLogger(__name__)

# Provider calls happen while the batch is claimed, so these batches stay small.
RECONCILE_BATCH = 50
EXPIRE_BATCH = 500
# A payment younger than this is probably still in the viewer's hands (or its webhook is on
# its way): asking the provider about it would only add load.
RECONCILE_AFTER = timedelta(minutes=1)


async def reconcile_payments(
    sessions: async_sessionmaker[AsyncSession], provider: PaymentProvider, *, now: datetime
) -> dict[str, int]:
    """Ask the provider about pending payments that got no confirmation, and settle them
    through the same code as the webhook and the confirm call."""
    report = {"checked": 0, "succeeded": 0, "canceled": 0, "unreachable": 0}

    async def check(session: AsyncSession, payment: Payment) -> None:
        report["checked"] += 1
        payment.updated_at = now  # checked in this run: out of the query's reach
        assert payment.provider_payment_id is not None
        try:
            remote = await provider.get_payment(payment.provider_payment_id, payment.provider_data)
        except ProviderError as error:
            log.warning("reconcile: payment %s not checked: %s", payment.id, error)
            report["unreachable"] += 1
            return
        await settle_from_provider(session, payment, remote, now=now)
        if payment.status != PaymentStatus.PENDING:
            report[payment.status] += 1

    unconfirmed = (
        select(Payment)
        .where(
            Payment.status == PaymentStatus.PENDING,
            Payment.provider == provider.name,
            Payment.provider_payment_id.is_not(None),
            Payment.created_at <= now - RECONCILE_AFTER,
            Payment.updated_at < now,
        )
        .order_by(Payment.updated_at)  # the longest unchecked first
    )
    await for_each_claimed(sessions, unconfirmed, check, batch_size=RECONCILE_BATCH)
    return report


async def expire_invoices(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime
) -> dict[str, int]:
    """Expire unpaid invoices past ``expires_at`` and release their promo reservations."""
    released = 0

    async def expire(session: AsyncSession, invoice: Invoice) -> None:
        nonlocal released
        invoice.status = InvoiceStatus.EXPIRED
        if invoice.promo_code_id is not None and await release_promo_reservation(
            session, invoice.id
        ):
            released += 1

    overdue = (
        select(Invoice)
        .where(Invoice.status == InvoiceStatus.OPEN, Invoice.expires_at <= now)
        .order_by(Invoice.expires_at)
    )
    expired = await for_each_claimed(sessions, overdue, expire, batch_size=EXPIRE_BATCH)
    return {"expired": expired, "released": released}
