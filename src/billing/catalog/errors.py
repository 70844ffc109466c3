"""The errors of the catalogue: tariffs."""

from __future__ import annotations

from billing.errors import ApiError

TARIFF_NOT_FOUND = ApiError(404, "tariff_not_found", "no tariff with this id")
TARIFF_INACTIVE = ApiError(409, "tariff_inactive", "the tariff is not on sale")
TARIFF_UNPRICED = ApiError(409, "tariff_unpriced", "a tariff needs a monthly price to be active")
TARIFF_CODE_EXISTS = ApiError(409, "tariff_code_exists", "a tariff with this code already exists")
TARIFF_ROLE_EXISTS = ApiError(409, "tariff_role_exists", "a tariff for this role already exists")
