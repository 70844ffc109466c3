"""HTTP layer of pricing: quotes, and the admin API for discounts and promo codes.

Each request is one transaction (``session.begin()``); the service functions do the rest.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from billing.auth import AdminPrincipal, ViewerId
from billing.catalog.errors import TARIFF_NOT_FOUND
from billing.dependencies import ClockDep, SessionDep, SessionsDep, SettingsDep
from billing.errors import problems
from billing.idempotency import IdempotencyKeyHeader, respond_once
from billing.pricing import promo_codes, service
from billing.pricing.errors import (
    DURATION_DISCOUNT_NOT_FOUND,
    PERSONAL_DISCOUNT_NOT_FOUND,
    PROMO_CODE_EXISTS,
    PROMO_CODE_LIMIT_BELOW_TAKEN,
    PROMO_CODE_NOT_FOUND,
    PROMO_CODE_NOT_REACTIVATABLE,
    QUOTE_ERRORS,
)
from billing.pricing.schemas import (
    DurationDiscountIn,
    DurationDiscountOut,
    PromoCodeChange,
    PromoCodeIn,
    PromoCodeOut,
    QuoteOut,
    QuoteRequest,
    RedemptionOut,
    UserDiscountIn,
    UserDiscountOut,
)
from billing.schemas import Page

router = APIRouter(tags=["quotes"])
admin_router = APIRouter(tags=["admin: discounts and promo codes"])

PageDep = Annotated[Page, Depends()]
# Rules exist for 1..BILLING_MAX_MONTHS, and the setting itself is at most 120.
Months = Annotated[int, Path(ge=1, le=120)]


@router.post("/quotes", responses=problems(*QUOTE_ERRORS))
async def create_quote(
    body: QuoteRequest,
    user_id: ViewerId,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> QuoteOut:
    """The price breakdown for this viewer; changes nothing and reserves nothing."""
    async with session.begin():
        priced = await service.quote_for(
            session,
            user_id=user_id,
            tariff_id=body.tariff_id,
            months=body.months,
            promo_code=body.promo_code,
            now=clock.now(),
            settings=settings,
        )
    promo_code = None if priced.promo is None else priced.promo.code
    return QuoteOut.model_validate({**asdict(priced.quote), "promo_code": promo_code})


# Duration discounts ----------------------------------------------------------------------


@admin_router.get("/duration-discounts")
async def list_duration_discounts(
    _: AdminPrincipal, session: SessionDep
) -> list[DurationDiscountOut]:
    rules = await service.list_duration_discounts(session)
    return [DurationDiscountOut.model_validate(rule) for rule in rules]


@admin_router.put("/duration-discounts/{months}")
async def put_duration_discount(
    months: Months,
    body: DurationDiscountIn,
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> DurationDiscountOut:
    async with session.begin():
        rule = await service.set_duration_discount(
            session, months, body.percent, actor=principal.subject, settings=settings
        )
    return DurationDiscountOut.model_validate(rule)


@admin_router.delete(
    "/duration-discounts/{months}",
    status_code=204,
    responses=problems(DURATION_DISCOUNT_NOT_FOUND),
)
async def delete_duration_discount(
    months: Months, principal: AdminPrincipal, session: SessionDep
) -> Response:
    async with session.begin():
        await service.delete_duration_discount(session, months, actor=principal.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Personal discounts ----------------------------------------------------------------------


@admin_router.get("/users/{user_id}/discount", responses=problems(PERSONAL_DISCOUNT_NOT_FOUND))
async def get_user_discount(
    user_id: UUID, _: AdminPrincipal, session: SessionDep
) -> UserDiscountOut:
    return UserDiscountOut.model_validate(await service.get_user_discount(session, user_id))


@admin_router.put("/users/{user_id}/discount")
async def put_user_discount(
    user_id: UUID,
    body: UserDiscountIn,
    principal: AdminPrincipal,
    session: SessionDep,
    clock: ClockDep,
) -> UserDiscountOut:
    async with session.begin():
        discount = await service.set_user_discount(
            session, user_id, body, actor=principal.subject, now=clock.now()
        )
    return UserDiscountOut.model_validate(discount)


@admin_router.delete(
    "/users/{user_id}/discount", status_code=204, responses=problems(PERSONAL_DISCOUNT_NOT_FOUND)
)
async def delete_user_discount(
    user_id: UUID, principal: AdminPrincipal, session: SessionDep
) -> Response:
    async with session.begin():
        await service.delete_user_discount(session, user_id, actor=principal.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Promo codes -----------------------------------------------------------------------------


@admin_router.get("/promo-codes")
async def list_promo_codes(
    _: AdminPrincipal,
    session: SessionDep,
    page: PageDep,
    active: Annotated[bool | None, Query()] = None,
) -> list[PromoCodeOut]:
    """Newest first; ``active`` filters on whether the code was deleted (deactivated)."""
    return await promo_codes.list_promo_codes(session, page, active=active)


@admin_router.post(
    "/promo-codes",
    status_code=201,
    response_model=PromoCodeOut | list[PromoCodeOut],
    responses=problems(TARIFF_NOT_FOUND, PROMO_CODE_EXISTS),
)
async def create_promo_codes(
    body: PromoCodeIn,
    request: Request,
    principal: AdminPrincipal,
    sessions: SessionsDep,
    clock: ClockDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """One code, or with ``count`` a list of ``count`` generated codes."""

    async def create() -> tuple[int, object]:
        async with sessions() as session, session.begin():
            created = await promo_codes.create_promo_codes(
                session, body, actor=principal.subject, now=clock.now(), settings=settings
            )
        shown = [code.model_dump(mode="json") for code in created]
        return 201, (shown if body.count is not None else shown[0])

    return await respond_once(
        request, sessions, owner=principal.subject, key=idempotency_key, body=body, run=create
    )


@admin_router.delete(
    "/promo-codes/{code}", status_code=204, responses=problems(PROMO_CODE_NOT_FOUND)
)
async def delete_promo_code(code: str, principal: AdminPrincipal, session: SessionDep) -> Response:
    """An unused code is removed; a used one is deactivated (its history stays)."""
    async with session.begin():
        await promo_codes.delete_promo_code(session, code, actor=principal.subject)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.patch(
    "/promo-codes/{code}",
    responses=problems(
        PROMO_CODE_NOT_FOUND, PROMO_CODE_LIMIT_BELOW_TAKEN, PROMO_CODE_NOT_REACTIVATABLE
    ),
)
async def update_promo_code(
    code: str,
    body: PromoCodeChange,
    principal: AdminPrincipal,
    session: SessionDep,
    clock: ClockDep,
) -> PromoCodeOut:
    """Change the validity window, the redemption limit or ``is_active`` (deactivate,
    reactivate); fields left out stay, ``null`` clears an end, a start or the limit. The
    discount and tariffs are fixed once created."""
    async with session.begin():
        return await promo_codes.update_promo_code(
            session, code, body, actor=principal.subject, now=clock.now()
        )


@admin_router.get("/promo-codes/{code}/redemptions", responses=problems(PROMO_CODE_NOT_FOUND))
async def list_redemptions(
    code: str, _: AdminPrincipal, session: SessionDep, page: PageDep
) -> list[RedemptionOut]:
    """Who used the code (reserved, redeemed or released), newest first."""
    return await promo_codes.list_redemptions(session, code, page)
