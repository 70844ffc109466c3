"""What the emulated ЮKassa does with its own records: payments, the viewer's decision,
refunds. One transaction per use case; ``now`` comes from the app's clock, so a test that
moves time moves the sandbox's ``captured_at`` too."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction
from billing.sandbox.models import (
    SandboxPayment,
    SandboxPaymentStatus,
    SandboxRefund,
    SandboxRefundStatus,
)
from billing.sandbox.schemas import DECLINE_REASON, PaymentIn, RefundIn, invalid_request

Sessions = async_sessionmaker[AsyncSession]


class Decision(StrEnum):
    """The two buttons of the checkout page."""

    PAY = "pay"
    DECLINE = "decline"


def _key_reused() -> Exception:
    return invalid_request(
        "Idempotence-Key was already used for a request with other parameters",
        "Idempotence-Key",
    )


async def create_payment(
    sessions: Sessions, request: PaymentIn, *, idempotence_key: str, digest: str, now: datetime
) -> SandboxPayment:
    """A pending payment; the same key with the same request answers the same payment."""
    async with transaction(sessions) as session:
        created: SandboxPayment | None = await session.scalar(
            insert(SandboxPayment)
            .values(
                id=str(uuid.uuid4()),
                idempotence_key=idempotence_key,
                request_digest=digest,
                status=SandboxPaymentStatus.PENDING,
                amount=request.amount.value,
                currency=request.amount.currency,
                description=request.description,
                merchant_metadata=request.metadata,
                return_url=request.confirmation.return_url,
                refunded_amount=0,
                created_at=now,
            )
            # A concurrent request with the same key waits here for the first to commit.
            .on_conflict_do_nothing(index_elements=["idempotence_key"])
            .returning(SandboxPayment)
        )
        if created is not None:
            return created
        existing = await session.scalar(
            select(SandboxPayment).where(SandboxPayment.idempotence_key == idempotence_key)
        )
        if existing is None:  # cannot be: the conflict was on this very key
            raise RuntimeError("idempotence key conflict without a row")
        if existing.request_digest != digest:
            raise _key_reused()
        return existing


async def find_payment(sessions: Sessions, payment_id: str) -> SandboxPayment | None:
    async with sessions() as session:
        return await session.get(SandboxPayment, payment_id)


async def decide(
    sessions: Sessions, payment_id: str, decision: Decision, *, now: datetime
) -> tuple[SandboxPayment | None, bool]:
    """The viewer pressed *Pay* or *Decline*: pending → succeeded | canceled.

    Answers the payment and whether this press changed it; a second press (or a race of two)
    finds it no longer pending and changes nothing.
    """
    if decision == Decision.PAY:
        changes = {"status": SandboxPaymentStatus.SUCCEEDED, "captured_at": now}
    else:
        changes = {"status": SandboxPaymentStatus.CANCELED, "cancellation_reason": DECLINE_REASON}
    async with transaction(sessions) as session:
        changed: SandboxPayment | None = await session.scalar(
            update(SandboxPayment)
            .where(
                SandboxPayment.id == payment_id,
                SandboxPayment.status == SandboxPaymentStatus.PENDING,
            )
            .values(**changes)
            .returning(SandboxPayment)
            .execution_options(synchronize_session=False)
        )
        if changed is not None:
            return changed, True
        return await session.get(SandboxPayment, payment_id), False


async def create_refund(
    sessions: Sessions, request: RefundIn, *, idempotence_key: str, digest: str, now: datetime
) -> tuple[SandboxRefund, bool]:
    """Refund (part of) a succeeded payment, never more than is left of it.

    Answers the refund and whether it was made now (False: a repeat of the same request).
    The payment is locked, so concurrent refunds of one payment add up correctly.
    """
    async with transaction(sessions) as session:
        existing = await _refund_by_key(session, idempotence_key, digest)
        if existing is not None:
            return existing, False
        payment = await session.scalar(
            select(SandboxPayment)
            .where(SandboxPayment.id == request.payment_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if payment is None:
            raise invalid_request("Payment doesn't exist or access denied", "payment_id")
        # A repeat that waited for the lock above finds the first one's refund now.
        existing = await _refund_by_key(session, idempotence_key, digest)
        if existing is not None:
            return existing, False
        if payment.status != SandboxPaymentStatus.SUCCEEDED:
            raise invalid_request(
                f"Refunds are possible for succeeded payments only; this one is {payment.status}",
                "payment_id",
            )
        if request.amount.currency != payment.currency:
            raise invalid_request("The refund's currency differs from the payment's",
                                  "amount.currency")  # fmt: skip
        if request.amount.value > payment.amount - payment.refunded_amount:
            raise invalid_request(
                "The refund amount exceeds what is left of the payment", "amount.value"
            )
        refund: SandboxRefund | None = await session.scalar(
            insert(SandboxRefund)
            .values(
                id=str(uuid.uuid4()),
                idempotence_key=idempotence_key,
                request_digest=digest,
                payment_id=payment.id,
                status=SandboxRefundStatus.SUCCEEDED,
                amount=request.amount.value,
                currency=request.amount.currency,
                description=request.description,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["idempotence_key"])
            .returning(SandboxRefund)
        )
        if refund is None:  # the same key, concurrently, for another payment
            raise _key_reused()
        payment.refunded_amount += request.amount.value
        return refund, True


async def _refund_by_key(
    session: AsyncSession, idempotence_key: str, digest: str
) -> SandboxRefund | None:
    refund = await session.scalar(
        select(SandboxRefund).where(SandboxRefund.idempotence_key == idempotence_key)
    )
    if refund is not None and refund.request_digest != digest:
        raise _key_reused()
    return refund


async def find_refund(sessions: Sessions, refund_id: str) -> SandboxRefund | None:
    async with sessions() as session:
        return await session.get(SandboxRefund, refund_id)
