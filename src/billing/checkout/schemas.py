"""API shapes of invoices and payments (PRODUCT.md "Shapes")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, Field, UrlConstraints

from billing.models import InvoiceKind, InvoiceStatus, PaymentStatus
from billing.pricing.rules import DiscountSource
from billing.pricing.schemas import PromoCodeInput
from billing.schemas import ApiModel, Email, Percent


class InvoiceCreate(ApiModel):
    tariff_id: uuid.UUID
    months: int = Field(strict=True, ge=1, examples=[3])
    promo_code: PromoCodeInput = None


ReturnUrl = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)]


class PaymentCreate(ApiModel):
    return_url: ReturnUrl | None = None
    # Where the fiscal receipt goes, when the token carries no ``email`` claim.
    email: Email | None = None
    # Ask the provider to keep the method for auto-renewal (the viewer's consent).
    save_payment_method: bool = False


class DiscountOut(BaseModel):
    source: DiscountSource
    percent: Percent | None
    amount: int


class InvoiceOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    tariff_id: uuid.UUID
    months: int
    currency: str
    base_amount: int
    discount: DiscountOut
    total_amount: int
    considered: list[DiscountOut]
    promo_code: str | None
    status: InvoiceStatus
    expires_at: datetime
    created_at: datetime
    # A browser opens it without any header: it starts (or resumes) the payment and goes to
    # the provider's page; signed, and valid until the invoice expires.
    checkout_url: str
    kind: InvoiceKind


class PaymentOut(BaseModel):
    id: uuid.UUID
    invoice_id: uuid.UUID
    status: PaymentStatus
    amount: int
    currency: str
    provider: str
    confirmation_url: str | None
    created_at: datetime
    paid_at: datetime | None
    refundable_until: datetime | None  # paid_at + refund window, while a refund is possible
    refunded_at: datetime | None
