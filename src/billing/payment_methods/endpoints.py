"""HTTP layer of saved payment methods: the viewer's own."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from billing.auth import ViewerId
from billing.dependencies import ClockDep, SessionDep
from billing.errors import problems
from billing.payment_methods import service
from billing.payment_methods.errors import PAYMENT_METHOD_NOT_FOUND
from billing.payment_methods.schemas import PaymentMethodOut
from billing.schemas import Page

router = APIRouter(tags=["payment methods"])


@router.get("/payment-methods")
async def list_payment_methods(
    user_id: ViewerId, session: SessionDep, page: Annotated[Page, Depends()]
) -> list[PaymentMethodOut]:
    """The methods the viewer saved (for auto-renewal), newest first."""
    return [
        PaymentMethodOut(
            id=method.id,
            provider=method.provider,
            title=method.title,
            card_last4=method.card_last4,
            expires=method.expires,
            created_at=method.created_at,
        )
        for method in await service.list_methods(session, user_id, page)
    ]


@router.delete(
    "/payment-methods/{method_id}",
    status_code=204,
    response_class=Response,
    responses=problems(PAYMENT_METHOD_NOT_FOUND),
)
async def delete_payment_method(
    method_id: uuid.UUID, user_id: ViewerId, session: SessionDep, clock: ClockDep
) -> Response:
    """Forget a method: never charged again; renewal is turned off where it was used."""
    async with session.begin():
        await service.forget_method(session, method_id, user_id, now=clock.now())
    return Response(status_code=204)
