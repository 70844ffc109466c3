"""Pricing rules: which discounts apply and what a viewer pays.

Discounts do not add up: a quote uses the single largest discount in money among those
offered, and records what every offered discount was worth (``considered``) so an invoice
can show why it costs what it costs. Everything here is pure; the caller loads the tariff,
the user's personal discount, the duration rules and the promo code, and checks promo
redemption counts against the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from billing.money import percent_of

PROMO_CODE_EXPIRED = "promo_code_expired"
PROMO_CODE_NOT_APPLICABLE = "promo_code_not_applicable"


class DiscountSource(StrEnum):
    NONE = "none"
    PERSONAL = "personal"
    DURATION = "duration"
    PROMO = "promo"


@dataclass(frozen=True, slots=True)
class PromoTerms:
    """What a promo code offers and when; exactly one of ``percent`` and ``amount``."""

    percent: Decimal | None
    amount: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    tariff_ids: frozenset[UUID]  # empty: every tariff
    is_active: bool

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("a promo code has exactly one of percent and amount")
        if self.amount is not None and self.amount < 0:
            raise ValueError(f"promo amount must not be negative, got {self.amount}")


@dataclass(frozen=True, slots=True)
class Discount:
    """One discount and its money value against the base amount (never more than the base)."""

    source: DiscountSource
    percent: Decimal | None
    amount: int


NO_DISCOUNT = Discount(DiscountSource.NONE, None, 0)


@dataclass(frozen=True, slots=True)
class Quote:
    tariff_id: UUID
    months: int
    currency: str
    base_amount: int
    discount: Discount
    total_amount: int
    considered: tuple[Discount, ...]


def duration_percent(months: int, rules: Mapping[int, Decimal]) -> Decimal | None:
    """The percent of the rule with the largest ``months`` not above ``months``, if any."""
    applicable = [rule_months for rule_months in rules if rule_months <= months]
    return rules[max(applicable)] if applicable else None


def promo_problem(terms: PromoTerms, tariff_id: UUID, now: datetime) -> str | None:
    """Why the promo code cannot be used for this tariff now (a stable error code), or None.

    A deactivated code (deleted after it was used) reads as expired to the viewer. The
    window is ``[valid_from, valid_until)``. Redemption limits are not checked here.
    """
    if not terms.is_active:
        return PROMO_CODE_EXPIRED
    if terms.valid_from is not None and now < terms.valid_from:
        return PROMO_CODE_EXPIRED
    if terms.valid_until is not None and now >= terms.valid_until:
        return PROMO_CODE_EXPIRED
    if terms.tariff_ids and tariff_id not in terms.tariff_ids:
        return PROMO_CODE_NOT_APPLICABLE
    return None


def build_quote(
    *,
    tariff_id: UUID,
    monthly_price: int,
    months: int,
    currency: str,
    personal_percent: Decimal | None,
    duration_percent: Decimal | None,
    promo: PromoTerms | None,
) -> Quote:
    """Price ``months`` of a tariff with the single largest of the offered discounts.

    The caller offers only discounts that apply (an expired personal discount or a promo code
    with a :func:`promo_problem` is passed as None).
    """
    for name, value in (("monthly_price", monthly_price), ("months", months)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    if monthly_price < 0:
        raise ValueError(f"monthly_price must not be negative, got {monthly_price}")
    base = monthly_price * months

    # Order matters: it is the tie-break order. On equal money the promo code wins because
    # the viewer typed it in explicitly and should see that it worked; a personal discount
    # beats a duration one because it is the more specific of the two.
    considered: list[Discount] = []
    if promo is not None:
        if promo.percent is not None:
            considered.append(
                Discount(DiscountSource.PROMO, promo.percent, percent_of(base, promo.percent))
            )
        else:
            assert promo.amount is not None  # PromoTerms guarantees exactly one
            considered.append(Discount(DiscountSource.PROMO, None, min(promo.amount, base)))
    if personal_percent is not None:
        considered.append(
            Discount(DiscountSource.PERSONAL, personal_percent, percent_of(base, personal_percent))
        )
    if duration_percent is not None:
        considered.append(
            Discount(DiscountSource.DURATION, duration_percent, percent_of(base, duration_percent))
        )

    winner = NO_DISCOUNT
    for candidate in considered:  # strictly greater: the earlier one keeps a tie
        if candidate.amount > winner.amount:
            winner = candidate

    return Quote(
        tariff_id=tariff_id,
        months=months,
        currency=currency,
        base_amount=base,
        discount=winner,
        total_amount=max(base - winner.amount, 0),
        considered=tuple(considered),
    )
