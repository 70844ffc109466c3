"""Admin API of subscriptions: users' subscriptions, change a user's tariff (and period
end) by hand, turn a viewer's auto-renewal off."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from billing.auth import AdminPrincipal
from billing.catalog.errors import TARIFF_INACTIVE, TARIFF_NOT_FOUND
from billing.config import Settings
from billing.dependencies import ClockDep, SessionDep, SettingsDep
from billing.errors import problems
from billing.models import Subscription, SubscriptionStatus
from billing.schemas import ApiModel, Moment, Page
from billing.subscriptions import admin
from billing.subscriptions.endpoints import subscription_out
from billing.subscriptions.errors import SUBSCRIPTION_NOT_FOUND
from billing.subscriptions.schemas import AdminSubscriptionOut, SubscriptionOut

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


def admin_subscription_out(
    subscription: Subscription, method_title: str | None, settings: Settings
) -> AdminSubscriptionOut:
    return AdminSubscriptionOut(
        **subscription_out(subscription, settings).model_dump(),
        user_id=subscription.user_id,
        payment_method_title=method_title,
    )


@admin_router.get("/subscriptions")
async def admin_list_subscriptions(
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    page: Annotated[Page, Depends()],
    user_id: uuid.UUID | None = None,
    status: SubscriptionStatus | None = None,
    auto_renew: bool | None = None,
) -> list[AdminSubscriptionOut]:
    """Users' subscriptions, newest first, with the viewer's fields (`auto_renew`,
    `renews_at`, …) plus `user_id` and the saved method's title; the filters combine."""
    found = await admin.find_subscriptions(
        session, page, user_id=user_id, status=status, auto_renew=auto_renew
    )
    return [admin_subscription_out(row, title, settings) for row, title in found]


@admin_router.post(
    "/subscriptions/{subscription_id}/cancel-renewal", responses=problems(SUBSCRIPTION_NOT_FOUND)
)
async def admin_cancel_renewal(
    subscription_id: uuid.UUID,
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> AdminSubscriptionOut:
    """Turn the viewer's auto-renewal off for them, as their own `cancel` does: no more
    charges; access is unchanged until `access_until`. Recorded in the audit log (before and
    after: `auto_renew`, `payment_method_id`); a subscription whose renewal is already off is
    answered as it is and recorded again nowhere."""
    async with session.begin():
        subscription = await admin.turn_off_renewal(
            session, subscription_id, actor=principal.subject
        )
        title = await admin.method_title(session, subscription)
        return admin_subscription_out(subscription, title, settings)
