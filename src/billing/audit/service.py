"""Writing and reading the audit log. Every domain writes its changes here; the audit log
imports no domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import AuditEntry
from billing.schemas import Page


async def record_change(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    entity_id: str | None = None,
) -> None:
    """One audit-log row, in the same transaction as the change it describes."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity_type=entity.__tablename__,
            entity_id=entity_id or str(getattr(entity, "id", "")),
            before=before,
            after=after,
        )
    )


async def list_entries(
    session: AsyncSession,
    page: Page,
    *,
    entity_type: str | None,
    entity_id: str | None,
    actor: str | None,
) -> Sequence[AuditEntry]:
    """Newest first; the filters combine."""
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
