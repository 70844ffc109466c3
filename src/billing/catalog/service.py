"""Catalogue rules: tariffs, their activation and their price history.

Every function works inside the caller's transaction (one per use case), so a change, its
price-history row and its audit row commit together or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from billing.audit.service import record_change
from billing.catalog.errors import (
    TARIFF_CODE_EXISTS,
    TARIFF_INACTIVE,
    TARIFF_NOT_FOUND,
    TARIFF_ROLE_EXISTS,
    TARIFF_UNPRICED,
)
from billing.errors import VALIDATION_ERROR, ApiError
from billing.models import Tariff, TariffPrice
from billing.money import MAX_AMOUNT

# Unique and check constraints of ``tariffs`` (migration 0001) and what a client is told.
_CONFLICTS: dict[str, ApiError] = {
    "uq_tariffs_code": TARIFF_CODE_EXISTS,
    "uq_tariffs_role": TARIFF_ROLE_EXISTS,
    "ck_tariffs_active_is_priced": TARIFF_UNPRICED,
}

# The smallest step of a timestamptz: how far a price change is moved to follow the last one.
_TICK = timedelta(microseconds=1)


def _check_price(monthly_price: int) -> None:
    # The API refuses these already; the admin panel calls the same functions.
    if isinstance(monthly_price, bool) or not 0 <= monthly_price <= MAX_AMOUNT:
        raise VALIDATION_ERROR(f"monthly_price: must be within 0..{MAX_AMOUNT} minor units")


def snapshot(tariff: Tariff) -> dict[str, Any]:
    """What the audit log keeps of a tariff (JSON-ready)."""
    return {
        "code": tariff.code,
        "name": tariff.name,
        "description": tariff.description,
        "role": tariff.role,
        "monthly_price": tariff.monthly_price,
        "currency": tariff.currency,
        "is_active": tariff.is_active,
    }


async def _flush(session: AsyncSession) -> None:
    """Flush, turning a violated tariff constraint (a race lost to another request) into
    the same answer the checks before it give."""
    try:
        await session.flush()
    except IntegrityError as error:
        constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
        if constraint not in _CONFLICTS:
            raise
        raise _CONFLICTS[constraint]() from None


async def list_active_tariffs(
    session: AsyncSession, *, limit: int, offset: int
) -> Sequence[Tariff]:
    """The catalogue viewers choose from, cheapest first."""
    result = await session.scalars(
        select(Tariff)
        .where(Tariff.is_active)
        .order_by(Tariff.monthly_price, Tariff.name, Tariff.code)
        .limit(limit)
        .offset(offset)
    )
    return result.all()


async def list_tariffs(session: AsyncSession, *, limit: int, offset: int) -> Sequence[Tariff]:
    """Every tariff, active or not, newest first."""
    result = await session.scalars(
        select(Tariff).order_by(Tariff.created_at.desc(), Tariff.code).limit(limit).offset(offset)
    )
    return result.all()


async def get_tariff(session: AsyncSession, tariff_id: uuid.UUID) -> Tariff:
    """The tariff, or 404 ``tariff_not_found``."""
    tariff = await session.get(Tariff, tariff_id)
    if tariff is None:
        raise TARIFF_NOT_FOUND()
    return tariff


async def get_sellable_tariff(session: AsyncSession, tariff_id: uuid.UUID) -> Tariff:
    """A tariff a viewer can buy now: 404 ``tariff_not_found``, 409 ``tariff_inactive``."""
    tariff = await get_tariff(session, tariff_id)
    if not tariff.is_active or tariff.monthly_price is None:
        raise TARIFF_INACTIVE()
    return tariff


async def create_tariff(
    session: AsyncSession,
    *,
    code: str,
    name: str,
    role: str,
    currency: str,
    description: str = "",
    monthly_price: int | None = None,
    is_active: bool = False,
    actor: str,
    now: datetime,
) -> Tariff:
    """A new tariff; a price given here is the first row of its price history."""
    if monthly_price is not None:
        _check_price(monthly_price)
    elif is_active:
        raise TARIFF_UNPRICED()
    tariff = Tariff(
        id=uuid.uuid4(),
        code=code,
        name=name,
        description=description,
        role=role,
        monthly_price=monthly_price,
        currency=currency,
        is_active=is_active,
        created_at=now,
        updated_at=now,
    )
    session.add(tariff)
    await _flush(session)
    if monthly_price is not None:
        session.add(
            TariffPrice(
                tariff_id=tariff.id,
                previous_price=None,
                monthly_price=monthly_price,
                currency=currency,
                changed_by=actor,
                changed_at=now,
            )
        )
    await record_change(
        session, actor=actor, action="create", entity=tariff, before=None, after=snapshot(tariff)
    )
    await session.flush()
    return tariff


async def update_tariff(
    session: AsyncSession,
    tariff_id: uuid.UUID,
    *,
    name: str | None = None,
    description: str | None = None,
    monthly_price: int | None = None,
    is_active: bool | None = None,
    actor: str,
    now: datetime,
) -> Tariff:
    """Change what is given (``None``: leave as is).

    The tariff row stays locked until the caller's transaction ends, so concurrent price
    changes queue up and each history row starts from the price the previous one set.
    Setting the same values again changes nothing and records nothing.
    """
    tariff = await session.scalar(
        select(Tariff)
        .where(Tariff.id == tariff_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if tariff is None:
        raise TARIFF_NOT_FOUND()
    before = snapshot(tariff)
    if monthly_price is not None and monthly_price != tariff.monthly_price:
        _check_price(monthly_price)
        # Read before anything changes: the query would flush half-made changes first.
        changed_at = await _next_change_time(session, tariff.id, now)
        session.add(
            TariffPrice(
                tariff_id=tariff.id,
                previous_price=tariff.monthly_price,
                monthly_price=monthly_price,
                currency=tariff.currency,
                changed_by=actor,
                changed_at=changed_at,
            )
        )
        tariff.monthly_price = monthly_price
    if name is not None:
        tariff.name = name
    if description is not None:
        tariff.description = description
    if is_active is not None:
        tariff.is_active = is_active
    if tariff.is_active and tariff.monthly_price is None:
        raise TARIFF_UNPRICED()
    after = snapshot(tariff)
    if after == before:
        return tariff
    tariff.updated_at = now
    # Written even when equal to the old value, or the column's onupdate now() would be.
    flag_modified(tariff, "updated_at")
    await record_change(
        session, actor=actor, action="update", entity=tariff, before=before, after=after
    )
    await _flush(session)
    return tariff


async def _next_change_time(session: AsyncSession, tariff_id: uuid.UUID, now: datetime) -> datetime:
    """``now``, unless the tariff's last price change is recorded at or after it.

    A request reads the clock before it waits for the row lock, so a change that queued
    behind another may carry an earlier ``now``; recording it just after the change it
    follows keeps "newest first" and "previous → new" telling the same story.
    """
    last = await session.scalar(
        select(func.max(TariffPrice.changed_at)).where(TariffPrice.tariff_id == tariff_id)
    )
    return now if last is None or last < now else last + _TICK


async def price_history(
    session: AsyncSession, tariff_id: uuid.UUID, *, limit: int, offset: int
) -> Sequence[TariffPrice]:
    """A tariff's price changes, newest first; 404 for an unknown tariff."""
    await get_tariff(session, tariff_id)
    result = await session.scalars(
        select(TariffPrice)
        .where(TariffPrice.tariff_id == tariff_id)
        .order_by(TariffPrice.changed_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return result.all()
