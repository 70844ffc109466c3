"""API shapes of subscriptions and entitlements."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from billing.models import SubscriptionStatus


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    tariff_id: uuid.UUID
    role: str
    status: SubscriptionStatus
    current_period_end: datetime
    access_until: datetime  # current_period_end + grace period
    auto_renew: bool
    payment_method_id: uuid.UUID | None
    renews_at: datetime | None  # when the next charge without the viewer is planned
    renewal_months: int | None


class Entitlements(BaseModel):
    user_id: uuid.UUID
    roles: list[str]


class AdminSubscriptionOut(SubscriptionOut):
    """A subscription as the admin API shows it: whose it is, and the saved method's title."""

    user_id: uuid.UUID
    payment_method_title: str | None  # "Bank card *4477"; null without a saved method
