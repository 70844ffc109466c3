"""Saving a payment method for auto-renewal (issue 11, first part): asked for with the
payment, kept with the viewer's consent once the provider reports it saved, listed and
forgotten by the viewer; renewal turned off and on (cancel / resume)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.checkout.providers.stripe import _saved_method
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import PaymentMethod
from tests.integration.checkout_helpers import (
    add_tariff,
    app_with_provider_at,
    client_of,
    make_viewer,
)
from tests.integration.test_yookassa_adapter import (
    PAYMENT_ID,
    pending_payment,
    succeeded_payment,
)

Sessions = async_sessionmaker[AsyncSession]
AuthHeaders = Callable[..., dict[str, str]]
API = "http://yookassa.test/v3"
METHOD_ID = "2d8b0a3c-000f-5000-9000-1a1b2c3d4e99"
# ЮKassa's payment_method of a payment made with save_payment_method: true.
SAVED_CARD = {
    "type": "bank_card", "id": METHOD_ID, "saved": True, "title": "Bank card *4477",
    "card": {"first6": "555555", "last4": "4477", "expiry_month": "07", "expiry_year": "2028",
             "card_type": "MasterCard", "issuer_country": "RU"},
}  # fmt: skip


@pytest.fixture
async def client(settings: Settings, clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app_with_provider_at(settings, clock, yookassa_api_url=API) as app,
        client_of(app) as http,
    ):
        yield http


@respx.mock(assert_all_called=False)
async def test_a_saved_card_puts_the_subscription_on_auto_renewal(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
) -> None:
    create = respx_mock.post(f"{API}/payments").respond(200, json=pending_payment())
    respx_mock.get(f"{API}/payments/{PAYMENT_ID}").respond(
        200, json=succeeded_payment(payment_method=SAVED_CARD)
    )
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id, months=1)  # 499.00, as the provider says
    started = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"save_payment_method": True},
        headers=viewer.headers,
    )
    assert started.status_code == 201, started.text
    assert json.loads(create.calls.last.request.content)["save_payment_method"] is True
    confirm = f"/api/v1/payments/{started.json()['id']}/confirm"
    assert (await client.post(confirm, headers=viewer.headers)).json()["status"] == "succeeded"

    [method] = (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json()
    assert (method["provider"], method["title"], method["card_last4"], method["expires"]) == (
        "yookassa", "Bank card *4477", "4477", "2028-07"
    )  # fmt: skip
    [subscription] = await viewer.subscriptions()
    assert subscription["auto_renew"] is True
    assert subscription["payment_method_id"] == method["id"]
    assert subscription["renewal_months"] == 1
    end = datetime.fromisoformat(subscription["current_period_end"])
    assert datetime.fromisoformat(subscription["renews_at"]) == end - timedelta(days=1)
    async with sessions() as session:
        stored = await session.scalar(select(PaymentMethod))
    assert stored is not None
    assert stored.consent_payment_id == uuid.UUID(started.json()["id"])
    assert stored.consent_text_version and stored.consent_at is not None

    # Cancel at period end, resume, forget the card.
    url = f"/api/v1/subscriptions/{subscription['id']}"
    canceled = await client.post(f"{url}/cancel", headers=viewer.headers)
    assert (canceled.json()["auto_renew"], canceled.json()["renews_at"]) == (False, None)
    assert canceled.json()["current_period_end"] == subscription["current_period_end"]
    resumed = await client.post(f"{url}/resume", headers=viewer.headers)
    assert resumed.json()["auto_renew"] is True

    stranger = auth_headers(uuid.uuid4())
    method_url = f"/api/v1/payment-methods/{method['id']}"
    assert (await client.delete(method_url, headers=stranger)).status_code == 404
    assert (await client.post(f"{url}/cancel", headers=stranger)).status_code == 404
    forgotten = await client.delete(method_url, headers=viewer.headers)
    assert forgotten.status_code == 204
    assert (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json() == []
    [after] = await viewer.subscriptions()
    assert (after["auto_renew"], after["payment_method_id"]) == (False, None)
    refused = await client.post(f"{url}/resume", headers=viewer.headers)
    assert refused.status_code == 409
    assert refused.json()["code"] == "payment_method_required"


@respx.mock(assert_all_called=False)
async def test_without_asking_nothing_is_saved(
    respx_mock: respx.MockRouter,
    client: httpx.AsyncClient,
    auth_headers: AuthHeaders,
    sessions: Sessions,
) -> None:
    create = respx_mock.post(f"{API}/payments").respond(200, json=pending_payment())
    # Even if the provider says it saved one, a viewer who did not ask gets no renewal.
    respx_mock.get(f"{API}/payments/{PAYMENT_ID}").respond(
        200, json=succeeded_payment(payment_method=SAVED_CARD)
    )
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
    assert "save_payment_method" not in json.loads(create.calls.last.request.content)
    await client.post(f"/api/v1/payments/{payment['id']}/confirm", headers=viewer.headers)
    assert (await client.get("/api/v1/payment-methods", headers=viewer.headers)).json() == []
    [subscription] = await viewer.subscriptions()
    assert subscription["auto_renew"] is False
    resume = f"/api/v1/subscriptions/{subscription['id']}/resume"
    refused = await client.post(resume, headers=viewer.headers)
    assert refused.json()["code"] == "payment_method_required"


def test_stripe_s_saved_card_is_read_from_the_paid_session_s_intent() -> None:
    intent = {"id": "pi_1", "setup_future_usage": "off_session", "payment_method": "pm_1",
              "customer": "cus_1"}  # fmt: skip
    charge = {"payment_method_details": {"card": {"brand": "visa", "last4": "4242",
                                                  "exp_month": 3, "exp_year": 2029}}}  # fmt: skip
    saved = _saved_method(intent, charge)
    assert saved is not None
    assert (saved.provider_method_id, saved.customer_id, saved.title, saved.expires) == (
        "pm_1", "cus_1", "Visa *4242", "2029-03"
    )  # fmt: skip
    assert _saved_method({**intent, "setup_future_usage": None}, charge) is None
