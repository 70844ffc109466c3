"""A payment's page in the panel: the invoice's breakdown, the provider's id and state, the
refund with its reason and both 54-FZ receipts, readable; the payments CSV in roubles."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from billing.config import Settings
from billing.models import DurationDiscount
from tests.integration.checkout_helpers import add_tariff, make_viewer
from tests.integration.test_admin_panel_http import (
    Headers,
    Sessions,
    add_admin,
    login,
    panel_client,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_locale": "en"})


async def test_payment_page_shows_breakdown_provider_refund_and_receipts(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    premium = await add_tariff(sessions, price=49900, role="premium")
    async with sessions() as session, session.begin():
        session.add(DurationDiscount(months=2, percent=Decimal("1.50")))
    viewer = make_viewer(client, auth_headers)
    paid = await viewer.paid(premium.id, months=2)
    refunded = await client.post(f"/api/v1/payments/{paid['id']}/refund", headers=viewer.headers)
    assert refunded.status_code == 200, refunded.text
    await add_admin(sessions, "marta")
    marta = panel_client(app)
    assert (await login(marta, "marta")).status_code == 302

    page = (await marta.get(f"/admin/payment/details/{paid['id']}")).text
    assert '<dd class="col-sm-8" id="payment-amount">983.03\u00a0₽</dd>' in page
    assert 'id="breakdown-base">998.00\u00a0₽<' in page
    assert "Duration discount" in page and "(1.50 %)" in page and "−14.97\u00a0₽" in page
    assert 'id="breakdown-total">983.03\u00a0₽<' in page
    assert 'id="payment-provider">yookassa<' in page
    assert 'id="provider-payment-id">' in page and 'id="provider-payment-id">—<' not in page
    assert '<span class="refund-reason">asked by the viewer</span>' in page
    assert 'id="payment-receipt"' in page and 'id="refund-receipt"' in page
    assert f"{viewer.user_id}@example.com" in page  # the receipt's customer e-mail
    assert page.count("983.03\u00a0₽") >= 4  # amount, total, both receipts' item
    assert "{'" not in page and "provider_data" not in page  # no raw dicts, no column names

    export = await marta.get("/admin/payment/export/csv")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == [
        "Payment", "User", "Invoice", "Status", "Amount", "Currency", "Provider",
        "Provider's payment id", "Created", "Paid at", "Refunded at",
    ]  # fmt: skip
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["Amount"] == "983.03" and row["Status"] == "refunded"
    assert row["Paid at"].count(":") == 2 and "+" not in row["Paid at"]


async def test_csv_leaves_empty_cells_for_nothing(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: Headers, sessions: Sessions
) -> None:
    premium = await add_tariff(sessions, price=142215, role="premium")
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(premium.id)
    await viewer.start_payment(invoice["id"])  # pending: not paid, not refunded
    await add_admin(sessions, "marta")
    marta = panel_client(app)
    assert (await login(marta, "marta")).status_code == 302
    rows = list(csv.reader(io.StringIO((await marta.get("/admin/payment/export/csv")).text)))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["Amount"] == "1422.15"
    assert row["Paid at"] == "" and row["Refunded at"] == ""
    assert "None" not in rows[1]
