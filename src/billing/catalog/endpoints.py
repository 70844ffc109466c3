"""HTTP layer of the catalogue: the public tariff list and the admin API for tariffs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from billing.auth import AdminPrincipal
from billing.catalog import service
from billing.catalog.errors import (
    TARIFF_CODE_EXISTS,
    TARIFF_NOT_FOUND,
    TARIFF_ROLE_EXISTS,
    TARIFF_UNPRICED,
)
from billing.catalog.schemas import (
    AdminTariffOut,
    TariffCreate,
    TariffOut,
    TariffPriceOut,
    TariffUpdate,
)
from billing.dependencies import ClockDep, ReadSessionDep, SessionDep, SessionsDep, SettingsDep
from billing.errors import problems
from billing.idempotency import IdempotencyKeyHeader, respond_once
from billing.schemas import Page

router = APIRouter(tags=["tariffs"])
admin_router = APIRouter(tags=["admin: tariffs"])

PageDep = Annotated[Page, Depends()]


@router.get("/tariffs")
async def list_tariffs(session: ReadSessionDep, page: PageDep) -> list[TariffOut]:
    """The tariffs on sale, cheapest first (then by name).

    A catalogue, not a history: it is ordered by price for choosing a plan, unlike the
    newest-first lists elsewhere. Inactive tariffs are not shown. No token needed.
    """
    tariffs = await service.list_active_tariffs(session, limit=page.limit, offset=page.offset)
    return [TariffOut.model_validate(tariff) for tariff in tariffs]


@admin_router.get("/tariffs")
async def admin_list_tariffs(
    principal: AdminPrincipal, session: SessionDep, page: PageDep
) -> list[AdminTariffOut]:
    """Every tariff, active or not (new Auth roles appear here unpriced), newest first."""
    tariffs = await service.list_tariffs(session, limit=page.limit, offset=page.offset)
    return [AdminTariffOut.model_validate(tariff) for tariff in tariffs]


@admin_router.post(
    "/tariffs",
    status_code=201,
    response_model=AdminTariffOut,
    responses=problems(TARIFF_CODE_EXISTS, TARIFF_ROLE_EXISTS, TARIFF_UNPRICED),
)
async def create_tariff(
    body: TariffCreate,
    request: Request,
    principal: AdminPrincipal,
    sessions: SessionsDep,
    clock: ClockDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """A new tariff for an Auth-service role; it can be active only with a price."""

    async def create() -> tuple[int, object]:
        async with sessions() as session, session.begin():
            tariff = await service.create_tariff(
                session,
                code=body.code,
                name=body.name,
                description=body.description,
                role=body.role,
                monthly_price=body.monthly_price,
                currency=body.currency or settings.currency,
                is_active=body.is_active,
                actor=principal.subject,
                now=clock.now(),
            )
        return 201, AdminTariffOut.model_validate(tariff).model_dump(mode="json")

    return await respond_once(
        request, sessions, owner=principal.subject, key=idempotency_key, body=body, run=create
    )


@admin_router.get("/tariffs/{tariff_id}", responses=problems(TARIFF_NOT_FOUND))
async def get_tariff(
    tariff_id: uuid.UUID, principal: AdminPrincipal, session: SessionDep
) -> AdminTariffOut:
    return AdminTariffOut.model_validate(await service.get_tariff(session, tariff_id))


@admin_router.patch("/tariffs/{tariff_id}", responses=problems(TARIFF_NOT_FOUND, TARIFF_UNPRICED))
async def update_tariff(
    tariff_id: uuid.UUID,
    body: TariffUpdate,
    principal: AdminPrincipal,
    session: SessionDep,
    clock: ClockDep,
) -> AdminTariffOut:
    """Change the fields sent. A new price is kept in the price history; invoices already
    issued keep the price they were issued with."""
    async with session.begin():
        tariff = await service.update_tariff(
            session,
            tariff_id,
            name=body.name,
            description=body.description,
            monthly_price=body.monthly_price,
            is_active=body.is_active,
            actor=principal.subject,
            now=clock.now(),
        )
    return AdminTariffOut.model_validate(tariff)


@admin_router.get("/tariffs/{tariff_id}/prices", responses=problems(TARIFF_NOT_FOUND))
async def list_tariff_prices(
    tariff_id: uuid.UUID, principal: AdminPrincipal, session: SessionDep, page: PageDep
) -> list[TariffPriceOut]:
    """The tariff's price changes, newest first: who set which price when, from what."""
    prices = await service.price_history(session, tariff_id, limit=page.limit, offset=page.offset)
    return [TariffPriceOut.model_validate(price) for price in prices]
