"""What the emulated ЮKassa does with its own records: payments, the viewer's decision,
saved methods and charges without the viewer, refunds, two-stage capture and cancel, expiry,
lists. One transaction per use case; ``now`` comes from the app's clock, so a test that
moves time moves the sandbox's ``captured_at`` and its lifetimes too.

A saved method is the payment that saved it: its id is the method's id, and its state keeps
the test card it was paid with (``card``) and ``saved: true``. A charge of a saved method
records the method's id (``method_id``) and card on its own payment, and is decided by the
card as it is created (``cards.declined_later``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    and_,
    bindparam,
    case,
    cast,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import autocommit_statements, transaction
from billing.sandbox import cards, receipts
from billing.sandbox.models import (
    STATE_KEY,
    SandboxPayment,
    SandboxPaymentStatus,
    SandboxRefund,
    SandboxRefundStatus,
    state_of,
    with_state,
)
from billing.sandbox.schemas import (
    CANCELED_BY_MERCHANT,
    CAPTURE_LIFETIME,
    CONFIRMATION_LIFETIME,
    DECLINE_REASON,
    DECLINE_REASONS,
    EXPIRED_ON_CAPTURE,
    EXPIRED_ON_CONFIRMATION,
    PERMISSION_REVOKED,
    WAITING_FOR_CAPTURE,
    CaptureIn,
    PaymentIn,
    ReceiptIn,
    RefundIn,
    api_status,
    captures_at_once,
    invalid_request,
    not_found,
)

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
) -> tuple[SandboxPayment, bool]:
    """A pending payment — or, with a saved ``payment_method_id``, one charged at once:
    succeeded (waiting for capture when two-stage) or canceled with the decline's reason.
    Answers the payment and whether it was made now: the same key with the same request
    answers the same payment (False)."""
    confirmation = request.confirmation
    async with transaction(sessions) as session:
        values: dict[str, Any] = {"status": SandboxPaymentStatus.PENDING}
        state: dict[str, Any] = {
            "capture": request.capture,
            "confirmation": None if confirmation is None else confirmation.type,
            "save_payment_method": request.save_payment_method,
            **_kept(request.receipt),
        }
        if request.payment_method_id is not None:
            values, charged = await _charge_saved(
                session, request.payment_method_id, capture=request.capture, now=now
            )
            state |= charged
        created: SandboxPayment | None = await session.scalar(
            insert(SandboxPayment)
            .values(
                id=str(uuid.uuid4()),
                idempotence_key=idempotence_key,
                request_digest=digest,
                amount=request.amount.value,
                currency=request.amount.currency,
                description=request.description,
                merchant_metadata=with_state(request.metadata, **state),
                return_url=(confirmation.return_url if confirmation else None) or "",
                refunded_amount=0,
                created_at=now,
                **values,
            )
            # A concurrent request with the same key waits here for the first to commit.
            .on_conflict_do_nothing(index_elements=["idempotence_key"])
            .returning(SandboxPayment)
        )
        if created is not None:
            return created, True
        existing = await session.scalar(
            select(SandboxPayment).where(SandboxPayment.idempotence_key == idempotence_key)
        )
        if existing is None:  # cannot be: the conflict was on this very key
            raise RuntimeError("idempotence key conflict without a row")
        if existing.request_digest != digest:
            raise _key_reused()
        return existing, False


async def _charge_saved(
    session: AsyncSession, method_id: str, *, capture: bool, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A charge without the viewer: the new payment's columns and state. A method that was
    never saved (or is unknown) may not be charged (``permission_revoked``); a saved one is
    charged as its test card says."""
    method = await session.get(SandboxPayment, method_id)
    if method is None or not is_saved_method(method):
        return {"status": SandboxPaymentStatus.CANCELED,
                "cancellation_reason": PERMISSION_REVOKED}, {}  # fmt: skip
    kept = state_of(method.merchant_metadata)
    card = cards.card_of(kept.get("card"))
    state = {"method_id": method.id, "saved": True, "card": card.value,
             "card_since": kept.get("card_since", method.created_at.isoformat())}  # fmt: skip
    decline = cards.declined_later(card)
    if decline is not None:
        reason = DECLINE_REASONS[decline]
        return {"status": SandboxPaymentStatus.CANCELED, "cancellation_reason": reason}, state
    if capture:
        return {"status": SandboxPaymentStatus.SUCCEEDED, "captured_at": now}, state
    # Two-stage: the money is held at once, waiting for the shop's capture.
    return {"status": SandboxPaymentStatus.PENDING}, state | {"authorized_at": now.isoformat()}


def is_saved_method(payment: SandboxPayment) -> bool:
    """Whether this payment saved the method it was paid with (a charge of a saved method
    names that method instead: it saves nothing of its own)."""
    state = state_of(payment.merchant_metadata)
    return bool(state.get("saved")) and "method_id" not in state


def _kept(receipt: ReceiptIn | None) -> dict[str, Any]:
    """The state's ``receipt`` for a payment asked with one (checked by the endpoint)."""
    return {} if receipt is None else {"receipt": receipts.new_receipt(receipt)}


async def find_payment(sessions: Sessions, payment_id: str) -> SandboxPayment | None:
    async with sessions() as session:
        return await session.get(SandboxPayment, payment_id)


async def current_payment(
    sessions: Sessions, payment_id: str, *, now: datetime
) -> tuple[SandboxPayment | None, bool]:
    """The payment as ЮKassa would show it at ``now``, and whether looking at it canceled it
    (outlived a lifetime: see ``expire_due``). Billing asks for a payment on every confirm
    and webhook, and the sandbox's cost counts in the benchmarks: the expiry is one
    conditional ``UPDATE``, atomic alone, so both statements go on an autocommit
    connection (2 round trips, where a transaction around them was 4)."""
    async with sessions() as session:
        await autocommit_statements(session)  # one atomic UPDATE and one read, no BEGIN
        expired = await _expire(session, now=now, payment_id=payment_id)
        if expired:
            return expired[0], True
        return await session.get(SandboxPayment, payment_id), False


async def expire_due(sessions: Sessions, *, now: datetime) -> list[SandboxPayment]:
    """Cancel every payment ЮKassa would have canceled by ``now``; answers them, for their
    ``payment.canceled`` notifications."""
    async with transaction(sessions) as session:
        return await _expire(session, now=now)


def _expiry(*, one: bool) -> Any:
    """The statement that cancels what ЮKassa would have canceled (all payments, or
    ``:payment_id``): unconfirmed since before ``:confirmation_deadline`` (now −
    ``CONFIRMATION_LIFETIME``), uncaptured since before ``:capture_deadline`` (now −
    ``CAPTURE_LIFETIME``). ЮKassa does it on its own; the sandbox when a payment is next
    looked at (``_expire`` binds the deadlines)."""
    authorized = SandboxPayment.merchant_metadata[STATE_KEY]["authorized_at"].astext
    pending = [SandboxPayment.status == SandboxPaymentStatus.PENDING]
    if one:
        pending.append(SandboxPayment.id == bindparam("payment_id"))
    unconfirmed = and_(
        authorized.is_(None), SandboxPayment.created_at <= bindparam("confirmation_deadline")
    )
    uncaptured = and_(
        authorized.is_not(None),
        cast(authorized, DateTime(timezone=True)) <= bindparam("capture_deadline"),
    )
    return (
        update(SandboxPayment)
        .where(*pending, or_(unconfirmed, uncaptured))
        .values(
            status=SandboxPaymentStatus.CANCELED,
            cancellation_reason=case(
                (unconfirmed, EXPIRED_ON_CONFIRMATION), else_=EXPIRED_ON_CAPTURE
            ),
        )
        .returning(SandboxPayment)
        .execution_options(synchronize_session=False)
    )


# Built once: the one-payment form runs on every GET of a payment (every confirm and
# webhook of billing), and building it cost more CPU than running it.
_EXPIRE_ALL, _EXPIRE_ONE = _expiry(one=False), _expiry(one=True)


async def _expire(
    session: AsyncSession, *, now: datetime, payment_id: str | None = None
) -> list[SandboxPayment]:
    parameters: dict[str, Any] = {
        "confirmation_deadline": now - CONFIRMATION_LIFETIME,
        "capture_deadline": now - CAPTURE_LIFETIME,
    }
    if payment_id is None:
        return list(await session.scalars(_EXPIRE_ALL, parameters))
    return list(await session.scalars(_EXPIRE_ONE, parameters | {"payment_id": payment_id}))


async def _locked(session: AsyncSession, payment_id: str) -> SandboxPayment | None:
    payment: SandboxPayment | None = await session.scalar(
        select(SandboxPayment)
        .where(SandboxPayment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return payment


async def decide(
    sessions: Sessions,
    payment_id: str,
    decision: Decision,
    *,
    card: cards.TestCard = cards.TestCard.OK,
    now: datetime,
) -> tuple[SandboxPayment | None, bool]:
    """The viewer pressed *Pay* (with a test ``card``) or *Decline*: pending → succeeded
    (``capture: true``) or waiting_for_capture (two-stage), or canceled — by the viewer's
    bank for a card declined now. A card paid with is saved when the payment asked for it.

    Answers the payment and whether this press changed it; a second press (or a race of two,
    serialised by the row lock) finds it no longer pending and changes nothing.
    """
    async with transaction(sessions) as session:
        payment = await _locked(session, payment_id)
        if payment is None or api_status(payment) != SandboxPaymentStatus.PENDING:
            return payment, False
        if decision == Decision.DECLINE:
            payment.status = SandboxPaymentStatus.CANCELED
            payment.cancellation_reason = DECLINE_REASON
            return payment, True
        state = state_of(payment.merchant_metadata)
        declined = cards.declined_now(card)
        paid = {"card": card.value, "card_since": now.isoformat(),
                "saved": declined is None and bool(state.get("save_payment_method"))}  # fmt: skip
        if declined is not None:
            payment.status = SandboxPaymentStatus.CANCELED
            payment.cancellation_reason = DECLINE_REASONS[declined]
        elif captures_at_once(payment):
            payment.status = SandboxPaymentStatus.SUCCEEDED
            payment.captured_at = now
        else:
            paid["authorized_at"] = now.isoformat()
        payment.merchant_metadata = with_state(payment.merchant_metadata, **paid)
        return payment, True


class Settle(StrEnum):
    """What the shop does with a payment waiting for capture."""

    CAPTURE = "capture"
    CANCEL = "cancel"


async def settle(
    sessions: Sessions,
    payment_id: str,
    action: Settle,
    request: CaptureIn,
    *,
    idempotence_key: str,
    digest: str,
    now: datetime,
) -> tuple[SandboxPayment, bool]:
    """``POST /payments/{id}/capture`` (all or part of the amount) or ``/cancel``: only a
    payment waiting for capture can be either. Answers the payment and whether it changed
    now (False: the same request again under the same key)."""
    async with transaction(sessions) as session:
        payment = await _locked(session, payment_id)
        if payment is None:
            raise not_found("Payment", None)
        done = _settled_by(payment, action)
        if done is not None and done.get("key") == idempotence_key:
            if done.get("digest") != digest:
                raise _key_reused()
            return payment, False
        status = api_status(payment)
        if status != WAITING_FOR_CAPTURE:
            raise invalid_request(
                f"Only a payment in status {WAITING_FOR_CAPTURE} can be {action}d; this one"
                f" is {status}"
            )
        if action == Settle.CANCEL:
            payment.status = SandboxPaymentStatus.CANCELED
            payment.cancellation_reason = CANCELED_BY_MERCHANT
        else:
            if request.amount is not None:
                if request.amount.currency != payment.currency:
                    raise invalid_request("The currency differs from the payment's",
                                          "amount.currency")  # fmt: skip
                if request.amount.value > payment.amount:
                    raise invalid_request("The amount exceeds the payment's", "amount.value")
                _receipt_of_capture(payment, request, request.amount.value)
                payment.amount = request.amount.value
            elif request.receipt is not None:
                _receipt_of_capture(payment, request, payment.amount)
            payment.status = SandboxPaymentStatus.SUCCEEDED
            payment.captured_at = now
        payment.merchant_metadata = with_state(
            payment.merchant_metadata, **{action.value: {"key": idempotence_key, "digest": digest}}
        )
        return payment, True


def _receipt_of_capture(payment: SandboxPayment, request: CaptureIn, amount: int) -> None:
    """A receipt sent with the capture replaces the payment's: what is sold is what is taken.
    Taking less than a receipted payment's amount needs one (ЮKassa: "pass the receipt with
    the new contents"), or the kept receipt would not add up to what was paid."""
    partial = amount != payment.amount
    required = partial and receipts.payment_receipt(payment) is not None
    receipts.check_receipt(
        request.receipt, amount=amount, currency=payment.currency, required=required,
        what="capture",
    )  # fmt: skip
    if request.receipt is not None:
        payment.merchant_metadata = with_state(payment.merchant_metadata, **_kept(request.receipt))


def _settled_by(payment: SandboxPayment, action: Settle) -> dict[str, Any] | None:
    """The key and digest of the capture (or cancel) that settled the payment, if one did."""
    done = state_of(payment.merchant_metadata).get(action.value)
    return done if isinstance(done, dict) else None


# --- lists ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """A list request: ``created_at`` bounds, a status, where the previous page ended."""

    limit: int = 10
    status: str | None = None
    created_gte: datetime | None = None
    created_gt: datetime | None = None
    created_lte: datetime | None = None
    created_lt: datetime | None = None
    after: tuple[datetime, str] | None = None  # the cursor: the last item's (created_at, id)
    payment_id: str | None = None  # refunds and receipts
    refund_id: str | None = None  # receipts only


def _paged(query: Select[Any], model: Any, page: Page) -> Select[Any]:
    created = model.created_at
    if page.created_gte is not None:
        query = query.where(created >= page.created_gte)
    if page.created_gt is not None:
        query = query.where(created > page.created_gt)
    if page.created_lte is not None:
        query = query.where(created <= page.created_lte)
    if page.created_lt is not None:
        query = query.where(created < page.created_lt)
    if page.after is not None:
        moment, last_id = page.after
        query = query.where(or_(created < moment, and_(created == moment, model.id < last_id)))
    # One more than asked: whether a next page exists.
    return query.order_by(created.desc(), model.id.desc()).limit(page.limit + 1)


async def list_payments(sessions: Sessions, page: Page) -> tuple[Sequence[SandboxPayment], bool]:
    """Newest first; answers the page and whether more follow."""
    query = select(SandboxPayment)
    if page.status == WAITING_FOR_CAPTURE:
        query = query.where(
            SandboxPayment.status == SandboxPaymentStatus.PENDING,
            SandboxPayment.merchant_metadata[STATE_KEY]["authorized_at"].astext.is_not(None),
        )
    elif page.status == SandboxPaymentStatus.PENDING:
        query = query.where(
            SandboxPayment.status == SandboxPaymentStatus.PENDING,
            SandboxPayment.merchant_metadata[STATE_KEY]["authorized_at"].astext.is_(None),
        )
    elif page.status is not None:
        query = query.where(SandboxPayment.status == page.status)
    async with sessions() as session:
        rows = list(await session.scalars(_paged(query, SandboxPayment, page)))
    return rows[: page.limit], len(rows) > page.limit


async def list_refunds(sessions: Sessions, page: Page) -> tuple[Sequence[SandboxRefund], bool]:
    query = select(SandboxRefund)
    if page.status is not None:
        query = query.where(SandboxRefund.status == page.status)
    if page.payment_id is not None:
        query = query.where(SandboxRefund.payment_id == page.payment_id)
    async with sessions() as session:
        rows = list(await session.scalars(_paged(query, SandboxRefund, page)))
    return rows[: page.limit], len(rows) > page.limit


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
        if request.receipt is not None:  # checked by the endpoint; registered at once
            kept = receipts.new_receipt(request.receipt, refund_id=refund.id, registered_at=now)
            payment.merchant_metadata = with_state(
                payment.merchant_metadata,
                refund_receipts=[*receipts.refund_receipts(payment), kept],
            )
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


# --- receipts -------------------------------------------------------------------------------


def _has_receipts() -> ColumnElement[bool]:
    state = SandboxPayment.merchant_metadata[STATE_KEY]
    return or_(state.has_key("receipt"), state.has_key("refund_receipts"))


async def list_receipts(
    sessions: Sessions, page: Page
) -> tuple[Sequence[receipts.Registered], bool]:
    """Registered receipts, newest first, by ``payment_id`` or ``refund_id`` or all of them.

    They live on their payments' records, so the page is cut here rather than in SQL: fine
    for a sandbox's few thousand payments, and the filters by payment or refund read one."""
    query = select(SandboxPayment).where(_has_receipts())
    if page.payment_id is not None:
        query = query.where(SandboxPayment.id == page.payment_id)
    if page.refund_id is not None:
        refunded = select(SandboxRefund.payment_id).where(SandboxRefund.id == page.refund_id)
        query = query.where(SandboxPayment.id == refunded.scalar_subquery())
    async with sessions() as session:
        payments = list(await session.scalars(query))
    found = [
        receipt
        for payment in payments
        for receipt in receipts.registered_receipts(payment)
        if _on_page(receipt, page)
    ]
    found.sort(key=lambda receipt: (receipt.created_at, receipt.id), reverse=True)
    return found[: page.limit], len(found) > page.limit


def _on_page(receipt: receipts.Registered, page: Page) -> bool:
    moment = receipt.created_at
    if page.refund_id is not None and receipt.body.get("refund_id") != page.refund_id:
        return False
    if page.status is not None and receipt.body["status"] != page.status:
        return False
    if page.after is not None and (moment, receipt.id) >= page.after:
        return False
    return not (
        (page.created_gte is not None and moment < page.created_gte)
        or (page.created_gt is not None and moment <= page.created_gt)
        or (page.created_lte is not None and moment > page.created_lte)
        or (page.created_lt is not None and moment >= page.created_lt)
    )


async def find_receipt(sessions: Sessions, receipt_id: str) -> receipts.Registered | None:
    state = SandboxPayment.merchant_metadata[STATE_KEY]
    query = select(SandboxPayment).where(
        or_(
            state["receipt"]["id"].astext == receipt_id,
            state["refund_receipts"].contains([{"id": receipt_id}]),
        )
    )
    async with sessions() as session:
        payment = await session.scalar(query)
    if payment is None:
        return None
    return next((r for r in receipts.registered_receipts(payment) if r.id == receipt_id), None)
