"""The errors of saved payment methods."""

from __future__ import annotations

from billing.errors import ApiError

PAYMENT_METHOD_NOT_FOUND = ApiError(404, "not_found", "no such payment method of this viewer")
PAYMENT_METHOD_REQUIRED = ApiError(
    409, "payment_method_required", "auto-renewal needs a saved payment method: pay with one"
)
