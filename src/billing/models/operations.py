"""Idempotency keys of creating POSTs, admin accounts, their panel sessions and failed
logins, and the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models.base import Base, Json, created_at, one_of, uuid_pk


class IdempotencyKey(Base):
    """A creating POST's answer, kept so the same key and body get the same answer again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    owner: Mapped[str] = mapped_column(String(200))  # whose key: a user id or a service
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[Json | None]
    created_at: Mapped[datetime] = created_at()


class AdminRole(StrEnum):
    ADMIN = "admin"
    MARKETING = "marketing"


class AdminUser(Base):
    __tablename__ = "admin_users"
    __table_args__ = (
        one_of("role", AdminRole),
        Index("uq_admin_users_lower_username", func.lower(text("username")), unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    username: Mapped[str] = mapped_column(String(150))
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")
    # The panel's language for this account (ru, en); None: BILLING_ADMIN_LOCALE.
    locale: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = created_at()


class AdminSession(Base):
    """A signed-in panel session. The cookie carries a random token and this row only its
    SHA-256, so a copy of the table opens no session; logging out deletes the row."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), index=True
    )
    # What the panel keeps between pages (its messages to the admin).
    data: Mapped[Json] = mapped_column(default=dict, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AdminLoginFailure(Base):
    """A failed panel login, counted per account and per client address to refuse further
    tries for a while. Written before the password is checked, so that concurrent tries see
    each other, and removed when the try turns out to be a success."""

    __tablename__ = "admin_login_failures"
    __table_args__ = (
        Index("ix_admin_login_failures_username_at", "username", "attempted_at"),
        Index("ix_admin_login_failures_address_at", "address", "attempted_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    # As typed, lower-cased: names of no account count too, so the answer tells nothing.
    username: Mapped[str] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    attempted_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """Who changed what: before and after, as JSON."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity_type", "entity_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(200))
    before: Mapped[Json | None]
    after: Mapped[Json | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
