"""Scheduler jobs of checkout: reconcile pending payments and refunds, expire unpaid invoices.

Rows are claimed in bounded batches with ``FOR UPDATE SKIP LOCKED``: concurrent workers split
the work. Reconciliation asks providers, so it never holds its claim across the calls: a
batch is claimed and stamped in one short transaction (the stamp keeps it out of every
reconciler's reach for ``RECONCILE_AFTER``), the providers are asked with nothing held,
and each answer is applied in its own transaction by the same code as the webhook and the
confirm call. A row that fails is logged with its id, counted, and checked again next run.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import for_each_claimed
from billing.checkout.providers.registry import Providers
from billing.checkout.service import finish_refund, sync_payment
from billing.config import Settings
from billing.db import transaction
from billing.errors import Problem
from billing.models import Invoice, InvoiceStatus, Payment, PaymentStatus, Refund, RefundStatus
from billing.pricing.service import release_promo_reservation

log = logging.getLogger(__name__)

RECONCILE_BATCH = 50
EXPIRE_BATCH = 500
# A payment younger than this is probably still in the viewer's hands (or its webhook is on
# its way): asking the provider about it would only add load. It is also how long a checked
# row rests before it is checked again.
RECONCILE_AFTER = timedelta(minutes=1)
# A run ends even if rows keep arriving; the next run continues.
RECONCILE_MAX_BATCHES = 20


async def reconcile_payments(
    sessions: async_sessionmaker[AsyncSession],
    providers: Providers,
    *,
    now: datetime,
    settings: Settings,
) -> dict[str, int]:
    """Ask each payment's own provider about pending payments that got no confirmation (and
    about refunds whose outcome is unknown), and settle them."""
    report = {
        "checked": 0,
        "succeeded": 0,
        "canceled": 0,
        "refunded": 0,
        "unreachable": 0,
        "failed": 0,
    }
    rest = now - RECONCILE_AFTER
    unconfirmed = select(Payment).where(
        Payment.status == PaymentStatus.PENDING,
        Payment.created_at <= rest,
        Payment.updated_at <= rest,
    )
    unfinished = select(Refund).where(
        Refund.status == RefundStatus.PENDING,
        Refund.created_at <= rest,
        Refund.updated_at <= rest,
    )

    async def check_payment(payment_id: uuid.UUID) -> None:
        payment = await sync_payment(sessions, providers, payment_id, now=now, settings=settings)
        if payment.status != PaymentStatus.PENDING:
            report[payment.status] += 1

    async def check_refund(refund_id: uuid.UUID) -> None:
        if await finish_refund(sessions, providers, refund_id, now=now, settings=settings):
            report["refunded"] += 1

    for query, check in ((unconfirmed, check_payment), (unfinished, check_refund)):
        for _ in range(RECONCILE_MAX_BATCHES):
            claimed = await _claim(sessions, query, now=now)
            for row_id in claimed:
                report["checked"] += 1
                await _check_one(row_id, check, report)
            if len(claimed) < RECONCILE_BATCH:
                break
    return report


async def _claim(
    sessions: async_sessionmaker[AsyncSession], query: Select[Any], *, now: datetime
) -> list[uuid.UUID]:
    """Claim a batch and stamp it checked, in one short transaction; answers the ids."""
    async with transaction(sessions) as session:
        rows = await session.scalars(
            query.order_by("updated_at")  # the longest unchecked first
            .limit(RECONCILE_BATCH)
            .with_for_update(skip_locked=True)
        )
        claimed = []
        for row in rows:
            row.updated_at = now
            claimed.append(row.id)
    return claimed


async def _check_one(
    row_id: uuid.UUID, check: Callable[[uuid.UUID], Awaitable[None]], report: dict[str, int]
) -> None:
    try:
        await check(row_id)
    except Problem as problem:
        if problem.code == "provider_unavailable":
            log.warning("reconcile: %s not checked: the provider is unavailable", row_id)
            report["unreachable"] += 1
        else:
            log.warning("reconcile: %s not settled: %s", row_id, problem.detail)
            report["failed"] += 1
    except Exception:
        # One bad row never stops the run: logged, counted, checked again next run.
        log.exception("reconcile: %s failed", row_id)
        report["failed"] += 1


async def expire_invoices(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime
) -> dict[str, int]:
    """Expire unpaid invoices past ``expires_at`` and release their promo reservations."""
    released = 0

    async def expire(session: AsyncSession, invoice: Invoice) -> None:
        nonlocal released
        invoice.status = InvoiceStatus.EXPIRED
        freed = invoice.promo_code_id is not None and await release_promo_reservation(
            session, invoice.id
        )
        await session.flush()  # a row the database refuses fails here, before it is counted
        released += freed

    overdue = (
        select(Invoice)
        .where(Invoice.status == InvoiceStatus.OPEN, Invoice.expires_at <= now)
        .order_by(Invoice.expires_at)
    )
    expired = await for_each_claimed(sessions, overdue, expire, batch_size=EXPIRE_BATCH)
    return {"expired": expired.handled, "released": released, "failed": expired.failed}
