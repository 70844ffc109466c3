"""Shared steps of the checkout tests: a tariff to sell, a viewer, paying in the sandbox, and
the provider's notifications as each provider sends them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import OutboxEvent, Tariff
from tests.conftest import LoopbackTransport

PROVIDERS = ("yookassa", "stripe")
# Runs a test once per provider: the ``provider_name`` fixture picks the app's provider.
both_providers = pytest.mark.parametrize("provider_name", PROVIDERS)
CHECKOUT_PAGES = {
    "yookassa": "http://billing.test/sandbox/checkout/",
    "stripe": "http://billing.test/sandbox/stripe/c/pay/",
}


async def add_tariff(
    sessions: async_sessionmaker[AsyncSession], *, price: int = 49900, role: str = "premium"
) -> Tariff:
    async with sessions() as session, session.begin():
        tariff = Tariff(
            id=uuid.uuid4(), code=role, name=role.title(), role=role, monthly_price=price,
            currency="RUB", is_active=True,
        )  # fmt: skip
        session.add(tariff)
    return tariff


@dataclass
class Viewer:
    user_id: uuid.UUID
    headers: dict[str, str]
    client: httpx.AsyncClient

    async def issue_invoice(self, tariff_id: uuid.UUID, months: int = 1, **extra: object) -> dict:
        response = await self.client.post(
            "/api/v1/invoices",
            json={"tariff_id": str(tariff_id), "months": months, **extra},
            headers=self.headers,
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def start_payment(self, invoice_id: str) -> dict:
        response = await self.client.post(
            f"/api/v1/invoices/{invoice_id}/payments", json={}, headers=self.headers
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def press(self, payment: dict, action: str = "pay", notify: bool = True) -> None:
        """What the viewer does on the provider's page (the sandbox's checkout form)."""
        response = await self.client.post(
            payment["confirmation_url"],
            data={"action": action, "notify": "1" if notify else "0"},
        )
        assert response.status_code in (200, 303), response.text

    async def paid(self, tariff_id: uuid.UUID, months: int = 1) -> dict:
        invoice = await self.issue_invoice(tariff_id, months)
        payment = await self.start_payment(invoice["id"])
        await self.press(payment)
        return await self.payment(payment["id"])

    async def payment(self, payment_id: str) -> dict:
        response = await self.client.get(f"/api/v1/payments/{payment_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def subscriptions(self) -> list[dict]:
        response = await self.client.get("/api/v1/subscriptions", headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()


def make_viewer(client: httpx.AsyncClient, auth_headers: Callable[..., dict[str, str]]) -> Viewer:
    user_id = uuid.uuid4()
    return Viewer(user_id=user_id, headers=auth_headers(user_id), client=client)


async def events(sessions: async_sessionmaker[AsyncSession], event_type: str) -> list[OutboxEvent]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.seq)
        )
        return list(rows)


async def count(sessions: async_sessionmaker[AsyncSession], model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- notifications ----------------------------------------------------------------------------


@dataclass
class Delivery:
    """One POST to billing's webhook, as the provider (or someone else) would send it."""

    path: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(self.path, content=self.content, headers=self.headers)


def stripe_signed(
    body: dict[str, Any], secret: str, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and its ``Stripe-Signature``, made with the official SDK's own signer."""
    payload = json.dumps(body)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )
    return payload.encode(), {"Content-Type": "application/json", "Stripe-Signature": header}


def notification(
    settings: Settings,
    outcome: str,
    provider_payment_id: str,
    *,
    secret: str | None = None,
    event_id: str | None = None,
) -> Delivery:
    """A notification claiming the payment ``succeeded`` or was ``canceled``, in the provider's
    format; Stripe's is signed with ``secret`` (by default the configured one, i.e. genuine)."""
    if settings.provider == "yookassa":
        body = {"type": "notification", "event": f"payment.{outcome}",
                "object": {"id": provider_payment_id, "status": outcome,
                           "paid": outcome == "succeeded",
                           "amount": {"value": "499.00", "currency": "RUB"}}}  # fmt: skip
        return Delivery("/api/v1/webhooks/yookassa", json.dumps(body).encode(),
                        {"Content-Type": "application/json"})  # fmt: skip
    completed = outcome == "succeeded"
    event = {
        "id": event_id or f"evt_test_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed" if completed else "checkout.session.expired",
        "created": int(time.time()),
        "data": {"object": {"id": provider_payment_id, "object": "checkout.session",
                            "status": "complete" if completed else "expired",
                            "payment_status": "paid" if completed else "unpaid",
                            "amount_total": 49900, "currency": "rub"}},
    }  # fmt: skip
    content, headers = stripe_signed(event, secret or settings.stripe_webhook_secret)
    return Delivery("/api/v1/webhooks/stripe", content, headers)


def forged_notification(settings: Settings, provider_payment_id: str) -> tuple[Delivery, int]:
    """What someone who is not the provider can send, and billing's answer to it: ЮKassa's
    notifications are unsigned, so a forged one is accepted as a mere trigger (200); a Stripe
    event not signed with billing's secret is refused (400)."""
    if settings.provider == "yookassa":
        return notification(settings, "succeeded", provider_payment_id), 200
    return notification(settings, "succeeded", provider_payment_id, secret="whsec_forged"), 400


@asynccontextmanager
async def app_with_provider_at(
    settings: Settings, clock: FrozenClock, **addresses: str
) -> AsyncIterator[FastAPI]:
    """The app under test with its provider addresses elsewhere (faked by respx), e.g.
    ``yookassa_api_url="http://yookassa.test/v3"``: calls to billing.test still loop back."""
    loopback = LoopbackTransport(public_host="billing.test")
    application = create_app(
        settings.model_copy(update=addresses), clock=clock, outbound_transport=loopback
    )
    loopback.app = application
    async with LifespanManager(application):
        yield application


@asynccontextmanager
async def client_of(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
        yield http
