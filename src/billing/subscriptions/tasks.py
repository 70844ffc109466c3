"""Scheduler jobs of subscriptions: "ends soon" reminders, and active → grace → expired.

Each claims a bounded batch with ``FOR UPDATE SKIP LOCKED`` and changes it in the same
transaction as its outbox events, so concurrent workers never handle a row twice, and a
worker that dies mid-batch leaves its rows for the next run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction
from billing.models import Subscription, SubscriptionStatus
from billing.outbox.service import EventType, add_event
from billing.subscriptions.periods import access_until

BATCH_SIZE = 500
MAX_BATCHES = 200  # a run ends even if rows keep arriving; the next run continues


async def _claim(
    session: AsyncSession, *conditions: object, limit: int = BATCH_SIZE
) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription)
        .where(*conditions)  # type: ignore[arg-type]
        .order_by(Subscription.current_period_end)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def remind_expiring(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, remind_before: timedelta
) -> dict[str, int]:
    """Once per period: tell the viewer the subscription ends within ``remind_before``."""
    reminded = 0
    for _ in range(MAX_BATCHES):
        async with transaction(sessions) as session:
            batch = await _claim(
                session,
                Subscription.status == SubscriptionStatus.ACTIVE,
                Subscription.current_period_end > now,
                Subscription.current_period_end <= now + remind_before,
                or_(
                    Subscription.reminded_for_period_end.is_(None),
                    Subscription.reminded_for_period_end != Subscription.current_period_end,
                ),
            )
            for subscription in batch:
                subscription.reminded_for_period_end = subscription.current_period_end
                add_event(
                    session,
                    EventType.SUBSCRIPTION_EXPIRING,
                    user_id=subscription.user_id,
                    occurred_at=now,
                    data={
                        "subscription_id": subscription.id,
                        "tariff_id": subscription.tariff_id,
                        "role": subscription.role,
                        "current_period_end": subscription.current_period_end,
                    },
                )
        reminded += len(batch)
        if len(batch) < BATCH_SIZE:
            break
    return {"reminded": reminded}


async def expire_subscriptions(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, grace_period: timedelta
) -> dict[str, int]:
    """``active`` → ``grace`` when the period ends (notify); ``grace`` → ``expired`` when the
    grace period ends too (revoke the role)."""
    to_grace = to_expired = 0
    for _ in range(MAX_BATCHES):
        async with transaction(sessions) as session:
            ended = await _claim(
                session,
                Subscription.status == SubscriptionStatus.ACTIVE,
                Subscription.current_period_end <= now,
            )
            for subscription in ended:
                subscription.status = SubscriptionStatus.GRACE
                add_event(
                    session,
                    EventType.SUBSCRIPTION_EXPIRED,
                    user_id=subscription.user_id,
                    occurred_at=now,
                    data={
                        "subscription_id": subscription.id,
                        "tariff_id": subscription.tariff_id,
                        "role": subscription.role,
                        "current_period_end": subscription.current_period_end,
                        "access_until": access_until(subscription.current_period_end, grace_period),
                    },
                )
        to_grace += len(ended)
        if len(ended) < BATCH_SIZE:
            break
    for _ in range(MAX_BATCHES):
        async with transaction(sessions) as session:
            over = await _claim(
                session,
                Subscription.status == SubscriptionStatus.GRACE,
                Subscription.current_period_end <= now - grace_period,
            )
            for subscription in over:
                subscription.status = SubscriptionStatus.EXPIRED
                add_event(
                    session,
                    EventType.ROLE_REVOKE,
                    user_id=subscription.user_id,
                    occurred_at=now,
                    data={"role": subscription.role, "subscription_id": subscription.id},
                )
        to_expired += len(over)
        if len(over) < BATCH_SIZE:
            break
    return {"grace": to_grace, "expired": to_expired}
