"""The whole checkout flow through HTTP, with the built-in sandbox as the provider — every
test once with ЮKassa and once with Stripe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Invoice, Payment, PromoCode, Refund, Subscription
from billing.sandbox.models import SandboxRefund, SandboxStripeRefund
from billing.subscriptions.periods import add_months
from tests.integration.checkout_helpers import (
    CHECKOUT_PAGES,
    add_tariff,
    both_providers,
    count,
    events,
    forged_notification,
    make_viewer,
    notification,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
pytestmark = both_providers


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_pay_flow_extends_access_and_tells_everyone(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    provider_name: str,
) -> None:
    tariff = await add_tariff(sessions, price=49900)
    viewer = make_viewer(client, auth_headers)

    invoice = await viewer.issue_invoice(tariff.id, months=1)
    assert invoice["status"] == "open"
    assert (invoice["base_amount"], invoice["total_amount"]) == (49900, 49900)
    assert at(invoice["expires_at"]) == clock.now() + timedelta(minutes=30)

    payment = await viewer.start_payment(invoice["id"])
    assert payment["status"] == "pending"
    assert payment["amount"] == 49900
    assert payment["provider"] == provider_name
    assert payment["confirmation_url"].startswith(CHECKOUT_PAGES[provider_name])

    # The browser's link needs no header: it is signed, and resumes the same payment.
    assert invoice["checkout_url"].startswith(
        f"http://billing.test/api/v1/invoices/{invoice['id']}/checkout?sig="
    )
    redirect = await client.get(invoice["checkout_url"])
    assert redirect.status_code == 303
    assert redirect.headers["location"] == payment["confirmation_url"]  # the same payment

    await viewer.press(payment, "pay")  # the sandbox notifies billing's webhook

    paid = await viewer.payment(payment["id"])
    assert paid["status"] == "succeeded"
    assert at(paid["refundable_until"]) == at(paid["paid_at"]) + timedelta(hours=1)
    invoice_now = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=viewer.headers)
    assert invoice_now.json()["status"] == "paid"

    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "active"
    assert subscription["role"] == "premium"
    assert at(subscription["current_period_end"]) == add_months(clock.now(), 1)
    assert at(subscription["access_until"]) == add_months(clock.now(), 1) + timedelta(days=2)

    service = auth_headers("movie-api", "service")
    entitled = await client.get(f"/api/v1/users/{viewer.user_id}/entitlements", headers=service)
    assert entitled.json() == {"user_id": str(viewer.user_id), "roles": ["premium"]}

    [succeeded] = await events(sessions, "payment.succeeded")
    assert succeeded.user_id == viewer.user_id
    assert succeeded.payload["amount"] == 49900
    assert succeeded.payload["tariff"]["role"] == "premium"
    [grant] = await events(sessions, "role.grant")
    assert grant.payload["role"] == "premium"


async def test_declined_payment_leaves_the_invoice_open_and_grants_nothing(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, provider_name: str
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])

    await viewer.press(payment, "decline")

    if provider_name == "stripe":
        # Stripe keeps the Checkout Session open after a declined card: the viewer may try
        # another card on the same page, and the payment stays pending meanwhile.
        assert (await viewer.payment(payment["id"]))["status"] == "pending"
        assert await viewer.subscriptions() == []
        await viewer.press(payment, "pay")
        assert (await viewer.payment(payment["id"]))["status"] == "succeeded"
        return
    assert (await viewer.payment(payment["id"]))["status"] == "canceled"
    again = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=viewer.headers)
    assert again.json()["status"] == "open"
    assert await viewer.subscriptions() == []
    assert await events(sessions, "payment.succeeded") == []
    # The viewer may try again: a new payment for the same invoice.
    retry = await viewer.start_payment(invoice["id"])
    assert retry["id"] != payment["id"]


async def test_pending_payment_is_confirmed_by_the_viewer_once(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id, months=3)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment, "pay", notify=False)  # billing hears nothing
    assert (await viewer.payment(payment["id"]))["status"] == "pending"

    first = await client.post(f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers)
    second = await client.post(f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == second.json()["status"] == "succeeded"

    [subscription] = await viewer.subscriptions()
    assert at(subscription["current_period_end"]) == add_months(clock.now(), 3)
    assert len(await events(sessions, "payment.succeeded")) == 1


async def test_concurrent_confirmations_extend_exactly_once(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id, months=1)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment, "pay", notify=False)

    confirm = f"/api/v1/payments/{payment['id']}/confirm"
    webhook = notification(settings, "succeeded", await _provider_id(sessions, payment["id"]))
    answers = await asyncio.gather(
        *(client.post(confirm, headers=viewer.headers) for _ in range(6)),
        *(webhook.send(client) for _ in range(3)),
    )
    assert {response.status_code for response in answers} == {200}

    [subscription] = await viewer.subscriptions()
    assert at(subscription["current_period_end"]) == add_months(clock.now(), 1)
    assert len(await events(sessions, "payment.succeeded")) == 1
    assert len(await events(sessions, "role.grant")) == 1


async def _provider_id(sessions: Sessions, payment_id: str) -> str:
    async with sessions() as session:
        payment = await session.get_one(Payment, uuid.UUID(payment_id))
        assert payment.provider_payment_id is not None
        return payment.provider_payment_id


async def test_a_forged_webhook_changes_nothing(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    settings: Settings,
    provider_name: str,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])  # not paid at the provider
    provider_payment_id = await _provider_id(sessions, payment["id"])
    forged, answer = forged_notification(settings, provider_payment_id)
    response = await forged.send(client)
    assert response.status_code == answer  # ЮKassa: accepted as a trigger; Stripe: unsigned
    assert (await viewer.payment(payment["id"]))["status"] == "pending"  # …but nothing changed
    assert await viewer.subscriptions() == []
    # Even the provider's own word is only a trigger: the payment is re-read, still pending.
    lying = await notification(settings, "succeeded", provider_payment_id).send(client)
    assert lying.status_code == 200
    assert (await viewer.payment(payment["id"]))["status"] == "pending"
    assert await viewer.subscriptions() == []

    webhook_url = f"/api/v1/webhooks/{provider_name}"
    garbage = await client.post(webhook_url, content=b"{not json")
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "invalid_notification"
    unknown = await client.post("/api/v1/webhooks/paypal", content=forged.content)
    assert unknown.status_code == 404
    other = next(name for name in CHECKOUT_PAGES if name != provider_name)
    not_ours = await client.post(f"/api/v1/webhooks/{other}", content=forged.content)
    # Every provider's webhook is live (older payments may be the other's), and each judges
    # by its own rules: this body is no notification of the other provider.
    assert not_ours.status_code == 400
    assert not_ours.json()["code"] == "invalid_notification"


async def test_a_replayed_notification_settles_once(
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment, "pay", notify=False)
    genuine = notification(settings, "succeeded", await _provider_id(sessions, payment["id"]))

    for _ in range(3):  # delivered, then replayed word for word
        response = await genuine.send(client)
        assert response.status_code == 200
        assert response.json() == {"status": "accepted"}

    assert (await viewer.payment(payment["id"]))["status"] == "succeeded"
    [subscription] = await viewer.subscriptions()
    assert at(subscription["current_period_end"]) == add_months(clock.now(), 1)
    assert len(await events(sessions, "payment.succeeded")) == 1
    assert len(await events(sessions, "role.grant")) == 1


async def test_refund_within_the_window_takes_the_months_back(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id, months=1)
    clock.advance(timedelta(minutes=59))

    response = await client.post(f"/api/v1/payments/{payment['id']}/refund", headers=viewer.headers)
    assert response.status_code == 200, response.text
    refunded = response.json()
    assert refunded["status"] == "refunded"
    assert at(refunded["refunded_at"]) == clock.now()
    assert refunded["refundable_until"] is None

    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "canceled"
    service = auth_headers("movie-api", "service")
    entitled = await client.get(f"/api/v1/users/{viewer.user_id}/entitlements", headers=service)
    assert entitled.json()["roles"] == []
    [revoke] = await events(sessions, "role.revoke")
    assert revoke.payload["role"] == "premium"
    [told] = await events(sessions, "payment.refunded")
    assert told.payload["amount"] == 49900
    async with sessions() as session:
        invoice = await session.get_one(Invoice, uuid.UUID(payment["invoice_id"]))
        assert invoice.status == "refunded"

    again = await client.post(f"/api/v1/payments/{payment['id']}/refund", headers=viewer.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "payment_not_refundable"


async def test_refund_after_the_window_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    clock.advance(timedelta(hours=1, seconds=1))

    response = await client.post(f"/api/v1/payments/{payment['id']}/refund", headers=viewer.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "refund_window_expired"
    assert (await viewer.payment(payment["id"]))["status"] == "succeeded"
    assert (await viewer.subscriptions())[0]["status"] == "active"
    assert await count(sessions, Refund) == 0


async def test_concurrent_refunds_refund_once_at_the_provider(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, provider_name: str
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)

    url = f"/api/v1/payments/{payment['id']}/refund"
    answers = await asyncio.gather(*(client.post(url, headers=viewer.headers) for _ in range(5)))
    # A request that meets the refund still pending joins it (same key at the provider) and
    # answers the refunded payment; one that comes after it is told it is refunded already.
    refunded = [answer for answer in answers if answer.status_code == 200]
    assert refunded
    assert all(answer.json()["status"] == "refunded" for answer in refunded)
    assert all(
        answer.json()["code"] == "payment_not_refundable"
        for answer in answers
        if answer.status_code != 200
    )
    assert await count(sessions, Refund) == 1
    at_the_provider = SandboxRefund if provider_name == "yookassa" else SandboxStripeRefund
    assert await count(sessions, at_the_provider) == 1
    assert len(await events(sessions, "payment.refunded")) == 1


async def test_refunding_one_of_two_payments_keeps_the_other_months(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    start = clock.now()
    await viewer.paid(tariff.id, months=1)
    second = await viewer.paid(tariff.id, months=2)  # extends from the current end
    [subscription] = await viewer.subscriptions()
    assert at(subscription["current_period_end"]) == add_months(add_months(start, 1), 2)

    refund = await client.post(f"/api/v1/payments/{second['id']}/refund", headers=viewer.headers)
    assert refund.status_code == 200
    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "active"
    assert at(subscription["current_period_end"]) == add_months(start, 1)
    assert await events(sessions, "role.revoke") == []


async def test_other_users_ids_are_not_found(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    owner = make_viewer(client, auth_headers)
    payment = await owner.paid(tariff.id)
    invoice_id = payment["invoice_id"]
    stranger = auth_headers(uuid.uuid4())

    for method, url in [
        ("GET", f"/api/v1/invoices/{invoice_id}"),
        ("POST", f"/api/v1/invoices/{invoice_id}/payments"),
        ("GET", f"/api/v1/payments/{payment['id']}"),
        ("POST", f"/api/v1/payments/{payment['id']}/confirm"),
        ("POST", f"/api/v1/payments/{payment['id']}/refund"),
    ]:
        response = await client.request(method, url, headers=stranger)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "not_found"
    # The checkout link is not for tokens: without its signature it opens nothing.
    unsigned = await client.get(f"/api/v1/invoices/{invoice_id}/checkout", headers=stranger)
    assert unsigned.status_code == 403
    assert unsigned.json()["code"] == "forbidden"
    assert (await client.get("/api/v1/payments", headers=stranger)).json() == []
    assert (await client.get("/api/v1/subscriptions", headers=stranger)).json() == []
    assert (await owner.payment(payment["id"]))["status"] == "succeeded"


async def test_idempotent_replays(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    body = {"tariff_id": str(tariff.id), "months": 1}
    headers = {**viewer.headers, "Idempotency-Key": "invoice-1"}

    first = await client.post("/api/v1/invoices", json=body, headers=headers)
    second = await client.post("/api/v1/invoices", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await count(sessions, Invoice) == 1

    other = await client.post("/api/v1/invoices", json={**body, "months": 2}, headers=headers)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"

    # Keys belong to their user: another viewer's same key is a different request.
    someone = {**auth_headers(uuid.uuid4()), "Idempotency-Key": "invoice-1"}
    assert (await client.post("/api/v1/invoices", json=body, headers=someone)).status_code == 201

    invoice_id = first.json()["id"]
    pay_headers = {**viewer.headers, "Idempotency-Key": "pay-1"}
    url = f"/api/v1/invoices/{invoice_id}/payments"
    payments = await asyncio.gather(
        *(client.post(url, json={}, headers=pay_headers) for _ in range(3))
    )
    statuses = sorted(response.status_code for response in payments)
    assert statuses[0] == 201
    assert all(status in (201, 409) for status in statuses)
    assert await count(sessions, Payment) == 1


async def test_a_free_invoice_is_settled_without_the_provider(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    async with sessions() as session, session.begin():
        session.add(PromoCode(id=uuid.uuid4(), code="FREEMONTH", percent=100))
    viewer = make_viewer(client, auth_headers)

    invoice = await viewer.issue_invoice(tariff.id, months=1, promo_code="freemonth")
    assert invoice["total_amount"] == 0
    assert invoice["status"] == "paid"
    assert invoice["discount"]["source"] == "promo"
    assert await count(sessions, Payment) == 0
    [subscription] = await viewer.subscriptions()
    assert at(subscription["current_period_end"]) == add_months(clock.now(), 1)
    async with sessions() as session:
        promo = await session.scalar(select(PromoCode))
        assert promo is not None and promo.redemptions_count == 1

    pay = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={}, headers=viewer.headers
    )
    assert pay.status_code == 409
    assert pay.json()["code"] == "invoice_not_open"


async def test_an_expired_invoice_cannot_be_paid(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions, clock: FrozenClock
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    clock.advance(timedelta(minutes=30))

    response = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={}, headers=viewer.headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "invoice_expired"
    assert await count(sessions, Payment) == 0


async def test_bad_input_is_refused_with_a_code(
    client: httpx.AsyncClient, auth_headers: AuthHeaders, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoices, tariff_id = "/api/v1/invoices", str(tariff.id)
    bad, missing = (422, "validation_error"), (404, "tariff_not_found")
    cases = [
        ("POST", invoices, {"tariff_id": "nope", "months": 1}, bad),
        ("POST", invoices, {"tariff_id": tariff_id, "months": 0}, bad),
        ("POST", invoices, {"tariff_id": tariff_id, "months": 13}, bad),
        ("POST", invoices, {"tariff_id": tariff_id, "months": "1"}, bad),
        ("POST", invoices, {"tariff_id": str(uuid.uuid4()), "months": 1}, missing),
        ("POST", invoices, {"tariff_id": tariff_id, "months": 1, "x": 1}, bad),
        ("GET", f"{invoices}/not-a-uuid", None, bad),
        ("POST", f"{invoices}/{uuid.uuid4()}/payments", {"return_url": "javascript:x"}, bad),
        ("POST", "/api/v1/payments/123/refund", None, bad),
    ]
    for method, url, body, expected in cases:
        response = await client.request(method, url, json=body, headers=viewer.headers)
        assert (response.status_code, response.json()["code"]) == expected, (url, body)
    assert await count(sessions, Invoice) == 0
    assert (await client.post("/api/v1/invoices", json={})).status_code == 401
    async with sessions() as session:
        assert (await session.scalars(select(Subscription))).all() == []
