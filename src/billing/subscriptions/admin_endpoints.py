"""Admin API of subscriptions: change a user's tariff (and period end) by hand."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from billing.auth import AdminPrincipal
from billing.catalog.errors import TARIFF_INACTIVE, TARIFF_NOT_FOUND
from billing.dependencies import ClockDep, SessionDep, SettingsDep
from billing.errors import problems
from billing.schemas import ApiModel, Moment
from billing.subscriptions import admin
from billing.subscriptions.endpoints import subscription_out
from billing.subscriptions.schemas import SubscriptionOut

admin_router = APIRouter(tags=["admin: subscriptions"])


class SubscriptionChange(ApiModel):
    tariff_id: uuid.UUID
    current_period_end: Moment | None = None


@admin_router.put(
    "/users/{user_id}/subscription", responses=problems(TARIFF_NOT_FOUND, TARIFF_INACTIVE)
)
async def change_user_tariff(
    user_id: uuid.UUID,
    body: SubscriptionChange,
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> SubscriptionOut:
    """Move the user's live subscription to another tariff, keeping its period end unless
    `current_period_end` is given; a user with nothing live gets a new subscription (then
    `current_period_end` is required). The old role is revoked and the new one granted
    through the outbox; the change is in the audit log. Answers the user's subscription
    to the new tariff."""
    async with session.begin():
        subscription = await admin.change_tariff(
            session,
            user_id=user_id,
            tariff_id=body.tariff_id,
            current_period_end=body.current_period_end,
            actor=principal.subject,
            now=clock.now(),
        )
        # Made before the commit: an answer that cannot be made must roll the change back,
        # not leave it committed behind a 500.
        return subscription_out(subscription, settings)
