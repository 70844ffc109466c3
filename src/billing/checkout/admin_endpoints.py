"""Admin API of checkout: every user's payments, filtered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.auth import AdminPrincipal
from billing.checkout.endpoints import payment_out
from billing.checkout.schemas import PaymentOut
from billing.dependencies import SessionDep, SettingsDep
from billing.errors import VALIDATION_ERROR
from billing.models import Payment, PaymentStatus
from billing.schemas import MOMENT_RANGE, Page, within_moment_range

admin_router = APIRouter(tags=["admin: payments"])

MOMENT_HELP = (
    "an ISO 8601 date-time with offset (`2025-05-01T00:00:00+03:00`) or a date "
    f"(`2025-05-01`, midnight UTC), {MOMENT_RANGE}"
)


class AdminPaymentOut(PaymentOut):
    """A payment as the admin API shows it: whose it is, too."""

    user_id: uuid.UUID


def parse_moment(name: str, value: str | None) -> datetime | None:
    """A filter bound: a date-time with an offset, or a date meaning its midnight in UTC,
    within 1970–2200 like every time the API accepts. A date-time without an offset is
    refused rather than guessed."""
    if value is None:
        return None
    try:
        if len(value) == len("2025-05-01"):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise VALIDATION_ERROR(f"{name}: must be {MOMENT_HELP}") from None
    if moment.tzinfo is None:
        raise VALIDATION_ERROR(f"{name}: a date-time needs an offset, e.g. Z")
    try:
        return within_moment_range(moment)
    except ValueError as error:
        raise VALIDATION_ERROR(f"{name}: {error}") from None


async def find_payments(
    session: AsyncSession,
    page: Page,
    *,
    user_id: uuid.UUID | None,
    status: PaymentStatus | None,
    created_from: datetime | None,
    created_before: datetime | None,
) -> Sequence[Payment]:
    """Payments newest first, created within ``[created_from, created_before)``; the
    filters combine."""
    query = select(Payment)
    if user_id is not None:
        query = query.where(Payment.user_id == user_id)
    if status is not None:
        query = query.where(Payment.status == status)
    if created_from is not None:
        query = query.where(Payment.created_at >= created_from)
    if created_before is not None:
        query = query.where(Payment.created_at < created_before)
    # id breaks ties between payments created in one transaction, so pages never overlap.
    query = query.order_by(Payment.created_at.desc(), Payment.id.desc())
    result = await session.scalars(query.limit(page.limit).offset(page.offset))
    return result.all()


@admin_router.get("/payments")
async def list_payments(
    principal: AdminPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    page: Annotated[Page, Depends()],
    user_id: uuid.UUID | None = None,
    status: PaymentStatus | None = None,
    created_from: Annotated[
        str | None,
        Query(alias="from", max_length=40, description=f"created at or after: {MOMENT_HELP}"),
    ] = None,
    created_before: Annotated[
        str | None,
        Query(alias="to", max_length=40, description=f"created before: {MOMENT_HELP}"),
    ] = None,
) -> list[AdminPaymentOut]:
    """Users' payments, newest first; the filters combine. `from` is inclusive and `to`
    exclusive, so `from=2025-05-01&to=2025-06-01` is May (UTC)."""
    lower = parse_moment("from", created_from)
    upper = parse_moment("to", created_before)
    if lower is not None and upper is not None and lower >= upper:
        raise VALIDATION_ERROR("from: must be before to")
    payments = await find_payments(
        session, page, user_id=user_id, status=status, created_from=lower, created_before=upper
    )
    return [
        AdminPaymentOut(**payment_out(payment, settings).model_dump(), user_id=payment.user_id)
        for payment in payments
    ]
