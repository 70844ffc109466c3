"""Saving a method the provider kept, listing and forgetting them.

Saving happens inside the transaction that settles the payment which saved it, so the
method, the viewer's consent and the subscription's auto-renewal commit together.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.checkout.providers.base import SavedMethod
from billing.models import Payment, PaymentMethod, Subscription
from billing.payment_methods.errors import PAYMENT_METHOD_NOT_FOUND
from billing.schemas import Page

# The version of the consent text the viewer accepted with "save this card" (the front end
# shows it; billing records which one): change it with the text.
CONSENT_TEXT_VERSION = "2026-12-01"


async def remember_method(
    session: AsyncSession,
    payment: Payment,
    saved: SavedMethod,
    subscription: Subscription,
    *,
    months: int,
    now: datetime,
) -> PaymentMethod:
    """Keep the method a paid payment saved, with the viewer's consent (that payment), and
    put the subscription it paid for on auto-renewal."""
    method = await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.provider == payment.provider,
            PaymentMethod.provider_method_id == saved.provider_method_id,
            PaymentMethod.deleted_at.is_(None),
        )
    )
    if method is None or method.user_id != payment.user_id:
        method = PaymentMethod(
            id=uuid.uuid4(),
            user_id=payment.user_id,
            provider=payment.provider,
            provider_method_id=saved.provider_method_id,
            provider_customer_id=saved.customer_id,
            title=saved.title,
            card_last4=saved.card_last4,
            expires=saved.expires,
            consent_at=payment.paid_at or now,
            consent_payment_id=payment.id,
            consent_text_version=CONSENT_TEXT_VERSION,
            created_at=now,
        )
        session.add(method)
        await session.flush()
    payment.payment_method_id = method.id
    subscription.auto_renew = True
    subscription.payment_method_id = method.id
    subscription.renewal_months = months
    return method


async def list_methods(
    session: AsyncSession, user_id: uuid.UUID, page: Page
) -> list[PaymentMethod]:
    rows = await session.scalars(
        select(PaymentMethod)
        .where(PaymentMethod.user_id == user_id, PaymentMethod.deleted_at.is_(None))
        .order_by(PaymentMethod.created_at.desc(), PaymentMethod.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return list(rows)


async def forget_method(
    session: AsyncSession, method_id: uuid.UUID, user_id: uuid.UUID, *, now: datetime
) -> None:
    """The viewer deletes a method: it is never charged again, and renewal is turned off
    wherever it was used (the record stays, with the consent and the charges it made)."""
    method = await session.scalar(
        select(PaymentMethod)
        .where(
            PaymentMethod.id == method_id,
            PaymentMethod.user_id == user_id,
            PaymentMethod.deleted_at.is_(None),
        )
        .with_for_update()
    )
    if method is None:
        raise PAYMENT_METHOD_NOT_FOUND()
    method.deleted_at = now
    await session.execute(
        update(Subscription)
        .where(Subscription.payment_method_id == method.id)
        .values(auto_renew=False, payment_method_id=None)
    )


async def usable_method(
    session: AsyncSession, method_id: uuid.UUID | None, user_id: uuid.UUID
) -> PaymentMethod | None:
    if method_id is None:
        return None
    method: PaymentMethod | None = await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.id == method_id,
            PaymentMethod.user_id == user_id,
            PaymentMethod.deleted_at.is_(None),
        )
    )
    return method
