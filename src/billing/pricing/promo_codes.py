"""Promo codes: the admin's create/list/edit/delete and redemptions list, and the
reservation accounting of checkout.

A code's ``redemptions_count`` counts its reserved and redeemed redemptions. Taking a slot
is one conditional UPDATE, so ``max_redemptions`` holds under any concurrency (and a CHECK
constraint backs it up); one live redemption per user is a partial unique index. The
reservation functions run inside the caller's transaction (the invoice's) and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from billing.audit.service import record_change
from billing.catalog.errors import TARIFF_NOT_FOUND
from billing.config import Settings
from billing.errors import VALIDATION_ERROR, Problem
from billing.models import (
    Invoice,
    PromoCode,
    PromoRedemption,
    RedemptionStatus,
    Tariff,
    promo_code_tariffs,
)
from billing.pricing import errors
from billing.pricing.codes import generate_code, is_valid_code, normalize_code
from billing.pricing.rules import DiscountSource, PromoTerms, promo_problem
from billing.pricing.schemas import PromoCodeChange, PromoCodeIn, PromoCodeOut, RedemptionOut
from billing.schemas import Page

PROMO_CODE_NOT_FOUND = errors.PROMO_CODE_NOT_FOUND.code
PROMO_CODE_EXHAUSTED = errors.PROMO_CODE_EXHAUSTED.code
PROMO_CODE_ALREADY_USED = errors.PROMO_CODE_ALREADY_USED.code
_ONCE_PER_USER_INDEX = "uq_promo_redemptions_once_per_user"
_LIVE = (RedemptionStatus.RESERVED, RedemptionStatus.REDEEMED)
# Generated codes are random over 31**10 values; a collision is rare, several in a row absurd.
_GENERATION_ROUNDS = 5


# Reading ---------------------------------------------------------------------------------


async def find_promo_code(session: AsyncSession, code: str) -> PromoCode:
    """The code, matched case-insensitively; unknown (or not even a code) → 404."""
    if not is_valid_code(code):
        raise errors.PROMO_CODE_NOT_FOUND()
    promo = await session.scalar(
        select(PromoCode).where(func.upper(PromoCode.code) == normalize_code(code))
    )
    if promo is None:
        raise errors.PROMO_CODE_NOT_FOUND()
    return promo


async def _tariff_ids(
    session: AsyncSession, promo_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    rows = await session.execute(
        select(promo_code_tariffs.c.promo_code_id, promo_code_tariffs.c.tariff_id).where(
            promo_code_tariffs.c.promo_code_id.in_(promo_ids)
        )
    )
    by_promo: dict[uuid.UUID, list[uuid.UUID]] = {promo_id: [] for promo_id in promo_ids}
    for promo_id, tariff_id in rows:
        by_promo[promo_id].append(tariff_id)
    return by_promo


async def promo_terms(session: AsyncSession, promo: PromoCode) -> PromoTerms:
    tariff_ids = (await _tariff_ids(session, [promo.id]))[promo.id]
    return PromoTerms(
        percent=promo.percent,
        amount=promo.amount,
        valid_from=promo.valid_from,
        valid_until=promo.valid_until,
        tariff_ids=frozenset(tariff_ids),
        is_active=promo.is_active,
    )


def is_exhausted(promo: PromoCode) -> bool:
    return promo.max_redemptions is not None and promo.redemptions_count >= promo.max_redemptions


async def used_by(session: AsyncSession, promo: PromoCode, user_id: uuid.UUID) -> bool:
    """Whether the user holds a live (reserved or redeemed) redemption of the code."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    PromoRedemption.promo_code_id == promo.id,
                    PromoRedemption.user_id == user_id,
                    PromoRedemption.status.in_(_LIVE),
                )
            )
        )
    )


def _out(promo: PromoCode, tariff_ids: list[uuid.UUID]) -> PromoCodeOut:
    fields = {
        name: getattr(promo, name) for name in PromoCodeOut.model_fields if name != "tariff_ids"
    }
    return PromoCodeOut(**fields, tariff_ids=sorted(tariff_ids))


async def list_promo_codes(
    session: AsyncSession, page: Page, *, active: bool | None
) -> list[PromoCodeOut]:
    query = select(PromoCode).order_by(PromoCode.created_at.desc(), PromoCode.code)
    if active is not None:
        query = query.where(PromoCode.is_active == active)
    promos = (await session.scalars(query.limit(page.limit).offset(page.offset))).all()
    tariff_ids = await _tariff_ids(session, [promo.id for promo in promos])
    return [_out(promo, tariff_ids[promo.id]) for promo in promos]


async def list_redemptions(session: AsyncSession, code: str, page: Page) -> list[RedemptionOut]:
    """Who used the code, newest first: every reservation, redeemed, held or released."""
    promo = await find_promo_code(session, code)
    taken_off = case(
        (Invoice.discount_source == DiscountSource.PROMO.value, Invoice.discount_amount), else_=0
    )
    rows = await session.execute(
        select(
            PromoRedemption.user_id,
            PromoRedemption.invoice_id,
            PromoRedemption.status,
            PromoRedemption.created_at.label("reserved_at"),
            Invoice.paid_at,
            taken_off.label("discount_amount"),
            Invoice.currency,
        )
        .join(Invoice, Invoice.id == PromoRedemption.invoice_id)
        .where(PromoRedemption.promo_code_id == promo.id)
        .order_by(PromoRedemption.created_at.desc(), PromoRedemption.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return [RedemptionOut.model_validate(row) for row in rows.mappings()]


# Admin changes ---------------------------------------------------------------------------


async def create_promo_codes(
    session: AsyncSession, body: PromoCodeIn, *, actor: str, now: datetime, settings: Settings
) -> list[PromoCodeOut]:
    """``body.code``, or ``body.count`` (default 1) generated codes, all with the same terms."""
    if body.valid_until is not None and body.valid_until <= now:
        raise VALIDATION_ERROR("valid_until: must be in the future")
    tariff_ids = sorted(set(body.tariff_ids or ()))
    known = set((await session.scalars(select(Tariff.id).where(Tariff.id.in_(tariff_ids)))).all())
    if missing := [str(tariff_id) for tariff_id in tariff_ids if tariff_id not in known]:
        raise TARIFF_NOT_FOUND(f"tariff {', '.join(missing)} not found")

    terms: dict[str, Any] = {
        "percent": body.percent,
        "amount": body.amount,
        "currency": (body.currency or settings.currency) if body.amount is not None else None,
        "valid_from": body.valid_from,
        "valid_until": body.valid_until,
        "max_redemptions": body.max_redemptions,
        "once_per_user": body.once_per_user,
        "created_by": actor,
    }
    if body.code is not None:
        ids = await _insert_codes(session, [body.code], terms)
        if not ids:
            raise errors.PROMO_CODE_EXISTS(f"promo code {body.code} already exists")
    else:
        ids = await _insert_generated(session, body.count or 1, terms)

    if tariff_ids:
        await session.execute(
            insert(promo_code_tariffs),
            [{"promo_code_id": i, "tariff_id": t} for i in ids for t in tariff_ids],
        )
    promos = {
        p.id: p for p in await session.scalars(select(PromoCode).where(PromoCode.id.in_(ids)))
    }
    created = [_out(promos[promo_id], tariff_ids) for promo_id in ids]
    for promo in created:
        await record_change(
            session,
            actor=actor,
            action="create",
            entity=PromoCode,
            entity_id=str(promo.id),
            before=None,
            after=promo.model_dump(mode="json"),
        )
    return created


async def _insert_codes(
    session: AsyncSession, codes: list[str], terms: dict[str, Any]
) -> list[uuid.UUID]:
    """Insert the codes that are free; the ids of those inserted, in the order given."""
    rows = [{"id": uuid.uuid4(), "code": code, **terms} for code in codes]
    inserted = set(
        (
            await session.scalars(
                pg_insert(PromoCode).values(rows).on_conflict_do_nothing().returning(PromoCode.id)
            )
        ).all()
    )
    return [row["id"] for row in rows if row["id"] in inserted]


async def _insert_generated(
    session: AsyncSession, count: int, terms: dict[str, Any]
) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for _ in range(_GENERATION_ROUNDS):
        wanted = count - len(ids)
        codes: set[str] = set()
        while len(codes) < wanted:
            codes.add(generate_code())
        # Codes taken already (or by a concurrent request) are skipped and replaced next round.
        ids += await _insert_codes(session, sorted(codes), terms)
        if len(ids) == count:
            return ids
    raise RuntimeError(f"could not generate {count} unique promo codes")


async def update_promo_code(
    session: AsyncSession, code: str, change: PromoCodeChange, *, actor: str, now: datetime
) -> PromoCodeOut:
    """Change the window, the limit or whether the code is active; only the fields given.

    The discount and the tariffs stay as created: a viewer's quote must not change under
    them. The row lock orders this with every reservation of the code: a reservation in
    flight is counted before the new limit is checked, and one that follows sees the new
    limit in its conditional update (``_take_slot``), so none passes it."""
    promo = await find_promo_code(session, code)
    await session.refresh(promo, with_for_update=True)
    tariff_ids = (await _tariff_ids(session, [promo.id]))[promo.id]
    before = _out(promo, tariff_ids)
    given = change.model_fields_set
    valid_from = change.valid_from if "valid_from" in given else promo.valid_from
    valid_until = change.valid_until if "valid_until" in given else promo.valid_until
    limit = change.max_redemptions if "max_redemptions" in given else promo.max_redemptions
    is_active = promo.is_active if change.is_active is None else change.is_active
    taken = promo.redemptions_count

    if valid_until is not None and valid_until != promo.valid_until and valid_until <= now:
        raise VALIDATION_ERROR(
            "valid_until: must be in the future (to end a code now, deactivate it)"
        )
    if valid_from is not None and valid_until is not None and valid_from >= valid_until:
        raise VALIDATION_ERROR(
            f"valid_from must be before valid_until ({_iso(valid_from)} ≥ {_iso(valid_until)})"
        )
    if limit is not None and limit < taken:
        raise errors.PROMO_CODE_LIMIT_BELOW_TAKEN(
            f"max_redemptions: promo code {promo.code} has {taken} redemptions reserved or "
            f"redeemed; the limit cannot be below that"
        )
    if is_active and not promo.is_active:
        if valid_until is not None and valid_until <= now:
            raise errors.PROMO_CODE_NOT_REACTIVATABLE(
                f"promo code {promo.code} ended at {_iso(valid_until)}: reactivate it with a "
                "later valid_until (or none)"
            )
        if limit is not None and taken >= limit:
            raise errors.PROMO_CODE_NOT_REACTIVATABLE(
                f"promo code {promo.code} is used up ({taken} of {limit}): reactivate it with "
                "a higher max_redemptions (or none)"
            )

    promo.valid_from, promo.valid_until = valid_from, valid_until
    promo.max_redemptions, promo.is_active = limit, is_active
    await session.flush()
    after = _out(promo, tariff_ids)
    if after != before:
        if is_active != before.is_active:
            action = "reactivate" if is_active else "deactivate"
        else:
            action = "update"
        await record_change(
            session,
            actor=actor,
            action=action,
            entity=PromoCode,
            entity_id=str(promo.id),
            before=before.model_dump(mode="json"),
            after=after.model_dump(mode="json"),
        )
    return after


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def delete_promo_code(session: AsyncSession, code: str, *, actor: str) -> None:
    """An unused code is removed; a used one is deactivated so its history stays readable."""
    promo = await find_promo_code(session, code)
    # The row lock queues this behind any reservation of the code that is in flight.
    await session.refresh(promo, with_for_update=True)
    before = _out(promo, (await _tariff_ids(session, [promo.id]))[promo.id])
    used = await session.scalar(
        select(
            exists().where(PromoRedemption.promo_code_id == promo.id)
            | exists().where(Invoice.promo_code_id == promo.id)
        )
    )
    if not used:
        await session.execute(delete(PromoCode).where(PromoCode.id == promo.id))
        after = None
    elif promo.is_active:
        promo.is_active = False
        after = before.model_copy(update={"is_active": False})
    else:
        return  # already deactivated: nothing changes, nothing to record
    await record_change(
        session,
        actor=actor,
        action="delete" if after is None else "deactivate",
        entity=PromoCode,
        entity_id=str(promo.id),
        before=before.model_dump(mode="json"),
        after=None if after is None else after.model_dump(mode="json"),
    )


# Reservation accounting (called by checkout inside its own transaction) ----------------------


async def reserve_promo_code(
    session: AsyncSession,
    promo: PromoCode,
    *,
    user_id: uuid.UUID,
    invoice_id: uuid.UUID,
    tariff_id: uuid.UUID,
    now: datetime,
) -> None:
    """Take one redemption slot of ``promo`` for the invoice, or raise a 422 Problem.

    Never leaves the caller's transaction broken: the slot and the redemption row are
    written in a SAVEPOINT that is rolled back when the once-per-user index refuses them.
    """
    if problem := promo_problem(await promo_terms(session, promo), tariff_id, now):
        unusable = errors.PROMO_CODE_UNUSABLE[problem]
        raise unusable(f"promo code {promo.code} cannot be used: {problem}")
    if promo.once_per_user and await used_by(session, promo, user_id):
        raise _already_used(promo)
    try:
        async with session.begin_nested():
            taken = await _take_slot(session, promo.id)
            if taken is None:
                raise errors.PROMO_CODE_EXHAUSTED(f"promo code {promo.code} is used up")
            session.add(
                PromoRedemption(
                    promo_code_id=promo.id,
                    user_id=user_id,
                    invoice_id=invoice_id,
                    once_per_user=promo.once_per_user,
                    status=RedemptionStatus.RESERVED,
                )
            )
            await session.flush()
    except IntegrityError as error:
        # A concurrent reservation by the same user got in between the check and the insert.
        if (
            getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            == _ONCE_PER_USER_INDEX
        ):
            raise _already_used(promo) from None
        raise
    # Keep the object in step without a lazy load (which an async session cannot do).
    set_committed_value(promo, "redemptions_count", taken)


async def _take_slot(session: AsyncSession, promo_id: uuid.UUID) -> int | None:
    """One more redemption of the code, if its limit allows; the new count, or None. One
    conditional update: concurrent takers can never pass ``max_redemptions``."""
    taken: int | None = await session.scalar(
        update(PromoCode)
        .where(
            PromoCode.id == promo_id,
            or_(
                PromoCode.max_redemptions.is_(None),
                PromoCode.redemptions_count < PromoCode.max_redemptions,
            ),
        )
        .values(redemptions_count=PromoCode.redemptions_count + 1)
        .returning(PromoCode.redemptions_count)
        .execution_options(synchronize_session=False)
    )
    return taken


def _already_used(promo: PromoCode) -> Problem:
    return errors.PROMO_CODE_ALREADY_USED(f"promo code {promo.code} was already used")


async def release_promo_reservation(session: AsyncSession, invoice_id: uuid.UUID) -> bool:
    """Give the invoice's reserved slot back (expired or canceled invoice); False if none.

    Conditional on the ``reserved`` state, so releasing twice (two workers) frees one slot.
    """
    promo_id = await session.scalar(
        update(PromoRedemption)
        .where(
            PromoRedemption.invoice_id == invoice_id,
            PromoRedemption.status == RedemptionStatus.RESERVED,
        )
        .values(status=RedemptionStatus.RELEASED)
        .returning(PromoRedemption.promo_code_id)
        .execution_options(synchronize_session=False)
    )
    if promo_id is None:
        return False
    await session.execute(
        update(PromoCode)
        .where(PromoCode.id == promo_id)
        .values(redemptions_count=PromoCode.redemptions_count - 1)
        .execution_options(synchronize_session=False)
    )
    return True


async def redeem_promo_reservation(session: AsyncSession, invoice_id: uuid.UUID) -> bool:
    """The invoice was paid: its reservation becomes a redemption; False if none was reserved."""
    redeemed = await session.scalar(
        update(PromoRedemption)
        .where(
            PromoRedemption.invoice_id == invoice_id,
            PromoRedemption.status == RedemptionStatus.RESERVED,
        )
        .values(status=RedemptionStatus.REDEEMED)
        .returning(PromoRedemption.id)
        .execution_options(synchronize_session=False)
    )
    return redeemed is not None


async def redeem_released_reservation(session: AsyncSession, invoice_id: uuid.UUID) -> bool:
    """A payment succeeded after its invoice expired and its reservation was released: take
    a slot again and redeem it, within the code's limits; False if the code is used up or
    this viewer has used it since (the payment is then refunded, never honoured over the
    limit). The same conditional update and once-per-user index as a reservation decide,
    so no timing can exceed ``max_redemptions``."""
    redemption = await session.scalar(
        select(PromoRedemption)
        .where(
            PromoRedemption.invoice_id == invoice_id,
            PromoRedemption.status == RedemptionStatus.RELEASED,
        )
        .with_for_update()
    )
    if redemption is None:
        return False
    try:
        async with session.begin_nested():
            taken = await _take_slot(session, redemption.promo_code_id)
            if taken is None:
                return False
            redemption.status = RedemptionStatus.REDEEMED
            await session.flush()
    except IntegrityError as error:
        if (
            getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            == _ONCE_PER_USER_INDEX
        ):
            return False
        raise
    return True
