"""JWT authentication of viewers and services (tokens are issued by the Auth service)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from billing.config import Settings
from billing.errors import FORBIDDEN, UNAUTHORIZED
from billing.schemas import EMAIL_PATTERN

ADMIN_ROLES = frozenset({"admin", "marketing"})
SERVICE_ROLE = "service"

_bearer = HTTPBearer(auto_error=False, description="JWT issued by the Auth service")


EMAIL = re.compile(EMAIL_PATTERN)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    email: str | None = None  # the Auth service's ``email`` claim, for fiscal receipts

    @property
    def user_id(self) -> uuid.UUID:
        """The viewer's id; a token whose ``sub`` is not a user UUID cannot act as a viewer."""
        try:
            return uuid.UUID(self.subject)
        except ValueError:
            raise UNAUTHORIZED("token subject is not a user id") from None


def issue_token(
    settings: Settings,
    subject: str,
    roles: list[str] | tuple[str, ...] = (),
    ttl: timedelta = timedelta(hours=12),
    now: datetime | None = None,
    email: str | None = None,
) -> str:
    """A token signed with the configured HS256 secret (``billing token``, tests); it carries
    the configured audience and issuer, so the server it was made for accepts it."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": list(roles),
        "iat": issued,
        "exp": issued + ttl,
    }
    if email:
        claims["email"] = email
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_signing_secret, algorithm="HS256")


def decode_token(settings: Settings, token: str) -> Principal:
    """The token's principal; ``aud`` and ``iss`` must match the configured audience and
    issuer when those are set, and are ignored when not (PyJWT would otherwise refuse any
    token that names an audience)."""
    audience = settings.jwt_audience or None
    issuer = settings.jwt_issuer or None
    required = ["exp", "sub"] + (["aud"] if audience else []) + (["iss"] if issuer else [])
    try:
        claims = jwt.decode(
            token,
            settings.jwt_verification_key,
            # Only the configured algorithm: "none" and algorithm confusion are refused.
            algorithms=[settings.jwt_algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": required, "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise UNAUTHORIZED("token expired") from None
    except jwt.InvalidTokenError as error:
        raise UNAUTHORIZED(f"invalid token: {error}") from None
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise UNAUTHORIZED("invalid token: roles must be a list of names")
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise UNAUTHORIZED("invalid token: sub must be a string")
    email = claims.get("email")
    if not (isinstance(email, str) and len(email) <= 254 and EMAIL.match(email)):
        email = None  # no usable address: receipts then need one in the request
    return Principal(subject=subject, roles=frozenset(roles), email=email)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UNAUTHORIZED("a Bearer token is required")
    settings: Settings = request.app.state.settings
    return decode_token(settings, credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_viewer(principal: CurrentPrincipal) -> uuid.UUID:
    return principal.user_id


ViewerId = Annotated[uuid.UUID, Depends(current_viewer)]


def require_roles(*allowed: str) -> Any:
    """A dependency that admits a token holding any of ``allowed`` roles."""
    wanted = frozenset(allowed)

    async def check(principal: CurrentPrincipal) -> Principal:
        if not principal.roles & wanted:
            raise FORBIDDEN(f"needs one of the roles: {', '.join(sorted(wanted))}")
        return principal

    return Depends(check)


AdminPrincipal = Annotated[Principal, require_roles(*ADMIN_ROLES)]
ServicePrincipal = Annotated[Principal, require_roles(SERVICE_ROLE)]
