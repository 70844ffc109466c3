"""HTTP layer of the sandbox's Stripe mode: the part of Stripe's API billing uses, under
``/sandbox/stripe/v1``, and the checkout page at a session's ``url``.

Mounted at ``/sandbox/stripe``, so ``BILLING_STRIPE_API_BASE`` defaults to
``{public_url}/sandbox/stripe`` and the official SDK's ``/v1/…`` paths land here. Answers are
Stripe's: form-encoded requests with bracketed keys, Bearer secret key, JSON objects, errors
as ``{"error": {…}}`` with Stripe's status codes, ``Idempotency-Key`` replays — not billing's
problem+json. The routes read the raw request and validate it themselves for that reason.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from billing.clock import Clock
from billing.config import Settings
from billing.dependencies import ClockDep, SessionsDep, SettingsDep
from billing.money import format_amount
from billing.sandbox import cards
from billing.sandbox import stripe_service as service
from billing.sandbox.endpoints import chosen_card, templates
from billing.sandbox.models import SandboxStripeSession, SandboxStripeSessionStatus
from billing.sandbox.stripe_schemas import (
    OBJECT_ID,
    CardError,
    CustomerIn,
    PaymentIntentIn,
    ReadIn,
    RefundIn,
    SessionIn,
    StripeApiError,
    card_error,
    charge_object,
    check_expand,
    customer_object,
    event,
    intent_state,
    invalid_api_key,
    invalid_request,
    is_paid,
    missing_api_key,
    new_id,
    no_such,
    parse_params,
    payment_intent_object,
    payment_method_id,
    payment_method_object,
    refund_object,
    session_object,
)
from billing.sandbox.stripe_webhooks import StripeNotifier

SESSION_EXPANSIONS = {
    "payment_intent", "payment_intent.latest_charge", "payment_intent.payment_method",
    "line_items",
}  # fmt: skip
PAYMENT_INTENT_EXPANSIONS = {"latest_charge", "payment_method"}
# The checkout page's test cards, as (value, label): the sandboxes' own, and the delayed one.
CARD_CHOICES = [
    *((card.value, cards.LABELS[card]) for card in cards.TestCard),
    (service.Card.DELAYED.value, "Card that pays later (the bank answers afterwards, as with a"
                                 " bank debit)"),
]  # fmt: skip
# Stripe: up to 255 characters; printable ASCII is what an HTTP header can carry.
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_NO = {"0", "false", "no", "off"}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's own lifespan: the outbound client exists until after this ends.
    settings: Settings = app.state.settings
    notifier = StripeNotifier(
        app.state.outbound, settings.public_url, settings.stripe_webhook_secret
    )
    app.state.sandbox_stripe_notifier = notifier
    try:
        yield
    finally:
        await notifier.drain()


router = APIRouter(lifespan=_lifespan, include_in_schema=False)


async def get_notifier(request: Request) -> StripeNotifier:
    notifier: StripeNotifier = request.app.state.sandbox_stripe_notifier
    return notifier


NotifierDep = Annotated[StripeNotifier, Depends(get_notifier)]

_P = ParamSpec("_P")


def _stripe_errors(
    endpoint: Callable[_P, Awaitable[Response]],
) -> Callable[_P, Awaitable[Response]]:
    """Render ``StripeApiError`` as Stripe does, instead of billing's problem+json."""

    @functools.wraps(endpoint)
    async def answer(*args: _P.args, **kwargs: _P.kwargs) -> Response:
        try:
            return await endpoint(*args, **kwargs)
        except StripeApiError as error:
            replayed = isinstance(error, CardError) and error.replayed
            return _json(error.body(), status=error.status, replayed=replayed)

    return answer


def _json(
    body: dict[str, Any],
    *,
    status: int = 200,
    replayed: bool = False,
    request_id: str | None = None,
) -> JSONResponse:
    """Stripe's answer; ``request_id`` when the request's events name it already."""
    headers = {"Request-Id": request_id or _request_id()}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id() -> str:
    """Stripe's ``Request-Id``, which the events an API request causes carry too."""
    return new_id("req_", 14)


def _real_now() -> datetime:
    """Stripe's protocol clock (see ``stripe_service``)."""
    return datetime.now(UTC)


def _authenticate(request: Request, settings: Settings) -> None:
    """The secret key as a Bearer token (the SDK's way) or as Basic's user name (curl -u)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode().partition(":")[0]
        except (binascii.Error, ValueError):
            given = ""
    elif scheme.lower() != "bearer":
        given = ""
    if not given:
        raise missing_api_key()
    if not secrets.compare_digest(given.encode(), settings.stripe_secret_key.encode()):
        raise invalid_api_key(given)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise invalid_request("Idempotency-Key must be 1 to 255 printable characters.")
    return key


def _object_id(value: str) -> str | None:
    return value if OBJECT_ID.fullmatch(value) else None


async def _current_session(
    sessions: SessionsDep,
    notifier: StripeNotifier,
    settings: Settings,
    clock: Clock,
    session_id: str,
) -> SandboxStripeSession | None:
    """The session, expiring it first if its time is up (and telling billing so)."""
    if _object_id(session_id) is None:
        return None
    expired = await service.expire_if_due(sessions, session_id, real_now=_real_now())
    if expired is not None:
        subject = session_object(expired, public_url=settings.public_url)
        notifier.send_later(event("checkout.session.expired", subject, created=clock.now()))
        return expired
    return await service.find_session(sessions, session_id)


# --- Stripe API v1 --------------------------------------------------------------------------


@router.post("/v1/checkout/sessions")
@_stripe_errors
async def create_session(
    request: Request, settings: SettingsDep, clock: ClockDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    key = _idempotency_key(request)
    body, request_digest = parse_params(SessionIn, await request.body())
    expand = check_expand(body.expand, SESSION_EXPANSIONS)

    async def run(session: AsyncSession) -> dict[str, Any]:
        created = await service.create_session(session, body, now=clock.now(), real_now=_real_now())
        return session_object(created, public_url=settings.public_url, expand=expand)

    answer, replayed = await service.idempotent(
        sessions, key=key, endpoint="POST /v1/checkout/sessions",
        request_digest=request_digest, now=clock.now(), run=run,
    )  # fmt: skip
    return _json(answer, replayed=replayed)


@router.get("/v1/checkout/sessions/{session_id}")
@_stripe_errors
async def get_session(
    session_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    params, _ = parse_params(ReadIn, request.url.query.encode())
    expand = check_expand(params.expand, SESSION_EXPANSIONS)
    found = await _current_session(sessions, notifier, settings, clock, session_id)
    if found is None:
        raise no_such("checkout.session", session_id[:80], "session")
    saved = None
    if "payment_intent.payment_method" in expand and found.payment_intent_id is not None:
        saved = await service.find_payment_method(sessions, payment_method_id(found))
    answer = session_object(found, public_url=settings.public_url, expand=expand,
                            saved_method=saved)  # fmt: skip
    return _json(answer)


@router.post("/v1/checkout/sessions/{session_id}/expire")
@_stripe_errors
async def expire_session(
    session_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    key = _idempotency_key(request)
    params, request_digest = parse_params(ReadIn, await request.body())
    expand = check_expand(params.expand, SESSION_EXPANSIONS)
    if await _current_session(sessions, notifier, settings, clock, session_id) is None:
        raise no_such("checkout.session", session_id[:80], "session")

    async def run(session: AsyncSession) -> dict[str, Any]:
        expired = await service.expire(session, session_id)
        return session_object(expired, public_url=settings.public_url, expand=expand)

    answer, replayed = await service.idempotent(
        sessions, key=key, endpoint=f"POST /v1/checkout/sessions/{session_id}/expire",
        request_digest=request_digest, now=clock.now(), run=run,
    )  # fmt: skip
    request_id = _request_id()
    if not replayed:  # an expired session has no payment intent: nothing was expanded
        notifier.send_later(event("checkout.session.expired", answer, created=clock.now(),
                                  request_id=request_id, idempotency_key=key))  # fmt: skip
    return _json(answer, replayed=replayed, request_id=request_id)


@router.get("/v1/payment_intents/{intent_id}")
@_stripe_errors
async def get_payment_intent(
    intent_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    params, _ = parse_params(ReadIn, request.url.query.encode())
    expand = check_expand(params.expand, PAYMENT_INTENT_EXPANSIONS)
    found = (
        await service.find_by_payment_intent(sessions, intent_id) if _object_id(intent_id) else None
    )
    if found is None:
        raise no_such("payment_intent", intent_id[:80], "intent")
    saved = None
    if "payment_method" in expand:  # a saved card as it is now (attached, or detached)
        saved = await service.find_payment_method(sessions, payment_method_id(found))
    return _json(payment_intent_object(found, expand=expand, saved_method=saved))


@router.post("/v1/payment_intents")
@_stripe_errors
async def create_payment_intent(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    """A saved card charged at once (``confirm=true``, ``off_session=true``): ``succeeded``,
    or Stripe's 402 ``card_error`` with the intent left ``requires_payment_method``."""
    _authenticate(request, settings)
    key = _idempotency_key(request)
    body, request_digest = parse_params(PaymentIntentIn, await request.body())
    expand = check_expand(body.expand, PAYMENT_INTENT_EXPANSIONS)

    async def run(session: AsyncSession) -> dict[str, Any]:
        charged, method = await service.charge(session, body, now=clock.now())
        intent = payment_intent_object(charged, expand=expand, saved_method=method)
        error = (intent_state(charged) or {}).get("error")
        if error:
            raise card_error(
                error, charge_id=charged.charge_id or "", method=payment_method_object(method),
                intent=payment_intent_object(charged, saved_method=method),
            )  # fmt: skip
        return intent

    request_id = _request_id()
    try:
        answer, replayed = await service.idempotent(
            sessions, key=key, endpoint="POST /v1/payment_intents",
            request_digest=request_digest, now=clock.now(), run=run,
        )  # fmt: skip
    except CardError as declined:
        if not declined.replayed:
            await _send_charge_events(sessions, notifier, declined.body()["error"]["charge"],
                                      clock, request_id=request_id, key=key)  # fmt: skip
        raise
    if not replayed:
        latest = answer["latest_charge"]
        charge_id = latest if isinstance(latest, str) else latest["id"]
        await _send_charge_events(sessions, notifier, charge_id, clock,
                                  request_id=request_id, key=key)  # fmt: skip
    return _json(answer, replayed=replayed, request_id=request_id)


async def _send_charge_events(
    sessions: SessionsDep,
    notifier: StripeNotifier,
    charge_id: str,
    clock: Clock,
    *,
    request_id: str,
    key: str | None,
) -> None:
    """A charge's events, after the answer (as Stripe sends them): ``charge.succeeded`` and
    ``payment_intent.succeeded``, or ``charge.failed`` and ``payment_intent.payment_failed``."""
    charged = await service.find_by_charge(sessions, charge_id)
    assert charged is not None
    succeeded = is_paid(charged)
    kinds = (
        ("charge.succeeded", "payment_intent.succeeded")
        if succeeded
        else ("charge.failed", "payment_intent.payment_failed")
    )
    subjects = (charge_object(charged), payment_intent_object(charged))
    for kind, subject in zip(kinds, subjects, strict=True):
        notifier.send_later(event(kind, subject, created=clock.now(), request_id=request_id,
                                  idempotency_key=key))  # fmt: skip


@router.post("/v1/customers")
@_stripe_errors
async def create_customer(
    request: Request, settings: SettingsDep, clock: ClockDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    key = _idempotency_key(request)
    body, request_digest = parse_params(CustomerIn, await request.body())
    check_expand(body.expand, set())

    async def run(session: AsyncSession) -> dict[str, Any]:
        return customer_object(await service.create_customer(session, body, now=clock.now()))

    answer, replayed = await service.idempotent(
        sessions, key=key, endpoint="POST /v1/customers",
        request_digest=request_digest, now=clock.now(), run=run,
    )  # fmt: skip
    return _json(answer, replayed=replayed)


@router.get("/v1/customers/{customer_id}")
@_stripe_errors
async def get_customer(
    customer_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    check_expand(parse_params(ReadIn, request.url.query.encode())[0].expand, set())
    found = _object_id(customer_id) and await service.find_customer(sessions, customer_id)
    if not found:
        raise no_such("customer", customer_id[:80], "id")
    return _json(customer_object(found))


@router.get("/v1/payment_methods/{method_id}")
@_stripe_errors
async def get_payment_method(
    method_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    check_expand(parse_params(ReadIn, request.url.query.encode())[0].expand, set())
    found = _object_id(method_id) and await service.find_payment_method(sessions, method_id)
    if not found:
        raise no_such("PaymentMethod", method_id[:80], "payment_method")
    return _json(payment_method_object(found))


@router.post("/v1/payment_methods/{method_id}/detach")
@_stripe_errors
async def detach_payment_method(
    method_id: str, request: Request, settings: SettingsDep, clock: ClockDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    key = _idempotency_key(request)
    params, request_digest = parse_params(ReadIn, await request.body())
    check_expand(params.expand, set())
    if _object_id(method_id) is None:
        raise no_such("PaymentMethod", method_id[:80], "payment_method")

    async def run(session: AsyncSession) -> dict[str, Any]:
        return payment_method_object(await service.detach(session, method_id, now=clock.now()))

    answer, replayed = await service.idempotent(
        sessions, key=key, endpoint=f"POST /v1/payment_methods/{method_id}/detach",
        request_digest=request_digest, now=clock.now(), run=run,
    )  # fmt: skip
    return _json(answer, replayed=replayed)


@router.post("/v1/refunds")
@_stripe_errors
async def create_refund(
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    _authenticate(request, settings)
    key = _idempotency_key(request)
    body, request_digest = parse_params(RefundIn, await request.body())
    check_expand(body.expand, set())

    async def run(session: AsyncSession) -> dict[str, Any]:
        refund, paid = await service.create_refund(session, body, now=clock.now())
        return refund_object(refund, paid)

    answer, replayed = await service.idempotent(
        sessions, key=key, endpoint="POST /v1/refunds",
        request_digest=request_digest, now=clock.now(), run=run,
    )  # fmt: skip
    request_id = _request_id()
    if not replayed:
        paid = await service.find_by_payment_intent(sessions, answer["payment_intent"])
        assert paid is not None
        # After the response, as Stripe does: billing asks for the refund holding its payment
        # row, and its webhook handler would wait for that same row.
        notifier.send_later(event("charge.refunded", charge_object(paid), created=clock.now(),
                                  request_id=request_id, idempotency_key=key))  # fmt: skip
    return _json(answer, replayed=replayed, request_id=request_id)


@router.get("/v1/refunds/{refund_id}")
@_stripe_errors
async def get_refund(
    refund_id: str, request: Request, settings: SettingsDep, sessions: SessionsDep
) -> Response:
    _authenticate(request, settings)
    found = await service.find_refund(sessions, refund_id) if _object_id(refund_id) else None
    if found is None:
        raise no_such("refund", refund_id[:80], "refund")
    return _json(refund_object(*found))


@router.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
async def unrecognized(rest: str, request: Request) -> Response:
    """Whatever else of Stripe's API the sandbox does not emulate: Stripe's own 404."""
    message = (
        f"Unrecognized request URL ({request.method}: /v1/{rest[:200]}). Please see"
        " https://stripe.com/docs or we can help at https://support.stripe.com/."
    )
    return _json(StripeApiError(404, message).body(), status=404)


# --- the checkout page ------------------------------------------------------------------


def _return_url(session: SandboxStripeSession) -> str | None:
    url = (
        session.success_url
        if session.status == SandboxStripeSessionStatus.COMPLETE
        else session.cancel_url or session.success_url
    )
    # Stripe fills in the session id where the shop asked for it.
    return url.replace("{CHECKOUT_SESSION_ID}", session.id) if url else None


def _page(
    request: Request,
    session: SandboxStripeSession | None,
    *,
    status_code: int = 200,
    message: str | None = None,
) -> Response:
    context: dict[str, Any] = {
        "brand": "Stripe", "payment": None, "message": message, "cards": CARD_CHOICES,
    }  # fmt: skip
    if session is not None:
        paid = is_paid(session)
        is_open = session.status == SandboxStripeSessionStatus.OPEN
        intent = intent_state(session)
        processing = intent is not None and intent["status"] == "processing"
        context["payment"] = {
            "id": session.id,
            "amount": f"{format_amount(session.amount_total)} {session.currency.upper()}",
            "description": ", ".join(item["name"] for item in session.line_items),
            "status": "succeeded" if paid else "pending" if is_open else "canceled",
            "pending": is_open,
            "paid": paid,
            "processing": processing,
            "return_url": _return_url(session),
        }
        if is_open and intent is not None and intent.get("error") and message is None:
            context["message"] = f"{intent['error']['message']} Try again."
    return templates.TemplateResponse(request, "checkout.html", context, status_code=status_code)


@router.get("/c/pay/{session_id}")
async def checkout_page(
    session_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    found = await _current_session(sessions, notifier, settings, clock, session_id)
    if found is None:
        return _page(request, None, status_code=404, message="No such Checkout Session.")
    return _page(request, found)


@router.post("/c/pay/{session_id}")
async def checkout_decide(
    session_id: str,
    request: Request,
    settings: SettingsDep,
    clock: ClockDep,
    sessions: SessionsDep,
    notifier: NotifierDep,
) -> Response:
    """The page's form, like the ЮKassa sandbox's: ``action=pay`` with a test ``card`` (``ok``
    by default; ``delayed``: the bank answers later; ``insufficient_funds``: declined, the
    session stays open) or ``action=decline`` (the card is declined; the session stays open);
    for a delayed payment, ``action=settle|fail`` is the bank's answer. ``notify=0`` sends no
    event."""
    try:
        form = await request.form()
    except Exception:  # a malformed multipart body is the sender's mistake, not a 500
        return _page(request, None, status_code=400, message="Send a form: action=pay|decline.")
    action, notify = form.get("action"), form.get("notify", "1")
    chosen = chosen_card(form.get("card"), service.Card)
    try:
        decision = service.Decision(action if isinstance(action, str) else "")
    except ValueError:
        chosen = None
    if chosen is None:
        message = (
            f"action must be pay, decline, settle or fail; card one of {', '.join(service.Card)}."
        )
        return _page(request, None, status_code=400, message=message)
    if await _current_session(sessions, notifier, settings, clock, session_id) is None:
        return _page(request, None, status_code=404, message="No such Checkout Session.")
    decided, changed = await service.decide(
        sessions, session_id, decision, card=chosen, now=clock.now(), real_now=_real_now()
    )
    if decided is None:
        return _page(request, None, status_code=404, message="No such Checkout Session.")
    if not changed:  # pressed again, or too late: nothing happens, the page shows how it ended
        return _page(request, decided)
    declined = decision == service.Decision.DECLINE or (
        decision == service.Decision.PAY and decided.status == SandboxStripeSessionStatus.OPEN
    )
    if not (isinstance(notify, str) and notify.strip().lower() in _NO):
        # Sent before the viewer is sent on, so the shop knows by the time they arrive.
        for kind, subject in _events(decided, decision, declined, settings):
            await notifier.send(event(kind, subject, created=clock.now()))
    if declined:  # Stripe's page shows the decline, and waits
        return _page(request, decided)
    back = _return_url(decided)
    return RedirectResponse(back, status_code=303) if back else _page(request, decided)


def _events(
    session: SandboxStripeSession, decision: service.Decision, declined: bool, settings: Settings
) -> list[tuple[str, dict[str, Any]]]:
    """The events Stripe sends for what happened on the page (no API request caused them)."""
    subject = session_object(session, public_url=settings.public_url)
    failed = ("payment_intent.payment_failed", payment_intent_object(session))
    if declined:
        return [failed]
    if decision == service.Decision.PAY:
        return [("checkout.session.completed", subject)]
    if decision == service.Decision.SETTLE:
        return [("checkout.session.async_payment_succeeded", subject)]
    return [failed, ("checkout.session.async_payment_failed", subject)]
