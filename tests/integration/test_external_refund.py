"""A refund made at the provider directly (its dashboard) is noticed and applied."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.config import Settings
from billing.models import Payment, Refund
from tests.integration.checkout_helpers import add_tariff, events, make_viewer
from tests.integration.test_sandbox import receipt_for


async def test_a_refund_made_at_the_provider_takes_the_months_back(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    async with sessions() as session:
        stored = await session.get_one(Payment, uuid.UUID(payment["id"]))

    # The shop owner refunds in the provider's dashboard (the sandbox's API here).
    refund = await client.post(
        "/sandbox/v3/refunds",
        json={
            "payment_id": stored.provider_payment_id,
            "amount": {"value": "499.00", "currency": "RUB"},
            "receipt": receipt_for("499.00"),  # the shop sends receipts (54-FZ)
        },
        auth=(settings.yookassa_shop_id, settings.yookassa_secret_key),
        headers={"Idempotence-Key": str(uuid.uuid4())},
    )
    assert refund.status_code == 200, refund.text
    await app.state.sandbox_notifier.drain()  # its refund.succeeded notification

    assert (await viewer.payment(payment["id"]))["status"] == "refunded"
    [subscription] = await viewer.subscriptions()
    assert subscription["status"] == "canceled"
    assert len(await events(sessions, "payment.refunded")) == 1
    async with sessions() as session:
        [record] = (await session.scalars(select(Refund))).all()
        assert (record.amount, record.status, record.reason) == (49900, "succeeded", "provider")
