"""Panel views of what happened: the audit log (read-only) and, for the ``admin`` role only,
the outbox of events for the Notification and Auth services (retry a parked one)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqladmin import action
from sqladmin.filters import AllUniqueStringValuesFilter, StaticValuesFilter
from sqladmin.flash import FlashLevel
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from billing.admin.panel.base import BillingView, notify
from billing.errors import Problem
from billing.models import AuditEntry, OutboxEvent, OutboxStatus
from billing.outbox.service import retry_event

LIST_JSON_CHARS = 80


def _json(value: Any, limit: int | None = None) -> str:
    if value is None:
        return "—"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


class AuditEntryAdmin(BillingView, model=AuditEntry):
    """Who changed what, before and after, newest first; the panel's changes name the admin
    account, the API's the token's subject."""

    name = "Audit entry"
    name_plural = "Audit log"
    icon = "fa-solid fa-clipboard-list"
    summary = "who changed what, before and after"
    can_export = True
    column_list = [  # noqa: RUF012
        AuditEntry.created_at,
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.entity_type,
        AuditEntry.entity_id,
        AuditEntry.before,
        AuditEntry.after,
    ]
    column_labels = {AuditEntry.created_at: "when", AuditEntry.entity_type: "what"}  # noqa: RUF012
    column_formatters = {  # noqa: RUF012
        AuditEntry.before: lambda row, _: _json(row.before, LIST_JSON_CHARS),
        AuditEntry.after: lambda row, _: _json(row.after, LIST_JSON_CHARS),
    }
    column_formatters_detail = {  # noqa: RUF012
        AuditEntry.before: lambda row, _: _json(row.before),
        AuditEntry.after: lambda row, _: _json(row.after),
    }
    column_sortable_list = [AuditEntry.created_at]  # noqa: RUF012
    column_default_sort = [("created_at", True), ("id", True)]  # noqa: RUF012
    column_searchable_list = [AuditEntry.entity_id, AuditEntry.actor]  # noqa: RUF012
    column_filters = [  # noqa: RUF012
        AllUniqueStringValuesFilter(AuditEntry.entity_type, title="What"),
        AllUniqueStringValuesFilter(AuditEntry.action, title="Action"),
        AllUniqueStringValuesFilter(AuditEntry.actor, title="Who"),
    ]


class OutboxEventAdmin(BillingView, model=OutboxEvent):
    """Events for the Notification and Auth services; a parked (``failed``) one can be sent
    again once its cause is fixed."""

    name = "Outbox event"
    name_plural = "Outbox"
    icon = "fa-solid fa-paper-plane"
    summary = "events for the Notification and Auth services; retry parked ones"
    column_list = [  # noqa: RUF012
        OutboxEvent.seq,
        OutboxEvent.type,
        OutboxEvent.user_id,
        OutboxEvent.status,
        OutboxEvent.attempts,
        OutboxEvent.next_attempt_at,
        OutboxEvent.last_error,
        OutboxEvent.occurred_at,
        OutboxEvent.delivered_at,
    ]
    column_formatters_detail = {OutboxEvent.payload: lambda row, _: _json(row.payload)}  # noqa: RUF012
    column_sortable_list = [OutboxEvent.seq, OutboxEvent.next_attempt_at]  # noqa: RUF012
    column_default_sort = [("seq", True)]  # noqa: RUF012
    column_searchable_list = [OutboxEvent.user_id, OutboxEvent.id]  # noqa: RUF012
    column_filters = [  # noqa: RUF012
        StaticValuesFilter(
            OutboxEvent.status, [(s.value, s.value) for s in OutboxStatus], title="Status"
        ),
        AllUniqueStringValuesFilter(OutboxEvent.type, title="Type"),
    ]

    @action(
        name="retry",
        label="Retry delivery",
        confirmation_message="Deliver the selected events again now?",
    )
    async def retry(self, request: Request) -> Response:
        retried, refused = 0, []
        for pk in filter(None, request.query_params.get("pks", "").split(",")):
            try:
                async with self.transaction() as session:
                    await retry_event(
                        session, uuid.UUID(pk), actor=self.actor(request), now=self.now()
                    )
                retried += 1
            except ValueError:
                refused.append(f"{pk}: not an event id")
            except Problem as problem:
                refused.append(f"{pk}: {problem.detail}")
        if retried:
            notify(request, f"{retried} event(s) due for delivery now")
        if refused:
            notify(request, "; ".join(refused), FlashLevel.error)
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)
