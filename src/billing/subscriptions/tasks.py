"""Scheduler jobs of subscriptions: "ends soon" reminders, and active → grace → expired.

Rows are claimed in bounded batches (``batches.for_each_claimed_batch``) and changed set-based
in the same transaction as their outbox events: per batch one claim, one ``UPDATE`` of the
claimed ids and one multi-row ``INSERT`` of their events (issue 15: the ORM's per-row objects
were most of a run's time). A row that fails is counted as ``failed`` and left for the next
run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import for_each_claimed_batch
from billing.config import Settings
from billing.models import Subscription, SubscriptionStatus
from billing.outbox.events import RoleRevoke, SubscriptionExpired, SubscriptionExpiring
from billing.outbox.service import add_events
from billing.pricing.rules import Quote
from billing.pricing.service import quote_for
from billing.subscriptions.periods import access_until
from billing.subscriptions.renewal_rules import next_charge_at

# Rows per claim (and per UPDATE and INSERT); bench/README.md "Set-based batches".
BATCH_SIZE = 2000

# What the events of a claimed subscription are built from (the id first: the claim's key).
CLAIMED = (
    Subscription.id,
    Subscription.user_id,
    Subscription.tariff_id,
    Subscription.role,
    Subscription.current_period_end,
)


async def _change(session: AsyncSession, rows: Sequence[Row[Any]], **values: Any) -> None:
    """One ``UPDATE`` of the claimed rows; ``updated_at`` is set by the column's ``onupdate``,
    as the ORM sets it on a changed object."""
    ids = bindparam("ids", [row.id for row in rows], type_=ARRAY(Subscription.id.type))
    await session.execute(
        update(Subscription)
        .where(Subscription.id == any_(ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def remind_expiring(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, settings: Settings
) -> dict[str, int]:
    """Once per period: tell the viewer the subscription ends within
    ``BILLING_REMIND_BEFORE``; one that renews by itself says when and how much will be
    charged (today's price and discounts: the charge is priced when it is made)."""
    remind_before = settings.remind_before

    async def renewal_of(session: AsyncSession, row: Row[Any]) -> Quote | None:
        if not (row.auto_renew and row.payment_method_id is not None):
            return None
        # Priced one by one (personal discounts); only auto-renewing rows pay for it.
        priced = await quote_for(
            session,
            user_id=row.user_id,
            tariff_id=row.tariff_id,
            months=row.renewal_months or 1,
            promo_code=None,
            now=now,
            settings=settings,
        )
        return priced.quote

    async def remind(session: AsyncSession, rows: Sequence[Row[Any]]) -> None:
        events: list[tuple[SubscriptionExpiring, uuid.UUID]] = []
        for row in rows:
            renewal = await renewal_of(session, row)
            renews_at = next_charge_at(
                row.current_period_end, row.renewal_retry_at, settings.renew_before
            )
            reminder = SubscriptionExpiring(
                subscription_id=row.id,
                tariff_id=row.tariff_id,
                role=row.role,
                current_period_end=row.current_period_end,
                auto_renew=renewal is not None,
                renewal_amount=renewal.total_amount if renewal else None,
                currency=renewal.currency if renewal else None,
                renews_at=renews_at if renewal else None,
            )
            events.append((reminder, row.user_id))
        await _change(session, rows, reminded_for_period_end=Subscription.current_period_end)
        await add_events(session, events, occurred_at=now)

    due = select(
        *CLAIMED,
        Subscription.auto_renew,
        Subscription.payment_method_id,
        Subscription.renewal_months,
        Subscription.renewal_retry_at,
    ).where(
        Subscription.status == SubscriptionStatus.ACTIVE,
        Subscription.current_period_end > now,
        Subscription.current_period_end <= now + remind_before,
        # The predicate of ix_subscriptions_to_remind, word for word, so the planner uses it:
        # reminded rows leave that index, and a claim never walks past them.
        Subscription.reminded_for_period_end.is_distinct_from(Subscription.current_period_end),
    )
    reminded = await for_each_claimed_batch(
        sessions, due.order_by(Subscription.current_period_end), remind, batch_size=BATCH_SIZE
    )
    return {"reminded": reminded.handled, "failed": reminded.failed}


async def expire_subscriptions(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, grace_period: timedelta
) -> dict[str, int]:
    """``active`` → ``grace`` when the period ends (notify); ``grace`` → ``expired`` when the
    grace period ends too (revoke the role)."""

    async def start_grace(session: AsyncSession, rows: Sequence[Row[Any]]) -> None:
        await _change(session, rows, status=SubscriptionStatus.GRACE)
        expired = [
            (
                SubscriptionExpired(
                    subscription_id=row.id,
                    tariff_id=row.tariff_id,
                    role=row.role,
                    current_period_end=row.current_period_end,
                    access_until=access_until(row.current_period_end, grace_period),
                ),
                row.user_id,
            )
            for row in rows
        ]
        await add_events(session, expired, occurred_at=now)

    async def expire(session: AsyncSession, rows: Sequence[Row[Any]]) -> None:
        await _change(session, rows, status=SubscriptionStatus.EXPIRED)
        revoked = [(RoleRevoke(role=row.role, subscription_id=row.id), row.user_id) for row in rows]
        await add_events(session, revoked, occurred_at=now)

    ended = select(*CLAIMED).where(
        Subscription.status == SubscriptionStatus.ACTIVE, Subscription.current_period_end <= now
    )
    over = select(*CLAIMED).where(
        Subscription.status == SubscriptionStatus.GRACE,
        Subscription.current_period_end <= now - grace_period,
    )
    by_end = Subscription.current_period_end
    to_grace = await for_each_claimed_batch(
        sessions, ended.order_by(by_end), start_grace, batch_size=BATCH_SIZE
    )
    to_expired = await for_each_claimed_batch(
        sessions, over.order_by(by_end), expire, batch_size=BATCH_SIZE
    )
    return {
        "grace": to_grace.handled,
        "expired": to_expired.handled,
        "failed": to_grace.failed + to_expired.failed,
    }
