"""The ЮKassa adapter: its REST API v3 over httpx (https://yookassa.ru/developers/api).

What it relies on from ЮKassa's documentation:
- Basic auth with the shop id and the secret key; amounts as ``{"value": "499.00",
  "currency": "RUB"}``; error bodies ``{"type": "error", "id", "code", "description",
  "parameter"}``.
- Every POST carries an ``Idempotence-Key``. After a timeout, a network error, a 5xx, a 429
  or a 202 ("still processing") the documented recovery is to repeat the request with the
  SAME key: ЮKassa then answers the result of the first request instead of making a second
  payment or refund. So retries here always reuse the caller's key.
- Notifications are not signed; billing only takes the payment id from them and re-reads
  the payment (``parse_notification``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from billing.checkout.providers.base import (
    PROVIDER_ATTEMPTS,
    PROVIDER_TIMEOUT,
    DeclineReason,
    InvalidNotification,
    Notification,
    ProviderPayment,
    ProviderPaymentStatus,
    ProviderRefund,
    ProviderRefundStatus,
    ProviderRejected,
    ProviderUnavailable,
    Receipt,
    SavedMethod,
)
from billing.money import format_amount, parse_amount

log = logging.getLogger(__name__)

PAYMENT_STATUSES = {
    "pending": ProviderPaymentStatus.PENDING,
    # With capture=true a payment never stops here, but a shop set up for two-stage
    # payments makes it stop: billing then captures it or cancels it.
    "waiting_for_capture": ProviderPaymentStatus.WAITING_FOR_CAPTURE,
    "succeeded": ProviderPaymentStatus.SUCCEEDED,
    "canceled": ProviderPaymentStatus.CANCELED,
}
REFUND_STATUSES = {
    "pending": ProviderRefundStatus.PENDING,
    "succeeded": ProviderRefundStatus.SUCCEEDED,
    "canceled": ProviderRefundStatus.CANCELED,
}
PAYMENT_EVENTS = {"payment.succeeded", "payment.canceled", "payment.waiting_for_capture"}
REFUND_EVENTS = {"refund.succeeded"}
# ЮKassa's ids are 36-character UUID-like strings; anything outside this is not one of them.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# ЮKassa limits a payment's description to 128 characters.
DESCRIPTION_LIMIT = 128
_RETRY_STATUSES = {202, 429}
_T = TypeVar("_T")


class _Malformed(Exception):
    """A 2xx answer that is not the object ЮKassa documents."""


class YooKassaProvider:
    """``PaymentProvider`` over ЮKassa's API at ``base_url`` (``…/v3``, the sandbox's by
    default), through the app's shared outbound ``client``."""

    name: str = "yookassa"
    sends_receipts: bool = True
    keeps_customers: bool = False  # a saved method is the shop's, by its id alone

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        shop_id: str,
        secret_key: str,
        attempts: int = PROVIDER_ATTEMPTS,
        backoff: float = 0.2,
        timeout: httpx.Timeout = PROVIDER_TIMEOUT,
    ) -> None:
        """``attempts`` in all, ``backoff`` seconds before the second and doubling; each attempt
        bounded by ``timeout``."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(shop_id, secret_key)
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout

    # --- the interface ----------------------------------------------------------------------

    async def create_payment(
        self,
        *,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        description: str,
        return_url: str,
        idempotence_key: str,
        expires_at: datetime,
        requested_at: datetime,
        customer_email: str | None = None,
        receipt: Receipt | None = None,
        save_payment_method: bool = False,
        customer_id: str | None = None,
    ) -> ProviderPayment:
        # ЮKassa takes no expiry for a payment awaiting the viewer (its own lifetime is about
        # an hour); billing expires the invoice on its side, so ``expires_at`` is not sent.
        body: dict[str, Any] = {
            "amount": {"value": format_amount(amount), "currency": currency},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": description[:DESCRIPTION_LIMIT],
            "metadata": {"billing_payment_id": str(payment_id)},
        }
        if receipt is not None:
            body["receipt"] = _receipt(receipt)
        if save_payment_method:
            body["save_payment_method"] = True
        answer = await self._call("POST", "/payments", json_body=body, key=idempotence_key)
        return self._parse(answer, _payment)

    async def get_payment(
        self, provider_payment_id: str, data: Mapping[str, Any] | None = None
    ) -> ProviderPayment:
        answer = await self._call("GET", f"/payments/{self._checked_id(provider_payment_id)}")
        return self._parse(answer, _payment)

    async def charge_saved_method(
        self,
        *,
        payment_id: uuid.UUID,
        amount: int,
        currency: str,
        description: str,
        method: SavedMethod,
        idempotence_key: str,
        receipt: Receipt | None = None,
    ) -> ProviderPayment:
        """A payment with ``payment_method_id`` and no ``confirmation``: ЮKassa charges the
        saved method at once (autopayments) and answers succeeded or canceled."""
        body: dict[str, Any] = {
            "amount": {"value": format_amount(amount), "currency": currency},
            "capture": True,
            "payment_method_id": method.provider_method_id,
            "description": description[:DESCRIPTION_LIMIT],
            "metadata": {"billing_payment_id": str(payment_id)},
        }
        if receipt is not None:
            body["receipt"] = _receipt(receipt)
        answer = await self._call("POST", "/payments", json_body=body, key=idempotence_key)
        return self._parse(answer, _payment)

    async def create_customer(
        self, *, user_id: uuid.UUID, email: str | None, idempotence_key: str
    ) -> str:
        raise ProviderRejected("ЮKassa keeps no customers", status=400)

    async def capture_payment(
        self, provider_payment_id: str, *, amount: int, currency: str, idempotence_key: str
    ) -> ProviderPayment:
        body = {"amount": {"value": format_amount(amount), "currency": currency}}
        path = f"/payments/{self._checked_id(provider_payment_id)}/capture"
        answer = await self._call("POST", path, json_body=body, key=idempotence_key)
        return self._parse(answer, _payment)

    async def cancel_payment(
        self, provider_payment_id: str, *, idempotence_key: str
    ) -> ProviderPayment:
        path = f"/payments/{self._checked_id(provider_payment_id)}/cancel"
        answer = await self._call("POST", path, json_body={}, key=idempotence_key)
        return self._parse(answer, _payment)

    @staticmethod
    def _checked_id(provider_payment_id: str) -> str:
        if not _ID.fullmatch(provider_payment_id):
            raise ProviderRejected("not a ЮKassa payment id", status=404, code="not_found")
        return provider_payment_id

    async def create_refund(
        self,
        *,
        provider_payment_id: str,
        amount: int,
        currency: str,
        idempotence_key: str,
        data: Mapping[str, Any] | None = None,
        receipt: Receipt | None = None,
    ) -> ProviderRefund:
        body: dict[str, Any] = {
            "payment_id": provider_payment_id,
            "amount": {"value": format_amount(amount), "currency": currency},
        }
        if receipt is not None:
            body["receipt"] = _receipt(receipt)
        answer = await self._call("POST", "/refunds", json_body=body, key=idempotence_key)
        return self._parse(answer, _refund)

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """``{"type": "notification", "event": …, "object": {…}}`` → the payment it is about.

        Only the id is taken: the object itself is never believed, billing re-reads the
        payment. For ``refund.*`` the object is a refund, whose ``payment_id`` is the one.
        """
        try:
            notification = json.loads(body)
        except (ValueError, RecursionError):
            raise InvalidNotification("the body is not JSON") from None
        if not isinstance(notification, dict) or notification.get("type") != "notification":
            raise InvalidNotification("not a ЮKassa notification")
        event = notification.get("event")
        subject = notification.get("object")
        if not isinstance(subject, dict):
            raise InvalidNotification("the notification has no object")
        if event in PAYMENT_EVENTS:
            payment_id = subject.get("id")
        elif event in REFUND_EVENTS:
            payment_id = subject.get("payment_id")
        else:
            raise InvalidNotification(f"unexpected event {str(event)[:64]!r}")
        if not isinstance(payment_id, str) or not _ID.fullmatch(payment_id):
            raise InvalidNotification("the notification names no payment")
        return Notification(event=str(event), provider_payment_id=payment_id)

    # --- HTTP -------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> Any:
        """One request, retried with the same idempotence key while the failure is one that a
        repeat can cure; answers the decoded JSON of a 2xx."""
        headers = {"Idempotence-Key": key} if key is not None else {}
        url = self._base_url + path
        problem = "no attempt made"
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                request = self._client.build_request(
                    method, url, json=json_body, headers=headers,
                    timeout=self._timeout,
                )  # fmt: skip
                response = await self._client.send(request, auth=self._auth)
            except httpx.TransportError as error:  # timeouts, refused connections, resets
                problem = f"{type(error).__name__}"
                log.warning("ЮKassa %s %s: %s (attempt %d)", method, path, problem, attempt + 1)
                continue
            if response.status_code >= 500 or response.status_code in _RETRY_STATUSES:
                problem = f"HTTP {response.status_code}"
                log.warning("ЮKassa %s %s: %s (attempt %d)", method, path, problem, attempt + 1)
                continue
            if response.status_code >= 400:
                raise _rejected(response)
            try:
                return response.json()
            except ValueError:
                raise ProviderUnavailable(f"ЮKassa {method} {path}: not JSON") from None
        raise ProviderUnavailable(f"ЮKassa {method} {path}: {problem}")

    @staticmethod
    def _parse(answer: Any, parse: Callable[[Any], _T]) -> _T:
        try:
            return parse(answer)
        except (_Malformed, KeyError, TypeError, ValueError) as error:
            # A 2xx we cannot read is the provider misbehaving, not the viewer's fault:
            # "try again later", never a 500.
            log.error("ЮKassa answered an unexpected body: %s", error)
            raise ProviderUnavailable("ЮKassa answered an unexpected body") from None


def _rejected(response: httpx.Response) -> ProviderRejected:
    """A 4xx with ЮKassa's error body: its ``code``, ``description`` and ``parameter`` kept."""
    try:
        error = response.json()
    except ValueError:
        error = None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = f"ЮKassa answered {response.status_code} {code or ''}".rstrip()
    if error.get("description"):
        message += f": {error['description']}"
    if error.get("parameter"):
        message += f" (parameter {error['parameter']})"
    return ProviderRejected(message, status=response.status_code, code=code)


# --- ЮKassa objects -------------------------------------------------------------------------


def _receipt(receipt: Receipt) -> dict[str, Any]:
    """ЮKassa's ``receipt`` object (https://yookassa.ru/developers/api#create_payment,
    ``receipt``; the values' lists: /developers/54fz/parameters-values)."""
    body: dict[str, Any] = {
        "customer": {"email": receipt.customer_email},
        "items": [
            {
                "description": item.description[:DESCRIPTION_LIMIT],
                "quantity": 1,
                "amount": {"value": format_amount(item.amount), "currency": receipt.currency},
                "vat_code": item.vat_code,
                "payment_subject": item.payment_subject,
                "payment_mode": item.payment_mode,
                "measure": item.measure,
            }
            for item in receipt.items
        ],
    }
    if receipt.tax_system_code is not None:
        body["tax_system_code"] = receipt.tax_system_code
    return body


def _payment(answer: Any) -> ProviderPayment:
    obj = _object(answer)
    status = PAYMENT_STATUSES.get(obj["status"])
    if status is None:
        raise _Malformed(f"unknown payment status {obj['status']!r}")
    amount, currency = _amount(obj["amount"])
    paid_at = None
    if status == ProviderPaymentStatus.SUCCEEDED:
        paid_at = _time(obj.get("captured_at") or obj["created_at"])
    refunded = 0
    if obj.get("refunded_amount") is not None:
        refunded, refunded_currency = _amount(obj["refunded_amount"])
        if refunded_currency != currency:
            raise _Malformed("refunded_amount in another currency")
    confirmation = obj.get("confirmation")
    confirmation_url = None
    if isinstance(confirmation, dict) and isinstance(confirmation.get("confirmation_url"), str):
        confirmation_url = confirmation["confirmation_url"]
    return ProviderPayment(
        provider_payment_id=obj["id"],
        status=status,
        amount=amount,
        currency=currency,
        confirmation_url=confirmation_url,
        paid_at=paid_at,
        refunded_amount=refunded,
        saved_method=_saved_method(obj.get("payment_method")),
        decline_reason=_decline(obj) if status == ProviderPaymentStatus.CANCELED else None,
    )


# ЮKassa's cancellation_details.reason → billing's (ЮKassa: "Declined payments").
DECLINE_REASONS = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "issuer_unavailable": DeclineReason.ISSUER_UNAVAILABLE,
    "internal_timeout": DeclineReason.PROVIDER_UNAVAILABLE,
    "card_expired": DeclineReason.CARD_EXPIRED,
    "permission_revoked": DeclineReason.METHOD_REVOKED,
    "fraud_suspected": DeclineReason.FRAUD,
}


def _decline(obj: dict[str, Any]) -> DeclineReason:
    details = obj.get("cancellation_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return DECLINE_REASONS.get(str(reason), DeclineReason.DECLINED)


def _saved_method(method: Any) -> SavedMethod | None:
    """ЮKassa's ``payment_method`` when it was saved (``saved: true``): ``{type, id, saved,
    title, card: {first6, last4, expiry_month, expiry_year, card_type, …}}``."""
    if not isinstance(method, dict) or method.get("saved") is not True:
        return None
    method_id = method.get("id")
    if not isinstance(method_id, str) or not _ID.fullmatch(method_id):
        raise _Malformed("a saved payment method without an id")
    card: dict[str, Any] = method["card"] if isinstance(method.get("card"), dict) else {}
    last4 = card.get("last4") if isinstance(card.get("last4"), str) else None
    month, year = card.get("expiry_month"), card.get("expiry_year")
    expires = f"{year}-{month}" if isinstance(month, str) and isinstance(year, str) else None
    title = method.get("title")
    if not isinstance(title, str) or not title:
        title = f"Bank card *{last4}" if last4 else "Saved payment method"
    return SavedMethod(
        provider_method_id=method_id, title=title[:100], card_last4=last4, expires=expires
    )


def _refund(answer: Any) -> ProviderRefund:
    obj = _object(answer)
    status = REFUND_STATUSES.get(obj["status"])
    if status is None:
        raise _Malformed(f"unknown refund status {obj['status']!r}")
    amount, currency = _amount(obj["amount"])
    return ProviderRefund(
        provider_refund_id=obj["id"], status=status, amount=amount, currency=currency
    )


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise _Malformed("not a JSON object")
    if not isinstance(answer.get("id"), str) or not _ID.fullmatch(answer["id"]):
        raise _Malformed("no id")
    if not isinstance(answer.get("status"), str):
        raise _Malformed("no status")
    return answer


def _amount(value: Any) -> tuple[int, str]:
    if not isinstance(value, dict) or not isinstance(value.get("currency"), str):
        raise _Malformed("not an amount")
    return parse_amount(value["value"]), value["currency"]


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _Malformed("not a time")
    moment = datetime.fromisoformat(value)  # ЮKassa: "2018-07-18T10:51:18.139Z"
    if moment.tzinfo is None:
        raise _Malformed("a time without offset")
    return moment
