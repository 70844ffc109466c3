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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.admin.errors import (
    ADMIN_USER_EXISTS,
    ADMIN_USER_NOT_FOUND,
    ADMIN_USER_SELF,
)
from billing.audit.service import record_change
from billing.db import transaction
from billing.errors import FORBIDDEN, VALIDATION_ERROR
from billing.models import AdminLoginFailure, AdminRole, AdminSession, AdminUser

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8
USERNAME_MAX_LENGTH = 150  # admin_users.username
COUNTED_NAME_LENGTH = 200  # of a typed username, when counting failures (accounts: 150)
LOGIN_FAILURES_ALLOWED = 5
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=8)  # a working day; then the panel asks for the password


@cache
def _stand_in_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _checked_username(username: str) -> str:
    username = username.strip()
    if not username:
        raise VALIDATION_ERROR("username: must not be empty")
    if len(username) > USERNAME_MAX_LENGTH:
        raise VALIDATION_ERROR(f"username: at most {USERNAME_MAX_LENGTH} characters")
    if not username.isprintable():  # control characters, a NUL that PostgreSQL cannot hold
        raise VALIDATION_ERROR("username: only printable characters")
    return username


async def _new_password_hash(password: str) -> str:
    """Argon2 is slow on purpose: it runs in a thread, and the callers hash before their
    first query, so no database connection waits on it."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise VALIDATION_ERROR(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    return await asyncio.to_thread(_hasher.hash, password)


async def create_admin_user(
    session: AsyncSession, username: str, password: str, role: AdminRole, *, actor: str = "cli"
) -> AdminUser:
    username = _checked_username(username)
    password_hash = await _new_password_hash(password)
    user = AdminUser(username=username, password_hash=password_hash, role=AdminRole(role))
    try:
        async with session.begin_nested():  # the unique index decides between two at once
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise ADMIN_USER_EXISTS(f"admin user {username!r} already exists") from None
    await record_change(
        session,
        actor=actor,
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
    later does not bring them back). The command line's: no account is acting, so the rules
    of the panel's ``set_admin_user_active`` do not apply."""
    user = await session.scalar(
        select(AdminUser).where(func.lower(AdminUser.username) == login_name(username))
    )
    if user is None:
        raise ADMIN_USER_NOT_FOUND(f"no admin user {username!r}")
    await _set_active(session, user, False, actor)
    return user


async def _set_active(session: AsyncSession, user: AdminUser, active: bool, actor: str) -> None:
    if not active:
        await _end_sessions_of(session, user)
    if user.is_active != active:
        user.is_active = active
        await record_change(
            session,
            actor=actor,
            action="reactivate" if active else "deactivate",
            entity=user,
            before={"is_active": not active},
            after={"is_active": active},
        )


async def _end_sessions_of(session: AsyncSession, user: AdminUser) -> int:
    ended = await session.scalars(
        delete(AdminSession)
        .where(AdminSession.admin_user_id == user.id)
        .returning(AdminSession.token_hash)
    )
    return len(ended.all())


# The panel's account changes: ``by`` is the signed-in account doing them -------------------


async def _changed_by_admin(session: AsyncSession, user_id: uuid.UUID, by: AdminUser) -> AdminUser:
    """The account to change, once its author is found to be an active admin still. Both
    rows are locked in one order: two admins deactivating each other at once wait for each
    other, and the second finds its author deactivated."""
    rows = await session.scalars(
        select(AdminUser)
        .where(AdminUser.id.in_({user_id, by.id}))
        .order_by(AdminUser.id)
        .with_for_update()
    )
    found = {row.id: row for row in rows}
    author = found.get(by.id)
    if author is None or not author.is_active or author.role != AdminRole.ADMIN:
        raise FORBIDDEN("only an active admin account may change admin accounts")
    if user_id not in found:
        raise ADMIN_USER_NOT_FOUND(f"no admin user {user_id}")
    return found[user_id]


def _not_yourself(user: AdminUser, by: AdminUser) -> None:
    """Nobody locks themself out. With only active admins changing accounts, this also
    keeps an active admin in the panel always (else only the command line could help)."""
    if user.id == by.id:
        raise ADMIN_USER_SELF()


async def set_admin_user_active(
    session: AsyncSession, user_id: uuid.UUID, active: bool, *, by: AdminUser
) -> AdminUser:
    """Deactivating ends the account's sessions at once; reactivating lets it log in again
    (with its old password, in new sessions only)."""
    user = await _changed_by_admin(session, user_id, by)
    if not active:
        _not_yourself(user, by)
    await _set_active(session, user, active, by.username)
    return user


async def change_admin_role(
    session: AsyncSession, user_id: uuid.UUID, role: AdminRole, *, by: AdminUser
) -> AdminUser:
    """The account's next request already has the new role (sessions read it from the
    account)."""
    role = AdminRole(role)
    user = await _changed_by_admin(session, user_id, by)
    if user.role == role:
        return user
    _not_yourself(user, by)
    before, user.role = user.role, role
    await record_change(
        session, actor=by.username, action="update", entity=user,
        before={"role": before}, after={"role": role},
    )  # fmt: skip
    return user


async def reset_admin_password(
    session: AsyncSession, user_id: uuid.UUID, password: str, *, by: AdminUser
) -> AdminUser:
    """A new password, and every session of the account ends (one opened with the old
    password, perhaps stolen, dies with it; the author's own too, when it is theirs). The
    audit log says that it happened, never the password or its hash."""
    password_hash = await _new_password_hash(password)
    user = await _changed_by_admin(session, user_id, by)
    user.password_hash = password_hash
    ended = await _end_sessions_of(session, user)
    await record_change(
        session, actor=by.username, action="reset_password", entity=user,
        before=None, after={"sessions_ended": ended},
    )  # fmt: skip
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
