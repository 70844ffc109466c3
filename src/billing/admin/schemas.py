"""API shapes of the admin API's own resources: the dashboard's figures."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import date

from pydantic import ConfigDict, Field

from billing.schemas import ResponseModel


class DayFigures(ResponseModel):
    """One UTC day: payments that succeeded and refunds made that day (minor units)."""

    date: dt.date
    payments: int
    gross: int
    refunds: int
    refunded: int
    net: int = Field(description="gross − refunded")


class ActiveSubscriptions(ResponseModel):
    tariff_id: uuid.UUID
    code: str
    count: int


class Renewals(ResponseModel):
    attempted: int
    succeeded: int


class StatsOut(ResponseModel):
    """The dashboard's figures; money in minor units of ``currency``."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    currency: str
    days: list[DayFigures]
    active_subscriptions: list[ActiveSubscriptions]
    new_subscriptions: int
    churned_subscriptions: int
    renewals: Renewals
    mrr: int = Field(
        description="Σ over active subscriptions of their last paid invoice's total ÷ its "
        "months, rounded half up"
    )
