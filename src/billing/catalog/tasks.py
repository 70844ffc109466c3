"""Scheduler job of the catalogue: keep tariffs in step with the Auth service's roles.

A new role becomes an inactive tariff without a price (marketing prices and activates it);
a role that disappeared deactivates its tariff, which is kept for the invoices and history
that point at it; a role that comes back is marked present again but stays inactive until
marketing decides. Marketing's fields (name, description, price) are never overwritten.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.audit.service import record_change
from billing.config import Settings
from billing.db import transaction
from billing.models import Tariff

SYNC_ACTOR = "sync-roles"


class AuthRole(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""


_roles = TypeAdapter(list[AuthRole])


class RoleSyncFailed(Exception):
    """The Auth service could not be read; nothing was changed."""


async def fetch_roles(client: httpx.AsyncClient, settings: Settings) -> list[AuthRole]:
    assert settings.auth_url is not None
    headers = {"Authorization": f"Bearer {settings.auth_token}"} if settings.auth_token else {}
    try:
        response = await client.get(f"{settings.auth_url}/api/v1/roles", headers=headers)
        response.raise_for_status()
        return _roles.validate_json(response.content)
    except (httpx.HTTPError, ValidationError) as error:
        raise RoleSyncFailed(f"cannot read roles from the Auth service: {error}") from error


def tariff_code_for(role: str) -> str:
    """A tariff code (a slug) for a role name."""
    slug = re.sub(r"[^a-z0-9]+", "-", role.lower()).strip("-")
    return (slug or "role")[:64]


async def sync_roles(
    sessions: async_sessionmaker[AsyncSession], roles: list[AuthRole], *, currency: str
) -> dict[str, int]:
    """Apply the Auth service's role list to the tariffs, in one transaction."""
    present = {role.name: role for role in roles}
    created = deactivated = restored = 0
    async with transaction(sessions) as session:
        tariffs = {
            tariff.role: tariff
            for tariff in await session.scalars(select(Tariff).with_for_update())
        }
        for name, role in present.items():
            if name in tariffs:
                tariff = tariffs[name]
                if not tariff.role_exists:
                    tariff.role_exists = True
                    restored += 1
                    await _audit(session, tariff, "role_restored", {"role_exists": False})
                continue
            created += await _create_unpriced(session, role, currency)
        for name, tariff in tariffs.items():
            if name not in present and tariff.role_exists:
                before = {"is_active": tariff.is_active, "role_exists": True}
                tariff.role_exists = False
                tariff.is_active = False
                deactivated += 1
                await _audit(session, tariff, "role_removed", before)
    return {"created": created, "deactivated": deactivated, "restored": restored}


async def _create_unpriced(session: AsyncSession, role: AuthRole, currency: str) -> int:
    code = tariff_code_for(role.name)
    taken = await session.scalar(select(Tariff.id).where(Tariff.code == code))
    if taken is not None:  # another tariff already uses the slug: keep it unique
        code = f"{code[:55]}-{uuid.uuid4().hex[:8]}"
    tariff_id = await session.scalar(
        insert(Tariff)
        .values(
            id=uuid.uuid4(),
            code=code,
            name=role.name,
            description=role.description,
            role=role.name,
            monthly_price=None,
            currency=currency,
            is_active=False,
        )
        .on_conflict_do_nothing(index_elements=["role"])
        .returning(Tariff.id)
    )
    if tariff_id is None:  # a concurrent sync created it first
        return 0
    tariff = await session.get_one(Tariff, tariff_id)
    await record_change(
        session,
        actor=SYNC_ACTOR,
        action="create",
        entity=tariff,
        before=None,
        after={"code": tariff.code, "role": tariff.role, "is_active": False},
    )
    return 1


async def _audit(
    session: AsyncSession, tariff: Tariff, action: str, before: dict[str, Any]
) -> None:
    after = {"is_active": tariff.is_active, "role_exists": tariff.role_exists}
    await record_change(
        session, actor=SYNC_ACTOR, action=action, entity=tariff, before=before, after=after
    )


async def run_sync_roles(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, client: httpx.AsyncClient
) -> dict[str, int]:
    if settings.auth_url is None:
        return {"skipped": 1}  # no Auth service configured: nothing to sync with
    roles = await fetch_roles(client, settings)
    return await sync_roles(sessions, roles, currency=settings.currency)
