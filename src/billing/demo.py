"""Example data for a laptop or a demo: tariffs, duration discounts and promo codes.

Rows are inserted with ``ON CONFLICT DO NOTHING``, so running it again, or on a database
where marketing already changed these things, creates what is missing and leaves the
rest exactly as it is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.audit.service import record_change
from billing.catalog.service import snapshot
from billing.models import DurationDiscount, PromoCode, Tariff, TariffPrice

ACTOR = "demo-data"


@dataclass(frozen=True)
class DemoTariff:
    code: str
    name: str
    description: str
    role: str
    monthly_price: int | None  # None: a new role waiting for marketing to price it

    @property
    def is_active(self) -> bool:
        return self.monthly_price is not None


@dataclass(frozen=True)
class DemoPromoCode:
    code: str
    percent: Decimal | None = None
    amount: int | None = None
    max_redemptions: int | None = None
    valid_for: timedelta | None = None  # from the moment it is created; None: no end


TARIFFS = (
    DemoTariff("basic", "Basic", "Every film of the catalogue in HD.", "subscriber", 29900),
    DemoTariff(
        "premium", "Premium", "Priority premieres and 4K, on four screens.", "premium", 49900
    ),
    DemoTariff("family", "Family", "Six profiles; not on sale yet.", "family", None),
)
DURATION_DISCOUNTS = {3: Decimal(5), 6: Decimal(10), 12: Decimal(20)}
PROMO_CODES = (
    DemoPromoCode("WELCOME10", percent=Decimal(10)),
    DemoPromoCode("FILM500", amount=50000, max_redemptions=1000, valid_for=timedelta(days=90)),
)


@dataclass
class DemoDataReport:
    created: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"created {item}" for item in self.created] + [
            f"found   {item}" for item in self.found
        ]


async def create_demo_data(
    session: AsyncSession, *, now: datetime, currency: str
) -> DemoDataReport:
    """Create the example rows that are missing (in the caller's transaction)."""
    report = DemoDataReport()
    for tariff in TARIFFS:
        created = await _insert_tariff(session, tariff, now=now, currency=currency)
        (report.created if created else report.found).append(f"tariff {tariff.code}")
    for months, percent in DURATION_DISCOUNTS.items():
        created = await _insert_duration_discount(session, months, percent, now=now)
        (report.created if created else report.found).append(f"duration discount {months}m")
    for promo in PROMO_CODES:
        created = await _insert_promo_code(session, promo, now=now, currency=currency)
        (report.created if created else report.found).append(f"promo code {promo.code}")
    return report


async def _insert_tariff(
    session: AsyncSession, demo: DemoTariff, *, now: datetime, currency: str
) -> bool:
    # Any unique conflict means "already there": the same code, or a tariff already made
    # for this role (e.g. synchronised from the Auth service) that is left alone.
    tariff_id = await session.scalar(
        insert(Tariff)
        .values(
            id=uuid.uuid4(),
            code=demo.code,
            name=demo.name,
            description=demo.description,
            role=demo.role,
            monthly_price=demo.monthly_price,
            currency=currency,
            is_active=demo.is_active,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(Tariff.id)
    )
    if tariff_id is None:
        return False
    if demo.monthly_price is not None:
        await session.execute(
            insert(TariffPrice).values(
                id=uuid.uuid4(),
                tariff_id=tariff_id,
                previous_price=None,
                monthly_price=demo.monthly_price,
                currency=currency,
                changed_by=ACTOR,
                changed_at=now,
            )
        )
    tariff = await session.get_one(Tariff, tariff_id)
    await record_change(
        session, actor=ACTOR, action="create", entity=tariff, before=None, after=snapshot(tariff)
    )
    return True


async def _insert_duration_discount(
    session: AsyncSession, months: int, percent: Decimal, *, now: datetime
) -> bool:
    inserted = await session.scalar(
        insert(DurationDiscount)
        .values(months=months, percent=percent, updated_at=now)
        .on_conflict_do_nothing(index_elements=[DurationDiscount.months])
        .returning(DurationDiscount.months)
    )
    if inserted is None:
        return False
    await record_change(
        session,
        actor=ACTOR,
        action="create",
        entity=DurationDiscount,
        entity_id=str(months),
        before=None,
        after={"months": months, "percent": str(percent)},
    )
    return True


async def _insert_promo_code(
    session: AsyncSession, demo: DemoPromoCode, *, now: datetime, currency: str
) -> bool:
    valid_until = now + demo.valid_for if demo.valid_for is not None else None
    # The unique index on upper(code) is the conflict: a code matches case-insensitively.
    promo_id = await session.scalar(
        insert(PromoCode)
        .values(
            id=uuid.uuid4(),
            code=demo.code,
            percent=demo.percent,
            amount=demo.amount,
            currency=currency,
            valid_from=None,
            valid_until=valid_until,
            max_redemptions=demo.max_redemptions,
            created_by=ACTOR,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(PromoCode.id)
    )
    if promo_id is None:
        return False
    await record_change(
        session,
        actor=ACTOR,
        action="create",
        entity=PromoCode,
        entity_id=str(promo_id),
        before=None,
        after={
            "code": demo.code,
            "percent": None if demo.percent is None else str(demo.percent),
            "amount": demo.amount,
            "currency": currency,
            "max_redemptions": demo.max_redemptions,
            "valid_until": None if valid_until is None else valid_until.isoformat(),
        },
    )
    return True
