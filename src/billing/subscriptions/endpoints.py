"""HTTP layer of subscriptions: the viewer's own, and entitlements for other services."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from billing.auth import ServicePrincipal, ViewerId
from billing.config import Settings
from billing.dependencies import ClockDep, ReadSessionDep, SessionDep, SettingsDep
from billing.errors import problems
from billing.models import Subscription, SubscriptionStatus
from billing.payment_methods.errors import PAYMENT_METHOD_REQUIRED
from billing.schemas import Page
from billing.subscriptions import service
from billing.subscriptions.errors import SUBSCRIPTION_NOT_FOUND
from billing.subscriptions.periods import access_until
from billing.subscriptions.renewal_rules import next_charge_at
from billing.subscriptions.schemas import Entitlements, SubscriptionOut

router = APIRouter(tags=["subscriptions"])


def subscription_out(subscription: Subscription, settings: Settings) -> SubscriptionOut:
    renews = (
        subscription.auto_renew
        and subscription.payment_method_id is not None
        and subscription.status in service.LIVE
    )
    return SubscriptionOut(
        id=subscription.id,
        tariff_id=subscription.tariff_id,
        role=subscription.role,
        status=SubscriptionStatus(subscription.status),
        current_period_end=subscription.current_period_end,
        access_until=access_until(subscription.current_period_end, settings.grace_period),
        auto_renew=subscription.auto_renew,
        payment_method_id=subscription.payment_method_id,
        renews_at=next_charge_at(
            subscription.current_period_end, subscription.renewal_retry_at, settings.renew_before
        )
        if renews
        else None,
        renewal_months=subscription.renewal_months,
    )


@router.get("/subscriptions")
async def list_subscriptions(
    user_id: ViewerId,
    session: ReadSessionDep,
    settings: SettingsDep,
    page: Annotated[Page, Depends()],
) -> list[SubscriptionOut]:
    """The viewer's subscriptions, newest first."""
    subscriptions = await service.list_subscriptions(session, user_id, page)
    return [subscription_out(subscription, settings) for subscription in subscriptions]


@router.post("/subscriptions/{subscription_id}/cancel", responses=problems(SUBSCRIPTION_NOT_FOUND))
async def cancel_renewal(
    subscription_id: uuid.UUID, user_id: ViewerId, session: SessionDep, settings: SettingsDep
) -> SubscriptionOut:
    """Turn auto-renewal off: no more charges; access is unchanged until ``access_until``."""
    async with session.begin():
        subscription = await service.set_auto_renew(session, subscription_id, user_id, on=False)
    return subscription_out(subscription, settings)


@router.post(
    "/subscriptions/{subscription_id}/resume",
    responses=problems(SUBSCRIPTION_NOT_FOUND, PAYMENT_METHOD_REQUIRED),
)
async def resume_renewal(
    subscription_id: uuid.UUID, user_id: ViewerId, session: SessionDep, settings: SettingsDep
) -> SubscriptionOut:
    """Turn auto-renewal on again; 409 ``payment_method_required`` without a usable method."""
    async with session.begin():
        subscription = await service.set_auto_renew(session, subscription_id, user_id, on=True)
    return subscription_out(subscription, settings)


@router.get("/users/{user_id}/entitlements")
async def entitlements(
    user_id: uuid.UUID,
    _: ServicePrincipal,
    session: ReadSessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Entitlements:
    """For other services (a token with the ``service`` role): the roles the user may use now."""
    roles = await service.roles_with_access(session, user_id, clock.now(), settings.grace_period)
    return Entitlements(user_id=user_id, roles=roles)
