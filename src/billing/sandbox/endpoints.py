"""HTTP layer of the sandbox: ЮKassa's API under ``/sandbox/v3`` and the checkout page.

The API answers in ЮKassa's own shapes and status codes (200 with the object, errors as
``{"type": "error", …}``), not billing's problem+json, so ЮKassa clients — billing's adapter
and the official SDK — talk to it as to the real thing. Its routes read the raw request and
validate it themselves for the same reason. They are left out of billing's OpenAPI schema.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from billing.config import Settings
from billing.dependencies import ClockDep, SessionsDep, SettingsDep
from billing.money import format_amount
from billing.sandbox import service
from billing.sandbox.models import SandboxPayment, SandboxPaymentStatus
from billing.sandbox.notifications import Notifier
from billing.sandbox.schemas import (
    OBJECT_ID,
    PaymentIn,
    RefundIn,
    YooKassaError,
    invalid_credentials,
    invalid_request,
    not_found,
    notification,
    parse_body,
    payment_object,
    refund_object,
)

_OBJECT_ID = re.compile(OBJECT_ID)
# ЮKassa: any string up to 64 characters; printable ASCII is what an HTTP header can carry.
_IDEMPOTENCE_KEY = re.compile(r"[\x21-\x7e]{1,64}")
_NO = {"0", "false", "no", "off"}
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's own lifespan: the outbound client exists until after this ends.
    notifier = Notifier(app.state.outbound, app.state.settings.public_url)
    app.state.sandbox_notifier = notifier
    try:
        yield
    finally:
        await notifier.drain()


router = APIRouter(lifespan=_lifespan, include_in_schema=False)


def get_notifier(request: Request) -> Notifier:
    notifier: Notifier = request.app.state.sandbox_notifier
    return notifier


NotifierDep = Annotated[Notifier, Depends(get_notifier)]

_P = ParamSpec("_P")


def _yookassa_errors(
    endpoint: Callable[_P, Awaitable[Response]],
) -> Callable[_P, Awaitable[Response]]:
    """Render ``YooKassaError`` as ЮKassa does, instead of billing's problem+json."""

    @functools.wraps(endpoint)
    async def answer(*args: _P.args, **kwargs: _P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except YooKassaError as error:
            return JSONResponse(error.body(), status_code=error.status)

    return answer


def _authenticate(request: Request, settings: Settings) -> None:
    """Basic auth with the shop id and the secret key, as ЮKassa checks it."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        raise invalid_credentials()
    try:
        shop_id, colon, secret_key = base64.b64decode(encoded, validate=True).partition(b":")
    except (binascii.Error, ValueError):
        raise invalid_credentials() from None
    expected_shop = settings.yookassa_shop_id.encode()
    expected_secret = settings.yookassa_secret_key.encode()
    # Both compared every time, in constant time: no hint which of the two was wrong.
    shop_ok = secrets.compare_digest(shop_id, expected_shop)
    secret_ok = secrets.compare_digest(secret_key, expected_secret)
    if not (colon and shop_ok and secret_ok):
        raise invalid_credentials()


def _idempotence_key(request: Request) -> str:
    key = request.headers.get("idempotence-key")
    if key is None:
        raise invalid_request("Idempotence-Key header is missing", "Idempotence-Key")
    if not _IDEMPOTENCE_KEY.fullmatch(key):
        raise invalid_request(
            "Idempotence-Key must be 1 to 64 printable characters", "Idempotence-Key"
        )
    return key


def _object_id(value: str) -> str | None:
    return value if _OBJECT_ID.fullmatch(value) else None


def _payment_json(payment: SandboxPayment, settings: Settings) -> dict[str, Any]:
    return payment_object(
        payment, shop_id=settings.yookassa_shop_id, public_url=settings.public_url
    )


# --- ЮKassa API v3 ----------------------------------------------------------------------


@router.post("/v3/payments")
@_yookassa_errors
async def create_payment(
    request: Request, settings: SettingsDep, clock: ClockDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    key = _idempotence_key(request)
    body, digest = parse_body(PaymentIn, await request.body())
    payment = await service.create_payment(
        sessions, body, idempotence_key=key, digest=digest, now=clock.now()
    )
    return JSONResponse(_payment_json(payment, settings))


@router.get("/v3/payments/{payment_id}")
@_yookassa_errors
async def get_payment(
    payment_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    found = _object_id(payment_id)
    payment = await service.find_payment(sessions, found) if found else None
    if payment is None:
        raise not_found("Payment", "payment_id")
    return JSONResponse(_payment_json(payment, settings))


@router.post("/v3/refunds")
@_yookassa_errors
async def create_refund(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    key = _idempotence_key(request)
    body, digest = parse_body(RefundIn, await request.body())
    refund, made_now = await service.create_refund(
        sessions, body, idempotence_key=key, digest=digest, now=clock.now()
    )
    answer = refund_object(refund)
    if made_now:
        notifier.send_later(notification("refund.succeeded", answer))
    return JSONResponse(answer)


@router.get("/v3/refunds/{refund_id}")
@_yookassa_errors
async def get_refund(
    refund_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    found = _object_id(refund_id)
    refund = await service.find_refund(sessions, found) if found else None
    if refund is None:
        raise not_found("Refund", "refund_id")
    return JSONResponse(refund_object(refund))


# --- the checkout page ------------------------------------------------------------------


def _page(
    request: Request,
    payment: SandboxPayment | None,
    *,
    status_code: int = 200,
    message: str | None = None,
) -> Response:
    context: dict[str, Any] = {"payment": None, "message": message}
    if payment is not None:
        context["payment"] = {
            "id": payment.id,
            "amount": f"{format_amount(payment.amount)} {payment.currency}",
            "description": payment.description,
            "status": payment.status,
            "pending": payment.status == SandboxPaymentStatus.PENDING,
            "paid": payment.status == SandboxPaymentStatus.SUCCEEDED,
            "return_url": payment.return_url,
        }
    return templates.TemplateResponse(request, "checkout.html", context, status_code=status_code)


@router.get("/checkout/{payment_id}")
async def checkout_page(payment_id: str, request: Request, sessions: SessionsDep) -> Response:
    found = _object_id(payment_id)
    payment = await service.find_payment(sessions, found) if found else None
    if payment is None:
        return _page(request, None, status_code=404, message="No such payment.")
    return _page(request, payment)


@router.post("/checkout/{payment_id}")
async def checkout_decide(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    """*Pay* or *Decline* (``action=pay|decline``; ``notify=0`` skips the notification)."""
    try:
        form = await request.form()
    except Exception:  # a malformed multipart body is the sender's mistake, not a 500
        return _page(request, None, status_code=400, message="Send a form: action=pay|decline.")
    action, notify = form.get("action"), form.get("notify", "1")
    try:
        decision = service.Decision(action if isinstance(action, str) else "")
    except ValueError:
        return _page(request, None, status_code=400, message="action must be pay or decline.")
    found = _object_id(payment_id)
    payment, changed = (
        await service.decide(sessions, found, decision, now=clock.now()) if found else (None, False)
    )
    if payment is None:
        return _page(request, None, status_code=404, message="No such payment.")
    if not changed:  # pressed again: nothing happens, the page shows how it ended
        return _page(request, payment)
    if not (isinstance(notify, str) and notify.strip().lower() in _NO):
        event = "payment.succeeded" if payment.status == "succeeded" else "payment.canceled"
        # Sent before the viewer is sent back, so the shop knows by the time they arrive.
        await notifier.send(notification(event, _payment_json(payment, settings)))
    return RedirectResponse(payment.return_url, status_code=303)
