"""Admin API: the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billing.audit.schemas import AuditEntryOut
from billing.audit.service import list_entries
from billing.auth import AdminPrincipal
from billing.dependencies import SessionDep
from billing.schemas import Page

admin_router = APIRouter(tags=["admin: audit log"])


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
    entries = await list_entries(
        session, page, entity_type=entity_type, entity_id=entity_id, actor=actor
    )
    return [AuditEntryOut.model_validate(entry) for entry in entries]
