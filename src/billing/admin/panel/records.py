"""Panel views of what happened: the audit log (read-only) and, for the ``admin`` role only,
the outbox of events for the Notification and Auth services (retry a parked one)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqladmin import action
from sqladmin.filters import AllUniqueStringValuesFilter, StaticValuesFilter
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from billing.admin.panel.base import BillingView, notify
from billing.admin.panel.locale import Label, clipped, dotted, gettext, short_id
from billing.models import AuditEntry, OutboxEvent, OutboxStatus
from billing.outbox.service import retry_event


def _json(value: Any) -> str:
    if value is None:
        return "—"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


CHANGED = "changed"


def changed_fields(entry: AuditEntry) -> str:
    """What an audit entry changed, by field name (the values are on its page)."""
    before, after = entry.before or {}, entry.after or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return "—"
    names = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    return ", ".join(names) or "—"


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
        CHANGED,
    ]
    column_details_list = [  # noqa: RUF012
        AuditEntry.created_at,
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.entity_type,
        AuditEntry.entity_id,
        AuditEntry.before,
        AuditEntry.after,
        AuditEntry.id,
    ]
    column_export_list = column_details_list
    export_formatters = {  # noqa: RUF012
        "before": lambda row: None if row.before is None else _json(row.before),
        "after": lambda row: None if row.after is None else _json(row.after),
    }
    column_labels = {  # noqa: RUF012
        AuditEntry.id: Label("Id"),
        AuditEntry.created_at: Label("When"),
        AuditEntry.actor: Label("Who"),
        AuditEntry.action: Label("Action"),
        AuditEntry.entity_type: Label("What"),
        AuditEntry.entity_id: Label("Which"),
        AuditEntry.before: Label("Before"),
        AuditEntry.after: Label("After"),
        CHANGED: Label("Changed"),
    }
    column_formatters = {  # noqa: RUF012
        AuditEntry.actor: lambda row, _: clipped(row.actor),
        AuditEntry.action: lambda row, _: gettext(row.action),
        AuditEntry.entity_type: lambda row, _: gettext(row.entity_type),
        AuditEntry.entity_id: lambda row, _: (
            clipped(row.entity_id, 12) if len(row.entity_id) != 36 else short_id(row.entity_id)
        ),
    }
    column_formatters_detail = {  # noqa: RUF012
        AuditEntry.action: lambda row, _: gettext(row.action),
        AuditEntry.entity_type: lambda row, _: gettext(row.entity_type),
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

    async def get_list_value(
        self, obj: Any, prop: str, request: Request | None = None
    ) -> tuple[Any, Any]:
        if prop == CHANGED:  # no column: the fields changed (their values: the entry's page)
            changed = changed_fields(obj)
            return changed, changed
        return await super().get_list_value(obj, prop, request)


class OutboxEventAdmin(BillingView, model=OutboxEvent):
    """Events for the Notification and Auth services; a parked (``failed``) one can be sent
    again once its cause is fixed."""

    name = "Outbox event"
    name_plural = "Outbox"
    icon = "fa-solid fa-paper-plane"
    summary = "events for the Notification and Auth services; retry parked ones"
    column_list = [  # noqa: RUF012
        OutboxEvent.seq,
        OutboxEvent.occurred_at,
        OutboxEvent.type,
        OutboxEvent.status,
        OutboxEvent.attempts,
        OutboxEvent.next_attempt_at,
        OutboxEvent.last_error,
    ]
    column_details_list = [  # noqa: RUF012
        OutboxEvent.seq,
        OutboxEvent.type,
        OutboxEvent.status,
        OutboxEvent.user_id,
        OutboxEvent.occurred_at,
        OutboxEvent.attempts,
        OutboxEvent.next_attempt_at,
        OutboxEvent.delivered_at,
        OutboxEvent.last_error,
        OutboxEvent.payload,
        OutboxEvent.id,
    ]
    column_labels = {  # noqa: RUF012
        OutboxEvent.id: Label("Event id"),
        OutboxEvent.seq: Label("No."),
        OutboxEvent.type: Label("Type"),
        OutboxEvent.user_id: Label("User"),
        OutboxEvent.payload: Label("Contents"),
        OutboxEvent.status: Label("Status"),
        OutboxEvent.attempts: Label("Attempts"),
        OutboxEvent.next_attempt_at: Label("Next attempt"),
        OutboxEvent.last_error: Label("Last error"),
        OutboxEvent.occurred_at: Label("Occurred"),
        OutboxEvent.delivered_at: Label("Delivered"),
    }
    column_formatters = {  # noqa: RUF012
        OutboxEvent.status: lambda row, _: gettext(row.status),
        OutboxEvent.type: lambda row, _: dotted(row.type),
        OutboxEvent.last_error: lambda row, _: clipped(row.last_error, 40),
    }
    column_formatters_detail = {  # noqa: RUF012
        OutboxEvent.status: lambda row, _: gettext(row.status),
        OutboxEvent.payload: lambda row, _: _json(row.payload),
    }
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
        label=Label("Retry delivery"),
        confirmation_message=Label("Deliver the selected events again now?"),
    )
    async def retry(self, request: Request) -> Response:
        async def retry_now(session: AsyncSession, pk: str) -> None:
            await retry_event(session, uuid.UUID(pk), actor=self.actor(request), now=self.now())

        retried = await self.for_each_selected(request, retry_now, not_an_id="not an event id")
        if retried:
            notify(
                request, gettext("Events due for delivery now: %(count)s") % {"count": len(retried)}
            )
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)
