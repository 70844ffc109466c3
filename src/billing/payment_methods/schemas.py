"""API shapes of saved payment methods (PRODUCT.md "Shapes")."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class PaymentMethodOut(BaseModel):
    id: uuid.UUID
    provider: str
    title: str  # "Bank card *4477"
    card_last4: str | None
    expires: str | None  # "2027-03"
    created_at: datetime
