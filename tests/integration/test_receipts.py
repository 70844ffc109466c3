"""54-FZ fiscal receipts: every payment and refund sent to ЮKassa carries one, to the
viewer's e-mail; without an e-mail nothing is written and the provider is not asked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.auth import issue_token
from billing.checkout.providers.base import Receipt, ReceiptItem
from billing.checkout.providers.yookassa import YooKassaProvider
from billing.clock import FrozenClock
from billing.config import SANDBOX_SECRET_KEY, SANDBOX_SHOP_ID, Settings
from billing.models import Payment, Refund
from billing.sandbox.models import SandboxPayment
from tests.conftest import LoopbackTransport
from tests.integration.checkout_helpers import Viewer, add_tariff, count

Sessions = async_sessionmaker[AsyncSession]
BASE = "https://api.yookassa.test/v3"
RECEIPT = Receipt(
    customer_email="viewer@example.com",
    currency="RUB",
    items=(ReceiptItem(description="Премиум, 3 мес.", amount=134730, vat_code=1),),
    tax_system_code=2,
)
# ЮKassa's receipt object, as its API reference documents it for POST /v3/payments and
# POST /v3/refunds (https://yookassa.ru/developers/api#create_payment → receipt).
DOCUMENTED = {
    "customer": {"email": "viewer@example.com"},
    "items": [
        {
            "description": "Премиум, 3 мес.",
            "quantity": 1,
            "amount": {"value": "1347.30", "currency": "RUB"},
            "vat_code": 1,
            "payment_subject": "service",
            "payment_mode": "full_payment",
            "measure": "piece",
        }
    ],
    "tax_system_code": 2,
}


# --- the adapter, at the HTTP boundary --------------------------------------------------------


async def test_the_adapter_sends_yookassa_s_receipt_with_payments_and_refunds() -> None:
    payment = {"id": "2d8b0a3c-000f-5000-9000-1a1b2c3d4e5f", "status": "pending",
               "amount": {"value": "1347.30", "currency": "RUB"},
               "created_at": "2026-03-01T10:51:18.139Z"}  # fmt: skip
    refund = {"id": "2d8b0a3c-0015-5000-9000-1a1b2c3d4e5f", "status": "succeeded",
              "payment_id": payment["id"], "amount": {"value": "1347.30", "currency": "RUB"},
              "created_at": "2026-03-01T10:55:18.139Z"}  # fmt: skip
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        payments = mock.post("/payments").respond(200, json=payment)
        refunds = mock.post("/refunds").respond(200, json=refund)
        yookassa = YooKassaProvider(client, base_url=BASE, shop_id="1", secret_key="s")
        await yookassa.create_payment(
            payment_id=uuid.uuid4(), amount=134730, currency="RUB", description="Premium: 3 mo.",
            return_url="https://cinema.example", idempotence_key="k1",
            expires_at=datetime.now(UTC), requested_at=datetime.now(UTC),
            customer_email="viewer@example.com", receipt=RECEIPT,
        )  # fmt: skip
        await yookassa.create_refund(
            provider_payment_id=payment["id"], amount=134730, currency="RUB",
            idempotence_key="k2", receipt=RECEIPT,
        )  # fmt: skip
        await yookassa.create_refund(
            provider_payment_id=payment["id"], amount=134730, currency="RUB", idempotence_key="k3"
        )
    assert json.loads(payments.calls.last.request.content)["receipt"] == DOCUMENTED
    assert json.loads(refunds.calls[0].request.content)["receipt"] == DOCUMENTED
    assert "receipt" not in json.loads(refunds.calls[1].request.content)

    # No tax system configured: the key is left out (ЮKassa then uses the shop's).
    async with respx.mock(base_url=BASE) as mock, httpx.AsyncClient() as client:
        refunds = mock.post("/refunds").respond(200, json=refund)
        await YooKassaProvider(client, base_url=BASE, shop_id="1", secret_key="s").create_refund(
            provider_payment_id=payment["id"], amount=134730, currency="RUB",
            idempotence_key="k4", receipt=replace(RECEIPT, tax_system_code=None),
        )  # fmt: skip
    assert "tax_system_code" not in json.loads(refunds.calls.last.request.content)["receipt"]


# --- billing end to end, on the sandbox -------------------------------------------------------


@pytest.fixture
def receipt_settings(settings: Settings) -> Settings:
    """The shop accountant's values: VAT 22 % (code 11), simplified tax system (code 2)."""
    return settings.model_copy(update={"receipt_vat_code": 11, "receipt_tax_system": 2})


@pytest.fixture
async def receipt_app(receipt_settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    loopback = LoopbackTransport(public_host="billing.test")
    application = create_app(receipt_settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


def viewer_of(app: FastAPI, *, email: str | None) -> Viewer:
    user_id = uuid.uuid4()
    token = issue_token(app.state.settings, str(user_id), email=email)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://billing.test"
    )
    return Viewer(user_id, {"Authorization": f"Bearer {token}"}, client)


async def sandbox_receipts(viewer: Viewer, **query: str) -> list[dict[str, Any]]:
    response = await viewer.client.get(
        "/sandbox/v3/receipts", params=query, auth=(SANDBOX_SHOP_ID, SANDBOX_SECRET_KEY)
    )
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["type"] == "list"
    return list(listed["items"])


async def stored(sessions: Sessions, payment_id: str) -> Payment:
    async with sessions() as session:
        payment = await session.get(Payment, uuid.UUID(payment_id))
        assert payment is not None
        return payment


async def test_a_payment_and_its_refund_carry_receipts_to_the_jwt_s_email(
    receipt_app: FastAPI, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = viewer_of(receipt_app, email="anna@example.com")
    invoice = await viewer.issue_invoice(tariff.id, months=3)
    payment = await viewer.start_payment(invoice["id"])
    await viewer.press(payment)
    refunded = await viewer.client.post(
        f"/api/v1/payments/{payment['id']}/refund", headers=viewer.headers
    )
    assert refunded.json()["status"] == "refunded"

    provider_id = (await stored(sessions, payment["id"])).provider_payment_id
    assert provider_id is not None
    receipts = await sandbox_receipts(viewer, payment_id=provider_id)
    assert sorted(receipt["type"] for receipt in receipts) == ["payment", "refund"]
    for receipt in receipts:
        assert receipt["status"] == "succeeded"
        assert receipt["tax_system_code"] == 2
        [item] = receipt["items"]
        assert item["description"] == "Premium, 3 мес."
        assert item["amount"] == {"value": "1497.00", "currency": "RUB"}
        assert float(item["quantity"]) == 1
        assert item["vat_code"] == 11  # BILLING_RECEIPT_VAT_CODE
        assert (item["payment_subject"], item["payment_mode"]) == ("service", "full_payment")
        assert receipt["customer"]["email"] == "anna@example.com"
    async with sessions() as session:
        [refund] = await session.scalars(select(Refund))
    assert refund.receipt is not None and refund.receipt["customer_email"] == "anna@example.com"


async def test_the_e_mail_may_come_with_the_request(
    receipt_app: FastAPI, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = viewer_of(receipt_app, email=None)
    invoice = await viewer.issue_invoice(tariff.id)
    started = await viewer.client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"email": "boris@example.com"},
        headers=viewer.headers,
    )
    assert started.status_code == 201, started.text
    payment = await stored(sessions, started.json()["id"])
    assert payment.customer_email == "boris@example.com"
    assert payment.provider_payment_id is not None
    # ЮKassa registers the receipt once the payment succeeds.
    await viewer.press(started.json())
    [receipt] = await sandbox_receipts(viewer, payment_id=payment.provider_payment_id)
    assert receipt["type"] == "payment"
    assert receipt["customer"]["email"] == "boris@example.com"


async def test_no_e_mail_is_a_422_with_nothing_written_and_no_provider_call(
    receipt_app: FastAPI, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    viewer = viewer_of(receipt_app, email=None)
    invoice = await viewer.issue_invoice(tariff.id)
    url = f"/api/v1/invoices/{invoice['id']}/payments"

    refused = await viewer.client.post(url, json={}, headers=viewer.headers)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "customer_email_required"
    assert await count(sessions, Payment) == 0
    assert await count(sessions, SandboxPayment) == 0
    not_an_address = await viewer.client.post(url, json={"email": "anna"}, headers=viewer.headers)
    assert not_an_address.status_code == 422
    assert not_an_address.json()["code"] == "validation_error"
    assert await count(sessions, Payment) == 0


async def test_with_receipts_off_no_e_mail_is_needed_and_none_is_sent(
    settings: Settings, clock: FrozenClock, sessions: Sessions, tmp_path: Path
) -> None:
    off = settings.model_copy(update={"receipts": False})
    loopback = LoopbackTransport(public_host="billing.test")
    app = create_app(off, clock=clock, outbound_transport=loopback)
    loopback.app = app
    async with LifespanManager(app):
        tariff = await add_tariff(sessions)
        viewer = viewer_of(app, email=None)
        payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
        await viewer.press(payment)
        stored_payment = await stored(sessions, payment["id"])
        assert stored_payment.status == "succeeded"
        assert stored_payment.receipt is None
        assert stored_payment.provider_payment_id is not None
        assert await sandbox_receipts(viewer, payment_id=stored_payment.provider_payment_id) == []


@pytest.mark.parametrize("provider_name", ["stripe"])
async def test_stripe_gets_the_e_mail_and_mails_its_own_receipt(
    settings: Settings, clock: FrozenClock, sessions: Sessions
) -> None:
    loopback = LoopbackTransport(public_host="billing.test")
    app = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = app
    async with LifespanManager(app):
        tariff = await add_tariff(sessions)
        viewer = viewer_of(app, email="clara@example.com")
        payment = await viewer.start_payment((await viewer.issue_invoice(tariff.id))["id"])
        stored_payment = await stored(sessions, payment["id"])
        assert stored_payment.receipt is None  # not ours to send: Stripe's own receipt
        session = await viewer.client.get(
            f"/sandbox/stripe/v1/checkout/sessions/{stored_payment.provider_payment_id}",
            headers={"Authorization": f"Bearer {settings.stripe_secret_key}"},
        )
    assert session.json()["customer_email"] == "clara@example.com"
