"""API shapes of pricing: quotes, duration and personal discounts, promo codes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BeforeValidator, Field, field_validator, model_validator

from billing.pricing.codes import is_valid_code, normalize_code
from billing.pricing.rules import DiscountSource
from billing.schemas import ApiModel, Currency, MinorUnits, Moment, Percent, ResponseModel

MAX_CODES_AT_ONCE = 1000
# promo_codes.max_redemptions is an int4; a billion redemptions is "unlimited" in practice.
MAX_REDEMPTIONS = 1_000_000_000
StrictCount = Annotated[int, Field(strict=True, ge=1)]


def _blank_is_absent(value: object) -> object:
    # A front end's empty promo-code field means "no code", not "a code that is empty".
    return None if isinstance(value, str) and not value.strip() else value


#: A promo code a viewer types in (quotes, invoices): blank or whitespace-only = no code.
PromoCodeInput = Annotated[
    Annotated[str, Field(max_length=64)] | None,
    BeforeValidator(_blank_is_absent),
    Field(description="A promo code; blank or whitespace-only means no code."),
]


# Quotes ----------------------------------------------------------------------------------


class QuoteRequest(ApiModel):
    tariff_id: UUID
    # The upper bound is BILLING_MAX_MONTHS, checked by the service.
    months: StrictCount
    promo_code: PromoCodeInput = None


class DiscountOut(ResponseModel):
    source: DiscountSource
    percent: Percent | None
    amount: int


class QuoteOut(ResponseModel):
    tariff_id: UUID
    months: int
    currency: str
    base_amount: int
    discount: DiscountOut
    total_amount: int
    considered: list[DiscountOut]
    promo_code: str | None


# Duration and personal discounts -----------------------------------------------------------


class DurationDiscountIn(ApiModel):
    percent: Percent


class DurationDiscountOut(ResponseModel):
    months: int
    percent: Percent


class UserDiscountIn(ApiModel):
    percent: Percent
    valid_until: Moment | None = None
    reason: Annotated[str, Field(max_length=500)] = ""


class UserDiscountOut(ResponseModel):
    user_id: UUID
    percent: Percent
    valid_until: datetime | None
    reason: str


# Promo codes -----------------------------------------------------------------------------


class PromoCodeIn(ApiModel):
    """One code (``code`` given or generated) or ``count`` generated codes with these terms."""

    code: Annotated[str | None, Field(max_length=64)] = None
    percent: Percent | None = None
    amount: MinorUnits | None = None
    currency: Currency | None = None
    valid_from: Moment | None = None
    valid_until: Moment | None = None
    max_redemptions: Annotated[int | None, Field(strict=True, ge=1, le=MAX_REDEMPTIONS)] = None
    tariff_ids: Annotated[list[UUID] | None, Field(max_length=100)] = None
    once_per_user: Annotated[bool, Field(strict=True)] = True
    count: Annotated[int | None, Field(strict=True, ge=1, le=MAX_CODES_AT_ONCE)] = None

    @field_validator("code")
    @classmethod
    def _code_is_valid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_valid_code(value):
            raise ValueError("3..32 characters of A-Z, 0-9, '-' and '_'")
        return normalize_code(value)

    @model_validator(mode="after")
    def _terms_are_consistent(self) -> PromoCodeIn:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent and amount")
        # A code that takes nothing off is a mistake, not a promotion.
        if self.percent == 0 or self.amount == 0:
            raise ValueError("the discount must be more than zero")
        if self.currency is not None and self.amount is None:
            raise ValueError("currency goes with amount only")
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        if self.code is not None and self.count is not None and self.count > 1:
            raise ValueError("a given code is one code: leave out count or code")
        return self


class PromoCodeOut(ResponseModel):
    id: UUID
    code: str
    percent: Percent | None
    amount: int | None
    currency: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_redemptions: int | None
    redemptions_count: int
    once_per_user: bool
    tariff_ids: list[UUID]
    is_active: bool
    created_at: datetime


# What a code keeps for life: the discount already quoted to viewers must not change under them.
FIXED_TERMS = ("code", "percent", "amount", "currency", "tariff_ids", "once_per_user", "count")


class PromoCodeChange(ApiModel):
    """``PATCH /promo-codes/{code}``: only the fields given change; ``null`` clears the
    window's end (or start) or the limit."""

    valid_from: Moment | None = None
    valid_until: Moment | None = None
    max_redemptions: Annotated[int | None, Field(strict=True, ge=1, le=MAX_REDEMPTIONS)] = None
    is_active: Annotated[bool | None, Field(strict=True)] = None

    @model_validator(mode="before")
    @classmethod
    def _terms_are_fixed(cls, data: object) -> object:
        if isinstance(data, dict) and (fixed := [name for name in FIXED_TERMS if name in data]):
            raise ValueError(
                f"{', '.join(fixed)}: fixed once the code is created (create a new code instead)"
            )
        return data

    @model_validator(mode="after")
    def _window_is_ordered(self) -> PromoCodeChange:
        if "is_active" in self.model_fields_set and self.is_active is None:
            raise ValueError("is_active: true or false")
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("valid_from must be before valid_until")
        return self


class RedemptionOut(ResponseModel):
    """One use of a code: reserved when its invoice was issued, redeemed when it was paid,
    released when the invoice expired or was canceled."""

    user_id: UUID
    invoice_id: UUID
    status: str
    reserved_at: datetime
    paid_at: datetime | None
    # What the code took off the invoice: 0 when another discount was larger and won.
    discount_amount: int
    currency: str
