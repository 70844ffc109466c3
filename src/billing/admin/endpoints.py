"""Admin API: the dashboard's figures."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query

from billing.admin.schemas import StatsOut
from billing.admin.stats import dashboard_stats, stats_period
from billing.auth import AdminPrincipal
from billing.dependencies import ClockDep, SessionDep, SettingsDep
from billing.errors import VALIDATION_ERROR, problems

admin_router = APIRouter(tags=["admin: stats"])


@admin_router.get("/stats", tags=["admin: stats"], responses=problems(VALIDATION_ERROR))
async def stats(
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    from_: Annotated[
        str | None, Query(alias="from", max_length=32, description="YYYY-MM-DD (UTC), inclusive")
    ] = None,
    to: Annotated[
        str | None, Query(max_length=32, description="YYYY-MM-DD (UTC), inclusive; default today")
    ] = None,
) -> StatsOut:
    """The dashboard's figures per UTC day of the period (default: the last 30 days, at
    most 366), and now: active subscriptions per tariff, MRR."""
    now = clock.now()
    first, last = stats_period(from_, to, now.astimezone(UTC).date())
    return await dashboard_stats(session, first, last, currency=settings.currency, now=now)
