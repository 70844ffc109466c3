"""API types shared by every domain: money, percent, paging."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

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
