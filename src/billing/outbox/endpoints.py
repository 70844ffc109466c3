"""Admin API of the outbox: see what was not delivered, and send it again (the ``admin``
role only, as in the panel: payloads carry user ids and amounts)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from billing.auth import Principal, require_roles
from billing.dependencies import ClockDep, SessionDep
from billing.errors import problems
from billing.models import AdminRole, OutboxStatus
from billing.outbox import service
from billing.outbox.errors import OUTBOX_EVENT_DELIVERED, OUTBOX_EVENT_NOT_FOUND
from billing.outbox.schemas import OutboxEventOut
from billing.schemas import Page

admin_router = APIRouter(tags=["admin: outbox"])
# Not ``AdminPrincipal`` (admin or marketing): the panel's outbox is admin-only too.
AdminOnly = Annotated[Principal, require_roles(AdminRole.ADMIN)]


@admin_router.get("/outbox")
async def list_outbox_events(
    principal: AdminOnly,
    session: SessionDep,
    page: Annotated[Page, Depends()],
    status: Annotated[
        OutboxStatus | None, Query(description="`failed` lists the parked events")
    ] = None,
    user_id: uuid.UUID | None = None,
) -> list[OutboxEventOut]:
    """Events for the Notification and Auth services, newest first; the filters combine."""
    events = await service.list_events(
        session, status=status, user_id=user_id, limit=page.limit, offset=page.offset
    )
    return [OutboxEventOut.model_validate(event) for event in events]


@admin_router.post(
    "/outbox/{event_id}/retry", responses=problems(OUTBOX_EVENT_NOT_FOUND, OUTBOX_EVENT_DELIVERED)
)
async def retry_outbox_event(
    event_id: uuid.UUID, principal: AdminOnly, session: SessionDep, clock: ClockDep
) -> OutboxEventOut:
    """Deliver a parked event again: it is `pending` and due now, its attempts kept (one more
    failure parks it again). Recorded in the audit log. A delivered event: 409
    `outbox_event_delivered`."""
    async with session.begin():
        event = await service.retry_event(
            session, event_id, actor=principal.subject, now=clock.now()
        )
    return OutboxEventOut.model_validate(event)
