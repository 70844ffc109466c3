"""The errors of the outbox's admin API."""

from __future__ import annotations

from billing.errors import ApiError

OUTBOX_EVENT_NOT_FOUND = ApiError(404, "not_found", "no outbox event with this id")
OUTBOX_EVENT_DELIVERED = ApiError(409, "outbox_event_delivered", "the event was delivered already")
