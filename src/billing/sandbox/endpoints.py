"""HTTP layer of the sandbox: ЮKassa's API under ``/sandbox/v3`` and the checkout page.

The API answers in ЮKassa's own shapes and status codes (200 with the object, errors as
``{"type": "error", …}``), not billing's problem+json, so ЮKassa clients — billing's adapter
and the official SDK — talk to it as to the real thing. Its routes read the raw request and
validate it themselves for the same reason. They are left out of billing's OpenAPI schema.
Whatever else is asked under ``/v3`` answers ЮKassa's 404 (or 405 for a known path with
another method), in ЮKassa's error shape too.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from billing.config import Settings
from billing.dependencies import ClockDep, SessionsDep, SettingsDep
from billing.money import format_amount
from billing.sandbox import cards, receipts, service
from billing.sandbox.models import SandboxPayment, SandboxPaymentStatus
from billing.sandbox.notifications import Notifier
from billing.sandbox.schemas import (
    OBJECT_ID,
    WAITING_FOR_CAPTURE,
    CaptureIn,
    PaymentIn,
    RefundIn,
    YooKassaError,
    api_status,
    invalid_credentials,
    invalid_request,
    list_object,
    me_object,
    method_not_allowed,
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


async def get_notifier(request: Request) -> Notifier:
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
        payment,
        shop_id=settings.yookassa_shop_id,
        public_url=settings.public_url,
        receipt_registration=receipts.receipt_registration(payment),
    )


async def _expire_due(
    sessions: SessionsDep, settings: Settings, notifier: Notifier, now: datetime
) -> None:
    """Cancel what has outlived ЮKassa's lifetimes, and tell billing (as ЮKassa does)."""
    for expired in await service.expire_due(sessions, now=now):
        notifier.send_later(notification("payment.canceled", _payment_json(expired, settings)))


async def _current_payment(
    sessions: SessionsDep, settings: Settings, notifier: Notifier, now: datetime, payment_id: str
) -> SandboxPayment | None:
    found = _object_id(payment_id)
    if found is None:
        return None
    payment, expired = await service.current_payment(sessions, found, now=now)
    if expired:
        assert payment is not None
        notifier.send_later(notification("payment.canceled", _payment_json(payment, settings)))
    return payment


_LIST_LIMIT = re.compile(r"[1-9][0-9]?|100")


def _list_request(
    request: Request, *, statuses: set[str], payment_filter: bool = False,
    refund_filter: bool = False,
) -> service.Page:  # fmt: skip
    """A list request's query: ``limit`` (1–100, default 10), ``cursor``, ``status``,
    ``created_at.gte|gt|lte|lt`` (ISO 8601), for refunds and receipts ``payment_id``, for
    receipts ``refund_id``."""
    query = request.query_params
    limit = query.get("limit", "10")
    if not _LIST_LIMIT.fullmatch(limit):
        raise invalid_request("limit must be an integer from 1 to 100", "limit")
    status = query.get("status")
    if status is not None and status not in statuses:
        raise invalid_request(f"status must be one of {', '.join(sorted(statuses))}", "status")
    bounds: dict[str, datetime | None] = {}
    for bound in ("gte", "gt", "lte", "lt"):
        name = f"created_at.{bound}"
        bounds[f"created_{bound}"] = _moment(query.get(name), name)
    payment_id = query.get("payment_id") if payment_filter else None
    if payment_id is not None and _object_id(payment_id) is None:
        raise invalid_request("payment_id is not a payment's id", "payment_id")
    refund_id = query.get("refund_id") if refund_filter else None
    if refund_id is not None and _object_id(refund_id) is None:
        raise invalid_request("refund_id is not a refund's id", "refund_id")
    return service.Page(
        limit=int(limit), status=status, after=_cursor(query.get("cursor")),
        payment_id=payment_id, refund_id=refund_id, **bounds,
    )  # fmt: skip


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_request(f"{name} must be an ISO 8601 time", name) from None
    if moment.tzinfo is None:
        raise invalid_request(f"{name} must carry its time zone", name)
    return moment


def _cursor(value: str | None) -> tuple[datetime, str] | None:
    """The opaque ``cursor``: the last item's ``created_at`` and id, base64url-encoded."""
    if value is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(value.encode() + b"==").decode()
        moment, _, last_id = decoded.partition("|")
        parsed = datetime.fromisoformat(moment)
    except (binascii.Error, ValueError):
        raise invalid_request("cursor is not one this API gave", "cursor") from None
    if parsed.tzinfo is None or _object_id(last_id) is None:
        raise invalid_request("cursor is not one this API gave", "cursor")
    return parsed, last_id


def _next_cursor(last: Any) -> str:
    """For a payment, a refund or a receipt."""
    token = f"{last.created_at.isoformat()}|{last.id}".encode()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def _settle_body(raw: bytes) -> tuple[CaptureIn, str]:
    # The SDK sends no body for a whole capture or a cancel.
    return parse_body(CaptureIn, raw if raw.strip() else b"{}")


# --- ЮKassa API v3 ----------------------------------------------------------------------


@router.post("/v3/payments")
@_yookassa_errors
async def create_payment(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    key = _idempotence_key(request)
    body, digest = parse_body(PaymentIn, await request.body())
    receipts.check_receipt(
        body.receipt, amount=body.amount.value, currency=body.amount.currency,
        required=settings.receipts_on, what="payment",
    )  # fmt: skip
    payment, created = await service.create_payment(
        sessions, body, idempotence_key=key, digest=digest, now=clock.now()
    )
    answer = _payment_json(payment, settings)
    if created and api_status(payment) != SandboxPaymentStatus.PENDING:
        # A saved method charged at once: told as any payment's outcome, after the answer.
        notifier.send_later(notification(f"payment.{answer['status']}", answer))
    return JSONResponse(answer)


@router.get("/v3/payments")
@_yookassa_errors
async def list_payments(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    page = _list_request(request, statuses={*SandboxPaymentStatus, WAITING_FOR_CAPTURE})
    await _expire_due(sessions, settings, notifier, clock.now())
    payments, more = await service.list_payments(sessions, page)
    items = [_payment_json(payment, settings) for payment in payments]
    return JSONResponse(list_object(items, _next_cursor(payments[-1]) if more else None))


@router.get("/v3/payments/{payment_id}")
@_yookassa_errors
async def get_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    payment = await _current_payment(sessions, settings, notifier, clock.now(), payment_id)
    if payment is None:
        raise not_found("Payment", "payment_id")
    return JSONResponse(_payment_json(payment, settings))


async def _settle(
    action: service.Settle,
    payment_id: str,
    request: Request,
    settings: Settings,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: Notifier,
) -> Response:
    _authenticate(request, settings)
    key = _idempotence_key(request)
    body, digest = _settle_body(await request.body())
    if await _current_payment(sessions, settings, notifier, clock.now(), payment_id) is None:
        raise not_found("Payment", "payment_id")
    payment, changed = await service.settle(
        sessions, payment_id, action, body, idempotence_key=key, digest=digest, now=clock.now()
    )
    answer = _payment_json(payment, settings)
    if changed:  # after the response: billing may be holding its payment row meanwhile
        notifier.send_later(notification(f"payment.{payment.status}", answer))
    return JSONResponse(answer)


@router.post("/v3/payments/{payment_id}/capture")
@_yookassa_errors
async def capture_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    """Two-stage payments: take the money held (all of it, or ``amount``)."""
    return await _settle(
        service.Settle.CAPTURE, payment_id, request, settings, clock, sessions, notifier
    )


@router.post("/v3/payments/{payment_id}/cancel")
@_yookassa_errors
async def cancel_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    """Two-stage payments: release the money held."""
    return await _settle(
        service.Settle.CANCEL, payment_id, request, settings, clock, sessions, notifier
    )


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
    receipts.check_receipt(
        body.receipt, amount=body.amount.value, currency=body.amount.currency,
        required=settings.receipts_on, what="refund",
    )  # fmt: skip
    refund, made_now = await service.create_refund(
        sessions, body, idempotence_key=key, digest=digest, now=clock.now()
    )
    answer = refund_object(refund)
    if made_now:
        notifier.send_later(notification("refund.succeeded", answer))
    return JSONResponse(answer)


@router.get("/v3/refunds")
@_yookassa_errors
async def list_refunds(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Response:
    _authenticate(request, settings)
    page = _list_request(
        request, statuses={"pending", "succeeded", "canceled"}, payment_filter=True
    )
    refunds, more = await service.list_refunds(sessions, page)
    items = [refund_object(refund) for refund in refunds]
    return JSONResponse(list_object(items, _next_cursor(refunds[-1]) if more else None))


@router.get("/v3/receipts")
@_yookassa_errors
async def list_receipts(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Response:
    """The 54-FZ receipts registered: a payment's once it succeeded, each refund's."""
    _authenticate(request, settings)
    page = _list_request(
        request, statuses={"pending", "succeeded", "canceled"}, payment_filter=True,
        refund_filter=True,
    )  # fmt: skip
    found, more = await service.list_receipts(sessions, page)
    items = [receipt.body for receipt in found]
    return JSONResponse(list_object(items, _next_cursor(found[-1]) if more else None))


@router.get("/v3/receipts/{receipt_id}")
@_yookassa_errors
async def get_receipt(
    receipt_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    found = _object_id(receipt_id)
    receipt = await service.find_receipt(sessions, found) if found else None
    if receipt is None:
        raise not_found("Receipt", "receipt_id")
    return JSONResponse(receipt.body)


@router.get("/v3/me")
@_yookassa_errors
async def me(request: Request, settings: SettingsDep) -> Response:
    _authenticate(request, settings)
    return JSONResponse(me_object(settings.yookassa_shop_id, receipts=settings.receipts_on))


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


# ЮKassa's paths the sandbox answers, and their methods: another method there is a 405.
_KNOWN_PATHS = [
    (re.compile(r"payments"), {"GET", "POST"}),
    (re.compile(r"payments/[^/]+"), {"GET"}),
    (re.compile(r"payments/[^/]+/(capture|cancel)"), {"POST"}),
    (re.compile(r"refunds"), {"GET", "POST"}),
    (re.compile(r"refunds/[^/]+"), {"GET"}),
    (re.compile(r"receipts"), {"GET"}),
    (re.compile(r"receipts/[^/]+"), {"GET"}),
    (re.compile(r"me"), {"GET"}),
]


@router.api_route(
    "/v3/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
)
@_yookassa_errors
async def unknown(rest: str, request: Request) -> Response:
    """Whatever else of ЮKassa's API the sandbox does not emulate, in ЮKassa's error shape."""
    path = rest.strip("/")
    if any(pattern.fullmatch(path) for pattern, _ in _KNOWN_PATHS):
        raise method_not_allowed(request.method)
    raise not_found("Resource", None)


# --- the checkout page ------------------------------------------------------------------

# The page's test cards (``card``), as (value, label); the first is the default.
CARD_CHOICES = [(card.value, cards.LABELS[card]) for card in cards.TestCard]


_Card = TypeVar("_Card", bound=StrEnum)


def chosen_card(form_value: object, choices: type[_Card]) -> _Card | None:
    """The form's ``card`` (``ok`` when absent), or None for one the page does not offer."""
    value = "ok" if form_value is None else form_value
    try:
        return choices(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _page(
    request: Request,
    payment: SandboxPayment | None,
    *,
    status_code: int = 200,
    message: str | None = None,
) -> Response:
    context: dict[str, Any] = {"payment": None, "message": message, "cards": CARD_CHOICES}
    if payment is not None:
        context["payment"] = {
            "id": payment.id,
            "amount": f"{format_amount(payment.amount)} {payment.currency}",
            "description": payment.description,
            "status": api_status(payment),
            "pending": api_status(payment) == SandboxPaymentStatus.PENDING,
            "paid": payment.status == SandboxPaymentStatus.SUCCEEDED,
            "held": api_status(payment) == WAITING_FOR_CAPTURE,
            "return_url": payment.return_url,
        }
    return templates.TemplateResponse(request, "checkout.html", context, status_code=status_code)


@router.get("/checkout/{payment_id}")
async def checkout_page(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    payment = await _current_payment(sessions, settings, notifier, clock.now(), payment_id)
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
    """*Pay* or *Decline* (``action=pay|decline``; ``card`` = a test card, ``ok`` by default;
    ``notify=0`` skips the notification)."""
    try:
        form = await request.form()
    except Exception:  # a malformed multipart body is the sender's mistake, not a 500
        return _page(request, None, status_code=400, message="Send a form: action=pay|decline.")
    action, notify = form.get("action"), form.get("notify", "1")
    card = chosen_card(form.get("card"), cards.TestCard)
    try:
        decision = service.Decision(action if isinstance(action, str) else "")
    except ValueError:
        return _page(request, None, status_code=400, message="action must be pay or decline.")
    if card is None:
        message = f"card must be one of {', '.join(cards.TestCard)}."
        return _page(request, None, status_code=400, message=message)
    if await _current_payment(sessions, settings, notifier, clock.now(), payment_id) is None:
        return _page(request, None, status_code=404, message="No such payment.")
    payment, changed = await service.decide(
        sessions, payment_id, decision, card=card, now=clock.now()
    )
    if payment is None:
        return _page(request, None, status_code=404, message="No such payment.")
    if not changed:  # pressed again, or too late: nothing happens, the page shows how it ended
        return _page(request, payment)
    if not (isinstance(notify, str) and notify.strip().lower() in _NO):
        event = f"payment.{api_status(payment)}"
        # Sent before the viewer is sent back, so the shop knows by the time they arrive.
        await notifier.send(notification(event, _payment_json(payment, settings)))
    if not payment.return_url:  # an embedded payment: the widget just shows the outcome
        return _page(request, payment)
    return RedirectResponse(payment.return_url, status_code=303)
