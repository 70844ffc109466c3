"""API shapes of the admin API's view of the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from billing.models import OutboxStatus
from billing.schemas import ResponseModel


class OutboxEventOut(ResponseModel):
    """An event for the Notification or Auth service and how its delivery goes: ``attempts``
    made so far, ``last_error`` of the latest failed one, ``next_attempt_at`` while
    ``pending``; ``failed`` means parked (retry it once the cause is fixed)."""

    id: uuid.UUID
    seq: int
    type: str
    user_id: uuid.UUID | None
    payload: dict[str, Any]
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    occurred_at: datetime
    delivered_at: datetime | None
