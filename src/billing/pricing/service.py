"""Pricing use cases: quotes, and the admin's duration and personal discounts.

Every function works inside the caller's transaction and never commits: an endpoint opens
one transaction per request, and checkout prices and reserves inside its invoice's one.
Promo codes live in :mod:`billing.pricing.promo_codes`; the functions checkout needs
from there (find, reserve, release, redeem) are re-exported here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.audit.service import record_change
from billing.catalog.errors import TARIFF_INACTIVE, TARIFF_NOT_FOUND
from billing.config import Settings
from billing.errors import VALIDATION_ERROR
from billing.models import DurationDiscount, PromoCode, Tariff, UserDiscount
from billing.pricing.errors import (
    DURATION_DISCOUNT_NOT_FOUND,
    PERSONAL_DISCOUNT_NOT_FOUND,
    PROMO_CODE_UNUSABLE,
)
from billing.pricing.promo_codes import (
    PROMO_CODE_ALREADY_USED,
    PROMO_CODE_EXHAUSTED,
    is_exhausted,
    promo_terms,
    used_by,
)

# The promo-code accounting checkout calls, re-exported so pricing has one public face.
from billing.pricing.promo_codes import find_promo_code as find_promo_code
from billing.pricing.promo_codes import redeem_promo_reservation as redeem_promo_reservation
from billing.pricing.promo_codes import (
    redeem_released_reservation as redeem_released_reservation,
)
from billing.pricing.promo_codes import release_promo_reservation as release_promo_reservation
from billing.pricing.promo_codes import reserve_promo_code as reserve_promo_code
from billing.pricing.rules import (
    PROMO_CODE_NOT_APPLICABLE,
    PromoTerms,
    Quote,
    build_quote,
    duration_percent,
    promo_problem,
)
from billing.pricing.schemas import DurationDiscountOut, UserDiscountIn, UserDiscountOut


def check_months(months: int, settings: Settings) -> None:
    if not 1 <= months <= settings.max_months:
        raise VALIDATION_ERROR(f"months: must be within 1..{settings.max_months}")


# Quotes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricedQuote:
    """A quote with what it was made from, for checkout to freeze into an invoice."""

    quote: Quote
    tariff: Tariff
    promo: PromoCode | None


async def quote_for(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tariff_id: uuid.UUID,
    months: int,
    promo_code: str | None,
    now: datetime,
    settings: Settings,
) -> PricedQuote:
    """What ``user_id`` pays now for ``months`` of the tariff; reads only, reserves nothing."""
    check_months(months, settings)
    tariff = await session.get(Tariff, tariff_id)
    if tariff is None:
        raise TARIFF_NOT_FOUND()
    # A tariff whose Auth role is gone would sell access that cannot be granted.
    if not tariff.is_active or tariff.monthly_price is None or not tariff.role_exists:
        raise TARIFF_INACTIVE(f"tariff {tariff.code} is not on sale")

    personal = await session.get(UserDiscount, user_id)
    personal_percent = (
        personal.percent
        if personal is not None and (personal.valid_until is None or personal.valid_until > now)
        else None
    )
    rows = await session.execute(select(DurationDiscount.months, DurationDiscount.percent))
    rules = {months: percent for months, percent in rows}

    promo = None if promo_code is None else await find_promo_code(session, promo_code)
    terms = None if promo is None else await _usable_terms(session, promo, tariff, user_id, now)
    quote = build_quote(
        tariff_id=tariff.id,
        monthly_price=tariff.monthly_price,
        months=months,
        currency=tariff.currency,
        personal_percent=personal_percent,
        duration_percent=duration_percent(months, rules),
        promo=terms,
    )
    return PricedQuote(quote=quote, tariff=tariff, promo=promo)


async def _usable_terms(
    session: AsyncSession, promo: PromoCode, tariff: Tariff, user_id: uuid.UUID, now: datetime
) -> PromoTerms:
    """The code's terms, or a 422 Problem saying why this viewer cannot use it here and now."""
    terms = await promo_terms(session, promo)
    problem = promo_problem(terms, tariff.id, now)
    # A fixed amount is money in one currency; it means nothing against another one's price.
    if problem is None and promo.amount is not None and promo.currency != tariff.currency:
        problem = PROMO_CODE_NOT_APPLICABLE
    if problem is None and is_exhausted(promo):
        problem = PROMO_CODE_EXHAUSTED
    if problem is None and promo.once_per_user and await used_by(session, promo, user_id):
        problem = PROMO_CODE_ALREADY_USED
    if problem is not None:
        raise PROMO_CODE_UNUSABLE[problem](f"promo code {promo.code} cannot be used: {problem}")
    return terms


# Duration discounts ----------------------------------------------------------------------


async def list_duration_discounts(session: AsyncSession) -> list[DurationDiscount]:
    return list(
        (await session.scalars(select(DurationDiscount).order_by(DurationDiscount.months))).all()
    )


async def set_duration_discount(
    session: AsyncSession, months: int, percent: Decimal, *, actor: str, settings: Settings
) -> DurationDiscount:
    """Create or change the rule for ``months``."""
    check_months(months, settings)
    rule, created = await _lock_or_insert(
        session, DurationDiscount, months, {"months": months, "percent": percent}
    )
    before = None if created else _duration_json(rule)
    rule.percent = percent
    await session.flush()
    after = _duration_json(rule)
    if before != after:
        await record_change(
            session,
            actor=actor,
            action="create" if created else "update",
            entity=rule,
            entity_id=str(months),
            before=before,
            after=after,
        )
    return rule


async def delete_duration_discount(session: AsyncSession, months: int, *, actor: str) -> None:
    rule = await session.get(DurationDiscount, months, with_for_update=True)
    if rule is None:
        raise DURATION_DISCOUNT_NOT_FOUND()
    before = _duration_json(rule)
    await session.delete(rule)
    await record_change(
        session,
        actor=actor,
        action="delete",
        entity=rule,
        entity_id=str(months),
        before=before,
        after=None,
    )


def _duration_json(rule: DurationDiscount) -> dict[str, object]:
    return DurationDiscountOut.model_validate(rule).model_dump(mode="json")


# Personal discounts ----------------------------------------------------------------------


async def get_user_discount(session: AsyncSession, user_id: uuid.UUID) -> UserDiscount:
    discount = await session.get(UserDiscount, user_id)
    if discount is None:
        raise PERSONAL_DISCOUNT_NOT_FOUND()
    return discount


async def set_user_discount(
    session: AsyncSession, user_id: uuid.UUID, body: UserDiscountIn, *, actor: str, now: datetime
) -> UserDiscount:
    """Create or replace the user's personal discount (fields left out are cleared)."""
    if body.valid_until is not None and body.valid_until <= now:
        raise VALIDATION_ERROR("valid_until: must be in the future")
    values = {"percent": body.percent, "valid_until": body.valid_until, "reason": body.reason}
    discount, created = await _lock_or_insert(
        session, UserDiscount, user_id, {"user_id": user_id, **values}
    )
    before = None if created else _user_json(discount)
    for name, value in values.items():
        setattr(discount, name, value)
    await session.flush()
    after = _user_json(discount)
    if before != after:
        await record_change(
            session,
            actor=actor,
            action="create" if created else "update",
            entity=discount,
            entity_id=str(user_id),
            before=before,
            after=after,
        )
    return discount


async def delete_user_discount(session: AsyncSession, user_id: uuid.UUID, *, actor: str) -> None:
    discount = await session.get(UserDiscount, user_id, with_for_update=True)
    if discount is None:
        raise PERSONAL_DISCOUNT_NOT_FOUND()
    before = _user_json(discount)
    await session.delete(discount)
    await record_change(
        session,
        actor=actor,
        action="delete",
        entity=discount,
        entity_id=str(user_id),
        before=before,
        after=None,
    )


def _user_json(discount: UserDiscount) -> dict[str, object]:
    return UserDiscountOut.model_validate(discount).model_dump(mode="json")


_Row = TypeVar("_Row", DurationDiscount, UserDiscount)


async def _lock_or_insert(
    session: AsyncSession, model: type[_Row], key: object, values: dict[str, Any]
) -> tuple[_Row, bool]:
    """The row locked for update, and whether it was just inserted from ``values``.

    The insert skips a conflict, so two admins creating the same row at once do not get a
    500: the second one waits for the first, then finds its row and updates it.
    """
    while True:
        row = await session.get(model, key, with_for_update=True, populate_existing=True)
        if row is not None:
            return row, False
        inserted = await session.scalar(
            pg_insert(model).values(**values).on_conflict_do_nothing().returning(literal(True))
        )
        if inserted:
            return await session.get_one(model, key), True
