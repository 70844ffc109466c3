"""Admin API: the audit log and the dashboard's figures."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.admin.schemas import AuditEntryOut, StatsOut
from billing.admin.stats import dashboard_stats, stats_period
from billing.auth import AdminPrincipal
from billing.dependencies import ClockDep, SessionDep, SettingsDep
from billing.errors import VALIDATION_ERROR, problems
from billing.models import AuditEntry
from billing.schemas import Page

admin_router = APIRouter(tags=["admin: audit log"])


async def _audit_entries(
    session: AsyncSession,
    page: Page,
    *,
    entity_type: str | None,
    entity_id: str | None,
    actor: str | None,
) -> Sequence[AuditEntry]:
    query = select(AuditEntry)
    if entity_type is not None:
        query = query.where(AuditEntry.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    # id only breaks ties between entries of one transaction, so pages never overlap.
    query = query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    result = await session.scalars(query.limit(page.limit).offset(page.offset))
    return result.all()


@admin_router.get("/audit-log")
async def audit_log(
    principal: AdminPrincipal,
    session: SessionDep,
    page: Annotated[Page, Depends()],
    entity_type: Annotated[
        str | None, Query(max_length=64, description="e.g. tariffs, promo_codes")
    ] = None,
    entity_id: Annotated[str | None, Query(max_length=200)] = None,
    actor: Annotated[str | None, Query(max_length=200, description="a token's subject")] = None,
) -> list[AuditEntryOut]:
    """Who changed what, newest first; the filters combine."""
    entries = await _audit_entries(
        session, page, entity_type=entity_type, entity_id=entity_id, actor=actor
    )
    return [AuditEntryOut.model_validate(entry) for entry in entries]


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
