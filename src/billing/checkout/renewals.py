"""The ``renew-subscriptions`` job: charge the saved method of auto-renewing subscriptions
whose period ends within ``BILLING_RENEW_BEFORE``, and retry soft declines on schedule.

Exactly once, whatever the timing: a renewal attempt is opened — its row (unique per
subscription, period and attempt number), the renewal invoice (priced today: current price,
personal and duration discounts, never a promo code) and a pending payment with its own
idempotence key — in one short transaction on the claimed subscription; the provider is
charged with no transaction open; the outcome settles through the same path as any payment
(``settle_from_provider``: period extended from its current end, ``payment.succeeded``,
``subscription.renewed``; or the decline planned and told). Two workers cannot open the same
attempt; a crash or a timeout leaves the attempt charging, and the next ask (this job's
next run, reconciliation) sends the same key, which the provider answers with the first
charge's outcome — never a second charge.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import Select, and_, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.errors import CUSTOMER_EMAIL_REQUIRED
from billing.checkout.providers.registry import Providers
from billing.checkout.service import invoice_from_quote, invoice_receipt, sync_payment
from billing.config import Settings
from billing.db import transaction
from billing.errors import Problem
from billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    RenewalAttempt,
    RenewalAttemptStatus,
    Subscription,
)
from billing.payment_methods.service import usable_method
from billing.pricing.service import quote_for
from billing.subscriptions.periods import access_until
from billing.subscriptions.service import LIVE

log = logging.getLogger(__name__)

RENEW_BATCH = 50
MAX_BATCHES = 20

Sessions = async_sessionmaker[AsyncSession]


async def renew_subscriptions(
    sessions: Sessions, providers: Providers, *, now: datetime, settings: Settings
) -> dict[str, int]:
    report = {"charged": 0, "declined": 0, "unknown": 0, "failed": 0}
    for _ in range(MAX_BATCHES):
        opened, failed = await _open_attempts(sessions, providers, now=now, settings=settings)
        report["failed"] += failed
        for payment_id in opened:
            try:
                payment = await sync_payment(
                    sessions, providers, payment_id, now=now, settings=settings
                )
            except Problem as problem:
                # Unknown whether it was charged: the attempt stays open with its key.
                log.warning("renewal payment %s not charged yet: %s", payment_id, problem.detail)
                report["unknown"] += 1
                continue
            except Exception:
                log.exception("renewal payment %s failed", payment_id)
                report["failed"] += 1
                continue
            if payment.status == PaymentStatus.SUCCEEDED:
                report["charged"] += 1
            elif payment.status == PaymentStatus.CANCELED:
                report["declined"] += 1
            else:
                report["unknown"] += 1
        if len(opened) + failed < RENEW_BATCH:
            break
    return report


def _due(now: datetime, settings: Settings) -> Select[Subscription]:
    """Auto-renewing live subscriptions ending soon whose every attempt at this period (if
    any) was declined with a retry now due."""
    not_due_attempt = exists().where(
        RenewalAttempt.subscription_id == Subscription.id,
        RenewalAttempt.period_end == Subscription.current_period_end,
        not_(
            and_(
                RenewalAttempt.status == RenewalAttemptStatus.DECLINED,
                # (never NULL inside NOT: a hard decline's missing retry must count as not due)
                RenewalAttempt.next_attempt_at.is_not(None),
                RenewalAttempt.next_attempt_at <= now,
            )
        ),
    )
    return (
        select(Subscription)
        .where(
            Subscription.auto_renew.is_(True),
            Subscription.payment_method_id.is_not(None),
            Subscription.status.in_(LIVE),
            Subscription.current_period_end <= now + settings.renew_before,
            Subscription.current_period_end + settings.grace_period > now,
            ~not_due_attempt,
        )
        .order_by(Subscription.current_period_end)
        .limit(RENEW_BATCH)
        .with_for_update(skip_locked=True)
    )


async def _open_attempts(
    sessions: Sessions, providers: Providers, *, now: datetime, settings: Settings
) -> tuple[list[uuid.UUID], int]:
    """Open the next attempt of each due subscription of a batch; answers their payments'
    ids and how many subscriptions could not be renewed (logged, left for the next run)."""
    opened: list[uuid.UUID] = []
    failed = 0
    async with transaction(sessions) as session:
        for subscription in await session.scalars(_due(now, settings)):
            try:
                async with session.begin_nested():
                    payment = await _open_attempt(
                        session, providers, subscription, now=now, settings=settings
                    )
            except Problem as problem:
                log.warning("subscription %s not renewed: %s", subscription.id, problem.detail)
                failed += 1
                continue
            if payment is not None:
                opened.append(payment.id)
    return opened, failed


async def _open_attempt(
    session: AsyncSession,
    providers: Providers,
    subscription: Subscription,
    *,
    now: datetime,
    settings: Settings,
) -> Payment | None:
    method = await usable_method(session, subscription.payment_method_id, subscription.user_id)
    if method is None:
        subscription.auto_renew = False
        return None
    last = await session.scalar(
        select(RenewalAttempt)
        .where(
            RenewalAttempt.subscription_id == subscription.id,
            RenewalAttempt.period_end == subscription.current_period_end,
        )
        .order_by(RenewalAttempt.attempt.desc())
        .limit(1)
    )
    consent = await session.get_one(Payment, method.consent_payment_id)
    if last is None:
        invoice = await _renewal_invoice(
            session, subscription, consent.customer_email, now=now, settings=settings
        )
        number = 1
    else:
        invoice = await session.get_one(Invoice, last.invoice_id)
        if invoice.status != InvoiceStatus.OPEN:
            return None  # paid by hand meanwhile, or expired with access
        number = last.attempt + 1
    payment = Payment(
        id=uuid.uuid4(),
        invoice_id=invoice.id,
        user_id=subscription.user_id,
        provider=method.provider,
        idempotence_key=uuid.uuid4(),
        status=PaymentStatus.PENDING,
        amount=invoice.total_amount,
        currency=invoice.currency,
        provider_data={},
        requested_at=datetime.now(UTC),
        customer_email=consent.customer_email,
        payment_method_id=method.id,
        created_at=now,
        updated_at=now,
    )
    if settings.receipts_on and providers[method.provider].sends_receipts:
        if consent.customer_email is None:
            raise CUSTOMER_EMAIL_REQUIRED("no e-mail for the renewal's receipt")
        payment.receipt = await invoice_receipt(session, invoice, consent.customer_email, settings)
    session.add(payment)
    await session.flush()
    session.add(
        RenewalAttempt(
            id=uuid.uuid4(),
            subscription_id=subscription.id,
            period_end=subscription.current_period_end,
            attempt=number,
            invoice_id=invoice.id,
            payment_id=payment.id,
            status=RenewalAttemptStatus.CHARGING,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()  # the unique attempt key: a second opener fails here, not later
    return payment


async def _renewal_invoice(
    session: AsyncSession,
    subscription: Subscription,
    customer_email: str | None,
    *,
    now: datetime,
    settings: Settings,
) -> Invoice:
    """The period's renewal invoice, priced today; payable by hand until access ends, at its
    link too (no token there: the receipt's e-mail is the one the viewer consented with)."""
    months = subscription.renewal_months or 1
    priced = await quote_for(
        session,
        user_id=subscription.user_id,
        tariff_id=subscription.tariff_id,
        months=months,
        promo_code=None,
        now=now,
        settings=settings,
    )
    invoice = invoice_from_quote(
        priced,
        user_id=subscription.user_id,
        months=months,
        kind=InvoiceKind.RENEWAL,
        customer_email=customer_email,
        expires_at=access_until(subscription.current_period_end, settings.grace_period),
        now=now,
    )
    session.add(invoice)
    await session.flush()
    return invoice
