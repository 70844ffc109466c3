"""Subscription rules: extend on payment, take back on refund, who has access now."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import Subscription, SubscriptionStatus, Tariff
from billing.outbox.events import RoleGrant, RoleRevoke
from billing.outbox.service import add_event
from billing.payment_methods.errors import PAYMENT_METHOD_REQUIRED
from billing.payment_methods.service import usable_method
from billing.schemas import Page
from billing.subscriptions.errors import SUBSCRIPTION_NOT_FOUND
from billing.subscriptions.periods import extension, period_end_after_refund

LIVE = (SubscriptionStatus.ACTIVE, SubscriptionStatus.GRACE)


# Built once: constructing an upsert (its ``excluded`` columns above all) costs more CPU
# than SQLAlchemy's cached compilation of it, and this runs on every settlement and refund.
_INSERTED = insert(Subscription).values(
    id=bindparam("id"),
    user_id=bindparam("user_id"),
    tariff_id=bindparam("tariff_id"),
    role=bindparam("role"),
    status=SubscriptionStatus.EXPIRED,
    current_period_end=bindparam("now"),
)
_LOCK_OR_CREATE = (
    _INSERTED.on_conflict_do_update(
        index_elements=["user_id", "tariff_id"],
        set_={"tariff_id": _INSERTED.excluded.tariff_id},
    )
    .returning(Subscription)
    .execution_options(populate_existing=True)
)


async def locked_subscription(
    session: AsyncSession, user_id: uuid.UUID, tariff: Tariff, now: datetime
) -> Subscription:
    """The user's subscription to the tariff, created if missing, locked for this transaction.

    One statement: the upsert's no-op update on a conflict takes the existing row's lock and
    answers it, where an insert-or-nothing and a SELECT … FOR UPDATE were two round trips on
    every settlement."""
    parameters = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "tariff_id": tariff.id,
        "role": tariff.role,
        "now": now,
    }
    subscription = await session.scalar(_LOCK_OR_CREATE, parameters)
    assert subscription is not None
    return subscription


async def extend_subscription(
    session: AsyncSession, *, user_id: uuid.UUID, tariff: Tariff, months: int, now: datetime
) -> tuple[Subscription, datetime, datetime]:
    """Add ``months`` to the user's access to ``tariff``; returns the subscription and the
    slice bought (start, end), which the payment keeps so a refund can take it back."""
    subscription = await locked_subscription(session, user_id, tariff, now)
    start, end = extension(subscription.current_period_end, now, months)
    subscription.current_period_end = end
    subscription.renewal_retry_at = None  # a new period: the old one's retries are void
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.role = tariff.role
    # Granting is idempotent at the Auth service, so it is sent on every extension: a grant
    # lost earlier (or a role removed by hand) is repaired by the next payment.
    add_event(
        session,
        RoleGrant(role=tariff.role, subscription_id=subscription.id, until=end),
        user_id=user_id,
        occurred_at=now,
    )
    return subscription, start, end


async def take_back(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tariff: Tariff,
    slice_start: datetime,
    slice_end: datetime,
    now: datetime,
) -> Subscription:
    """Remove a refunded payment's slice; with nothing left, the subscription is canceled and
    the role revoked."""
    subscription = await locked_subscription(session, user_id, tariff, now)
    subscription.current_period_end = period_end_after_refund(
        subscription.current_period_end, slice_start, slice_end
    )
    if subscription.current_period_end <= now:
        subscription.status = SubscriptionStatus.CANCELED
        add_event(
            session,
            RoleRevoke(role=subscription.role, subscription_id=subscription.id),
            user_id=user_id,
            occurred_at=now,
        )
    return subscription


async def list_subscriptions(
    session: AsyncSession, user_id: uuid.UUID, page: Page
) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.created_at.desc(), Subscription.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return list(rows)


# Built once (entitlements are asked on every play): see _LOCK_OR_CREATE.
_ROLES_WITH_ACCESS = (
    select(Subscription.role)
    .where(
        Subscription.user_id == bindparam("user_id"),
        Subscription.status.in_(LIVE),
        Subscription.current_period_end > bindparam("access_from"),
    )
    .order_by(Subscription.role)
    .distinct()
)


async def roles_with_access(
    session: AsyncSession, user_id: uuid.UUID, now: datetime, grace_period: timedelta
) -> list[str]:
    """Roles the user may use now: a live subscription whose period, plus grace, has not
    ended (decided by time, so a late expiry job never extends access)."""
    parameters = {"user_id": user_id, "access_from": now - grace_period}
    return list(await session.scalars(_ROLES_WITH_ACCESS, parameters))


async def set_auto_renew(
    session: AsyncSession, subscription_id: uuid.UUID, user_id: uuid.UUID, *, on: bool
) -> Subscription:
    """The viewer turns renewal off (cancel at period end: access is unchanged until
    ``access_until``) or on again (resume: only with a saved method still usable)."""
    subscription = await session.scalar(
        select(Subscription)
        .where(Subscription.id == subscription_id, Subscription.user_id == user_id)
        .with_for_update()
    )
    if subscription is None:
        raise SUBSCRIPTION_NOT_FOUND()
    if on and await usable_method(session, subscription.payment_method_id, user_id) is None:
        raise PAYMENT_METHOD_REQUIRED()
    subscription.auto_renew = on
    return subscription
