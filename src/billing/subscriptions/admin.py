"""An administrator changes a user's tariff (and period end) by hand, lists users'
subscriptions, and turns a viewer's auto-renewal off.

Used by the admin API (``/admin/users/{user_id}/subscription``, ``/admin/subscriptions``)
and the admin panel. A change and its audit row (and role events) commit in the caller's
one transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.audit.service import record_change
from billing.catalog.errors import TARIFF_INACTIVE
from billing.catalog.service import get_tariff
from billing.errors import VALIDATION_ERROR
from billing.models import PaymentMethod, Subscription, SubscriptionStatus
from billing.outbox.events import RoleGrant, RoleRevoke
from billing.outbox.service import add_event
from billing.schemas import Page, within_moment_range
from billing.subscriptions.errors import SUBSCRIPTION_NOT_FOUND
from billing.subscriptions.service import LIVE, locked_subscription, set_auto_renew


def snapshot(subscription: Subscription) -> dict[str, Any]:
    """What the audit log keeps of a subscription (JSON-ready)."""
    return {
        "id": str(subscription.id),
        "tariff_id": str(subscription.tariff_id),
        "role": subscription.role,
        "status": subscription.status,
        "current_period_end": subscription.current_period_end.isoformat(),
    }


async def change_tariff(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tariff_id: uuid.UUID,
    current_period_end: datetime | None,
    actor: str,
    now: datetime,
) -> Subscription:
    """Put the user on ``tariff_id``; answers the user's subscription to it, now live.

    The user's live (active or grace) subscriptions end and the new tariff's one takes their
    place: with ``current_period_end`` when given (it must be in the future), otherwise with
    the latest period end among them, so access is never shortened by a tariff change. A
    user with nothing live needs ``current_period_end``. Roles follow in the outbox: a
    ``role.revoke`` for each ended subscription, then a ``role.grant`` for the new one.
    Asking for what the user already has changes and records nothing.

    404 ``tariff_not_found``; 409 ``tariff_inactive`` for a tariff not on sale (inactive,
    unpriced or its Auth role gone: a role that does not exist cannot be granted);
    422 ``validation_error`` for a period end that is missing, not in the future or not
    within 1970–2200 (the admin panel's form comes here unchecked by the API's schema).
    """
    if current_period_end is not None:
        try:
            within_moment_range(current_period_end)
        except ValueError as error:
            raise VALIDATION_ERROR(f"current_period_end: {error}") from None
        if current_period_end <= now:
            raise VALIDATION_ERROR("current_period_end: must be in the future")
    tariff = await get_tariff(session, tariff_id)
    if not tariff.is_active or tariff.monthly_price is None or not tariff.role_exists:
        raise TARIFF_INACTIVE(f"tariff {tariff.code} is not on sale")

    # Two admins changing one user's tariff at once queue up here, so the second one sees
    # the rows the first one committed (a row lock alone cannot cover rows not yet there).
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"subscriptions:{user_id}", 0)))
    )
    subscriptions = await _lock_all(session, user_id)
    live = [subscription for subscription in subscriptions if subscription.status in LIVE]
    if not live and current_period_end is None:
        raise VALIDATION_ERROR(
            "current_period_end: required, the user has no live subscription to take it from"
        )
    period_end = current_period_end or max(subscription.current_period_end for subscription in live)
    target = next((s for s in subscriptions if s.tariff_id == tariff.id), None)
    if target is None:
        target = await locked_subscription(session, user_id, tariff, now)
    ended = [subscription for subscription in live if subscription is not target]
    target_was_live = target.status in LIVE
    if not ended and target_was_live and target.current_period_end == period_end:
        return target

    before = [snapshot(subscription) for subscription in live]
    for subscription in ended:
        subscription.status = SubscriptionStatus.CANCELED
        # Its remaining time moved to the new tariff; buying the old tariff again later must
        # start from now, not from a period end the user no longer has.
        subscription.current_period_end = min(subscription.current_period_end, now)
        add_event(
            session,
            RoleRevoke(role=subscription.role, subscription_id=subscription.id),
            user_id=user_id,
            occurred_at=now,
        )
    # A period that was already reminded about keeps its reminder when it moves.
    reminded = any(subscription.reminded_for_period_end == period_end for subscription in live)
    target.reminded_for_period_end = period_end if reminded else None
    target.current_period_end = period_end
    target.status = SubscriptionStatus.ACTIVE if period_end > now else SubscriptionStatus.GRACE
    target.role = tariff.role
    # Granting is idempotent at the Auth service; sent on every change, as on every payment.
    add_event(
        session,
        RoleGrant(role=tariff.role, subscription_id=target.id, until=period_end),
        user_id=user_id,
        occurred_at=now,
    )
    await session.flush()
    await record_change(
        session,
        actor=actor,
        action="update" if live else "create",
        entity=target,
        entity_id=str(user_id),
        before={"subscriptions": before} if live else None,
        after={"subscriptions": [snapshot(target)]},
    )
    return target


async def _lock_all(session: AsyncSession, user_id: uuid.UUID) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.user_id == user_id)
        .order_by(Subscription.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def find_subscriptions(
    session: AsyncSession,
    page: Page,
    *,
    user_id: uuid.UUID | None,
    status: SubscriptionStatus | None,
    auto_renew: bool | None,
) -> list[tuple[Subscription, str | None]]:
    """Users' subscriptions newest first, each with its saved method's title (or None); the
    filters combine."""
    query = select(Subscription, PaymentMethod.title).outerjoin(
        PaymentMethod, PaymentMethod.id == Subscription.payment_method_id
    )
    if user_id is not None:
        query = query.where(Subscription.user_id == user_id)
    if status is not None:
        query = query.where(Subscription.status == status)
    if auto_renew is not None:
        query = query.where(Subscription.auto_renew.is_(auto_renew))
    # id breaks ties between subscriptions created in one transaction: pages never overlap.
    query = query.order_by(Subscription.created_at.desc(), Subscription.id.desc())
    rows = await session.execute(query.limit(page.limit).offset(page.offset))
    return [(subscription, title) for subscription, title in rows]


async def method_title(session: AsyncSession, subscription: Subscription) -> str | None:
    """The title of the subscription's saved method (``Bank card *4477``), or None."""
    if subscription.payment_method_id is None:
        return None
    title: str | None = await session.scalar(
        select(PaymentMethod.title).where(PaymentMethod.id == subscription.payment_method_id)
    )
    return title


def _renewal(subscription: Subscription) -> dict[str, Any]:
    method = subscription.payment_method_id
    return {
        "auto_renew": subscription.auto_renew,
        "payment_method_id": str(method) if method is not None else None,
    }


async def turn_off_renewal(
    session: AsyncSession, subscription_id: uuid.UUID, *, actor: str
) -> Subscription:
    """Turn a viewer's auto-renewal off for them, as their own ``cancel`` does: no more
    charges, access unchanged until ``access_until``; recorded in the audit log. A
    subscription whose renewal is already off is answered as it is, and recorded nowhere.

    404 ``not_found`` for an unknown subscription."""
    # Locked before it is read, so of two admins at once only one finds it on and records it.
    subscription = await session.scalar(
        select(Subscription)
        .where(Subscription.id == subscription_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if subscription is None:
        raise SUBSCRIPTION_NOT_FOUND("no such subscription")
    if not subscription.auto_renew:
        return subscription
    before = _renewal(subscription)
    await set_auto_renew(session, subscription.id, subscription.user_id, on=False)
    await record_change(
        session,
        actor=actor,
        action="cancel_renewal",
        entity=subscription,
        before=before,
        after=_renewal(subscription),
    )
    return subscription
