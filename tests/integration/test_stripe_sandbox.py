"""The sandbox's Stripe mode through HTTP: Stripe's API under /sandbox/stripe/v1 (form
encoding with nested keys, Bearer key, Stripe's objects and errors, Idempotency-Key), the
checkout page, the signed events it sends, and the official SDK talking to it unmodified."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.checkout.providers.base import (
    ProviderPaymentStatus,
    ProviderRefundStatus,
    ProviderRejected,
)
from billing.checkout.providers.stripe import StripeProvider
from billing.clock import FrozenClock
from billing.config import SANDBOX_STRIPE_SECRET_KEY, SANDBOX_STRIPE_WEBHOOK_SECRET, Settings
from billing.sandbox.models import SandboxStripeRefund, SandboxStripeSession
from tests.conftest import LoopbackTransport

Sessions = async_sessionmaker[AsyncSession]
API = "/sandbox/stripe/v1"
WEBHOOK = "/api/v1/webhooks/stripe"
SUCCESS_URL = "https://cinema.example/paid?session={CHECKOUT_SESSION_ID}"
CANCEL_URL = "https://cinema.example/cancelled"
AUTH = {"Authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}"}


@dataclass
class Webhooks:
    """Billing's webhook URL as the sandbox sees it: records what arrives, raw."""

    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    answer: int = 200
    fail: bool = False

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.received]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]


class RecordingLoopback(LoopbackTransport):
    def __init__(self, public_host: str, webhooks: Webhooks) -> None:
        super().__init__(public_host)
        self.webhooks = webhooks

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.public_host and request.url.path == WEBHOOK:
            if self.webhooks.fail:
                raise httpx.ConnectError("billing is down", request=request)
            self.webhooks.received.append((await request.aread(), dict(request.headers)))
            return httpx.Response(self.webhooks.answer, json={})
        return await super().handle_async_request(request)


@pytest.fixture
def provider_name() -> str:
    return "stripe"


@pytest.fixture
def webhooks() -> Webhooks:
    return Webhooks()


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock, webhooks: Webhooks) -> AsyncIterator[FastAPI]:
    loopback = RecordingLoopback("billing.test", webhooks)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


def session_form(**changes: Any) -> dict[str, Any]:
    """``POST /v1/checkout/sessions`` as billing's adapter sends it (flattened by hand)."""
    return {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "rub",
        "line_items[0][price_data][unit_amount]": "49900",
        "line_items[0][price_data][product_data][name]": "Premium: 1 mo.",
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
        "client_reference_id": "7b1d9c1e",
        "expires_at": str(int(time.time()) + 3600),
        "metadata[billing_payment_id]": "7b1d9c1e",
        "payment_intent_data[metadata][billing_payment_id]": "7b1d9c1e",
        **changes,
    }


async def post(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any] | list[tuple[str, str]],
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    return await client.post(
        f"{API}{path}",
        content=urlencode(params),
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded", **extra,
                 **(headers or {})},
    )  # fmt: skip


async def new_session(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await post(client, "/checkout/sessions", session_form(**changes))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def read(client: httpx.AsyncClient, path: str, query: str = "") -> dict[str, Any]:
    response = await client.get(f"{API}{path}{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def press(
    client: httpx.AsyncClient, session_id: str, action: str = "pay", **form: str
) -> httpx.Response:
    return await client.post(f"/sandbox/stripe/c/pay/{session_id}", data={"action": action, **form})


async def paid_session(client: httpx.AsyncClient) -> dict[str, Any]:
    session = await new_session(client)
    assert (await press(client, session["id"], notify="0")).status_code == 303
    return await read(client, f"/checkout/sessions/{session['id']}")


async def refund(
    client: httpx.AsyncClient, intent: str, amount: int | None = None, *, key: str | None = None
) -> httpx.Response:
    params = {"payment_intent": intent} | ({"amount": str(amount)} if amount else {})
    return await post(client, "/refunds", params, key=key)


async def count(sessions: Sessions, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def assert_stripe_error(
    response: httpx.Response, status: int, *, code: str | None = None, param: str | None = None,
    type_: str = "invalid_request_error",
) -> dict[str, Any]:  # fmt: skip
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    assert error.get("code") == code
    assert error.get("param") == param
    return error


def verified(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """An event the sandbox sent, checked the way a shop checks Stripe's: with the SDK."""
    event = stripe.Webhook.construct_event(
        body, headers["stripe-signature"], SANDBOX_STRIPE_WEBHOOK_SECRET, tolerance=300
    )
    document: dict[str, Any] = event.to_dict()
    return document


# --- creating and reading sessions ----------------------------------------------------------


async def test_create_answers_stripe_s_open_session(
    client: httpx.AsyncClient, clock: FrozenClock, sessions: Sessions
) -> None:
    expires_at = int(time.time()) + 3600
    response = await post(client, "/checkout/sessions", session_form(expires_at=str(expires_at)))

    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    session = response.json()
    session_id = session["id"]
    assert session_id.startswith("cs_test_") and len(session_id) == 66
    expected = {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": 49900,
        "amount_total": 49900,
        "cancel_url": CANCEL_URL,
        "client_reference_id": "7b1d9c1e",
        "created": int(clock.now().timestamp()),
        "currency": "rub",
        "customer": None,
        "expires_at": expires_at,
        "livemode": False,
        "metadata": {"billing_payment_id": "7b1d9c1e"},
        "mode": "payment",
        "payment_intent": None,  # made when the customer pays (API 2022-08-01 and later)
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "status": "open",
        "success_url": SUCCESS_URL,
        "url": f"http://billing.test/sandbox/stripe/c/pay/{session_id}",
        # Always there at Stripe (the whole object is checked against Stripe's schema in
        # test_sandbox_fidelity): what the shop did not ask for is null or off.
        "customer_email": None,
        "locale": None,
        "ui_mode": "hosted_page",  # the SDK's API version's name for it
        "custom_fields": [],
        "shipping_options": [],
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    }
    assert {key: session[key] for key in expected} == expected
    assert "line_items" not in session  # only when expanded
    assert await read(client, f"/checkout/sessions/{session_id}") == session
    assert await count(sessions, SandboxStripeSession) == 1


async def test_nested_keys_arrays_and_defaults(client: httpx.AsyncClient) -> None:
    params = [
        ("mode", "payment"),
        ("line_items[0][price_data][currency]", "RUB"),
        ("line_items[0][price_data][unit_amount]", "1000"),
        ("line_items[0][price_data][product_data][name]", "Premium"),
        ("line_items[0][quantity]", "3"),
        ("line_items[1][price_data][currency]", "rub"),
        ("line_items[1][price_data][unit_amount]", "500"),
        ("line_items[1][price_data][product_data][name]", "Family"),
        ("line_items[1][quantity]", "1"),
        ("success_url", "https://cinema.example/ok"),
        ("metadata[a]", "1"),
        ("metadata[b]", ""),  # an empty value unsets a metadata key
        ("expand[]", "payment_intent"),
        ("locale", "ru"),
        ("customer_email", "viewer@cinema.example"),
    ]
    response = await post(client, "/checkout/sessions", params)

    assert response.status_code == 200, response.text
    session = response.json()
    assert (session["amount_total"], session["currency"]) == (3500, "rub")
    assert session["metadata"] == {"a": "1"}
    assert (session["cancel_url"], session["client_reference_id"]) == (None, None)
    assert session["expires_at"] - int(time.time()) in range(24 * 3600 - 5, 24 * 3600 + 1)
    assert (session["locale"], session["customer_email"]) == ("ru", "viewer@cinema.example")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk_test_wrong", "Bearer ", "Basic c2tfdGVzdF93cm9uZzo=", "Basic !!",
     f"Token {SANDBOX_STRIPE_SECRET_KEY}", SANDBOX_STRIPE_SECRET_KEY],
    ids=["none", "wrong-key", "empty-bearer", "wrong-basic", "bad-basic", "other-scheme",
         "no-scheme"],
)  # fmt: skip
async def test_bad_credentials_get_stripe_s_401_and_change_nothing(
    client: httpx.AsyncClient, sessions: Sessions, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for response in (
        await client.post(f"{API}/checkout/sessions", content=urlencode(session_form()),
                          headers={**headers, "Idempotency-Key": "k"}),
        await client.get(f"{API}/checkout/sessions/cs_test_x", headers=headers),
        await client.post(f"{API}/refunds", content="payment_intent=pi_x", headers=headers),
        await client.get(f"{API}/refunds/re_x", headers=headers),
        await client.get(f"{API}/payment_intents/pi_x", headers=headers),
    ):  # fmt: skip
        assert_stripe_error(response, 401)
        assert SANDBOX_STRIPE_SECRET_KEY not in response.text
    assert await count(sessions, SandboxStripeSession) == 0


async def test_the_key_as_basic_user_name_is_accepted_as_curl_u_sends_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        f"{API}/checkout/sessions", content=urlencode(session_form()),
        auth=(SANDBOX_STRIPE_SECRET_KEY, ""),
    )  # fmt: skip
    assert response.status_code == 200, response.text


async def test_the_configured_key_is_the_one_checked(
    database_url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, jwt_secret="x" * 40,
        public_url="http://billing.test", provider="stripe", stripe_secret_key="sk_test_mine",
    )  # fmt: skip
    application = create_app(settings, clock=clock)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            default = await post(http, "/checkout/sessions", session_form())
            mine = await post(http, "/checkout/sessions", session_form(),
                              headers={"Authorization": "Bearer sk_test_mine"})  # fmt: skip
    error = assert_stripe_error(default, 401)
    assert error["message"] == "Invalid API Key provided: sk_test_********dbox"
    assert mine.status_code == 200


# --- idempotency ----------------------------------------------------------------------------


async def test_the_same_key_and_params_replay_the_first_answer(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    form = session_form()
    first = await post(client, "/checkout/sessions", form, key="order-42")
    again = await post(client, "/checkout/sessions", form, key="order-42")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert await count(sessions, SandboxStripeSession) == 1

    other = await post(client, "/checkout/sessions", {**form, "client_reference_id": "x"},
                       key="order-42")  # fmt: skip
    assert (
        "same parameters" in assert_stripe_error(other, 400, type_="idempotency_error")["message"]
    )
    elsewhere = await post(client, "/refunds", {"payment_intent": "pi_x"}, key="order-42")
    assert (
        "same endpoint" in assert_stripe_error(elsewhere, 400, type_="idempotency_error")["message"]
    )
    assert await count(sessions, SandboxStripeSession) == 1

    burst = await asyncio.gather(
        *(post(client, "/checkout/sessions", form, key="burst") for _ in range(5))
    )
    assert {response.status_code for response in burst} == {200}
    assert len({response.json()["id"] for response in burst}) == 1
    assert await count(sessions, SandboxStripeSession) == 2


async def test_a_refused_request_does_not_use_up_its_key(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    refused = await post(client, "/checkout/sessions", session_form(expires_at="1"), key="k1")
    assert_stripe_error(refused, 400, param="expires_at")
    accepted = await post(client, "/checkout/sessions", session_form(), key="k1")
    assert accepted.status_code == 200
    assert await count(sessions, SandboxStripeSession) == 1


async def test_an_unusable_idempotency_key_is_a_400(client: httpx.AsyncClient) -> None:
    response = await post(client, "/checkout/sessions", session_form(), key="k" * 256)
    assert_stripe_error(response, 400)


# --- refusals -------------------------------------------------------------------------------

SOON = str(int(time.time()) + 25 * 60)
LATE = str(int(time.time()) + 25 * 3600)
ITEM = "line_items[0]"


def without(*keys: str) -> dict[str, Any]:
    return {k: v for k, v in session_form().items() if k not in keys}


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        (without("mode"), "parameter_missing", "mode"),
        (without("success_url"), "parameter_missing", "success_url"),
        ({**session_form(), "locale": "klingon"}, None, "locale"),
        ({**session_form(), "customer_email": "not an address"}, None, "customer_email"),
        ({**session_form(), "ui_mode": "embedded"}, None, "ui_mode"),
        ({**session_form(), "mode": "subscription"}, None, "mode"),
        ({k: v for k, v in session_form().items() if not k.startswith("line_items")},
         "parameter_missing", "line_items"),
        (without(f"{ITEM}[quantity]"), "parameter_missing", f"{ITEM}[quantity]"),
        ({**session_form(), f"{ITEM}[price_data][unit_amount]": "49.90"},
         "parameter_invalid_integer", f"{ITEM}[price_data][unit_amount]"),
        ({**session_form(), f"{ITEM}[price_data][unit_amount]": "abc"},
         "parameter_invalid_integer", f"{ITEM}[price_data][unit_amount]"),
        ({**session_form(), f"{ITEM}[price_data][unit_amount]": "-1"}, None,
         f"{ITEM}[price_data][unit_amount]"),
        ({**session_form(), f"{ITEM}[price_data][unit_amount]": "0"}, "amount_too_small", None),
        ({**session_form(), f"{ITEM}[price_data][unit_amount]": "100000000"}, None,
         f"{ITEM}[price_data][unit_amount]"),
        ({**session_form(), f"{ITEM}[price_data][currency]": "rubles"}, None,
         f"{ITEM}[price_data][currency]"),
        ({**session_form(), f"{ITEM}[price]": "price_1MoBy5LkdIwHu7ixZhnattbh"},
         "resource_missing", f"{ITEM}[price]"),
        ({**session_form(), "line_items[1][quantity]": "1",
          "line_items[1][price_data][currency]": "usd",
          "line_items[1][price_data][unit_amount]": "100",
          "line_items[1][price_data][product_data][name]": "x"}, None, "line_items"),
        ({**without(*[k for k in session_form() if k.startswith(ITEM)]),
          "line_items[1][quantity]": "1"}, None, "line_items"),  # an array starts at 0
        ({**session_form(), "success_url": "javascript:alert(1)"}, None, "success_url"),
        ({**session_form(), "client_reference_id": ""}, "parameter_invalid_empty",
         "client_reference_id"),
        ({**session_form(), "client_reference_id": "x" * 201}, None, "client_reference_id"),
        ({**session_form(), "expires_at": SOON}, None, "expires_at"),
        ({**session_form(), "expires_at": LATE}, None, "expires_at"),
        ({**session_form(), "expires_at": "tomorrow"}, "parameter_invalid_integer",
         "expires_at"),
        ({**session_form(), "metadata[k][nested]": "1"}, None, "metadata[k]"),
        ({**session_form(), **{f"metadata[k{i}]": "v" for i in range(51)}}, None, "metadata"),
        ({**session_form(), "expand[0]": "customer"}, None, "expand[0]"),
        ({**session_form(), "mode[0]": "payment"}, None, "mode[0]"),
        ({**session_form(), "a[b][c][d][e][f][g]": "1"}, None, "a[b][c][d][e][f][g]"),
    ],
    ids=[
        "no-mode", "no-success-url", "bad-locale", "bad-email", "embedded-ui",
        "subscription", "no-line-items", "no-quantity", "decimal-amount",
        "text-amount", "negative-amount", "zero-total", "over-the-limit", "bad-currency",
        "price-object", "mixed-currencies", "array-gap", "javascript-url", "empty-string",
        "long-reference", "expires-too-soon", "expires-too-late", "expires-not-integer",
        "nested-metadata", "too-much-metadata", "unknown-expansion", "array-for-string",
        "too-deep",
    ],
)  # fmt: skip
async def test_an_unusable_session_request_is_stripe_s_400_naming_the_param(
    client: httpx.AsyncClient,
    sessions: Sessions,
    params: dict[str, Any],
    code: str | None,
    param: str | None,
) -> None:
    response = await post(client, "/checkout/sessions", params, key="k")
    assert_stripe_error(response, 400, code=code, param=param)
    assert await count(sessions, SandboxStripeSession) == 0


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe=1", b"mode=payment&line_items[0]=x", b"a=%00"],
    ids=["empty", "not-utf8", "string-for-object", "nul"],
)
async def test_a_body_that_is_no_usable_form_is_a_400(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(f"{API}/checkout/sessions", content=content, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("session_id", ["cs_test_nope", "nope", "x" * 300, "%00"])
async def test_an_unknown_session_is_stripe_s_404(
    client: httpx.AsyncClient, session_id: str
) -> None:
    response = await client.get(f"{API}/checkout/sessions/{session_id}", headers=AUTH)
    assert_stripe_error(response, 404, code="resource_missing", param="session")
    page = await client.get(f"/sandbox/stripe/c/pay/{session_id}")
    assert page.status_code == 404
    assert (await press(client, session_id)).status_code == 404


async def test_what_the_sandbox_does_not_emulate_is_stripe_s_unrecognized_url(
    client: httpx.AsyncClient,
) -> None:
    for method, path in [("GET", "/customers"), ("POST", "/charges"), ("DELETE", "/refunds/x")]:
        response = await client.request(method, f"{API}{path}", headers=AUTH)
        error = assert_stripe_error(response, 404)
        assert error["message"].startswith(f"Unrecognized request URL ({method}: /v1{path})")


# --- the checkout page ----------------------------------------------------------------------


async def test_the_page_shows_amount_items_and_the_two_buttons(client: httpx.AsyncClient) -> None:
    session = await new_session(
        client, **{"line_items[0][price_data][product_data][name]": "Premium <b>1</b> mo."}
    )
    page = await client.get(session["url"])

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Stripe sandbox" in page.text
    assert "499.00 RUB" in page.text
    assert "Premium &lt;b&gt;1&lt;/b&gt; mo." in page.text
    assert '<form method="post">' in page.text
    assert 'name="action" value="pay"' in page.text
    assert 'name="action" value="decline"' in page.text
    assert 'name="notify" value="1"' in page.text


async def test_pay_completes_the_session_notifies_billing_and_sends_the_viewer_on(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, webhooks: Webhooks
) -> None:
    session = await new_session(client)
    clock.advance(timedelta(minutes=3))

    pressed = await press(client, session["id"], "pay")

    assert pressed.status_code == 303
    assert pressed.headers["location"] == f"https://cinema.example/paid?session={session['id']}"
    paid = await read(client, f"/checkout/sessions/{session['id']}")
    assert (paid["status"], paid["payment_status"], paid["url"]) == ("complete", "paid", None)
    assert paid["payment_intent"].startswith("pi_")
    assert paid["created"] == session["created"]

    expanded = await read(
        client, f"/checkout/sessions/{session['id']}", "?expand[0]=payment_intent.latest_charge"
    )
    intent = expanded["payment_intent"]
    assert (intent["object"], intent["id"], intent["status"]) == (
        "payment_intent", paid["payment_intent"], "succeeded",
    )  # fmt: skip
    assert intent["metadata"] == {"billing_payment_id": "7b1d9c1e"}
    charge = intent["latest_charge"]
    assert charge["object"] == "charge" and charge["id"].startswith("ch_")
    assert charge["created"] == int(clock.now().timestamp())  # the app's clock: paid_at
    assert (charge["amount"], charge["amount_refunded"], charge["refunded"]) == (49900, 0, False)
    assert charge["metadata"] == intent["metadata"]  # Stripe copies it onto the charge
    assert charge["payment_intent"] == intent["id"]
    alone = await read(client, f"/payment_intents/{intent['id']}", "?expand[]=latest_charge")
    assert alone == intent
    assert (await read(client, f"/payment_intents/{intent['id']}"))["latest_charge"] == charge["id"]

    [(body, headers)] = webhooks.received
    event = verified(body, headers)
    assert event["type"] == "checkout.session.completed"
    assert event["id"].startswith("evt_")
    assert event["data"]["object"] == paid
    assert event["created"] == int(clock.now().timestamp())
    assert headers["content-type"].startswith("application/json")


async def test_a_declined_card_keeps_the_session_open_for_another_try(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    session = await new_session(client)

    pressed = await press(client, session["id"], "decline")

    # Stripe's page shows the decline and lets the customer try again; nobody is sent away.
    assert pressed.status_code == 200
    assert "Your card was declined." in pressed.text and "<form" in pressed.text
    still_open = await read(client, f"/checkout/sessions/{session['id']}")
    assert (still_open["status"], still_open["payment_status"]) == ("open", "unpaid")
    assert still_open["url"] == session["url"]
    intent = await read(client, f"/payment_intents/{still_open['payment_intent']}",
                        "?expand[]=latest_charge")  # fmt: skip
    assert intent["status"] == "requires_payment_method"
    assert intent["last_payment_error"]["code"] == "card_declined"
    assert intent["last_payment_error"]["decline_code"] == "generic_decline"
    assert (intent["latest_charge"]["status"], intent["latest_charge"]["paid"]) == ("failed", False)
    [(body, headers)] = webhooks.received
    failed = verified(body, headers)
    assert failed["type"] == "payment_intent.payment_failed"
    assert failed["data"]["object"]["id"] == intent["id"]
    assert failed["request"] == {"id": None, "idempotency_key": None}  # the customer's doing
    assert_stripe_error(await refund(client, intent["id"]), 400)  # nothing was paid

    again = await press(client, session["id"], "pay")

    assert again.status_code == 303
    paid = await read(client, f"/checkout/sessions/{session['id']}")
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert paid["payment_intent"] == intent["id"]  # the same intent, a new charge
    retried = await read(client, f"/payment_intents/{intent['id']}", "?expand[]=latest_charge")
    assert (retried["status"], retried["last_payment_error"]) == ("succeeded", None)
    assert retried["latest_charge"]["id"] != intent["latest_charge"]["id"]
    assert webhooks.types() == ["payment_intent.payment_failed", "checkout.session.completed"]


async def test_notify_0_pays_without_an_event(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    session = await new_session(client)
    assert (await press(client, session["id"], "pay", notify="0")).status_code == 303
    assert (await read(client, f"/checkout/sessions/{session['id']}"))["status"] == "complete"
    assert webhooks.received == []


async def test_a_second_press_changes_nothing_and_shows_the_outcome(
    client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    session = await new_session(client)
    await press(client, session["id"], "pay")

    again = await press(client, session["id"], "decline")

    assert again.status_code == 200
    assert "Paid" in again.text
    assert "<form" not in again.text
    assert (await read(client, f"/checkout/sessions/{session['id']}"))["status"] == "complete"
    assert webhooks.types() == ["checkout.session.completed"]


async def test_racing_presses_decide_once(client: httpx.AsyncClient, webhooks: Webhooks) -> None:
    session = await new_session(client)

    answers = await asyncio.gather(
        *(press(client, session["id"], action) for action in ["pay", "decline"] * 4)
    )

    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [303]
    final = (await read(client, f"/checkout/sessions/{session['id']}"))["status"]
    assert final == "complete"
    # One payment; a decline the row lock let in before it was a try of its own (the session
    # stays open after a decline), told as such — whichever order the database chose.
    *declines, completed = webhooks.types()
    assert completed == "checkout.session.completed"
    assert set(declines) <= {"payment_intent.payment_failed"} and len(declines) <= 4


@pytest.mark.parametrize("form", [{}, {"action": "refund"}, {"action": "PAY "}])
async def test_an_unknown_action_is_a_400_and_changes_nothing(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    session = await new_session(client)
    response = await client.post(f"/sandbox/stripe/c/pay/{session['id']}", data=form)
    assert response.status_code == 400
    assert (await read(client, f"/checkout/sessions/{session['id']}"))["status"] == "open"


@pytest.mark.parametrize("billing", ["answers 500", "is down"])
async def test_an_event_billing_does_not_take_is_not_the_viewer_s_problem(
    client: httpx.AsyncClient, webhooks: Webhooks, billing: str
) -> None:
    webhooks.answer, webhooks.fail = (500, False) if billing == "answers 500" else (200, True)
    session = await new_session(client)
    assert (await press(client, session["id"], "pay")).status_code == 303
    assert (await read(client, f"/checkout/sessions/{session['id']}"))["status"] == "complete"


async def test_a_session_past_its_expiry_expires_and_cannot_be_paid(
    app: FastAPI, client: httpx.AsyncClient, sessions: Sessions, webhooks: Webhooks
) -> None:
    session = await new_session(client)
    async with sessions() as db, db.begin():  # Stripe's real clock moves on by an hour
        await db.execute(
            update(SandboxStripeSession)
            .where(SandboxStripeSession.id == session["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    too_late = await press(client, session["id"], "pay")

    assert too_late.status_code == 200
    assert "Declined" in too_late.text and "<form" not in too_late.text
    assert (await read(client, f"/checkout/sessions/{session['id']}"))["status"] == "expired"
    await app.state.sandbox_stripe_notifier.drain()
    [(body, headers)] = webhooks.received
    assert verified(body, headers)["type"] == "checkout.session.expired"


async def test_an_open_session_can_be_expired_through_the_api(
    app: FastAPI, client: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    session = await new_session(client)

    expired = await post(client, f"/checkout/sessions/{session['id']}/expire", {}, key="x1")
    replayed = await post(client, f"/checkout/sessions/{session['id']}/expire", {}, key="x1")
    again = await post(client, f"/checkout/sessions/{session['id']}/expire", {})

    assert expired.status_code == replayed.status_code == 200
    assert expired.json()["status"] == "expired"
    assert replayed.json() == expired.json()
    assert_stripe_error(again, 400)
    paid = await paid_session(client)
    assert_stripe_error(await post(client, f"/checkout/sessions/{paid['id']}/expire", {}), 400)
    await app.state.sandbox_stripe_notifier.drain()
    assert webhooks.types() == ["checkout.session.expired"]


# --- refunds --------------------------------------------------------------------------------


async def test_refunds_add_up_to_at_most_the_charge(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, webhooks: Webhooks
) -> None:
    session = await paid_session(client)
    intent = session["payment_intent"]

    part = await refund(client, intent, 10000)
    assert part.status_code == 200, part.text
    refund_id = part.json()["id"]
    assert refund_id.startswith("re_")
    charge_id = (await read(client, f"/payment_intents/{intent}"))["latest_charge"]
    expected = {
        "id": refund_id, "object": "refund", "amount": 10000, "charge": charge_id,
        "created": int(clock.now().timestamp()), "currency": "rub", "metadata": {},
        "payment_intent": intent, "reason": None, "status": "succeeded",
    }  # fmt: skip
    assert {key: part.json()[key] for key in expected} == expected

    too_much = await refund(client, intent, 39901)
    assert_stripe_error(too_much, 400, code="amount_too_large", param="amount")
    rest = await post(client, "/refunds", {"charge": charge_id})  # the rest, by the charge
    assert rest.status_code == 200
    assert rest.json()["amount"] == 39900
    assert_stripe_error(await refund(client, intent), 400, code="charge_already_refunded")

    charge = (await read(client, f"/payment_intents/{intent}", "?expand[]=latest_charge"))[
        "latest_charge"
    ]
    assert (charge["amount_refunded"], charge["refunded"]) == (49900, True)
    assert (await read(client, f"/refunds/{refund_id}")) == part.json()

    await app.state.sandbox_stripe_notifier.drain()
    events = [verified(body, headers) for body, headers in webhooks.received]
    assert [event["type"] for event in events] == ["charge.refunded", "charge.refunded"]
    assert [event["data"]["object"]["amount_refunded"] for event in events] in (
        [10000, 49900], [49900, 49900],  # each carries the charge as it is when sent
    )  # fmt: skip
    assert {event["data"]["object"]["payment_intent"] for event in events} == {intent}
    # Caused by API requests: each names its request, as the Request-Id header did.
    assert [event["request"]["id"] for event in events] == [
        part.headers["request-id"], rest.headers["request-id"],
    ] or [event["request"]["id"] for event in events] == [
        rest.headers["request-id"], part.headers["request-id"],
    ]  # fmt: skip


async def test_a_repeated_refund_request_is_the_same_refund(
    app: FastAPI, client: httpx.AsyncClient, sessions: Sessions, webhooks: Webhooks
) -> None:
    intent = (await paid_session(client))["payment_intent"]

    first = await refund(client, intent, 49900, key="refund-1")
    again = await refund(client, intent, 49900, key="refund-1")
    other = await refund(client, intent, 100, key="refund-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert_stripe_error(other, 400, type_="idempotency_error")
    assert await count(sessions, SandboxStripeRefund) == 1
    await app.state.sandbox_stripe_notifier.drain()
    assert webhooks.types() == ["charge.refunded"]


async def test_concurrent_refunds_never_refund_more_than_was_paid(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    intent = (await paid_session(client))["payment_intent"]

    answers = await asyncio.gather(*(refund(client, intent, 30000) for _ in range(4)))

    assert sorted(answer.status_code for answer in answers) == [200, 400, 400, 400]
    assert await count(sessions, SandboxStripeRefund) == 1


async def test_only_a_paid_payment_can_be_refunded(
    client: httpx.AsyncClient, sessions: Sessions
) -> None:
    cases = [
        (await refund(client, "pi_unknown"), "resource_missing", "payment_intent"),
        (await post(client, "/refunds", {"charge": "ch_unknown"}), "resource_missing", "charge"),
        (await post(client, "/refunds", {}), "parameter_missing", None),
        (await post(client, "/refunds", {"payment_intent": "pi_x", "charge": "ch_x"}), None,
         None),
        (await post(client, "/refunds", {"payment_intent": "pi_x", "amount": "0"}), None,
         "amount"),
        (await post(client, "/refunds", {"payment_intent": "pi_x", "reason": "bored"}), None,
         "reason"),
    ]  # fmt: skip
    for response, code, param in cases:
        assert_stripe_error(response, 400, code=code, param=param)
    assert await count(sessions, SandboxStripeRefund) == 0
    for path, param in [("/refunds/re_nope", "refund"), ("/payment_intents/pi_nope", "intent")]:
        response = await client.get(f"{API}{path}", headers=AUTH)
        assert_stripe_error(response, 404, code="resource_missing", param=param)


# --- billing's Stripe adapter against the sandbox, end to end -------------------------------


def adapter(app: FastAPI, settings: Settings, **changes: Any) -> StripeProvider:
    options: dict[str, Any] = {
        "base_url": settings.stripe_base_url, "secret_key": settings.stripe_secret_key,
        "webhook_secret": settings.stripe_webhook_secret, **changes,
    }  # fmt: skip
    return StripeProvider(app.state.outbound, **options)


async def test_the_adapter_pays_and_refunds_through_the_sandbox(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, clock: FrozenClock,
    webhooks: Webhooks,
) -> None:  # fmt: skip
    gateway = adapter(app, settings)
    assert settings.stripe_base_url == "http://billing.test/sandbox/stripe"
    billing_payment_id = uuid.uuid4()

    created = await gateway.create_payment(
        payment_id=billing_payment_id, amount=49900, currency="RUB",
        description="Premium: 1 mo.", return_url=SUCCESS_URL, idempotence_key="pay-1",
        expires_at=clock.now() + timedelta(minutes=30),
        requested_at=datetime.now(UTC),
    )  # fmt: skip
    assert created.status == ProviderPaymentStatus.PENDING
    assert (created.amount, created.currency) == (49900, "RUB")
    assert created.confirmation_url == (
        f"http://billing.test/sandbox/stripe/c/pay/{created.provider_payment_id}"
    )
    seen = await read(client, f"/checkout/sessions/{created.provider_payment_id}")
    assert seen["client_reference_id"] == str(billing_payment_id)
    assert seen["metadata"] == {"billing_payment_id": str(billing_payment_id)}

    clock.advance(timedelta(minutes=2))
    assert (await client.post(created.confirmation_url, data={"action": "pay"})).status_code == 303

    paid = await gateway.get_payment(created.provider_payment_id)
    assert paid.status == ProviderPaymentStatus.SUCCEEDED
    assert paid.paid_at == clock.now()
    assert paid.refunded_amount == 0
    intent = paid.data["payment_intent"]
    assert intent.startswith("pi_")
    # The event the sandbox sent is one the adapter accepts, naming the session.
    [(body, headers)] = webhooks.received
    notified = gateway.parse_notification(body, headers)
    assert (notified.event, notified.provider_payment_id) == (
        "checkout.session.completed", created.provider_payment_id,
    )  # fmt: skip

    refunded = await gateway.create_refund(
        provider_payment_id=created.provider_payment_id, amount=49900, currency="RUB",
        idempotence_key="refund-1", data=paid.data,
    )  # fmt: skip
    assert refunded.status == ProviderRefundStatus.SUCCEEDED
    assert (refunded.amount, refunded.currency) == (49900, "RUB")
    assert (await gateway.get_payment(created.provider_payment_id)).refunded_amount == 49900
    await app.state.sandbox_stripe_notifier.drain()
    body, headers = webhooks.received[-1]
    assert gateway.parse_notification(body, headers).provider_payment_id == intent


async def test_the_adapter_s_retry_with_the_same_key_finds_the_same_session(
    app: FastAPI, settings: Settings, clock: FrozenClock, sessions: Sessions
) -> None:
    gateway = adapter(app, settings)
    asked: dict[str, Any] = {
        "payment_id": uuid.uuid4(), "amount": 100, "currency": "RUB", "description": "d",
        "return_url": SUCCESS_URL, "idempotence_key": "same",
        "expires_at": clock.now() + timedelta(minutes=30), "requested_at": datetime.now(UTC),
    }  # fmt: skip
    first = await gateway.create_payment(**asked)
    second = await gateway.create_payment(**asked)
    assert first == second
    assert await count(sessions, SandboxStripeSession) == 1


async def test_the_sandbox_s_refusals_reach_the_adapter_as_rejections(
    app: FastAPI, settings: Settings, clock: FrozenClock
) -> None:
    with pytest.raises(ProviderRejected) as wrong_key:
        await adapter(app, settings, secret_key="sk_test_wrong").get_payment("cs_test_x")
    assert wrong_key.value.status == 401

    with pytest.raises(ProviderRejected) as unknown:
        await adapter(app, settings).get_payment("cs_test_nope")
    assert (unknown.value.status, unknown.value.code) == (404, "resource_missing")

    pending = await adapter(app, settings).create_payment(
        payment_id=uuid.uuid4(), amount=100, currency="RUB", description="d",
        return_url=SUCCESS_URL, idempotence_key="p", expires_at=clock.now(),
        requested_at=datetime.now(UTC),
    )  # fmt: skip
    with pytest.raises(ProviderRejected):  # nothing was paid, so there is nothing to refund
        await adapter(app, settings).create_refund(
            provider_payment_id=pending.provider_payment_id, amount=100, currency="RUB",
            idempotence_key="r",
        )  # fmt: skip
    with pytest.raises(ProviderRejected) as unknown_intent:
        await adapter(app, settings).create_refund(
            provider_payment_id=pending.provider_payment_id, amount=100, currency="RUB",
            idempotence_key="r2", data={"payment_intent": "pi_unknown"},
        )  # fmt: skip
    assert (unknown_intent.value.status, unknown_intent.value.code) == (400, "resource_missing")


# --- the official Stripe SDK, unmodified, against the sandbox on a real server --------------


@pytest.fixture
def served_sandbox(
    database_url: str, tmp_path: Path, clock: FrozenClock, webhooks: Webhooks
) -> Iterator[str]:
    """The app on a real uvicorn in a thread, so the SDK's own HTTP client talks to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = Settings(
        database_url=database_url, data_dir=tmp_path, jwt_secret="x" * 40, public_url=public_url,
        provider="stripe",
    )  # fmt: skip
    loopback = RecordingLoopback("127.0.0.1", webhooks)
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    server = uvicorn.Server(uvicorn.Config(application, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield public_url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listener.close()


def test_the_official_stripe_sdk_pays_and_refunds_in_the_sandbox(
    served_sandbox: str, webhooks: Webhooks
) -> None:
    api = f"{served_sandbox}/sandbox/stripe"
    sdk = stripe.StripeClient(SANDBOX_STRIPE_SECRET_KEY, base_addresses={"api": api})
    created = sdk.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "rub", "unit_amount": 49900,
                "product_data": {"name": "Premium: 1 mo."}}}],
            "success_url": SUCCESS_URL,
            "metadata": {"order": "42"},
        },
        {"idempotency_key": "sdk-session-1"},
    )  # fmt: skip
    assert (created.status, created.payment_status, created.amount_total) == (
        "open",
        "unpaid",
        49900,
    )
    assert created.url == f"{served_sandbox}/sandbox/stripe/c/pay/{created.id}"
    assert created.metadata["order"] == "42"
    replay = sdk.v1.checkout.sessions.create(
        {"mode": "payment", "line_items": [{"quantity": 1, "price_data": {
            "currency": "rub", "unit_amount": 49900, "product_data": {"name": "Premium: 1 mo."}}}],
         "success_url": SUCCESS_URL, "metadata": {"order": "42"}},
        {"idempotency_key": "sdk-session-1"},
    )  # fmt: skip
    assert replay.id == created.id

    pressed = httpx.post(created.url, data={"action": "pay"})
    assert pressed.status_code == 303

    paid = sdk.v1.checkout.sessions.retrieve(
        created.id, {"expand": ["payment_intent.latest_charge"]}
    )
    assert (paid.status, paid.payment_status) == ("complete", "paid")
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert isinstance(intent.latest_charge, stripe.Charge)
    assert intent.latest_charge.amount_refunded == 0
    [(body, headers)] = webhooks.received
    event = stripe.Webhook.construct_event(
        body, headers["stripe-signature"], SANDBOX_STRIPE_WEBHOOK_SECRET
    )
    assert (event.type, event.data.object["id"]) == ("checkout.session.completed", created.id)

    refund = sdk.v1.refunds.create({"payment_intent": intent.id}, {"idempotency_key": "r-1"})
    assert (refund.status, refund.amount, refund.payment_intent) == ("succeeded", 49900, intent.id)
    assert sdk.v1.refunds.retrieve(refund.id).amount == 49900
    charge = sdk.v1.payment_intents.retrieve(intent.id, {"expand": ["latest_charge"]}).latest_charge
    assert isinstance(charge, stripe.Charge) and charge.refunded is True

    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        sdk.v1.refunds.create({"payment_intent": intent.id})
    assert nothing_left.value.code == "charge_already_refunded"
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.refunds.create(
            {"payment_intent": intent.id, "amount": 1}, {"idempotency_key": "r-1"}
        )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        sdk.v1.checkout.sessions.retrieve("cs_test_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    wrong = stripe.StripeClient("sk_test_wrong", base_addresses={"api": api})
    with pytest.raises(stripe.AuthenticationError):
        wrong.v1.checkout.sessions.retrieve(created.id)
