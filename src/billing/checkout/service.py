"""Checkout rules: issue invoices, start and settle payments, refund within the window.

Settling is one function (:func:`settle_from_provider`) whichever way the news arrives —
webhook, the viewer's confirm call, or the scheduler's reconciliation — and it runs on the
locked payment row, so applying ``succeeded`` twice or concurrently extends access exactly
once. No provider is ever asked while a transaction is open (see "payments" below).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout import links, webhook_events
from billing.checkout.errors import (
    CUSTOMER_EMAIL_REQUIRED,
    INVOICE_EXPIRED,
    INVOICE_NOT_FOUND,
    INVOICE_NOT_OPEN,
    PAYMENT_NOT_FOUND,
    PAYMENT_NOT_REFUNDABLE,
    PROVIDER_UNAVAILABLE,
    REFUND_WINDOW_EXPIRED,
)
from billing.checkout.providers.base import (
    DeclineReason,
    PaymentProvider,
    ProviderError,
    ProviderPayment,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
    Receipt,
    SavedMethod,
)
from billing.checkout.providers.registry import Providers, UnknownProvider
from billing.checkout.receipts import sale_receipt
from billing.checkout.refund_window import refund_deadline, refund_window_open
from billing.config import Settings
from billing.db import autocommit_statements, transaction
from billing.errors import Problem
from billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ProviderCustomer,
    Refund,
    RefundReason,
    RefundStatus,
    Subscription,
    Tariff,
)
from billing.outbox.events import Discount, PaymentRefunded, PaymentSucceeded, TariffRef
from billing.outbox.service import add_event
from billing.payment_methods.service import remember_method
from billing.pricing.service import (
    PricedQuote,
    quote_for,
    redeem_promo_reservation,
    redeem_released_reservation,
    reserve_promo_code,
)
from billing.schemas import Page
from billing.subscriptions.renewals import renewal_declined, renewal_succeeded
from billing.subscriptions.service import extend_subscription, take_back

log = logging.getLogger(__name__)

Sessions = async_sessionmaker[AsyncSession]


# --- invoices -------------------------------------------------------------------------------


async def issue_invoice(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    tariff_id: uuid.UUID,
    months: int,
    promo_code: str | None,
    customer_email: str | None = None,
    now: datetime,
    settings: Settings,
) -> Invoice:
    """Freeze the quote into an invoice and reserve its promo code; a free invoice is settled
    on the spot, without the provider. ``customer_email`` (the token's) is kept for the
    receipt of a payment started from the browser's checkout link."""
    priced = await quote_for(
        session,
        user_id=user_id,
        tariff_id=tariff_id,
        months=months,
        promo_code=promo_code,
        now=now,
        settings=settings,
    )
    invoice = invoice_from_quote(
        priced,
        user_id=user_id,
        months=months,
        kind=InvoiceKind.PURCHASE,
        customer_email=customer_email,
        expires_at=now + settings.invoice_ttl,
        now=now,
    )
    session.add(invoice)
    await session.flush()
    if priced.promo is not None:
        await reserve_promo_code(
            session,
            priced.promo,
            user_id=user_id,
            invoice_id=invoice.id,
            tariff_id=tariff_id,
            now=now,
        )
    if invoice.total_amount == 0:
        await _settle(session, invoice, priced.tariff, payment=None, now=now)
    return invoice


def invoice_from_quote(
    priced: PricedQuote,
    *,
    user_id: uuid.UUID,
    months: int,
    kind: InvoiceKind,
    customer_email: str | None,
    expires_at: datetime,
    now: datetime,
) -> Invoice:
    """An invoice with the quote's breakdown frozen in it."""
    quote = priced.quote
    return Invoice(
        id=uuid.uuid4(),
        user_id=user_id,
        tariff_id=priced.tariff.id,
        months=months,
        currency=quote.currency,
        monthly_price=priced.tariff.monthly_price,  # frozen: later price changes leave it
        base_amount=quote.base_amount,
        discount_source=quote.discount.source.value,
        discount_percent=quote.discount.percent,
        discount_amount=quote.discount.amount,
        total_amount=quote.total_amount,
        # JSON has no decimals: percents are kept as strings ("12.5"), exactly.
        considered=[
            {
                "source": item.source.value,
                "percent": None if item.percent is None else str(item.percent),
                "amount": item.amount,
            }
            for item in quote.considered
        ],
        promo_code_id=priced.promo.id if priced.promo else None,
        promo_code=priced.promo.code if priced.promo else None,
        status=InvoiceStatus.OPEN,
        kind=kind,
        customer_email=customer_email,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )


async def get_own_invoice(
    session: AsyncSession, invoice_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> Invoice:
    """Another user's invoice is indistinguishable from a missing one."""
    query = select(Invoice).where(Invoice.id == invoice_id, Invoice.user_id == user_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    invoice = await session.scalar(query)
    if invoice is None:
        raise INVOICE_NOT_FOUND()
    return invoice


def _require_open(invoice: Invoice, now: datetime) -> None:
    if invoice.status == InvoiceStatus.EXPIRED or (
        invoice.status == InvoiceStatus.OPEN and invoice.expires_at <= now
    ):
        raise INVOICE_EXPIRED()
    if invoice.status != InvoiceStatus.OPEN:
        raise INVOICE_NOT_OPEN(f"the invoice is {invoice.status}")


# --- payments -------------------------------------------------------------------------------
#
# Starting a payment, confirming it and refunding it all take the same shape, because no
# database connection or row lock may be held while a provider is asked (a slow provider
# would otherwise hold the pool and take the whole API down with it):
#   1. a short transaction records the intent — a ``pending`` row carrying its idempotence
#      key — and commits;
#   2. the provider is asked, with nothing held;
#   3. a short transaction applies the answer, re-checking the row's state.
# Unique indexes (one pending payment per invoice, one live refund per payment) and the
# idempotence key make a double click, a race or a retry harmless: the provider answers a
# repeated key with the first request's result. Reconciliation finishes what a crash or a
# timeout interrupted between 1 and 3.


def provider_for(providers: Providers, name: str) -> PaymentProvider:
    """The adapter of the provider a payment was made with (whatever ``BILLING_PROVIDER``
    says now)."""
    try:
        return providers[name]
    except UnknownProvider as error:
        log.error("%s", error)
        raise PROVIDER_UNAVAILABLE("the payment provider is unavailable") from None


async def start_payment(
    sessions: Sessions,
    providers: Providers,
    *,
    invoice_id: uuid.UUID,
    user_id: uuid.UUID,
    return_url: str | None,
    customer_email: str | None,
    now: datetime,
    settings: Settings,
    save_payment_method: bool = False,
) -> Payment:
    """Start (or resume) the invoice's payment and answer where to send the viewer.

    The invoice's one pending payment is answered again if the provider already gave it a
    page; one that never got that far (a timeout, a crash) is asked for again with its own
    idempotence key, so the provider never holds two payments for one invoice. With
    receipts on, a new payment needs the viewer's e-mail (422 ``customer_email_required``,
    nothing written, no provider call); its receipt is fixed here, so every attempt sends
    the same one.
    """
    customer_id = None
    if save_payment_method and providers.for_new_payments.keeps_customers:
        # Before any transaction: it may ask the provider (once per viewer).
        customer_id = await _customer_of(
            sessions, providers.for_new_payments, user_id, customer_email
        )
    async with transaction(sessions) as session:
        # The invoice lock (held for this short transaction only) orders concurrent starts:
        # the second finds the first's pending row.
        invoice = await get_own_invoice(session, invoice_id, user_id, lock=True)
        _require_open(invoice, now)
        payment = await session.scalar(
            select(Payment).where(
                Payment.invoice_id == invoice.id, Payment.status == PaymentStatus.PENDING
            )
        )
        if payment is not None and payment.confirmation_url is not None:
            return payment
        customer_email = customer_email or invoice.customer_email
        if payment is None:
            if settings.receipts_on and customer_email is None:
                raise CUSTOMER_EMAIL_REQUIRED()
            provider = providers.for_new_payments
            payment = Payment(
                id=uuid.uuid4(),
                invoice_id=invoice.id,
                user_id=user_id,
                provider=provider.name,
                idempotence_key=uuid.uuid4(),
                status=PaymentStatus.PENDING,
                amount=invoice.total_amount,
                currency=invoice.currency,
                return_url=return_url,
                save_payment_method=save_payment_method,
                provider_data={"customer": customer_id} if customer_id else {},
                # The provider's windows are on its own (real) clock, whatever ours says.
                requested_at=datetime.now(UTC),
                customer_email=customer_email,
                created_at=now,
                updated_at=now,
            )
            if settings.receipts_on and provider.sends_receipts and customer_email:
                payment.receipt = await invoice_receipt(session, invoice, customer_email, settings)
            session.add(payment)
        request = await _payment_request(session, payment, invoice, settings)
    return await _create_at_provider(
        sessions, providers, payment, request, now=now, settings=settings
    )


async def invoice_receipt(
    session: AsyncSession, invoice: Invoice, customer_email: str, settings: Settings
) -> dict[str, Any]:
    """The 54-FZ receipt of an invoice's payment, as it is kept and sent (every attempt
    sends the same one)."""
    tariff = await session.get_one(Tariff, invoice.tariff_id)
    return sale_receipt(
        tariff_name=tariff.name,
        months=invoice.months,
        amount=invoice.total_amount,
        currency=invoice.currency,
        customer_email=customer_email,
        vat_code=settings.receipt_vat_code,
        tax_system_code=settings.receipt_tax_system,
    ).to_json()


ProviderRequest = Callable[[PaymentProvider], Awaitable[ProviderPayment]]


async def _payment_request(
    session: AsyncSession, payment: Payment, invoice: Invoice, settings: Settings
) -> ProviderRequest:
    """What the provider is asked: the same for every attempt with one key. A renewal's
    payment charges the saved method without the viewer; any other creates a payment the
    viewer confirms on the provider's page."""
    tariff = await session.get_one(Tariff, invoice.tariff_id)
    receipt = Receipt.from_json(payment.receipt) if payment.receipt else None
    # A renewal attempt names its saved method; a renewal invoice paid by hand does not.
    if payment.payment_method_id is not None:
        method = await session.get_one(PaymentMethod, payment.payment_method_id)
        saved = SavedMethod(
            provider_method_id=method.provider_method_id,
            title=method.title,
            customer_id=method.provider_customer_id,
        )
        description = f"{tariff.name}: {invoice.months} mo. (renewal)"

        def charge(provider: PaymentProvider) -> Awaitable[ProviderPayment]:
            return provider.charge_saved_method(
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                description=description,
                method=saved,
                idempotence_key=str(payment.idempotence_key),
                receipt=receipt,
            )

        return charge
    asked = {
        "payment_id": payment.id,
        "amount": payment.amount,
        "currency": payment.currency,
        "description": f"{tariff.name}: {invoice.months} mo.",
        "return_url": payment.return_url or links.return_url(settings, payment.id),
        "idempotence_key": str(payment.idempotence_key),
        "expires_at": invoice.expires_at,
        "requested_at": payment.requested_at or payment.created_at,
        "customer_email": payment.customer_email,
        "receipt": receipt,
        "save_payment_method": payment.save_payment_method,
        "customer_id": payment.provider_data.get("customer"),
    }

    def create(provider: PaymentProvider) -> Awaitable[ProviderPayment]:
        return provider.create_payment(**asked)

    return create


async def _customer_of(
    sessions: Sessions, provider: PaymentProvider, user_id: uuid.UUID, email: str | None
) -> str:
    """The provider's customer for the viewer (Stripe saves a card on one): made once, with
    a key of the viewer's, so two first payments at once still make one."""
    async with sessions() as session:
        known = await session.get(ProviderCustomer, (provider.name, user_id))
    if known is not None:
        return known.customer_id
    try:
        customer_id = await provider.create_customer(
            user_id=user_id,
            email=email,
            idempotence_key=str(uuid.uuid5(uuid.NAMESPACE_URL, f"billing-customer:{user_id}")),
        )
    except ProviderError as error:
        raise _unavailable(error) from error
    async with transaction(sessions) as session:
        await session.execute(
            insert(ProviderCustomer)
            .values(provider=provider.name, user_id=user_id, customer_id=customer_id)
            .on_conflict_do_nothing()
        )
    return customer_id


async def _create_at_provider(
    sessions: Sessions,
    providers: Providers,
    payment: Payment,
    request: ProviderRequest,
    *,
    now: datetime,
    settings: Settings,
) -> Payment:
    provider = provider_for(providers, payment.provider)
    try:
        remote = await request(provider)
    except ProviderRejected as error:
        # Refused for good (a retry with this key would be refused again): this attempt is
        # over, and the viewer's next click starts another.
        await _cancel_unstarted(sessions, payment.id, now=now, settings=settings)
        raise _unavailable(error) from error
    except ProviderError as error:
        # Unknown whether it was made: the row keeps its key for the next try.
        raise _unavailable(error) from error
    async with transaction(sessions) as session:
        stored = await _locked_payment(session, payment.id)
        if stored.provider_payment_id is None:
            stored.provider_payment_id = remote.provider_payment_id
            stored.confirmation_url = remote.confirmation_url
            stored.provider_data = {**stored.provider_data, **remote.data}
        elif stored.provider_payment_id != remote.provider_payment_id:
            log.error("payment %s: the provider answered another payment id", stored.id)
            raise PROVIDER_UNAVAILABLE("the payment provider is unavailable")
        refund = await settle_from_provider(session, stored, remote, now=now, settings=settings)
    await _refund_if_due(sessions, providers, refund, now=now)
    return stored


async def _cancel_unstarted(
    sessions: Sessions, payment_id: uuid.UUID, *, now: datetime, settings: Settings
) -> None:
    async with transaction(sessions) as session:
        canceled = await session.scalar(
            update(Payment)
            .where(
                Payment.id == payment_id,
                Payment.status == PaymentStatus.PENDING,
                Payment.provider_payment_id.is_(None),
            )
            .values(status=PaymentStatus.CANCELED)
            .returning(Payment)
        )
        if canceled is not None:
            invoice = await session.get_one(Invoice, canceled.invoice_id)
            if invoice.kind == InvoiceKind.RENEWAL:
                # A saved method the provider refuses to charge at all: a hard decline.
                await renewal_declined(
                    session, canceled, invoice, DeclineReason.METHOD_REVOKED,
                    now=now, settings=settings,
                )  # fmt: skip


# The settlement's statements are built once: building a statement costs CPU on every
# call, more than SQLAlchemy's cached compilation of it, and these run on every confirm,
# webhook and refund.
_LOCK_PAYMENT = (
    select(Payment)
    .where(Payment.id == bindparam("payment_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
_LOCK_INVOICE_WITH_TARIFF = (
    select(Invoice, Tariff)
    .join(Tariff, Tariff.id == Invoice.tariff_id)
    .where(Invoice.id == bindparam("invoice_id"))
    .with_for_update(of=Invoice)
    .execution_options(populate_existing=True)
)


async def _locked_payment(session: AsyncSession, payment_id: uuid.UUID) -> Payment:
    payment = await session.scalar(_LOCK_PAYMENT, {"payment_id": payment_id})
    if payment is None:
        raise PAYMENT_NOT_FOUND()
    return payment


def _unavailable(error: ProviderError) -> Problem:
    if not isinstance(error, ProviderUnavailable):
        log.error("payment provider refused a request: %s", error)
    return PROVIDER_UNAVAILABLE()


async def get_own_payment(
    session: AsyncSession, payment_id: uuid.UUID, user_id: uuid.UUID
) -> Payment:
    payment = await session.scalar(
        select(Payment).where(Payment.id == payment_id, Payment.user_id == user_id)
    )
    if payment is None:
        raise PAYMENT_NOT_FOUND()
    return payment


async def list_own_payments(session: AsyncSession, user_id: uuid.UUID, page: Page) -> list[Payment]:
    rows = await session.scalars(
        select(Payment)
        .where(Payment.user_id == user_id)
        .order_by(Payment.created_at.desc(), Payment.id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return list(rows)


async def sync_payment(
    sessions: Sessions,
    providers: Providers,
    payment_id: uuid.UUID,
    *,
    now: datetime,
    settings: Settings,
    owner: uuid.UUID | None = None,
) -> Payment:
    """Ask the provider about a payment and apply what it says (confirm, webhook, scheduler).
    A payment that never learnt its provider id (interrupted start) is asked for again with
    its own key, which answers the one the provider made, if any. With ``owner``, another
    user's payment is not found (the viewer's confirm: one read checks both)."""
    async with sessions() as session:
        await autocommit_statements(session)
        payment = await session.get(Payment, payment_id)
        if payment is None or owner not in (None, payment.user_id):
            raise PAYMENT_NOT_FOUND()
        request = await _restart_request(session, payment, settings)
    return await _sync_read_payment(
        sessions, providers, payment, request, now=now, settings=settings
    )


async def _restart_request(
    session: AsyncSession, payment: Payment, settings: Settings
) -> ProviderRequest | None:
    """What to send the provider again for a payment that never learnt its provider id."""
    if payment.status != PaymentStatus.PENDING or payment.provider_payment_id is not None:
        return None
    invoice = await session.get_one(Invoice, payment.invoice_id)
    return await _payment_request(session, payment, invoice, settings)


async def _sync_read_payment(
    sessions: Sessions,
    providers: Providers,
    payment: Payment,
    request: ProviderRequest | None,
    *,
    now: datetime,
    settings: Settings,
) -> Payment:
    """``sync_payment`` once the payment is read (its connection back in the pool)."""
    if request is not None:
        return await _create_at_provider(
            sessions, providers, payment, request, now=now, settings=settings
        )
    if payment.provider_payment_id is None or payment.status in (
        PaymentStatus.CANCELED,
        PaymentStatus.REFUNDED,
    ):
        return payment
    provider = provider_for(providers, payment.provider)
    try:
        remote = await provider.get_payment(payment.provider_payment_id, payment.provider_data)
        if remote.status == ProviderPaymentStatus.WAITING_FOR_CAPTURE:
            remote = await _capture_or_cancel(sessions, provider, payment, now=now)
    except ProviderError as error:
        raise _unavailable(error) from error
    return await apply_provider_state(
        sessions, providers, payment.id, remote, now=now, settings=settings
    )


async def _capture_or_cancel(
    sessions: Sessions, provider: PaymentProvider, payment: Payment, *, now: datetime
) -> ProviderPayment:
    """A payment the viewer paid that waits for the shop (a two-stage payment): captured at
    once while its invoice can still be honoured, canceled otherwise (the money is released
    rather than taken and refunded). The keys derive from the payment's, so a repeat (the
    webhook, the confirm call, reconciliation) asks for the same capture or cancel."""
    async with sessions() as session:
        invoice = await session.get_one(Invoice, payment.invoice_id)
    assert payment.provider_payment_id is not None
    if invoice.status == InvoiceStatus.OPEN and invoice.expires_at > now:
        return await provider.capture_payment(
            payment.provider_payment_id,
            amount=payment.amount,
            currency=payment.currency,
            idempotence_key=str(uuid.uuid5(payment.idempotence_key, "capture")),
        )
    log.warning("payment %s waits for capture on a closed invoice: canceled", payment.id)
    return await provider.cancel_payment(
        payment.provider_payment_id,
        idempotence_key=str(uuid.uuid5(payment.idempotence_key, "cancel")),
    )


async def apply_provider_state(
    sessions: Sessions,
    providers: Providers,
    payment_id: uuid.UUID,
    remote: ProviderPayment,
    *,
    now: datetime,
    settings: Settings,
) -> Payment:
    async with transaction(sessions) as session:
        payment = await _locked_payment(session, payment_id)
        refund = await settle_from_provider(session, payment, remote, now=now, settings=settings)
    await _refund_if_due(sessions, providers, refund, now=now)
    return payment


async def settle_from_provider(
    session: AsyncSession,
    payment: Payment,
    remote: ProviderPayment,
    *,
    now: datetime,
    settings: Settings,
) -> Refund | None:
    """Apply the provider's view to a payment row this transaction has locked.

    Answers a refund to make at the provider once this transaction has committed (a payment
    that succeeded on an invoice whose price can no longer be honoured), or None.
    """
    if remote.amount != payment.amount or remote.currency != payment.currency:
        # Never settle on a payment that doesn't match what the invoice asked for.
        log.error("payment %s: provider reports another amount; not applied", payment.id)
        return None
    if payment.status == PaymentStatus.PENDING:
        if remote.status == ProviderPaymentStatus.SUCCEEDED:
            invoice, tariff = await _locked_invoice_and_tariff(session, payment.invoice_id)
            payment.status = PaymentStatus.SUCCEEDED
            payment.paid_at = remote.paid_at or now
            payment.provider_data = {**payment.provider_data, **remote.data}
            if not await _still_payable(session, invoice):
                return _refund_at_once(session, payment, RefundReason.INVOICE_EXPIRED, now=now)
            subscription = await _settle(
                session, invoice, tariff, payment=payment, now=now, saved_method=remote.saved_method
            )
            if invoice.kind == InvoiceKind.RENEWAL:
                await renewal_succeeded(session, payment, invoice, tariff, subscription, now=now)
        elif remote.status == ProviderPaymentStatus.CANCELED:
            payment.status = PaymentStatus.CANCELED
            invoice = await session.get_one(Invoice, payment.invoice_id)
            if invoice.kind == InvoiceKind.RENEWAL:
                reason = remote.decline_reason or DeclineReason.DECLINED
                await renewal_declined(
                    session, payment, invoice, reason, now=now, settings=settings
                )
    elif payment.status == PaymentStatus.SUCCEEDED and remote.refunded_amount >= payment.amount > 0:
        # Refunded at the provider: by billing (a refund whose answer was lost) or in the
        # provider's dashboard. Either way the months go back as if the viewer had asked.
        refund = await _live_refund(session, payment.id)
        if refund is None:
            refund = _new_refund(payment, RefundReason.PROVIDER, now=now)
            session.add(refund)
        refund.status = RefundStatus.SUCCEEDED
        await _apply_refund(session, payment, refund, now=now)
    return None


async def _locked_invoice_and_tariff(
    session: AsyncSession, invoice_id: uuid.UUID
) -> tuple[Invoice, Tariff]:
    """A payment's invoice, locked, with its tariff: one round trip (settling and refunding
    need both; the tariff row is only read, not locked)."""
    row = (await session.execute(_LOCK_INVOICE_WITH_TARIFF, {"invoice_id": invoice_id})).one()
    return row[0], row[1]


async def _still_payable(session: AsyncSession, invoice: Invoice) -> bool:
    """Whether a payment that just succeeded can be honoured at its invoice's price.

    An open invoice can. One that expired meanwhile had its promo reservation released, and
    someone else may have taken the last use since: it is honoured only if the code can be
    redeemed again within its limits (never more redemptions than ``max_redemptions``).
    """
    if invoice.status == InvoiceStatus.OPEN:
        return True
    if invoice.status != InvoiceStatus.EXPIRED:
        # Paid already, or canceled: the invoice is settled otherwise; this money goes back.
        log.error("invoice %s is %s, yet another payment succeeded", invoice.id, invoice.status)
        return False
    if invoice.promo_code_id is not None and not await redeem_released_reservation(
        session, invoice.id
    ):
        return False
    invoice.status = InvoiceStatus.OPEN  # honoured as if paid in time; _settle marks it paid
    return True


async def _settle(
    session: AsyncSession,
    invoice: Invoice,
    tariff: Tariff,
    *,
    payment: Payment | None,
    now: datetime,
    saved_method: SavedMethod | None = None,
) -> Subscription:
    """The invoice is paid: redeem its promo code, extend access, tell the viewer; keep the
    method the payment saved, if the viewer asked (auto-renewal)."""
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = payment.paid_at if payment else now
    if invoice.promo_code_id is not None:
        await redeem_promo_reservation(session, invoice.id)
    # Not flushed before the subscription's upsert: the payment's status and its period
    # then go in one UPDATE at the commit, not two (the rows are locked already).
    with session.no_autoflush:
        subscription, start, end = await extend_subscription(
            session, user_id=invoice.user_id, tariff=tariff, months=invoice.months, now=now
        )
    if payment is not None:
        payment.period_start, payment.period_end = start, end
        if payment.save_payment_method and saved_method is not None:
            await remember_method(
                session, payment, saved_method, subscription, months=invoice.months, now=now
            )
    add_event(
        session,
        PaymentSucceeded(
            payment_id=payment.id if payment else None,
            invoice_id=invoice.id,
            tariff=TariffRef.of(tariff),
            months=invoice.months,
            amount=invoice.total_amount,
            currency=invoice.currency,
            discount=Discount(source=invoice.discount_source, amount=invoice.discount_amount),
            subscription_id=subscription.id,
            current_period_end=subscription.current_period_end,
        ),
        user_id=invoice.user_id,
        occurred_at=now,
    )
    return subscription


# --- refunds --------------------------------------------------------------------------------


async def refund_payment(
    sessions: Sessions,
    providers: Providers,
    *,
    payment_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    settings: Settings,
) -> Payment:
    """Refund a paid payment within the refund window.

    The refund is recorded ``pending`` with its idempotence key and committed before the
    provider is asked, so a second or concurrent request (or reconciliation, after a
    crash) asks again with the same key: one refund at the provider, applied once.
    """
    async with transaction(sessions) as session:
        payment = await session.scalar(
            select(Payment)
            .where(Payment.id == payment_id, Payment.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if payment is None:
            raise PAYMENT_NOT_FOUND()
        if payment.status != PaymentStatus.SUCCEEDED or payment.provider_payment_id is None:
            raise PAYMENT_NOT_REFUNDABLE(f"the payment is {payment.status}")
        refund = await _live_refund(session, payment.id)
        if refund is None:
            assert payment.paid_at is not None
            if not refund_window_open(payment.paid_at, now, settings.refund_window):
                deadline = refund_deadline(payment.paid_at, settings.refund_window)
                raise REFUND_WINDOW_EXPIRED(f"refunds are possible until {deadline.isoformat()}")
            refund = _new_refund(payment, RefundReason.REQUESTED, now=now)
            session.add(refund)
        # else: asked before and not finished; asked in time, so the window is no matter.
    return await _refund_at_provider(sessions, providers, refund, now=now)


def _new_refund(payment: Payment, reason: RefundReason, *, now: datetime) -> Refund:
    return Refund(
        id=uuid.uuid4(),
        payment_id=payment.id,
        idempotence_key=uuid.uuid4(),
        status=RefundStatus.PENDING,
        reason=reason,
        amount=payment.amount,
        currency=payment.currency,
        # Refunds are whole: the refund's receipt returns the sale's one item.
        receipt=payment.receipt,
        created_at=now,
        updated_at=now,
    )


def _refund_at_once(
    session: AsyncSession, payment: Payment, reason: RefundReason, *, now: datetime
) -> Refund:
    """Record a refund billing owes the viewer; the caller asks the provider after commit
    (and reconciliation does, if that fails)."""
    refund = _new_refund(payment, reason, now=now)
    session.add(refund)
    log.warning("payment %s: refunded at once (%s)", payment.id, reason.value)
    return refund


async def _live_refund(session: AsyncSession, payment_id: uuid.UUID) -> Refund | None:
    refund: Refund | None = await session.scalar(
        select(Refund)
        .where(Refund.payment_id == payment_id, Refund.status != RefundStatus.CANCELED)
        .with_for_update()
    )
    return refund


async def _refund_if_due(
    sessions: Sessions, providers: Providers, refund: Refund | None, *, now: datetime
) -> None:
    if refund is None:
        return
    try:
        await _refund_at_provider(sessions, providers, refund, now=now)
    except Problem as problem:
        # The payment stands as succeeded with its refund pending: reconciliation retries.
        log.warning("refund %s not made yet: %s", refund.id, problem.detail)


async def _refund_at_provider(
    sessions: Sessions, providers: Providers, refund: Refund, *, now: datetime
) -> Payment:
    """Ask the provider for a recorded refund (with its key) and apply the answer."""
    async with sessions() as session:
        payment = await session.get_one(Payment, refund.payment_id)
    assert payment.provider_payment_id is not None
    provider = provider_for(providers, payment.provider)
    try:
        remote = await provider.create_refund(
            provider_payment_id=payment.provider_payment_id,
            amount=refund.amount,
            currency=refund.currency,
            idempotence_key=str(refund.idempotence_key),
            data=payment.provider_data,
            receipt=Receipt.from_json(refund.receipt) if refund.receipt else None,
        )
    except ProviderRejected as error:
        # Refused for good: the refund is over (kept as a record); a new one may be asked.
        log.error("refund %s refused by the provider: %s", refund.id, error)
        remote = None
    except ProviderError as error:
        # Unknown whether it was made: it stays pending, and its key is asked again.
        raise _unavailable(error) from error
    async with transaction(sessions) as session:
        payment = await _locked_payment(session, refund.payment_id)
        stored = await session.get_one(
            Refund, refund.id, with_for_update=True, populate_existing=True
        )
        await _apply_refund_answer(session, payment, stored, remote, now=now)
    if stored.status == RefundStatus.CANCELED:
        raise PAYMENT_NOT_REFUNDABLE("the provider declined the refund")
    return payment


async def finish_refund(
    sessions: Sessions,
    providers: Providers,
    refund_id: uuid.UUID,
    *,
    now: datetime,
    settings: Settings,
) -> bool:
    """Finish a refund whose outcome billing does not know (a timeout, a crash, or the
    provider's "pending"); True once it has succeeded.

    One the provider never named is asked for again with its own key (the provider answers
    the first request's result, or makes it now: never a second refund); one it named is
    read back from the payment, whose refunded amount says whether it went through.
    """
    async with sessions() as session:
        refund = await session.get_one(Refund, refund_id)
    if refund.status != RefundStatus.PENDING:
        return False
    if refund.provider_refund_id is None:
        try:
            await _refund_at_provider(sessions, providers, refund, now=now)
        except Problem as problem:
            if problem.code != "payment_not_refundable":
                raise
    else:
        await sync_payment(sessions, providers, refund.payment_id, now=now, settings=settings)
    async with sessions() as session:
        return (await session.get_one(Refund, refund_id)).status == RefundStatus.SUCCEEDED


async def _apply_refund_answer(
    session: AsyncSession,
    payment: Payment,
    refund: Refund,
    remote: ProviderRefund | None,
    *,
    now: datetime,
) -> None:
    """Apply the provider's answer (None: refused) to a refund; both rows are locked.
    Applied once: a refund no longer pending was finished by a concurrent request, a
    webhook or reconciliation."""
    if refund.status != RefundStatus.PENDING:
        return
    if remote is None:
        refund.status = RefundStatus.CANCELED
        return
    refund.provider_refund_id = remote.provider_refund_id or refund.provider_refund_id
    if remote.status == ProviderRefundStatus.CANCELED:
        refund.status = RefundStatus.CANCELED
    elif remote.status == ProviderRefundStatus.SUCCEEDED:
        refund.status = RefundStatus.SUCCEEDED
        if payment.status == PaymentStatus.SUCCEEDED:
            await _apply_refund(session, payment, refund, now=now)


async def _apply_refund(
    session: AsyncSession, payment: Payment, refund: Refund, *, now: datetime
) -> None:
    invoice, tariff = await _locked_invoice_and_tariff(session, payment.invoice_id)
    payment.status = PaymentStatus.REFUNDED
    payment.refunded_at = now
    if invoice.status == InvoiceStatus.PAID:
        invoice.status = InvoiceStatus.REFUNDED
    if payment.period_start is not None and payment.period_end is not None:
        await take_back(
            session,
            user_id=payment.user_id,
            tariff=tariff,
            slice_start=payment.period_start,
            slice_end=payment.period_end,
            now=now,
        )
    add_event(
        session,
        PaymentRefunded(
            payment_id=payment.id,
            invoice_id=invoice.id,
            tariff=TariffRef.of(tariff),
            amount=payment.amount,
            currency=payment.currency,
            reason=refund.reason,
        ),
        user_id=payment.user_id,
        occurred_at=now,
    )


# --- notifications --------------------------------------------------------------------------


async def handle_notification(
    sessions: Sessions,
    providers: Providers,
    provider_name: str,
    *,
    body: bytes,
    headers: dict[str, str],
    now: datetime,
    settings: Settings,
) -> Payment | None:
    """A provider's notification is only a trigger: the payment it names is re-read from the
    provider, so a forged body changes nothing. ``InvalidNotification`` propagates (400).

    Numbered events (Stripe's) are remembered once handled, so a redelivery or a replay is
    not even re-read; a failed one stays unremembered, so the provider's retry is handled.
    """
    provider = providers[provider_name]
    notification = provider.parse_notification(body, headers)
    event_id = notification.event_id
    if event_id is not None and await webhook_events.already_processed(
        sessions, provider=provider.name, event_id=event_id
    ):
        return None
    async with sessions() as session:
        await autocommit_statements(session)
        payment = await webhook_events.notified_payment(
            session, provider=provider.name, notification=notification
        )
        request = None if payment is None else await _restart_request(session, payment, settings)
    if payment is None:
        log.info("notification about unknown payment %s ignored", notification.provider_payment_id)
    else:
        payment = await _sync_read_payment(
            sessions, providers, payment, request, now=now, settings=settings
        )
    if event_id is not None:
        await webhook_events.remember_processed(
            sessions, provider=provider.name, event_id=event_id, now=now
        )
    return payment
