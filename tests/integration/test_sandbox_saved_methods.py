"""Saved payment methods and charges without the viewer, in both sandboxes, as ЮKassa and Stripe
document them: ЮKassa's ``save_payment_method`` and ``payment_method_id`` payments with their
``cancellation_details``; Stripe's Customers, ``setup_future_usage``, PaymentMethods (read,
detached) and off-session PaymentIntents with its 402 ``card_error``. Over HTTP, and with the
official ``yookassa`` and ``stripe`` SDKs against the sandbox on a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yookassa.domain.response import PaymentResponse

from billing.clock import FrozenClock
from billing.config import SANDBOX_SECRET_KEY, SANDBOX_SHOP_ID, SANDBOX_STRIPE_SECRET_KEY
from billing.sandbox.models import SandboxPayment, SandboxStripeSession
from tests.integration.test_sandbox import Webhooks, receipt_for, serving
from tests.integration.test_sandbox_fidelity import (
    Recorder,
    app,
    drain,
    press_stripe,
    recorder,
    session_params,
    stripe_get,
    stripe_post,
    yk,
)

__all__ = ["app", "recorder"]  # fixtures, used by name

Sessions = async_sessionmaker[AsyncSession]
YOOKASSA_WEBHOOK = "/api/v1/webhooks/yookassa"
STRIPE_WEBHOOK = "/api/v1/webhooks/stripe"
RETURN_URL = "https://cinema.example/back"
BEARER = {"Authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}"}
LAST4 = {"ok": "4477", "declines_later_insufficient_funds": "0002",
         "declines_later_expired": "0069"}  # fmt: skip


async def count(sessions: Sessions, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- ЮKassa ---------------------------------------------------------------------------------


async def yk_payment(client: httpx.AsyncClient, key: str | None = None, **changes: Any
                     ) -> httpx.Response:  # fmt: skip
    body = {"amount": {"value": "499.00", "currency": "RUB"}, "capture": True,
            "confirmation": {"type": "redirect", "return_url": RETURN_URL},
            "receipt": receipt_for("499.00"), **changes}  # fmt: skip
    return await yk(client, "POST", "/payments", {k: v for k, v in body.items() if v is not None},
                    key=key)  # fmt: skip


async def saved_method(client: httpx.AsyncClient, card: str = "ok") -> dict[str, Any]:
    """A payment with ``save_payment_method`` paid on the page with ``card``: its method."""
    created = await yk_payment(client, save_payment_method=True)
    assert created.status_code == 200, created.text
    paid = await client.post(f"/sandbox/checkout/{created.json()['id']}",
                             data={"action": "pay", "card": card})  # fmt: skip
    assert paid.status_code == 303
    payment = (await yk(client, "GET", f"/payments/{created.json()['id']}")).json()
    method: dict[str, Any] = payment["payment_method"]
    return method


async def charge(client: httpx.AsyncClient, method_id: str, key: str | None = None,
                 **changes: Any) -> httpx.Response:  # fmt: skip
    """A charge without the viewer: ``payment_method_id``, no confirmation."""
    return await yk_payment(client, key, confirmation=None, payment_method_id=method_id,
                            description="Renewal: Premium, 1 мес.", **changes)  # fmt: skip


@pytest.mark.parametrize("card", ["ok", "declines_later_insufficient_funds",
                                  "declines_later_expired"])  # fmt: skip
async def test_a_payment_asked_to_save_its_method_shows_it_saved_once_paid(
    client: httpx.AsyncClient, card: str
) -> None:
    created = (await yk_payment(client, save_payment_method=True)).json()
    assert created["status"] == "pending" and "payment_method" not in created
    method = await saved_method(client, card)
    assert method["type"] == "bank_card" and method["saved"] is True
    assert method["title"] == f"Bank card *{LAST4[card]}"
    assert set(method["card"]) == {"first6", "last4", "expiry_month", "expiry_year",
                                   "card_type", "issuer_country"}  # fmt: skip
    assert method["card"]["last4"] == LAST4[card]
    assert len(method["card"]["expiry_month"]) == 2 and len(method["card"]["expiry_year"]) == 4
    assert PaymentResponse({"id": method["id"], "status": "succeeded", "paid": True,
                            "amount": {"value": "1.00", "currency": "RUB"},
                            "payment_method": method}).payment_method.saved is True  # fmt: skip


async def test_without_the_flag_the_method_is_not_saved_and_cannot_be_charged(
    client: httpx.AsyncClient,
) -> None:
    created = (await yk_payment(client)).json()
    await client.post(f"/sandbox/checkout/{created['id']}", data={"action": "pay"})
    paid = (await yk(client, "GET", f"/payments/{created['id']}")).json()
    assert paid["payment_method"]["saved"] is False
    refused = (await charge(client, paid["payment_method"]["id"])).json()
    assert refused["status"] == "canceled" and refused["paid"] is False
    assert refused["cancellation_details"] == {"party": "yoo_money",
                                               "reason": "permission_revoked"}  # fmt: skip


async def test_a_card_declined_now_cancels_the_payment_and_saves_nothing(
    client: httpx.AsyncClient, recorder: Recorder, app: FastAPI
) -> None:
    created = (await yk_payment(client, save_payment_method=True)).json()
    declined = await client.post(f"/sandbox/checkout/{created['id']}",
                                 data={"action": "pay", "card": "insufficient_funds"})  # fmt: skip
    assert declined.status_code == 303
    payment = (await yk(client, "GET", f"/payments/{created['id']}")).json()
    assert (payment["status"], payment["paid"]) == ("canceled", False)
    assert payment["cancellation_details"] == {"party": "payment_network",
                                               "reason": "insufficient_funds"}  # fmt: skip
    assert payment["payment_method"]["saved"] is False
    assert payment["payment_method"]["card"]["last4"] == "9995"
    assert PaymentResponse(payment).cancellation_details.reason == "insufficient_funds"
    await drain(app)
    [sent] = recorder.bodies(YOOKASSA_WEBHOOK)
    assert (sent["event"], sent["object"]["id"]) == ("payment.canceled", created["id"])
    refused = (await charge(client, payment["payment_method"]["id"])).json()
    assert refused["cancellation_details"]["reason"] == "permission_revoked"


async def test_the_page_offers_the_test_cards_and_refuses_another(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    created = (await yk_payment(client)).json()
    page = await client.get(f"/sandbox/checkout/{created['id']}")
    assert '<select name="card"' in page.text
    for card in ("ok", "declines_later_insufficient_funds", "declines_later_expired",
                 "insufficient_funds"):  # fmt: skip
        assert f'<option value="{card}"' in page.text
    refused = await client.post(f"/sandbox/checkout/{created['id']}",
                                data={"action": "pay", "card": "stolen"})  # fmt: skip
    assert refused.status_code == 400 and "card must be one of" in refused.text
    assert (await yk(client, "GET", f"/payments/{created['id']}")).json()["status"] == "pending"


@pytest.mark.parametrize(
    ("card", "status", "details"),
    [
        ("ok", "succeeded", None),
        ("declines_later_insufficient_funds", "canceled",
         {"party": "payment_network", "reason": "insufficient_funds"}),
        ("declines_later_expired", "canceled",
         {"party": "payment_network", "reason": "card_expired"}),
    ],
)  # fmt: skip
async def test_a_saved_method_is_charged_at_once_as_its_card_says(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder, card: str, status: str,
    details: dict[str, str] | None,
) -> None:  # fmt: skip
    method = await saved_method(client, card)
    await drain(app)
    recorder.sent.clear()
    charged = await charge(client, method["id"], key="renewal-1", metadata={"renewal": "r1"})
    assert charged.status_code == 200, charged.text
    body = charged.json()
    assert body["status"] == status and "confirmation" not in body
    assert body["payment_method"] == method  # the saved method, as it was saved
    assert body["metadata"] == {"renewal": "r1"}
    receipts = (await yk(client, "GET", f"/receipts?payment_id={body['id']}")).json()["items"]
    if status == "succeeded":
        assert body["paid"] is True and body["captured_at"] and body["refundable"] is True
        assert "cancellation_details" not in body
        assert [receipt["status"] for receipt in receipts] == ["succeeded"]
        assert body["receipt_registration"] == "succeeded"
    else:
        assert body["paid"] is False and "captured_at" not in body
        assert body["cancellation_details"] == details
        assert receipts == []  # a declined payment is never receipted
    model = PaymentResponse(body)
    assert model.payment_method.saved is True and model.payment_method.id == method["id"]
    # The same key and body: the same payment, charged once, told once.
    again = await charge(client, method["id"], key="renewal-1", metadata={"renewal": "r1"})
    assert again.json() == body
    other = await charge(client, method["id"], key="renewal-1", metadata={"renewal": "r2"})
    assert (other.status_code, other.json()["parameter"]) == (400, "Idempotence-Key")
    assert (await yk(client, "GET", f"/payments/{body['id']}")).json() == body
    await drain(app)
    [sent] = recorder.bodies(YOOKASSA_WEBHOOK)
    assert (sent["event"], sent["object"]["id"]) == (f"payment.{status}", body["id"])


async def test_concurrent_charges_under_one_key_charge_once(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    method = await saved_method(client)
    before = await count(sessions, SandboxPayment)
    answers = await asyncio.gather(*(charge(client, method["id"], key="renewal-x")
                                     for _ in range(5)))  # fmt: skip
    assert {answer.json()["id"] for answer in answers} != set()
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert await count(sessions, SandboxPayment) == before + 1


async def test_a_method_the_shop_may_not_charge_is_permission_revoked(
    client: httpx.AsyncClient,
) -> None:
    method = await saved_method(client)
    renewal = (await charge(client, method["id"])).json()
    # An unknown id, and a charge's own id (it names a method, it saved none).
    for method_id in (str(uuid.uuid4()), renewal["id"]):
        refused = (await charge(client, method_id)).json()
        assert refused["status"] == "canceled" and "payment_method" not in refused
        assert refused["cancellation_details"] == {"party": "yoo_money",
                                                   "reason": "permission_revoked"}  # fmt: skip


async def test_a_two_stage_charge_holds_the_money_until_captured(
    client: httpx.AsyncClient,
) -> None:
    method = await saved_method(client)
    held = (await charge(client, method["id"], capture=False)).json()
    assert (held["status"], held["paid"]) == ("waiting_for_capture", True)
    captured = await yk(client, "POST", f"/payments/{held['id']}/capture")
    assert captured.json()["status"] == "succeeded"


async def test_unusable_charges_are_400s_that_create_nothing(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    method = await saved_method(client)
    before = await count(sessions, SandboxPayment)
    no_confirmation = await yk_payment(client, confirmation=None)
    assert (no_confirmation.status_code, no_confirmation.json()["parameter"]) == (
        400, "confirmation",
    )  # fmt: skip
    bad_id = await charge(client, "not a method id")
    assert (bad_id.status_code, bad_id.json()["parameter"]) == (400, "payment_method_id")
    no_receipt = await charge(client, method["id"], receipt=None)
    assert (no_receipt.status_code, no_receipt.json()["parameter"]) == (400, "receipt")
    assert await count(sessions, SandboxPayment) == before


# --- Stripe ---------------------------------------------------------------------------------

pytestmark_stripe = pytest.mark.parametrize("provider_name", ["stripe"])


async def customer(client: httpx.AsyncClient, email: str = "anna@cinema.example") -> dict[str, Any]:
    created = await stripe_post(client, "/customers", {"email": email, "metadata[user]": "u-1"})
    assert created.status_code == 200, created.text
    body: dict[str, Any] = created.json()
    return body


def saving_session(customer_id: str, **changes: str) -> dict[str, str]:
    params = {**session_params(customer=customer_id, **changes),
              "payment_intent_data[setup_future_usage]": "off_session"}  # fmt: skip
    del params["customer_email"]  # Stripe takes one of customer and customer_email
    return params


async def saved_card(client: httpx.AsyncClient, customer_id: str, card: str = "ok") -> str:
    """A session saving its card for ``customer_id``, paid on the page with ``card``: the
    payment method's id."""
    session = (await stripe_post(client, "/checkout/sessions", saving_session(customer_id))).json()
    assert (await press_stripe(client, session["id"], action="pay", card=card)).status_code == 303
    paid = await stripe_get(client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent")
    method: str = paid["payment_intent"]["payment_method"]
    return method


def off_session(customer_id: str, method_id: str, **changes: str) -> dict[str, str]:
    return {"amount": "49900", "currency": "rub", "customer": customer_id,
            "payment_method": method_id, "off_session": "true", "confirm": "true",
            "description": "Renewal: Premium, 1 mo.", "metadata[renewal]": "r1",
            **changes}  # fmt: skip


@pytestmark_stripe
async def test_customers_are_created_and_read_as_stripe_s_objects(
    client: httpx.AsyncClient,
) -> None:
    created = await customer(client)
    assert created["id"].startswith("cus_") and created["object"] == "customer"
    assert (created["email"], created["metadata"]) == ("anna@cinema.example", {"user": "u-1"})
    assert await stripe_get(client, f"/customers/{created['id']}") == created
    missing = await client.get("/sandbox/stripe/v1/customers/cus_nope", headers=BEARER)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "resource_missing")
    bad = await stripe_post(client, "/customers", {"email": "not an e-mail"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "email")


@pytestmark_stripe
@pytest.mark.parametrize("card", ["ok", "declines_later_insufficient_funds",
                                  "declines_later_expired"])  # fmt: skip
async def test_a_session_saving_the_card_attaches_it_to_the_customer(
    client: httpx.AsyncClient, card: str
) -> None:
    anna = await customer(client)
    session = (await stripe_post(client, "/checkout/sessions", saving_session(anna["id"]))).json()
    assert session["customer"] == anna["id"] and session["customer_email"] is None
    assert (await press_stripe(client, session["id"], action="pay", card=card)).status_code == 303
    paid = await stripe_get(
        client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent.latest_charge"
    )
    intent = paid["payment_intent"]
    assert (intent["status"], intent["customer"]) == ("succeeded", anna["id"])
    assert intent["setup_future_usage"] == "off_session"
    assert intent["payment_method"].startswith("pm_")
    assert intent["latest_charge"]["customer"] == anna["id"]
    last4 = {"ok": "4242"}.get(card, LAST4[card])
    assert intent["latest_charge"]["payment_method_details"]["card"]["last4"] == last4
    expanded = await stripe_get(client, f"/payment_intents/{intent['id']}?expand[]=payment_method")
    method = expanded["payment_method"]
    assert method == await stripe_get(client, f"/payment_methods/{intent['payment_method']}")
    assert (method["type"], method["customer"], method["card"]["last4"]) == (
        "card", anna["id"], last4,
    )  # fmt: skip
    assert {"brand", "last4", "exp_month", "exp_year"} <= set(method["card"])


@pytestmark_stripe
async def test_a_session_refuses_an_unknown_customer_or_both_customer_and_email(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    anna = await customer(client)
    unknown = await stripe_post(client, "/checkout/sessions", saving_session("cus_nope"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "resource_missing")
    both_given = {**saving_session(anna["id"]), "customer_email": "a@b.example"}
    both = await stripe_post(client, "/checkout/sessions", both_given)
    assert (both.status_code, both.json()["error"]["param"]) == (400, "customer_email")
    assert await count(sessions, SandboxStripeSession) == 0


@pytestmark_stripe
async def test_a_card_declined_now_keeps_the_session_open_with_stripe_s_decline(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    anna = await customer(client)
    session = (await stripe_post(client, "/checkout/sessions", saving_session(anna["id"]))).json()
    page = await press_stripe(client, session["id"], action="pay", card="insufficient_funds")
    assert page.status_code == 200 and "insufficient funds" in page.text
    still = await stripe_get(client, f"/checkout/sessions/{session['id']}?expand[]=payment_intent")
    assert (still["status"], still["payment_status"]) == ("open", "unpaid")
    intent = still["payment_intent"]
    assert (intent["status"], intent["payment_method"]) == ("requires_payment_method", None)
    assert intent["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert intent["last_payment_error"]["code"] == "card_declined"
    await drain(app)
    assert [e["type"] for e in recorder.bodies(STRIPE_WEBHOOK)] == ["payment_intent.payment_failed"]
    # Another try with a card that pays completes the session.
    assert (await press_stripe(client, session["id"], action="pay")).status_code == 303


@pytestmark_stripe
async def test_an_off_session_charge_succeeds_with_its_charge_and_events(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    anna = await customer(client)
    method_id = await saved_card(client, anna["id"])
    await drain(app)
    recorder.sent.clear()
    charged = await stripe_post(client, "/payment_intents", off_session(anna["id"], method_id),
                                key="renewal-1")  # fmt: skip
    assert charged.status_code == 200, charged.text
    intent = charged.json()
    assert (intent["status"], intent["amount"], intent["amount_received"]) == (
        "succeeded", 49900, 49900,
    )  # fmt: skip
    assert (intent["customer"], intent["payment_method"]) == (anna["id"], method_id)
    assert intent["metadata"] == {"renewal": "r1"} and intent["last_payment_error"] is None
    assert intent["latest_charge"].startswith("ch_")
    assert await stripe_get(client, f"/payment_intents/{intent['id']}") == intent
    replay = await stripe_post(client, "/payment_intents", off_session(anna["id"], method_id),
                               key="renewal-1")  # fmt: skip
    assert replay.json() == intent and replay.headers["idempotent-replayed"] == "true"
    read = await stripe_get(client, f"/payment_intents/{intent['id']}?expand[]=latest_charge")
    charge_body = read["latest_charge"]
    assert (charge_body["status"], charge_body["paid"], charge_body["customer"]) == (
        "succeeded", True, anna["id"],
    )  # fmt: skip
    # Not a Checkout Session: no session answers by its id.
    unknown = await client.get(f"/sandbox/stripe/v1/checkout/sessions/{intent['id']}",
                               headers=BEARER)  # fmt: skip
    assert unknown.status_code == 404
    refunded = await stripe_post(client, "/refunds", {"payment_intent": intent["id"]})
    assert refunded.status_code == 200, refunded.text
    assert (refunded.json()["amount"], refunded.json()["charge"]) == (
        49900,
        intent["latest_charge"],
    )
    await drain(app)
    events = recorder.bodies(STRIPE_WEBHOOK)
    assert [e["type"] for e in events] == [
        "charge.succeeded", "payment_intent.succeeded", "charge.refunded",
    ]  # fmt: skip
    assert events[1]["data"]["object"]["id"] == intent["id"]
    assert events[0]["request"] == {"id": charged.headers["request-id"],
                                    "idempotency_key": "renewal-1"}  # fmt: skip


@pytestmark_stripe
@pytest.mark.parametrize(
    ("card", "code", "decline_code"),
    [
        ("declines_later_insufficient_funds", "card_declined", "insufficient_funds"),
        ("declines_later_expired", "expired_card", "expired_card"),
    ],
)
async def test_an_off_session_decline_is_stripe_s_402_card_error(
    app: FastAPI, client: httpx.AsyncClient, recorder: Recorder, sessions: Sessions,
    card: str, code: str, decline_code: str,
) -> None:  # fmt: skip
    anna = await customer(client)
    method_id = await saved_card(client, anna["id"], card)
    await drain(app)
    recorder.sent.clear()
    before = await count(sessions, SandboxStripeSession)
    declined = await stripe_post(client, "/payment_intents", off_session(anna["id"], method_id),
                                 key="renewal-2")  # fmt: skip
    assert declined.status_code == 402, declined.text
    error = declined.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error", code, decline_code,
    )  # fmt: skip
    assert error["doc_url"] == f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    assert error["message"] and error["charge"].startswith("ch_")
    intent = error["payment_intent"]
    assert (intent["status"], intent["payment_method"]) == ("requires_payment_method", None)
    assert intent["last_payment_error"]["decline_code"] == decline_code
    assert intent["latest_charge"] == error["charge"]
    assert error["payment_method"]["id"] == method_id
    assert await stripe_get(client, f"/payment_intents/{intent['id']}") == intent
    # The same key: the same 402 again, nothing charged anew.
    replay = await stripe_post(client, "/payment_intents", off_session(anna["id"], method_id),
                               key="renewal-2")  # fmt: skip
    assert replay.status_code == 402 and replay.json() == declined.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert await count(sessions, SandboxStripeSession) == before + 1
    not_paid = await stripe_post(client, "/refunds", {"payment_intent": intent["id"]})
    assert not_paid.status_code == 400
    await drain(app)
    assert [e["type"] for e in recorder.bodies(STRIPE_WEBHOOK)] == [
        "charge.failed", "payment_intent.payment_failed",
    ]  # fmt: skip


@pytestmark_stripe
async def test_a_detached_card_is_refused_for_good(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    anna, boris = await customer(client), await customer(client, "boris@cinema.example")
    method_id = await saved_card(client, anna["id"])
    others = await stripe_post(client, "/payment_intents", off_session(boris["id"], method_id))
    assert (others.status_code, others.json()["error"]["param"]) == (400, "payment_method")
    detached = await stripe_post(client, f"/payment_methods/{method_id}/detach", {})
    assert detached.status_code == 200, detached.text
    assert (detached.json()["id"], detached.json()["customer"]) == (method_id, None)
    assert (await stripe_get(client, f"/payment_methods/{method_id}"))["customer"] is None
    before = await count(sessions, SandboxStripeSession)
    refused = await stripe_post(client, "/payment_intents", off_session(anna["id"], method_id))
    assert refused.status_code == 400
    assert (refused.json()["error"]["type"], refused.json()["error"]["param"]) == (
        "invalid_request_error", "payment_method",
    )  # fmt: skip
    assert "may not be used again" in refused.json()["error"]["message"]
    again = await stripe_post(client, f"/payment_methods/{method_id}/detach", {})
    assert again.status_code == 400
    unknown = await stripe_post(client, "/payment_intents", off_session(anna["id"], "pm_nope"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "resource_missing")
    no_confirm = await stripe_post(client, "/payment_intents",
                                   off_session(anna["id"], method_id, confirm="false"))  # fmt: skip
    assert (no_confirm.status_code, no_confirm.json()["error"]["param"]) == (400, "confirm")
    assert await count(sessions, SandboxStripeSession) == before


# --- the official SDKs, against the sandbox on a real server ------------------------------------


@pytest.fixture
def webhooks() -> Webhooks:
    return Webhooks()


@pytest.fixture
def served(
    database_url: str, tmp_path: Path, clock: FrozenClock, webhooks: Webhooks
) -> Iterator[str]:
    with serving(database_url, tmp_path, clock, webhooks) as public_url:
        yield public_url


def test_the_yookassa_sdk_charges_a_saved_method_without_confirmation(
    served: str, webhooks: Webhooks
) -> None:
    import yookassa

    api_url = f"{served}/sandbox/v3"
    yookassa.Configuration.configure(SANDBOX_SHOP_ID, SANDBOX_SECRET_KEY, api_url=api_url)
    try:
        methods = {}
        for card in ("ok", "declines_later_insufficient_funds", "declines_later_expired"):
            first = yookassa.Payment.create({
                "amount": {"value": "499.00", "currency": "RUB"}, "capture": True,
                "confirmation": {"type": "redirect", "return_url": RETURN_URL},
                "save_payment_method": True, "receipt": receipt_for("499.00"),
            })  # fmt: skip
            url = first.confirmation.confirmation_url
            assert httpx.post(url, data={"action": "pay", "card": card}).status_code == 303
            saved = yookassa.Payment.find_one(first.id).payment_method
            assert saved.saved is True and saved.title == f"Bank card *{LAST4[card]}"
            methods[card] = saved.id

        def renew(method_id: str, key: str) -> Any:
            return yookassa.Payment.create({
                "amount": {"value": "499.00", "currency": "RUB"}, "capture": True,
                "payment_method_id": method_id, "description": "Renewal: Premium, 1 мес.",
                "receipt": receipt_for("499.00"),
            }, key)  # fmt: skip

        renewed = renew(methods["ok"], "renew-ok")
        assert (renewed.status, renewed.paid, renewed.confirmation) == ("succeeded", True, None)
        assert renewed.captured_at is not None
        assert renewed.amount.value == Decimal("499.00")
        assert renewed.payment_method.id == methods["ok"] and renewed.payment_method.saved
        assert renew(methods["ok"], "renew-ok").id == renewed.id
        for card, reason in (("declines_later_insufficient_funds", "insufficient_funds"),
                             ("declines_later_expired", "card_expired")):  # fmt: skip
            declined = renew(methods[card], f"renew-{card}")
            assert (declined.status, declined.paid) == ("canceled", False)
            assert declined.cancellation_details.reason == reason
            assert declined.cancellation_details.party == "payment_network"
        revoked = renew(str(uuid.uuid4()), "renew-unknown")
        assert (revoked.cancellation_details.party, revoked.cancellation_details.reason) == (
            "yoo_money", "permission_revoked",
        )  # fmt: skip
    finally:
        yookassa.Configuration.configure(None, None)
    events = [(body["event"], body["object"]["id"]) for body in webhooks.received]
    assert ("payment.succeeded", renewed.id) in events
    assert events.count(("payment.succeeded", renewed.id)) == 1


def test_the_stripe_sdk_charges_a_saved_card_off_session(served: str) -> None:
    api = f"{served}/sandbox/stripe"
    sdk = stripe.StripeClient(SANDBOX_STRIPE_SECRET_KEY, base_addresses={"api": api})
    anna = sdk.v1.customers.create({"email": "anna@cinema.example", "metadata": {"user": "u-1"}})
    assert isinstance(anna, stripe.Customer) and sdk.v1.customers.retrieve(anna.id).email == (
        "anna@cinema.example"
    )
    methods = {}
    for card in ("ok", "declines_later_insufficient_funds", "declines_later_expired"):
        session = sdk.v1.checkout.sessions.create({
            "mode": "payment", "customer": anna.id, "success_url": RETURN_URL,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "rub", "unit_amount": 49900,
                "product_data": {"name": "Premium: 1 mo."}}}],
            "payment_intent_data": {"setup_future_usage": "off_session"},
        })  # fmt: skip
        assert httpx.post(session.url, data={"action": "pay", "card": card}).status_code == 303
        paid = sdk.v1.checkout.sessions.retrieve(
            session.id, {"expand": ["payment_intent.payment_method"]}
        )
        intent = paid.payment_intent
        assert isinstance(intent, stripe.PaymentIntent)
        assert intent.setup_future_usage == "off_session" and intent.customer == anna.id
        assert isinstance(intent.payment_method, stripe.PaymentMethod)
        methods[card] = intent.payment_method.id
    method = sdk.v1.payment_methods.retrieve(methods["ok"])
    assert (method.customer, method.card.last4, method.card.brand) == (anna.id, "4242", "visa")

    previous = (stripe.api_key, stripe.api_base)
    stripe.api_key, stripe.api_base = SANDBOX_STRIPE_SECRET_KEY, api
    try:
        renewed = stripe.PaymentIntent.create(
            amount=49900, currency="rub", customer=anna.id, payment_method=methods["ok"],
            off_session=True, confirm=True, metadata={"renewal": "r1"},
            description="Renewal: Premium, 1 mo.", idempotency_key="renew-1",
        )  # fmt: skip
        assert (renewed.status, renewed.amount_received) == ("succeeded", 49900)
        assert stripe.PaymentIntent.retrieve(renewed.id).latest_charge == renewed.latest_charge
        for card, decline_code in (("declines_later_insufficient_funds", "insufficient_funds"),
                                   ("declines_later_expired", "expired_card")):  # fmt: skip
            with pytest.raises(stripe.CardError) as declined:
                stripe.PaymentIntent.create(
                    amount=49900, currency="rub", customer=anna.id, payment_method=methods[card],
                    off_session=True, confirm=True,
                )  # fmt: skip
            assert declined.value.http_status == 402
            assert declined.value.error is not None
            assert declined.value.error.decline_code == decline_code
            left = declined.value.error.payment_intent
            assert left is not None and left.status == "requires_payment_method"
        refund = stripe.Refund.create(payment_intent=renewed.id)
        assert (refund.status, refund.amount) == ("succeeded", 49900)
        detached = stripe.PaymentMethod.detach(methods["ok"])
        assert detached.customer is None
        with pytest.raises(stripe.InvalidRequestError) as refused:
            stripe.PaymentIntent.create(
                amount=49900, currency="rub", customer=anna.id, payment_method=methods["ok"],
                off_session=True, confirm=True,
            )  # fmt: skip
        assert refused.value.param == "payment_method"
    finally:
        stripe.api_key, stripe.api_base = previous
