"""Who may use the admin panel: ``admin_users`` accounts, a signed session cookie, roles."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from sqladmin.authentication import AuthenticationBackend
from sqladmin.authorization import AuthorizationBackend
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from billing.admin.service import authenticate
from billing.config import Settings
from billing.models import AdminRole, AdminUser

SESSION_COOKIE = "billing_admin"
SESSION_MAX_AGE = 8 * 60 * 60  # a working day; then the panel asks for the password again
_USER_KEY = "admin_user_id"
_STATE_KEY = "admin_user"


def session_secret(settings: Settings) -> str:
    """The key that signs the panel's session cookies: derived from the JWT signing secret,
    so there is no other secret to configure, and a cookie's signature says nothing about the
    secret that signs tokens (a different, one-way purpose)."""
    return hmac.new(
        settings.jwt_signing_secret.encode(), b"billing admin-panel session cookie", hashlib.sha256
    ).hexdigest()


def current_admin(request: Request) -> AdminUser:
    """The account behind this panel request (set once it was authenticated)."""
    user: AdminUser = getattr(request.state, _STATE_KEY)
    return user


class AdminLogin(AuthenticationBackend):
    """Username and password of an ``admin_users`` account; the session cookie then carries
    only the account's id, and every request re-reads the account, so deactivating it
    ends its sessions at once."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, path: str
    ) -> None:
        super().__init__(
            secret_key=session_secret(settings),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            path=path,
            # Strict: no other site can make the browser send it, which is what keeps the
            # panel's forms and its GET actions safe from cross-site requests.
            same_site="strict",
            https_only=settings.public_url.startswith("https://"),
        )
        self.sessions = sessions

    async def login(self, request: Request) -> Response | bool:
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        async with self.sessions() as session:
            user = await authenticate(session, username, password)
        if user is None:
            return False
        # A new session, never one a visitor brought along.
        request.session.clear()
        request.session[_USER_KEY] = str(user.id)
        return True

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return RedirectResponse(request.url_for("admin:login"), status_code=302)

    async def authenticate(self, request: Request) -> Response | bool:
        try:
            user_id = uuid.UUID(str(request.session.get(_USER_KEY)))
        except ValueError:
            return False
        async with self.sessions() as session:
            user = await session.get(AdminUser, user_id)
        if user is None or not user.is_active:
            request.session.clear()
            return False
        setattr(request.state, _STATE_KEY, user)
        return True

    async def get_user_id(self, request: Request) -> Any:
        return request.session.get(_USER_KEY)


class RoleAccess(AuthorizationBackend):
    """``admin`` may do everything; ``marketing`` everything but the views named
    ``admin_only`` (by their SQLAdmin identities)."""

    def __init__(self, admin_only: frozenset[str]) -> None:
        self.admin_only = admin_only

    def has_permission(
        self, request: Request, identity: str, action: str, obj: Any | None = None
    ) -> bool:
        user = getattr(request.state, _STATE_KEY, None)
        if user is None:
            return False
        return bool(user.role == AdminRole.ADMIN or identity not in self.admin_only)
