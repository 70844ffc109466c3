"""The errors of admin-panel accounts (``billing admin``)."""

from __future__ import annotations

from billing.errors import ApiError

ADMIN_USER_EXISTS = ApiError(409, "admin_user_exists", "an admin user with this name exists")
ADMIN_USER_NOT_FOUND = ApiError(404, "not_found", "no admin user with this name")
ADMIN_USER_SELF = ApiError(
    409, "admin_user_self", "an admin cannot deactivate or demote their own account"
)
