"""The browser's checkout, which carries no token: the invoice's signed checkout link, and
the page a viewer returns to from the provider's (when the client gave no ``return_url``).

The return page asks the provider (the same path as the confirm call), applies the answer
and says what happened, in Russian or English.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from billing.checkout import links, service
from billing.checkout.endpoints import ProvidersDep
from billing.checkout.errors import (
    CHECKOUT_LINK_INVALID,
    PAYMENT_START_ERRORS,
    PROVIDER_UNAVAILABLE,
)
from billing.dependencies import ClockDep, SessionsDep, SettingsDep
from billing.errors import Problem, problems
from billing.models import Invoice, InvoiceStatus, PaymentStatus, Subscription, Tariff

router = APIRouter(tags=["checkout"])
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

Signature = Annotated[str | None, Query(max_length=128, description="the link's signature")]
Language = Annotated[str | None, Query(pattern="^(ru|en)$", description="ru (default) or en")]
LANGUAGES = ("ru", "en")

# What the viewer reads, by outcome (and by the code of a refusal).
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "ru": {
        "succeeded": ("Оплачено", "Доступ к тарифу «{tariff}» открыт до {until}."),
        "pending": ("Платёж обрабатывается", "Обновите страницу через минуту."),
        "canceled": ("Оплата не прошла", "Деньги не списаны. Можно попробовать ещё раз."),
        "refunded": ("Платёж возвращён", "Деньги вернутся на карту."),
        "link_invalid": ("Ссылка недействительна", "Откройте оплату заново из приложения."),
        "invoice_expired": ("Счёт истёк", "Выберите тариф заново в приложении."),
        "invoice_not_open": ("Счёт уже оплачен", "Повторная оплата не нужна."),
        "customer_email_required": (
            "Нужен e-mail для чека",
            "Укажите e-mail в профиле и откройте оплату заново.",
        ),
        "provider_unavailable": (
            "Платёжная система недоступна",
            "Попробуйте ещё раз через минуту.",
        ),
        "retry": ("Попробовать снова", ""),
        "refresh": ("Обновить", ""),
        "other": ("English", ""),
    },
    "en": {
        "succeeded": ("Paid", "Your “{tariff}” access is open until {until}."),
        "pending": ("Payment in progress", "Refresh this page in a minute."),
        "canceled": ("Payment declined", "Nothing was charged. You can try again."),
        "refunded": ("Payment refunded", "The money goes back to your card."),
        "link_invalid": ("This link is not valid", "Open the payment again from the app."),
        "invoice_expired": ("This invoice has expired", "Choose your tariff again in the app."),
        "invoice_not_open": ("This invoice is already paid", "No need to pay again."),
        "customer_email_required": (
            "An e-mail is needed for the receipt",
            "Add an e-mail to your profile and open the payment again.",
        ),
        "provider_unavailable": (
            "The payment system is unavailable",
            "Please try again in a minute.",
        ),
        "retry": ("Try again", ""),
        "refresh": ("Refresh", ""),
        "other": ("Русский", ""),
    },
}
DATE_FORMATS = {"ru": "%d.%m.%Y %H:%M UTC", "en": "%Y-%m-%d %H:%M UTC"}


def language_of(request: Request, asked: str | None) -> str:
    if asked in LANGUAGES:
        return asked
    header = request.headers.get("accept-language", "").lower()
    return "en" if header.startswith("en") else "ru"


def page(
    request: Request,
    lang: str,
    outcome: str,
    *,
    status: int = 200,
    action: tuple[str, str] | None = None,
    **values: str,
) -> HTMLResponse:
    title, message = TEXTS[lang][outcome]
    other = "en" if lang == "ru" else "ru"
    query = dict(request.query_params) | {"lang": other}
    response = templates.TemplateResponse(
        request,
        "return.html",
        {
            "lang": lang,
            "outcome": outcome,
            "title": title,
            "message": message.format(**values),
            "action_url": action[1] if action else None,
            "action_label": TEXTS[lang][action[0]][0] if action else None,
            "other_language": other,
            "other_language_label": TEXTS[lang]["other"][0],
            "other_language_url": f"{request.url.path}?{urlencode(query)}",
        },
        status_code=status,
    )
    # Nothing on these pages needs a script, a frame or anything from elsewhere.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _also_as_pages(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A browser (``Accept: text/html``) is answered each refusal as a page."""
    for response in responses.values():
        response.setdefault("content", {})["text/html"] = {"schema": {"type": "string"}}
    return responses


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.get(
    "/invoices/{invoice_id}/checkout",
    status_code=303,
    response_class=Response,
    responses=_also_as_pages(problems(CHECKOUT_LINK_INVALID, *PAYMENT_START_ERRORS)),
)
async def checkout(
    invoice_id: uuid.UUID,
    request: Request,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    providers: ProvidersDep,
    sig: Signature = None,
    lang: Language = None,
) -> Response:
    """The invoice's ``checkout_url``: start (or resume) its payment and go to the provider's
    page. No Authorization header: the signature is the proof; it stops working when the
    invoice expires. A browser (``Accept: text/html``) is shown a page when it cannot go on."""
    async with sessions() as session:
        invoice = await session.get(Invoice, invoice_id)
    try:
        if invoice is None or not links.is_valid(
            sig, links.checkout_signature(settings, invoice.id, invoice.expires_at)
        ):
            raise CHECKOUT_LINK_INVALID()
        payment = await service.start_payment(
            sessions,
            providers,
            invoice_id=invoice.id,
            user_id=invoice.user_id,
            return_url=None,
            customer_email=None,  # the one kept on the invoice
            now=clock.now(),
            settings=settings,
        )
        if payment.confirmation_url is None:
            raise PROVIDER_UNAVAILABLE("the provider gave no payment page")
    except Problem as problem:
        if not _wants_html(request):
            raise
        outcome = "link_invalid" if problem.status == 403 else problem.code
        if outcome not in TEXTS["ru"]:
            raise
        return page(request, language_of(request, lang), outcome, status=problem.status)
    return RedirectResponse(payment.confirmation_url, status_code=303)


@router.get(
    "/checkout/return",
    response_class=HTMLResponse,
    responses={403: {"description": "the link is not valid", "content": {"text/html": {}}}},
)
async def checkout_return(
    request: Request,
    sessions: SessionsDep,
    settings: SettingsDep,
    clock: ClockDep,
    providers: ProvidersDep,
    payment_id: uuid.UUID,
    sig: Signature = None,
    lang: Language = None,
) -> HTMLResponse:
    """Where the provider sends the viewer back when the client gave no ``return_url``: asks
    the provider, applies the answer, and says what happened."""
    language = language_of(request, lang)
    if not links.is_valid(sig, links.return_signature(settings, payment_id)):
        return page(request, language, "link_invalid", status=403)
    try:
        payment = await service.sync_payment(
            sessions, providers, payment_id, now=clock.now(), settings=settings
        )
    except Problem as problem:
        if problem.status == 404:
            return page(request, language, "link_invalid", status=403)
        if problem.code != "provider_unavailable":
            raise
        return page(request, language, "pending", action=("refresh", str(request.url)))
    async with sessions() as session:
        invoice = await session.get_one(Invoice, payment.invoice_id)
        tariff = await session.get_one(Tariff, invoice.tariff_id)
        subscription = await session.scalar(
            select(Subscription).where(
                Subscription.user_id == payment.user_id, Subscription.tariff_id == tariff.id
            )
        )
    if payment.status == PaymentStatus.SUCCEEDED and subscription is not None:
        until = _when(subscription.current_period_end, language)
        return page(request, language, "succeeded", tariff=tariff.name, until=until)
    if payment.status == PaymentStatus.CANCELED:
        retry = None
        if invoice.status == InvoiceStatus.OPEN and invoice.expires_at > clock.now():
            retry = ("retry", links.checkout_url(settings, invoice.id, invoice.expires_at))
        return page(request, language, "canceled", action=retry)
    if payment.status == PaymentStatus.REFUNDED:
        return page(request, language, "refunded")
    return page(request, language, "pending", action=("refresh", str(request.url)))


def _when(moment: datetime, lang: str) -> str:
    return moment.strftime(DATE_FORMATS[lang])
