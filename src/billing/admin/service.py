"""Admin accounts (hashed passwords) and the audit log every change writes."""

from __future__ import annotations

import asyncio
import secrets
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.errors import Problem
from billing.models import AdminRole, AdminUser, AuditEntry

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


@cache
def _stand_in_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


async def create_admin_user(
    session: AsyncSession, username: str, password: str, role: AdminRole
) -> AdminUser:
    username = username.strip()
    if not username:
        raise Problem(422, "validation_error", "username: must not be empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Problem(
            422, "validation_error", f"password: at least {MIN_PASSWORD_LENGTH} characters"
        )
    taken = await session.scalar(
        select(AdminUser.id).where(func.lower(AdminUser.username) == username.lower())
    )
    if taken is not None:
        raise Problem(409, "admin_user_exists", f"admin user {username!r} already exists")
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


async def authenticate(session: AsyncSession, username: str, password: str) -> AdminUser | None:
    user = await session.scalar(
        select(AdminUser).where(
            func.lower(AdminUser.username) == username.strip().lower(), AdminUser.is_active
        )
    )
    # An unknown username is checked against a stand-in hash, so the answer takes as long as
    # for a wrong password and its timing does not tell which usernames exist. Argon2 is
    # slow on purpose: it runs in a thread, not on the event loop serving the API.
    stored = _stand_in_hash() if user is None else user.password_hash
    try:
        await asyncio.to_thread(_hasher.verify, stored, password)
    except VerificationError:
        return None
    return user


async def record_change(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    entity: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    entity_id: str | None = None,
) -> None:
    """One audit-log row, in the same transaction as the change it describes."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            entity_type=entity.__tablename__,
            entity_id=entity_id or str(getattr(entity, "id", "")),
            before=before,
            after=after,
        )
    )
