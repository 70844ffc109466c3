"""The errors of subscriptions."""

from __future__ import annotations

from billing.errors import ApiError

SUBSCRIPTION_NOT_FOUND = ApiError(404, "not_found", "no such subscription of this viewer")
