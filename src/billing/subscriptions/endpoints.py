"""HTTP layer of subscriptions: the viewer's own, and entitlements for other services."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from billing.auth import ServicePrincipal, ViewerId
from billing.dependencies import ClockDep, SessionDep, SettingsDep
from billing.models import SubscriptionStatus
from billing.schemas import Page
from billing.subscriptions import service
from billing.subscriptions.periods import access_until
from billing.subscriptions.schemas import Entitlements, SubscriptionOut

router = APIRouter(tags=["subscriptions"])


@router.get("/subscriptions")
async def list_subscriptions(
    user_id: ViewerId, session: SessionDep, settings: SettingsDep, page: Annotated[Page, Depends()]
) -> list[SubscriptionOut]:
    """The viewer's subscriptions, newest first."""
    subscriptions = await service.list_subscriptions(session, user_id, page)
    return [
        SubscriptionOut(
            id=subscription.id,
            tariff_id=subscription.tariff_id,
            role=subscription.role,
            status=SubscriptionStatus(subscription.status),
            current_period_end=subscription.current_period_end,
            access_until=access_until(subscription.current_period_end, settings.grace_period),
        )
        for subscription in subscriptions
    ]


@router.get("/users/{user_id}/entitlements")
async def entitlements(
    user_id: uuid.UUID,
    _: ServicePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> Entitlements:
    """For other services (a token with the ``service`` role): the roles the user may use now."""
    roles = await service.roles_with_access(session, user_id, clock.now(), settings.grace_period)
    return Entitlements(user_id=user_id, roles=roles)
