"""API shapes of the catalogue: tariffs and their price history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StringConstraints, field_validator, model_validator

from billing.schemas import ApiModel, Currency, MinorUnits, ResponseModel

TariffCode = Annotated[str, Field(pattern=r"^[a-z0-9-]{1,64}$", examples=["premium"])]
"""A slug: lower-case letters, digits and ``-``."""

RoleName = Annotated[str, Field(pattern=r"^[a-z0-9_.:-]{1,100}$", examples=["premium"])]
"""The Auth-service role a tariff grants."""

TariffName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)]


class TariffOut(ResponseModel):
    """A tariff as viewers see it in the catalogue (only active, hence priced, ones)."""

    id: uuid.UUID
    code: str
    name: str
    description: str
    role: str
    monthly_price: int
    currency: str
    is_active: bool


class AdminTariffOut(ResponseModel):
    """A tariff as marketing sees it: possibly inactive and not yet priced."""

    id: uuid.UUID
    code: str
    name: str
    description: str
    role: str
    monthly_price: int | None
    currency: str
    is_active: bool
    role_exists: bool
    created_at: datetime
    updated_at: datetime


class TariffCreate(ApiModel):
    code: TariffCode
    name: TariffName
    description: Description = ""
    role: RoleName
    monthly_price: MinorUnits | None = None
    currency: Currency | None = Field(default=None, description="default: BILLING_CURRENCY")
    is_active: StrictBool = False


class TariffUpdate(ApiModel):
    """Only the fields sent change. ``{}`` is refused, and so is ``null``: nothing here can be
    unset (a description is cleared with ``""``; a price, once set, is only ever replaced)."""

    name: TariffName | None = None
    description: Description | None = None
    monthly_price: MinorUnits | None = None
    is_active: StrictBool | None = None

    # Validators run only on fields that were sent, so a missing field is fine, a null is not.
    @field_validator("name", "description", "monthly_price", "is_active")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> TariffUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


class TariffPriceOut(ResponseModel):
    """One price change: ``previous_price`` is null for a tariff's first price."""

    monthly_price: int
    previous_price: int | None
    currency: str
    changed_at: datetime
    changed_by: str
