"""Who may use the admin panel: ``admin_users`` accounts, server-side sessions named by a
random cookie token, roles, and changes accepted only from the panel's own pages."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqladmin.authentication import AuthenticationBackend
from sqladmin.authorization import AuthorizationBackend
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing.admin.panel.locale import set_locale
from billing.admin.service import (
    SESSION_LIFETIME,
    end_session,
    find_session,
    log_in,
    save_session_data,
)
from billing.checkout.trusted_networks import client_address
from billing.clock import Clock
from billing.config import IpNetwork
from billing.db import transaction
from billing.models import AdminRole, AdminSession, AdminUser

SESSION_COOKIE = "billing_admin"
_STATE_KEY = "admin_user"
_SESSION_KEY = "billing.admin_session"  # in the ASGI scope: the live session, or None
STATICS = "/statics/"  # SQLAdmin's files: no session needed to serve them


def current_admin(request: Request) -> AdminUser:
    """The account behind this panel request (set once it was authenticated)."""
    user: AdminUser = getattr(request.state, _STATE_KEY)
    return user


def route_path(scope: Scope) -> str:
    """The path inside the panel (``/login``), wherever the panel is mounted."""
    path: str = scope["path"]
    return path.removeprefix(scope.get("root_path", ""))


class ServerSessions:
    """The panel's sessions live in ``admin_sessions``; the cookie carries only a random
    token. For every panel request, the token's live session (not logged out, not expired,
    its account active) is looked up with its account; its data (the panel's messages) is
    ``request.session``, written back when a page changed it. Anyone else gets an empty
    session that is never stored, so visitors who are not logged in write nothing."""

    def __init__(self, app: ASGIApp, *, sessions: async_sessionmaker[AsyncSession], clock: Clock):
        self.app = app
        self.sessions = sessions
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).startswith(STATICS):
            await self.app(scope, receive, send)
            return
        token = HTTPConnection(scope).cookies.get(SESSION_COOKIE)
        found = None
        if token:
            async with self.sessions() as session:
                found = await find_session(session, token, self.clock.now())
        scope[_SESSION_KEY] = found
        scope["session"] = copy.deepcopy(found[0].data) if found else {}
        kept = copy.deepcopy(scope["session"])

        async def save_then_send(message: Message) -> None:
            live = scope.get(_SESSION_KEY)  # None once logged out
            if message["type"] == "http.response.start" and live and scope["session"] != kept:
                async with transaction(self.sessions) as session:
                    await save_session_data(session, live[0].token_hash, scope["session"])
            await send(message)

        await self.app(scope, receive, save_then_send)


class AdminLogin(AuthenticationBackend):
    """Username and password of an ``admin_users`` account, throttled per account and per
    address; a login opens a new server-side session (never one a visitor brought along),
    logout deletes it."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        *,
        path: str,
        https_only: bool,
        default_locale: str,
        trusted_proxies: Sequence[IpNetwork] = (),
    ) -> None:
        # Not SQLAdmin's signed-cookie sessions: the server must be able to end a session.
        self.middlewares = [Middleware(ServerSessions, sessions=sessions, clock=clock)]
        self.sessions = sessions
        self.clock = clock
        self.path = path
        self.https_only = https_only
        self.default_locale = default_locale
        self.trusted_proxies = trusted_proxies

    def _address(self, request: Request) -> str:
        """Where a login comes from, for counting failures per address: the peer, or behind
        ``BILLING_TRUSTED_PROXIES`` the client they forwarded (the rule ЮKassa's
        notifications are checked by) — else every login through nginx would share one."""
        address = client_address(
            request.client.host if request.client else None,
            request.headers.getlist("x-forwarded-for"),
            self.trusted_proxies,
        )
        return "unknown" if address is None else str(address)

    async def login(self, request: Request) -> Response | bool:
        """Raises ``LoginThrottled`` (the panel answers 429)."""
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return False
        opened = await log_in(
            self.sessions,
            username=username,
            password=password,
            address=self._address(request),
            now=self.clock.now(),
        )
        if opened is None:
            return False
        await self._end(request)
        response = RedirectResponse(request.url_for("admin:index"), status_code=302)
        response.set_cookie(
            SESSION_COOKIE,
            opened.token,
            max_age=int(SESSION_LIFETIME.total_seconds()),
            path=self.path,
            httponly=True,
            # Strict: no other site can make the browser send it, which also keeps the
            # panel's GET actions (retry, logout) safe from cross-site requests.
            samesite="strict",
            secure=self.https_only,
        )
        return response

    async def logout(self, request: Request) -> Response | bool:
        await self._end(request)
        response = RedirectResponse(request.url_for("admin:login"), status_code=302)
        response.delete_cookie(
            SESSION_COOKIE, path=self.path, httponly=True, samesite="strict", secure=self.https_only
        )
        return response

    async def _end(self, request: Request) -> None:
        live: tuple[AdminSession, AdminUser] | None = request.scope.get(_SESSION_KEY)
        if live is not None:
            async with transaction(self.sessions) as session:
                await end_session(session, live[0].token_hash)
            request.scope[_SESSION_KEY] = None

    async def authenticate(self, request: Request) -> Response | bool:
        live: tuple[AdminSession, AdminUser] | None = request.scope.get(_SESSION_KEY)
        if live is None:
            return False
        setattr(request.state, _STATE_KEY, live[1])
        # Every page the account opens is in its language (the login page: the setting's).
        set_locale(live[1].locale, self.default_locale)
        return True

    async def get_user_id(self, request: Request) -> Any:
        live: tuple[AdminSession, AdminUser] | None = request.scope.get(_SESSION_KEY)
        return None if live is None else str(live[1].id)


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


# Cross-site requests ----------------------------------------------------------------------

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL; None for what names no origin (``null``)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower(), port


def same_origin(source: str, *, public_url: str, scheme: str, host: str | None) -> bool:
    """Whether a request's ``Origin`` (or ``Referer``) is the panel's own: the configured
    public URL's origin, or the one the request itself was sent to (its scheme and
    ``Host``), for a panel reached under another name than the public URL's."""
    sent_from = _origin(source)
    if sent_from is None:
        return False
    if sent_from == _origin(public_url):
        return True
    return host is not None and sent_from == _origin(f"{scheme}://{host}")


class SameOriginChanges:
    """Refuses a state-changing panel request (any method but GET, HEAD, OPTIONS) whose
    ``Origin`` — or, without one, ``Referer`` — names another site: a form on another site
    cannot change a price with the admin's session.

    A request with neither header is let through: browsers send ``Origin`` with every
    request that is not a GET or HEAD (a cross-site form POST included), so such a request
    comes from no browser, and without a browser there is no admin's cookie to ride on (the
    cookie is ``SameSite=Strict`` besides)."""

    def __init__(self, app: ASGIApp, *, public_url: str) -> None:
        self.app = app
        self.public_url = public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            source = headers.get("origin") or headers.get("referer")
            if source is not None and not same_origin(
                source, public_url=self.public_url, scheme=scope["scheme"], host=headers.get("host")
            ):
                refusal = HTMLResponse(_REFUSED_PAGE, status_code=403)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


_REFUSED_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Refused</title></head>
<body><h1>403 Forbidden</h1>
<p>This change was sent from another site, so the admin panel refused it. Open the panel
itself and make the change there.</p></body></html>
"""
