"""API shape of an audit-log entry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from billing.schemas import ResponseModel


class AuditEntryOut(ResponseModel):
    """Who changed what: ``before`` is null for a creation, ``after`` for a removal."""

    id: uuid.UUID
    actor: str
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: datetime
