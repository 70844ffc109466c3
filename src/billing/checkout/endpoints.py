"""HTTP layer of checkout: invoices, payments, refunds, provider webhooks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse

from billing.auth import CurrentPrincipal, ViewerId
from billing.checkout import links, service
from billing.checkout.errors import (
    INVALID_NOTIFICATION,
    INVOICE_NOT_FOUND,
    PAYMENT_NOT_FOUND,
    PAYMENT_NOT_REFUNDABLE,
    PAYMENT_START_ERRORS,
    PROVIDER_NOT_FOUND,
    REFUND_WINDOW_EXPIRED,
)
from billing.checkout.providers.base import InvalidNotification
from billing.checkout.providers.registry import Providers
from billing.checkout.refund_window import refund_deadline
from billing.checkout.schemas import (
    DiscountOut,
    InvoiceCreate,
    InvoiceOut,
    PaymentCreate,
    PaymentOut,
)
from billing.checkout.trusted_networks import (
    UNTRUSTED_NOTIFICATION_SOURCE,
    TrustedNotificationSource,
)
from billing.config import Settings
from billing.dependencies import ClockDep, ReadSessionDep, SessionsDep, SettingsDep
from billing.errors import PAYLOAD_TOO_LARGE, problems
from billing.idempotency import IdempotencyKeyHeader, respond_once
from billing.models import Invoice, Payment, PaymentStatus
from billing.pricing.errors import QUOTE_ERRORS
from billing.schemas import Page

router = APIRouter(tags=["checkout"])


async def get_providers(request: Request) -> Providers:
    """Every provider's adapter, built once at start-up (``create_app``'s lifespan)."""
    providers: Providers = request.app.state.providers
    return providers


ProvidersDep = Annotated[Providers, Depends(get_providers)]


def invoice_out(invoice: Invoice, settings: Settings) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        user_id=invoice.user_id,
        tariff_id=invoice.tariff_id,
        months=invoice.months,
        currency=invoice.currency,
        base_amount=invoice.base_amount,
        discount=DiscountOut(
            source=invoice.discount_source,
            percent=invoice.discount_percent,
            amount=invoice.discount_amount,
        ),
        total_amount=invoice.total_amount,
        considered=[DiscountOut.model_validate(item) for item in invoice.considered],
        promo_code=invoice.promo_code,
        status=invoice.status,
        expires_at=invoice.expires_at,
        created_at=invoice.created_at,
        checkout_url=links.checkout_url(settings, invoice.id, invoice.expires_at),
        kind=invoice.kind,
    )


def payment_out(payment: Payment, settings: Settings) -> PaymentOut:
    refundable_until = (
        refund_deadline(payment.paid_at, settings.refund_window)
        if payment.status == PaymentStatus.SUCCEEDED and payment.paid_at is not None
        else None
    )
    return PaymentOut(
        id=payment.id,
        invoice_id=payment.invoice_id,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        provider=payment.provider,
        confirmation_url=payment.confirmation_url,
        created_at=payment.created_at,
        paid_at=payment.paid_at,
        refundable_until=refundable_until,
        refunded_at=payment.refunded_at,
    )


def _json(status: int, model: InvoiceOut | PaymentOut) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


@router.post(
    "/invoices", status_code=201, response_model=InvoiceOut, responses=problems(*QUOTE_ERRORS)
)
async def create_invoice(
    body: InvoiceCreate,
    request: Request,
    user_id: ViewerId,
    principal: CurrentPrincipal,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Issue an invoice: the quote's breakdown frozen, the promo code reserved."""

    async def issue() -> tuple[int, object]:
        async with sessions() as session, session.begin():
            invoice = await service.issue_invoice(
                session,
                user_id=user_id,
                tariff_id=body.tariff_id,
                months=body.months,
                promo_code=body.promo_code,
                customer_email=principal.email,
                now=clock.now(),
                settings=settings,
            )
        return 201, invoice_out(invoice, settings).model_dump(mode="json")

    return await respond_once(
        request, sessions, owner=str(user_id), key=idempotency_key, body=body, run=issue
    )


@router.get("/invoices/{invoice_id}", responses=problems(INVOICE_NOT_FOUND))
async def get_invoice(
    invoice_id: uuid.UUID, user_id: ViewerId, session: ReadSessionDep, settings: SettingsDep
) -> InvoiceOut:
    return invoice_out(await service.get_own_invoice(session, invoice_id, user_id), settings)


@router.post(
    "/invoices/{invoice_id}/payments",
    status_code=201,
    response_model=PaymentOut,
    responses=problems(*PAYMENT_START_ERRORS),
)
async def create_payment(
    invoice_id: uuid.UUID,
    request: Request,
    user_id: ViewerId,
    principal: CurrentPrincipal,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    providers: ProvidersDep,
    body: Annotated[PaymentCreate | None, Body()] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Start a payment: send the viewer to ``confirmation_url``."""
    request_body = body or PaymentCreate()

    async def start() -> tuple[int, object]:
        payment = await service.start_payment(
            sessions,
            providers,
            invoice_id=invoice_id,
            user_id=user_id,
            return_url=str(request_body.return_url) if request_body.return_url else None,
            customer_email=request_body.email or principal.email,
            now=clock.now(),
            settings=settings,
            save_payment_method=request_body.save_payment_method,
        )
        return 201, payment_out(payment, settings).model_dump(mode="json")

    return await respond_once(
        request, sessions, owner=str(user_id), key=idempotency_key, body=request_body, run=start
    )


@router.get("/payments")
async def list_payments(
    user_id: ViewerId,
    session: ReadSessionDep,
    settings: SettingsDep,
    page: Annotated[Page, Depends()],
) -> list[PaymentOut]:
    return [
        payment_out(p, settings) for p in await service.list_own_payments(session, user_id, page)
    ]


@router.get("/payments/{payment_id}", responses=problems(PAYMENT_NOT_FOUND))
async def get_payment(
    payment_id: uuid.UUID, user_id: ViewerId, session: ReadSessionDep, settings: SettingsDep
) -> PaymentOut:
    return payment_out(await service.get_own_payment(session, payment_id, user_id), settings)


@router.post("/payments/{payment_id}/confirm", responses=problems(PAYMENT_NOT_FOUND))
async def confirm_payment(
    payment_id: uuid.UUID,
    user_id: ViewerId,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    providers: ProvidersDep,
) -> PaymentOut:
    """Ask the provider now and apply the answer (idempotent: repeats change nothing)."""
    payment = await service.sync_payment(
        sessions, providers, payment_id, now=clock.now(), settings=settings, owner=user_id
    )
    return payment_out(payment, settings)


@router.post(
    "/payments/{payment_id}/refund",
    response_model=PaymentOut,
    responses=problems(PAYMENT_NOT_FOUND, PAYMENT_NOT_REFUNDABLE, REFUND_WINDOW_EXPIRED),
)
async def refund(
    payment_id: uuid.UUID,
    request: Request,
    user_id: ViewerId,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    providers: ProvidersDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Cancel a paid payment and refund it: only within the refund window."""

    async def refund_now() -> tuple[int, object]:
        payment = await service.refund_payment(
            sessions,
            providers,
            payment_id=payment_id,
            user_id=user_id,
            now=clock.now(),
            settings=settings,
        )
        return 200, payment_out(payment, settings).model_dump(mode="json")

    return await respond_once(
        request, sessions, owner=str(user_id), key=idempotency_key, body=None, run=refund_now
    )


@router.post(
    "/webhooks/{provider_name}",
    status_code=200,
    # The body is read as bytes, not declared: its errors are listed here.
    responses=problems(
        PROVIDER_NOT_FOUND, INVALID_NOTIFICATION, PAYLOAD_TOO_LARGE, UNTRUSTED_NOTIFICATION_SOURCE
    ),
)
async def webhook(
    provider_name: str,
    _source: TrustedNotificationSource,  # ЮKassa's only from its networks: 403 before reading
    request: Request,
    sessions: SessionsDep,
    clock: ClockDep,
    settings: SettingsDep,
    providers: ProvidersDep,
) -> dict[str, str]:
    """Provider notifications: a trigger to re-read the payment, never trusted as such.
    Every provider's address is live, whichever takes new payments now."""
    if provider_name not in providers:
        raise PROVIDER_NOT_FOUND()
    try:
        await service.handle_notification(
            sessions,
            providers,
            provider_name,
            body=await request.body(),
            headers=dict(request.headers),
            now=clock.now(),
            settings=settings,
        )
    except InvalidNotification as error:
        raise INVALID_NOTIFICATION(str(error)) from None
    return {"status": "accepted"}
