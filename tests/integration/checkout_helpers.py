"""Shared steps of the checkout tests: a tariff to sell, a viewer, paying in the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.models import OutboxEvent, Tariff


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
