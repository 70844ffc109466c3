"""Admin API: the audit log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.admin.schemas import AuditEntryOut
from billing.auth import AdminPrincipal
from billing.dependencies import SessionDep
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
