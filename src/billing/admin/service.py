"""Admin accounts (hashed passwords), their panel logins (throttled) and sessions (kept in
the database)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.admin.errors import ADMIN_USER_EXISTS, ADMIN_USER_NOT_FOUND
from billing.audit.service import record_change
from billing.db import transaction
from billing.errors import VALIDATION_ERROR
from billing.models import AdminLoginFailure, AdminRole, AdminSession, AdminUser

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8
COUNTED_NAME_LENGTH = 200  # of a typed username, when counting failures (accounts: 150)
LOGIN_FAILURES_ALLOWED = 5
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)  # a working day; then the panel asks for the password


@cache
def _stand_in_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


async def create_admin_user(
    session: AsyncSession, username: str, password: str, role: AdminRole
) -> AdminUser:
    username = username.strip()
    if not username:
        raise VALIDATION_ERROR("username: must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise VALIDATION_ERROR(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    taken = await session.scalar(
        select(AdminUser.id).where(func.lower(AdminUser.username) == username.lower())
    )
    if taken is not None:
        raise ADMIN_USER_EXISTS(f"admin user {username!r} already exists")
    user = AdminUser(username=username, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    await session.flush()
    await record_change(
        session,
        actor="cli",
        action="create",
        entity=user,
        before=None,
        after={"username": user.username, "role": user.role},
    )
    return user


def login_name(username: str) -> str:
    """How a typed username is matched: trimmed, case-insensitive; a NUL (which PostgreSQL
    text cannot hold) becomes a character no account name has."""
    return username.strip().lower().replace("\x00", "\ufffd")


async def authenticate(
    sessions: async_sessionmaker[AsyncSession], username: str, password: str
) -> AdminUser | None:
    async with sessions() as session:
        user = await session.scalar(
            select(AdminUser).where(
                func.lower(AdminUser.username) == login_name(username), AdminUser.is_active
            )
        )
    # The connection went back to the pool: logins sprayed at full speed must not hold the
    # API's connections while Argon2 works. An unknown username is checked against a
    # stand-in hash, so the answer takes as long as for a wrong password and its timing does
    # not tell which usernames exist. Argon2 is slow on purpose: it runs in a thread, not on
    # the event loop serving the API.
    stored = _stand_in_hash() if user is None else user.password_hash
    try:
        await asyncio.to_thread(_hasher.verify, stored, password)
    except VerificationError:
        return None
    return user


async def deactivate_admin_user(session: AsyncSession, username: str, actor: str) -> AdminUser:
    """The account can no longer log in, and its open sessions end now (reactivating it
    later does not bring them back)."""
    user = await session.scalar(
        select(AdminUser).where(func.lower(AdminUser.username) == login_name(username))
    )
    if user is None:
        raise ADMIN_USER_NOT_FOUND(f"no admin user {username!r}")
    await session.execute(delete(AdminSession).where(AdminSession.admin_user_id == user.id))
    if user.is_active:
        user.is_active = False
        await record_change(
            session,
            actor=actor,
            action="deactivate",
            entity=user,
            before={"is_active": True},
            after={"is_active": False},
        )
    return user


async def set_admin_locale(session: AsyncSession, admin_user_id: uuid.UUID, locale: str) -> None:
    """The panel's language for this account (a preference: not audited)."""
    await session.execute(
        update(AdminUser).where(AdminUser.id == admin_user_id).values(locale=locale)
    )


# Panel logins ---------------------------------------------------------------------------


class LoginThrottled(Exception):
    """Too many failed logins for this account or from this address: no password is
    checked until ``retry_after`` has passed."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(f"too many failed logins; retry after {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Login:
    user: AdminUser
    token: str  # the new session's, for the cookie; the database keeps only its hash


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def log_in(
    sessions: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    address: str,
    now: datetime,
) -> Login | None:
    """A panel login: a new session for the right password, None for a wrong one, and
    ``LoginThrottled`` once the account or the address has ``LOGIN_FAILURES_ALLOWED``
    failures within ``LOGIN_FAILURE_WINDOW`` (then even the right password is refused).

    The try is written down as a failure, and committed, before anything is checked: of any
    number of concurrent tries (several API processes), each sees those committed before it,
    so no more than the allowed number get to the password."""
    name = login_name(username)[:COUNTED_NAME_LENGTH]
    async with transaction(sessions) as session:
        await session.execute(
            delete(AdminLoginFailure).where(
                AdminLoginFailure.attempted_at <= now - LOGIN_FAILURE_WINDOW
            )
        )
        attempt = AdminLoginFailure(username=name, address=address, attempted_at=now)
        session.add(attempt)
    async with sessions() as session:
        until = [
            await _throttled_until(session, AdminLoginFailure.username == name, attempt.id, now),
            await _throttled_until(session, AdminLoginFailure.address == address, attempt.id, now),
        ]
    if any(until):
        await _forget_attempt(sessions, attempt.id)
        raise LoginThrottled(max(moment for moment in until if moment) - now)
    user = await authenticate(sessions, username, password)
    if user is None:
        return None  # the try stays a failure
    token = secrets.token_urlsafe(32)
    async with transaction(sessions) as session:
        await session.execute(delete(AdminLoginFailure).where(AdminLoginFailure.id == attempt.id))
        await session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
        session.add(
            AdminSession(
                token_hash=token_hash(token),
                admin_user_id=user.id,
                data={},
                created_at=now,
                expires_at=now + SESSION_LIFETIME,
            )
        )
    return Login(user=user, token=token)


async def _throttled_until(
    session: AsyncSession, whose: ColumnElement[bool], attempt_id: uuid.UUID, now: datetime
) -> datetime | None:
    """When tries are allowed again, if the failures matching ``whose`` (other than this
    try) already reach the limit: the moment the oldest one that counts leaves the window."""
    oldest_counted = await session.scalar(
        select(AdminLoginFailure.attempted_at)
        .where(
            whose,
            AdminLoginFailure.id != attempt_id,
            AdminLoginFailure.attempted_at > now - LOGIN_FAILURE_WINDOW,
        )
        .order_by(AdminLoginFailure.attempted_at.desc())
        .offset(LOGIN_FAILURES_ALLOWED - 1)
        .limit(1)
    )
    return None if oldest_counted is None else oldest_counted + LOGIN_FAILURE_WINDOW


async def _forget_attempt(
    sessions: async_sessionmaker[AsyncSession], attempt_id: uuid.UUID
) -> None:
    # A refused try checked no password: it is no failure, and does not extend the wait.
    async with transaction(sessions) as session:
        await session.execute(delete(AdminLoginFailure).where(AdminLoginFailure.id == attempt_id))


# Panel sessions -------------------------------------------------------------------------


async def find_session(
    session: AsyncSession, token: str, now: datetime
) -> tuple[AdminSession, AdminUser] | None:
    """The live session a cookie's token names, with its account: none once logged out,
    expired, or the account deactivated."""
    row = (
        await session.execute(
            select(AdminSession, AdminUser)
            .join(AdminUser, AdminUser.id == AdminSession.admin_user_id)
            .where(
                AdminSession.token_hash == token_hash(token),
                AdminSession.expires_at > now,
                AdminUser.is_active,
            )
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


async def save_session_data(session: AsyncSession, hashed: str, data: dict[str, Any]) -> None:
    await session.execute(
        update(AdminSession).where(AdminSession.token_hash == hashed).values(data=data)
    )


async def end_session(session: AsyncSession, hashed: str) -> None:
    await session.execute(delete(AdminSession).where(AdminSession.token_hash == hashed))
