"""Scheduler jobs of subscriptions: "ends soon" reminders, and active → grace → expired.

Rows are claimed in bounded batches (``batches.for_each_claimed``) and changed in the same
transaction as their outbox events; a row that fails is counted as ``failed`` and left for
the next run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import for_each_claimed
from billing.config import Settings
from billing.models import Subscription, SubscriptionStatus
from billing.outbox.events import RoleRevoke, SubscriptionExpired, SubscriptionExpiring
from billing.outbox.service import add_event
from billing.pricing.rules import Quote
from billing.pricing.service import quote_for
from billing.subscriptions.periods import access_until
from billing.subscriptions.renewal_rules import next_charge_at

BATCH_SIZE = 500


async def remind_expiring(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, settings: Settings
) -> dict[str, int]:
    """Once per period: tell the viewer the subscription ends within
    ``BILLING_REMIND_BEFORE``; one that renews by itself says when and how much will be
    charged (today's price and discounts: the charge is priced when it is made)."""
    remind_before = settings.remind_before

    async def remind(session: AsyncSession, subscription: Subscription) -> None:
        subscription.reminded_for_period_end = subscription.current_period_end
        renewal: Quote | None = None
        if subscription.auto_renew and subscription.payment_method_id is not None:
            priced = await quote_for(
                session,
                user_id=subscription.user_id,
                tariff_id=subscription.tariff_id,
                months=subscription.renewal_months or 1,
                promo_code=None,
                now=now,
                settings=settings,
            )
            renewal = priced.quote
        renews_at = next_charge_at(
            subscription.current_period_end, subscription.renewal_retry_at, settings.renew_before
        )
        add_event(
            session,
            SubscriptionExpiring(
                subscription_id=subscription.id,
                tariff_id=subscription.tariff_id,
                role=subscription.role,
                current_period_end=subscription.current_period_end,
                auto_renew=renewal is not None,
                renewal_amount=renewal.total_amount if renewal else None,
                currency=renewal.currency if renewal else None,
                renews_at=renews_at if renewal else None,
            ),
            user_id=subscription.user_id,
            occurred_at=now,
        )

    due = select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE,
        Subscription.current_period_end > now,
        Subscription.current_period_end <= now + remind_before,
        # The predicate of ix_subscriptions_to_remind, word for word, so the planner uses it:
        # reminded rows leave that index, and a claim never walks past them.
        Subscription.reminded_for_period_end.is_distinct_from(Subscription.current_period_end),
    )
    reminded = await for_each_claimed(
        sessions, due.order_by(Subscription.current_period_end), remind, batch_size=BATCH_SIZE
    )
    return {"reminded": reminded.handled, "failed": reminded.failed}


async def expire_subscriptions(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, grace_period: timedelta
) -> dict[str, int]:
    """``active`` → ``grace`` when the period ends (notify); ``grace`` → ``expired`` when the
    grace period ends too (revoke the role)."""

    async def start_grace(session: AsyncSession, subscription: Subscription) -> None:
        subscription.status = SubscriptionStatus.GRACE
        add_event(
            session,
            SubscriptionExpired(
                subscription_id=subscription.id,
                tariff_id=subscription.tariff_id,
                role=subscription.role,
                current_period_end=subscription.current_period_end,
                access_until=access_until(subscription.current_period_end, grace_period),
            ),
            user_id=subscription.user_id,
            occurred_at=now,
        )

    async def expire(session: AsyncSession, subscription: Subscription) -> None:
        subscription.status = SubscriptionStatus.EXPIRED
        add_event(
            session,
            RoleRevoke(role=subscription.role, subscription_id=subscription.id),
            user_id=subscription.user_id,
            occurred_at=now,
        )

    ended = select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE, Subscription.current_period_end <= now
    )
    over = select(Subscription).where(
        Subscription.status == SubscriptionStatus.GRACE,
        Subscription.current_period_end <= now - grace_period,
    )
    by_end = Subscription.current_period_end
    to_grace = await for_each_claimed(
        sessions, ended.order_by(by_end), start_grace, batch_size=BATCH_SIZE
    )
    to_expired = await for_each_claimed(
        sessions, over.order_by(by_end), expire, batch_size=BATCH_SIZE
    )
    return {
        "grace": to_grace.handled,
        "expired": to_expired.handled,
        "failed": to_grace.failed + to_expired.failed,
    }
