"""What a renewal's outcome changes, applied in the transaction that settles its payment:
the attempt's status, the retry plan, and what the viewer is told."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.checkout import links
from billing.checkout.providers.base import DeclineReason
from billing.config import Settings
from billing.models import (
    Invoice,
    Payment,
    RenewalAttempt,
    RenewalAttemptStatus,
    Subscription,
    Tariff,
)
from billing.outbox.events import SubscriptionRenewalFailed, SubscriptionRenewed, TariffRef
from billing.outbox.service import add_event
from billing.subscriptions.periods import access_until
from billing.subscriptions.renewal_rules import next_attempt_at


async def _attempt_of(session: AsyncSession, payment: Payment) -> RenewalAttempt | None:
    attempt: RenewalAttempt | None = await session.scalar(
        select(RenewalAttempt).where(RenewalAttempt.payment_id == payment.id).with_for_update()
    )
    return attempt


async def renewal_succeeded(
    session: AsyncSession,
    payment: Payment,
    invoice: Invoice,
    tariff: Tariff,
    subscription: Subscription,
    *,
    now: datetime,
) -> None:
    attempt = await _attempt_of(session, payment)
    if attempt is not None:
        attempt.status = RenewalAttemptStatus.SUCCEEDED
    add_event(
        session,
        SubscriptionRenewed(
            subscription_id=subscription.id,
            payment_id=payment.id,
            tariff=TariffRef.of(tariff),
            months=invoice.months,
            amount=invoice.total_amount,
            currency=invoice.currency,
            current_period_end=subscription.current_period_end,
        ),
        user_id=invoice.user_id,
        occurred_at=now,
    )


async def renewal_declined(
    session: AsyncSession,
    payment: Payment,
    invoice: Invoice,
    reason: DeclineReason,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    """The charge was declined: plan the next attempt (soft) or none (hard), and tell the
    viewer, with the renewal invoice's link to pay by hand (it stays open until access
    ends; paying it stops the retries)."""
    attempt = await _attempt_of(session, payment)
    if attempt is None or attempt.status != RenewalAttemptStatus.CHARGING:
        return
    tariff = await session.get_one(Tariff, invoice.tariff_id)
    first = await session.scalar(
        select(RenewalAttempt.created_at).where(
            RenewalAttempt.subscription_id == attempt.subscription_id,
            RenewalAttempt.period_end == attempt.period_end,
            RenewalAttempt.attempt == 1,
        )
    )
    attempt.status = RenewalAttemptStatus.DECLINED
    attempt.reason = reason.value
    attempt.next_attempt_at = next_attempt_at(
        reason,
        attempt=attempt.attempt,
        first_declined_at=first or now,
        access_ends_at=access_until(attempt.period_end, settings.grace_period),
        retry_offsets=settings.renew_retry,
    )
    # The subscription says when it is charged next; with no retry left (a hard decline, or
    # the last soft one) renewal stops: the method is known not to work, and the next period
    # must not try it again. The viewer pays by hand (``pay_url``) and may resume. Only the
    # period this attempt renews: a payment by hand meanwhile has moved the period on.
    planned: dict[str, Any] = {"renewal_retry_at": attempt.next_attempt_at}
    if attempt.next_attempt_at is None:
        planned["auto_renew"] = False
    await session.execute(
        update(Subscription)
        .where(
            Subscription.id == attempt.subscription_id,
            Subscription.current_period_end == attempt.period_end,
        )
        .values(planned)
    )
    add_event(
        session,
        SubscriptionRenewalFailed(
            subscription_id=attempt.subscription_id,
            tariff=TariffRef.of(tariff),
            amount=invoice.total_amount,
            currency=invoice.currency,
            reason=reason,
            attempt=attempt.attempt,
            next_attempt_at=attempt.next_attempt_at,
            pay_url=links.checkout_url(settings, invoice.id, invoice.expires_at),
        ),
        user_id=invoice.user_id,
        occurred_at=now,
    )
