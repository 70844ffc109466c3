"""What the emulated Stripe does with its own records: Checkout Sessions, the viewer's
decision, customers and the cards saved for them, charges without the viewer, refunds,
idempotency keys.

Two clocks, on purpose. Timestamps in objects (``created``, the charge's ``created`` that
billing takes as the payment time) come from the app's clock, so a test that moves time moves
them too. Protocol time — the 30 min–24 h window of ``expires_at`` and when an open session
expires — is the real clock, as at Stripe: the adapter computes ``expires_at`` from real
time, and webhook signatures are checked against real time by the SDK. In production the
two are the same clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction
from billing.sandbox import cards
from billing.sandbox.models import (
    SandboxStripeCustomer,
    SandboxStripeIdempotencyKey,
    SandboxStripePaymentMethod,
    SandboxStripeRefund,
    SandboxStripeRefundStatus,
    SandboxStripeSession,
    SandboxStripeSessionStatus,
    state_of,
    with_state,
)
from billing.sandbox.stripe_schemas import (
    DECLINE,
    DECLINES,
    DELAYED_FAILURE,
    MAX_AMOUNT,
    CardError,
    CustomerIn,
    PaymentIntentIn,
    RefundIn,
    SessionIn,
    idempotency_error,
    intent_state,
    invalid_request,
    is_paid,
    new_id,
    new_session_id,
    no_such,
    unix,
)

Sessions = async_sessionmaker[AsyncSession]
MIN_LIFETIME = timedelta(minutes=30)
MAX_LIFETIME = timedelta(hours=24)


class Decision(StrEnum):
    """The checkout page's buttons: *Pay* (with the ``card`` chosen) and *Decline* (the card is
    declined); for a delayed payment method, the bank's later answer: *Settle* or *Fail*."""

    PAY = "pay"
    DECLINE = "decline"
    SETTLE = "settle"
    FAIL = "fail"


class Card(StrEnum):
    """The page's test cards: the sandboxes' own (``cards.TestCard``), and one that settles
    later (standing in for Stripe's delayed methods, such as bank debits)."""

    OK = "ok"
    DECLINES_LATER_INSUFFICIENT_FUNDS = "declines_later_insufficient_funds"
    DECLINES_LATER_EXPIRED = "declines_later_expired"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DELAYED = "delayed"


# What kind of payment intent a row of the sessions' table holds when it is not a session's.
PAYMENT_INTENT_KIND = "payment_intent"


# --- idempotency ----------------------------------------------------------------------------


async def idempotent(
    sessions: Sessions,
    *,
    key: str | None,
    endpoint: str,
    request_digest: str,
    now: datetime,
    run: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], bool]:
    """Run a POST once per ``Idempotency-Key``: answers the object and whether it is a replay.

    The key is claimed and answered in the transaction that does the work, so a concurrent
    request with the same key waits on the claim and then replays the answer; a request that
    fails (a 4xx) rolls its claim back and leaves the key free, as Stripe does for a request
    refused before it ran. A declined charge (``CardError``) did run: what it made is kept,
    and the key replays its 402.
    """
    declined: CardError | None = None
    async with transaction(sessions) as session:
        if key is not None:
            claimed = await session.scalar(
                insert(SandboxStripeIdempotencyKey)
                .values(key=key, endpoint=endpoint, request_digest=request_digest, created_at=now)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(SandboxStripeIdempotencyKey.key)
            )
            if claimed is None:
                return _replay(await session.get_one(SandboxStripeIdempotencyKey, key),
                               endpoint, request_digest), True  # fmt: skip
        try:
            answer, status = await run(session), 200
        except CardError as error:
            declined, answer, status = error, error.body(), error.status
        if key is not None:
            await session.execute(
                update(SandboxStripeIdempotencyKey)
                .where(SandboxStripeIdempotencyKey.key == key)
                .values(status_code=status, response=answer)
            )
    if declined is not None:  # raised once the decline is committed
        raise declined
    return answer, False


def _replay(row: SandboxStripeIdempotencyKey, endpoint: str, request_digest: str) -> dict[str, Any]:
    if row.endpoint != endpoint:
        raise idempotency_error(
            "Keys for idempotent requests can only be used for the same endpoint they were first"
            f" used for ('{row.endpoint}' vs '{endpoint}'). Try using a key other than"
            f" '{row.key}' if you meant to execute a different request."
        )
    if row.request_digest != request_digest:
        raise idempotency_error(
            "Keys for idempotent requests can only be used with the same parameters they were"
            f" first used with. Try using a key other than '{row.key}' if you meant to execute"
            " a different request."
        )
    if row.response is None:  # cannot be: claimed and answered in one transaction
        raise RuntimeError("an idempotency key without its answer")
    if row.status_code != 200:  # a declined charge: its 402 again
        raise CardError(row.response, replayed=True)
    return row.response


# --- Checkout Sessions ----------------------------------------------------------------------


async def create_session(
    session: AsyncSession, request: SessionIn, *, now: datetime, real_now: datetime
) -> SandboxStripeSession:
    items: list[dict[str, Any]] = []
    currencies: set[str] = set()
    for index, item in enumerate(request.line_items):
        if item.price is not None:
            raise no_such("price", item.price[:64], f"line_items[{index}][price]", status=400)
        if item.price_data is None:
            raise invalid_request(
                f"Missing required param: line_items[{index}][price_data].",
                param=f"line_items[{index}][price_data]", code="parameter_missing",
            )  # fmt: skip
        price = item.price_data
        currencies.add(price.currency.lower())
        items.append({"name": price.product_data.name, "unit_amount": price.unit_amount,
                      "quantity": item.quantity})  # fmt: skip
    if len(currencies) > 1:
        raise invalid_request("All line items must use the same currency.", param="line_items")
    total = sum(item["unit_amount"] * item["quantity"] for item in items)
    if total < 1:
        raise invalid_request("The Checkout Session's total amount due must be at least 1.",
                              code="amount_too_small")  # fmt: skip
    if total > MAX_AMOUNT:
        raise invalid_request(f"The total amount due must be at most {MAX_AMOUNT}.",
                              code="amount_too_large")  # fmt: skip
    if request.customer is not None:
        if request.customer_email is not None:
            raise invalid_request("You may only specify one of these parameters: customer,"
                                  " customer_email.", param="customer_email")  # fmt: skip
        await _customer(session, request.customer, "customer")
    expires_at = _expiry(request.expires_at, real_now)
    created: SandboxStripeSession | None = await session.scalar(
        insert(SandboxStripeSession)
        .values(
            id=new_session_id(),
            status=SandboxStripeSessionStatus.OPEN,
            amount_total=total,
            currency=currencies.pop(),
            line_items=items,
            client_reference_id=request.client_reference_id,
            merchant_metadata=with_state(
                request.metadata,
                customer_email=request.customer_email,
                locale=request.locale,
                customer=request.customer,
                setup_future_usage=request.payment_intent_data.setup_future_usage,
            ),
            payment_intent_metadata=request.payment_intent_data.metadata,
            payment_intent_description=request.payment_intent_data.description,
            success_url=request.success_url,
            cancel_url=request.cancel_url,
            expires_at=expires_at,
            created_at=now,
            amount_refunded=0,
        )
        .returning(SandboxStripeSession)
    )
    assert created is not None
    return created


def _expiry(expires_at: int | None, real_now: datetime) -> datetime:
    if expires_at is None:
        return real_now + MAX_LIFETIME  # Stripe's default
    moment = datetime.fromtimestamp(expires_at, UTC)
    if moment < real_now + MIN_LIFETIME:
        raise invalid_request("The `expires_at` timestamp must be at least 30 minutes from"
                              " Checkout Session creation.", param="expires_at")  # fmt: skip
    if moment > real_now + MAX_LIFETIME:
        raise invalid_request("The `expires_at` timestamp must be less than 24 hours from"
                              " Checkout Session creation.", param="expires_at")  # fmt: skip
    return moment


async def find_session(sessions: Sessions, session_id: str) -> SandboxStripeSession | None:
    async with sessions() as session:
        found = await session.get(SandboxStripeSession, session_id)
    return None if found is None or is_payment_intent_only(found) else found


def is_payment_intent_only(row: SandboxStripeSession) -> bool:
    """A charge of a saved card: a payment intent and its charge, no session."""
    return state_of(row.merchant_metadata).get("kind") == PAYMENT_INTENT_KIND


async def find_by_payment_intent(sessions: Sessions, intent_id: str) -> SandboxStripeSession | None:
    async with sessions() as session:
        found: SandboxStripeSession | None = await session.scalar(
            select(SandboxStripeSession).where(SandboxStripeSession.payment_intent_id == intent_id)
        )
        return found


async def find_by_charge(sessions: Sessions, charge_id: str) -> SandboxStripeSession | None:
    async with sessions() as session:
        found: SandboxStripeSession | None = await session.scalar(
            select(SandboxStripeSession).where(SandboxStripeSession.charge_id == charge_id)
        )
        return found


async def expire_if_due(
    sessions: Sessions, session_id: str, *, real_now: datetime
) -> SandboxStripeSession | None:
    """An open session past its ``expires_at`` expires (Stripe does it on its own; the
    sandbox when the session is next looked at). Answers the session if this call expired
    it, for the ``checkout.session.expired`` event."""
    async with transaction(sessions) as session:
        expired: SandboxStripeSession | None = await session.scalar(
            update(SandboxStripeSession)
            .where(
                SandboxStripeSession.id == session_id,
                SandboxStripeSession.status == SandboxStripeSessionStatus.OPEN,
                SandboxStripeSession.expires_at <= real_now,
            )
            .values(status=SandboxStripeSessionStatus.EXPIRED)
            .returning(SandboxStripeSession)
            .execution_options(synchronize_session=False)
        )
        return expired


async def expire(session: AsyncSession, session_id: str) -> SandboxStripeSession:
    """``POST /v1/checkout/sessions/{id}/expire``: only an open session can be expired."""
    found = await session.scalar(
        select(SandboxStripeSession)
        .where(SandboxStripeSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if found is None:
        raise no_such("checkout.session", session_id, "session")
    if found.status != SandboxStripeSessionStatus.OPEN:
        raise invalid_request(
            f'Only Checkout Sessions with a status in ["open"] can be expired; this one is'
            f" {found.status}."
        )
    found.status = SandboxStripeSessionStatus.EXPIRED
    return found


async def decide(
    sessions: Sessions,
    session_id: str,
    decision: Decision,
    *,
    card: Card = Card.OK,
    now: datetime,
    real_now: datetime,
) -> tuple[SandboxStripeSession | None, bool]:
    """What the viewer (or, later, their bank) did, as Stripe's states record it:

    - *Pay*: the session completes; its payment intent succeeds — or, with the delayed card,
      is ``processing`` and the session stays ``unpaid`` until the bank answers. A session
      asked to save the card (``setup_future_usage``) attaches it to its customer (made now
      from ``customer_email`` when the session named none).
    - *Decline*, or *Pay* with a card declined now: the card is declined; the session stays
      ``open`` for another try, its payment intent ``requires_payment_method`` with the
      decline as ``last_payment_error``.
    - *Settle* / *Fail*: the bank's answer for a processing payment.

    Each try makes a new charge; the payment intent is made by the first. Answers the session
    and whether this press changed it; one that does not apply (pressed again, a race lost to
    the row lock, too late) changes nothing.
    """
    async with transaction(sessions) as session:
        found = await session.scalar(
            select(SandboxStripeSession)
            .where(SandboxStripeSession.id == session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if found is None or not _applies(found, decision, real_now):
            return found, False
        # A copy: the ORM sees a change only when the new document differs from the old one.
        intent = dict(intent_state(found) or {"created": unix(now)})
        if decision in (Decision.PAY, Decision.DECLINE):
            found.payment_intent_id = found.payment_intent_id or new_id("pi_")
            found.charge_id = new_id("ch_")
            found.paid_at = now  # the latest charge's time
        test_card = cards.card_of(card.value)
        declined_now = cards.declined_now(test_card)
        if decision == Decision.PAY:
            intent |= {"card": test_card.value, "card_since": now.isoformat()}
        if decision == Decision.PAY and declined_now is not None:
            intent |= {"status": "requires_payment_method", "error": DECLINES[declined_now],
                       "charge_status": "failed", "payment_method": None}  # fmt: skip
        elif decision == Decision.PAY:
            found.status = SandboxStripeSessionStatus.COMPLETE
            delayed = card == Card.DELAYED
            saved = await _save_card(session, found, test_card, now)
            intent |= {"status": "processing" if delayed else "succeeded", "error": None,
                       "charge_status": "pending" if delayed else "succeeded",
                       "payment_method": saved}  # fmt: skip
        elif decision == Decision.DECLINE:
            intent |= {"status": "requires_payment_method", "error": DECLINE,
                       "charge_status": "failed", "payment_method": None}  # fmt: skip
        elif decision == Decision.SETTLE:
            intent |= {"status": "succeeded", "charge_status": "succeeded"}
        else:
            intent |= {"status": "requires_payment_method", "error": DELAYED_FAILURE,
                       "charge_status": "failed"}  # fmt: skip
        found.merchant_metadata = with_state(found.merchant_metadata, intent=intent)
        return found, True


async def _save_card(
    session: AsyncSession, paid: SandboxStripeSession, card: cards.TestCard, now: datetime
) -> str | None:
    """The card a session asked to save, attached to its customer: the new payment method's
    id (None when the session did not ask). Updates the session's state with the customer
    made for it, if it named none."""
    state = state_of(paid.merchant_metadata)
    if state.get("setup_future_usage") is None:
        return None
    customer_id = state.get("customer")
    if customer_id is None:
        customer = SandboxStripeCustomer(
            id=new_id("cus_", 14), email=state.get("customer_email"), merchant_metadata={},
            created_at=now,
        )  # fmt: skip
        session.add(customer)
        await session.flush()
        customer_id = customer.id
        paid.merchant_metadata = with_state(paid.merchant_metadata, customer=customer_id)
    method = SandboxStripePaymentMethod(
        id=new_id("pm_"), customer_id=customer_id, card=card.value, created_at=now
    )
    session.add(method)
    await session.flush()
    return method.id


# --- customers and their saved cards ----------------------------------------------------------


async def create_customer(
    session: AsyncSession, request: CustomerIn, *, now: datetime
) -> SandboxStripeCustomer:
    customer = SandboxStripeCustomer(
        id=new_id("cus_", 14), email=request.email, name=request.name,
        description=request.description, merchant_metadata=request.metadata, created_at=now,
    )  # fmt: skip
    session.add(customer)
    await session.flush()
    return customer


async def _customer(session: AsyncSession, customer_id: str, param: str) -> SandboxStripeCustomer:
    found = await session.get(SandboxStripeCustomer, customer_id)
    if found is None:
        raise no_such("customer", customer_id[:64], param, status=400)
    return found


async def find_customer(sessions: Sessions, customer_id: str) -> SandboxStripeCustomer | None:
    async with sessions() as session:
        return await session.get(SandboxStripeCustomer, customer_id)


async def find_payment_method(
    sessions: Sessions, method_id: str
) -> SandboxStripePaymentMethod | None:
    async with sessions() as session:
        return await session.get(SandboxStripePaymentMethod, method_id)


async def detach(
    session: AsyncSession, method_id: str, *, now: datetime
) -> SandboxStripePaymentMethod:
    """``POST /v1/payment_methods/{id}/detach``: for good — a detached card is never charged
    or attached again."""
    method = await session.get(
        SandboxStripePaymentMethod, method_id, with_for_update=True, populate_existing=True
    )
    if method is None:
        raise no_such("PaymentMethod", method_id[:64], "payment_method")
    if method.customer_id is None:
        raise invalid_request("The payment method you provided is not attached to a customer"
                              " so detachment is impossible.")  # fmt: skip
    method.customer_id = None
    method.detached_at = now
    return method


async def charge(
    session: AsyncSession, request: PaymentIntentIn, *, now: datetime
) -> tuple[SandboxStripeSession, SandboxStripePaymentMethod]:
    """``POST /v1/payment_intents`` with ``confirm=true``: a saved card charged at once. The
    intent (and its charge) is kept whether the card pays or is declined; the caller answers
    a declined one with Stripe's 402. The card's row is locked for share: a concurrent detach
    waits for the charge, or the charge finds the card detached."""
    if not request.confirm:
        raise invalid_request("The sandbox emulates PaymentIntents confirmed at creation only:"
                              " pass confirm=true.", param="confirm")  # fmt: skip
    if request.payment_method is None:
        raise invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            param="payment_method", code="payment_intent_unexpected_state",
        )  # fmt: skip
    if request.customer is not None:
        await _customer(session, request.customer, "customer")
    method = await session.scalar(
        select(SandboxStripePaymentMethod)
        .where(SandboxStripePaymentMethod.id == request.payment_method)
        .with_for_update(read=True)
    )
    if method is None:
        raise no_such("PaymentMethod", request.payment_method[:64], "payment_method", status=400)
    if method.customer_id is None:
        raise invalid_request(
            "The provided PaymentMethod was previously used with a PaymentIntent without"
            " Customer attachment, shared with a connected account without Customer"
            " attachment, or was detached from a Customer. It may not be used again. To use a"
            " PaymentMethod multiple times, you must attach it to a Customer first.",
            param="payment_method",
        )
    if method.customer_id != request.customer:
        raise invalid_request(
            f"The customer does not have a payment method with the ID {method.id}. The payment"
            " method must be attached to the customer.", param="payment_method",
        )  # fmt: skip
    card = cards.card_of(method.card)
    decline = cards.declined_later(card)
    intent: dict[str, Any] = {
        "created": unix(now), "card": card.value, "card_since": method.created_at.isoformat(),
        "payment_method": method.id,
    }  # fmt: skip
    if decline is None:
        intent |= {"status": "succeeded", "error": None, "charge_status": "succeeded"}
    else:
        intent |= {"status": "requires_payment_method", "error": DECLINES[decline],
                   "charge_status": "failed"}  # fmt: skip
    intent_id = new_id("pi_")
    charged = SandboxStripeSession(
        id=intent_id,
        status=SandboxStripeSessionStatus.COMPLETE,  # no session: nothing to pay any more
        amount_total=request.amount,
        currency=request.currency.lower(),
        line_items=[],
        merchant_metadata=with_state(
            {},
            kind=PAYMENT_INTENT_KIND,
            customer=request.customer,
            intent=intent,
            off_session=request.off_session is not False,
        ),
        payment_intent_metadata=request.metadata,
        payment_intent_description=request.description,
        expires_at=now,
        created_at=now,
        payment_intent_id=intent_id,
        charge_id=new_id("ch_"),
        paid_at=now,
        amount_refunded=0,
    )
    session.add(charged)
    await session.flush()
    return charged, method


def _applies(found: SandboxStripeSession, decision: Decision, real_now: datetime) -> bool:
    if decision in (Decision.PAY, Decision.DECLINE):
        return found.status == SandboxStripeSessionStatus.OPEN and found.expires_at > real_now
    intent = intent_state(found)
    return intent is not None and intent["status"] == "processing"


# --- refunds --------------------------------------------------------------------------------


async def create_refund(
    session: AsyncSession, request: RefundIn, *, now: datetime
) -> tuple[SandboxStripeRefund, SandboxStripeSession]:
    """Refund (part of) a paid session's charge, never more than is left of it. The session
    is locked, so concurrent refunds of one payment add up correctly."""
    if request.payment_intent is not None and request.charge is not None:
        raise invalid_request("You cannot pass both charge and payment_intent.")
    if request.payment_intent is not None:
        column, object_id, what = (
            SandboxStripeSession.payment_intent_id, request.payment_intent, "payment_intent"
        )  # fmt: skip
    elif request.charge is not None:
        column, object_id, what = SandboxStripeSession.charge_id, request.charge, "charge"
    else:
        raise invalid_request(
            "One of the following params should be provided for this request: payment_intent"
            " or charge.",
            code="parameter_missing",
        )
    paid = await session.scalar(
        select(SandboxStripeSession)
        .where(column == object_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if paid is None:
        raise no_such(what, object_id[:64], what, status=400)
    if not is_paid(paid):
        raise invalid_request(
            f"This PaymentIntent ({paid.payment_intent_id}) does not have a successful charge"
            " to refund.",
            code="charge_not_refundable" if what == "charge" else None,
        )
    left = paid.amount_total - paid.amount_refunded
    if left == 0:
        raise invalid_request(f"Charge {paid.charge_id} has already been refunded.",
                              code="charge_already_refunded")  # fmt: skip
    amount = request.amount if request.amount is not None else left
    if amount > left:
        raise invalid_request(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            param="amount", code="amount_too_large",
        )  # fmt: skip
    refund = SandboxStripeRefund(
        id=new_id("re_"),
        session_id=paid.id,
        status=SandboxStripeRefundStatus.SUCCEEDED,
        amount=amount,
        currency=paid.currency,
        reason=request.reason,
        merchant_metadata=request.metadata,
        created_at=now,
    )
    session.add(refund)
    paid.amount_refunded += amount
    await session.flush()
    return refund, paid


async def find_refund(
    sessions: Sessions, refund_id: str
) -> tuple[SandboxStripeRefund, SandboxStripeSession] | None:
    async with sessions() as session:
        refund = await session.get(SandboxStripeRefund, refund_id)
        if refund is None:
            return None
        return refund, await session.get_one(SandboxStripeSession, refund.session_id)
