"""``billing demo-data``: example tariffs, duration discounts and promo codes, safe to rerun."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.db import transaction
from billing.demo import create_demo_data
from billing.models import AuditEntry, DurationDiscount, PromoCode, Tariff, TariffPrice

BILLING = str(Path(sys.executable).parent / "billing")
Sessions = async_sessionmaker[AsyncSession]
MODELS = (Tariff, TariffPrice, DurationDiscount, PromoCode, AuditEntry)


async def counts(sessions: Sessions) -> dict[str, int]:
    async with sessions() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model)) or 0
            for model in MODELS
        }


async def contents(sessions: Sessions) -> list[Any]:
    """Every demo row as plain values, to compare one run with the next."""
    async with sessions() as session:
        tariffs = await session.execute(
            select(
                Tariff.id,
                Tariff.code,
                Tariff.role,
                Tariff.monthly_price,
                Tariff.currency,
                Tariff.is_active,
                Tariff.updated_at,
            ).order_by(Tariff.code)
        )
        prices = await session.execute(
            select(TariffPrice.id, TariffPrice.tariff_id, TariffPrice.monthly_price).order_by(
                TariffPrice.id
            )
        )
        discounts = await session.execute(
            select(DurationDiscount.months, DurationDiscount.percent).order_by(
                DurationDiscount.months
            )
        )
        promos = await session.execute(
            select(
                PromoCode.id,
                PromoCode.code,
                PromoCode.percent,
                PromoCode.amount,
                PromoCode.currency,
                PromoCode.valid_until,
            ).order_by(PromoCode.code)
        )
        return [list(tariffs), list(prices), list(discounts), list(promos)]


async def test_running_twice_creates_once(
    sessions: Sessions, clock: FrozenClock, client: httpx.AsyncClient
) -> None:
    async with transaction(sessions) as session:
        first = await create_demo_data(session, now=clock.now(), currency="RUB")
    assert first.found == []
    assert first.created == [
        "tariff basic",
        "tariff premium",
        "tariff family",
        "duration discount 3m",
        "duration discount 6m",
        "duration discount 12m",
        "promo code WELCOME10",
        "promo code FILM500",
    ]
    after_first = await counts(sessions)
    assert after_first == {
        "tariffs": 3,
        "tariff_prices": 2,  # the two priced tariffs' first prices
        "duration_discounts": 3,
        "promo_codes": 2,
        "audit_log": 8,
    }
    rows = await contents(sessions)

    clock.advance(timedelta(days=1))
    async with transaction(sessions) as session:
        second = await create_demo_data(session, now=clock.now(), currency="RUB")
    assert second.created == []
    assert second.found == first.created
    assert await counts(sessions) == after_first
    assert await contents(sessions) == rows

    tariffs, _, discounts, promos = rows
    assert [(t.code, t.role, t.monthly_price, t.is_active) for t in tariffs] == [
        ("basic", "subscriber", 29900, True),
        ("family", "family", None, False),
        ("premium", "premium", 49900, True),
    ]
    assert [(d.months, d.percent) for d in discounts] == [
        (3, Decimal(5)),
        (6, Decimal(10)),
        (12, Decimal(20)),
    ]
    assert [(p.code, p.percent, p.amount, p.currency) for p in promos] == [
        ("FILM500", None, 50000, "RUB"),
        ("WELCOME10", Decimal(10), None, "RUB"),
    ]

    catalogue = (await client.get("/api/v1/tariffs")).json()
    assert [(t["code"], t["role"], t["monthly_price"]) for t in catalogue] == [
        ("basic", "subscriber", 29900),
        ("premium", "premium", 49900),
    ]


async def test_what_marketing_already_set_is_left_alone(
    sessions: Sessions, clock: FrozenClock
) -> None:
    async with transaction(sessions) as session:
        session.add(DurationDiscount(months=3, percent=Decimal(7)))
        session.add(PromoCode(code="WELCOME10", percent=Decimal(15)))
        # A tariff already made for the role (e.g. synchronised from Auth), under another code.
        session.add(Tariff(code="subscriber", name="Sub", role="subscriber", currency="RUB"))

    async with transaction(sessions) as session:
        report = await create_demo_data(session, now=clock.now(), currency="RUB")
    assert report.found == ["tariff basic", "duration discount 3m", "promo code WELCOME10"]

    async with sessions() as session:
        assert (await session.get_one(DurationDiscount, 3)).percent == Decimal(7)
        welcome = await session.scalar(select(PromoCode).where(PromoCode.code == "WELCOME10"))
        assert welcome is not None and welcome.percent == Decimal(15)
        roles = await session.scalars(select(Tariff.code).where(Tariff.role == "subscriber"))
        assert list(roles) == ["subscriber"]


def environment(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BILLING_")}
    env["BILLING_DATA_DIR"] = str(tmp_path / "data")
    env["BILLING_DATABASE_URL"] = database_url
    return env


async def test_the_command_creates_then_finds(
    tmp_path: Path,
    database_url: str,
    sessions: Sessions,
    clock: FrozenClock,
    client: httpx.AsyncClient,
) -> None:
    process = await asyncio.create_subprocess_exec(
        BILLING,
        "demo-data",
        env=environment(tmp_path, database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    output = stdout.decode().splitlines()
    assert "created tariff basic" in output
    assert "created promo code FILM500" in output
    assert not [line for line in output if line.startswith("found")]
    after_command = await counts(sessions)
    assert after_command["tariffs"] == 3

    # The function run again finds everything the command made.
    async with transaction(sessions) as session:
        again = await create_demo_data(session, now=clock.now(), currency="RUB")
    assert again.created == []
    assert await counts(sessions) == after_command

    catalogue = (await client.get("/api/v1/tariffs")).json()
    assert [t["code"] for t in catalogue] == ["basic", "premium"]
