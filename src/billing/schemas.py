"""API types shared by every domain: money, percent, times, paging."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from billing.money import MAX_AMOUNT

MinorUnits = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT, examples=[49900])]
"""Money in minor units (kopecks): a JSON integer; strings and floats are refused."""


def _percent_as_number(value: Decimal) -> int | float:
    # JSON has no decimal type; a percent with at most two places is exact as a JSON number.
    return int(value) if value == value.to_integral_value() else float(value)


Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, max_digits=5, decimal_places=2, examples=[10]),
    PlainSerializer(_percent_as_number, return_type=int | float, when_used="json"),
]
"""A percent 0–100 with at most two decimal places, shown as a JSON number."""

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["RUB"])]

EARLIEST_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_MOMENTS = datetime(2200, 1, 1, tzinfo=UTC)  # the first instant refused
MOMENT_RANGE = "between 1970-01-01 and 2200-01-01 (UTC)"


def within_moment_range(value: datetime) -> datetime:
    """An accepted time: its UTC instant in [1970-01-01, 2200-01-01).

    Outside, a time poisons later reads: PostgreSQL stores year 10000 (what
    ``9999-12-31T23:59:59-14:00`` is in UTC) but Python cannot read it back, and period
    arithmetic near year 9999 overflows. Aware datetimes compare as UTC instants without
    converting, so this check itself cannot overflow."""
    if not EARLIEST_MOMENT <= value < END_OF_MOMENTS:
        raise ValueError(f"must be {MOMENT_RANGE}")
    return value


Moment = Annotated[
    AwareDatetime,
    AfterValidator(within_moment_range),
    Field(description=f"ISO 8601 with an offset, {MOMENT_RANGE}"),
]
"""Every time the API accepts: with an offset, within 1970–2200 as a UTC instant."""


class ApiModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page:
    """``?limit=&offset=`` of every list (newest first)."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> None:
        self.limit = limit
        self.offset = offset


# An e-mail address, as far as billing needs to tell one (receipts go there); the provider
# checks deliverability.
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"
Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]
