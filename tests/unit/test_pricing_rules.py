"""Pricing rules: duration rules, promo checks and quotes (the single largest discount wins)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.pricing.rules import (
    Discount,
    DiscountSource,
    PromoTerms,
    Quote,
    build_quote,
    duration_percent,
    promo_problem,
)

TARIFF = UUID("11111111-1111-1111-1111-111111111111")
OTHER_TARIFF = UUID("22222222-2222-2222-2222-222222222222")
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TIE_ORDER = (DiscountSource.PROMO, DiscountSource.PERSONAL, DiscountSource.DURATION)


def promo_terms(
    *,
    percent: Decimal | None = None,
    amount: int | None = None,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    tariff_ids: frozenset[UUID] = frozenset(),
    is_active: bool = True,
) -> PromoTerms:
    return PromoTerms(percent, amount, valid_from, valid_until, tariff_ids, is_active)


def quote(
    monthly_price: int = 49_900,
    months: int = 1,
    *,
    personal: Decimal | None = None,
    duration: Decimal | None = None,
    promo: PromoTerms | None = None,
) -> Quote:
    return build_quote(
        tariff_id=TARIFF,
        monthly_price=monthly_price,
        months=months,
        currency="RUB",
        personal_percent=personal,
        duration_percent=duration,
        promo=promo,
    )


# --- duration_percent -----------------------------------------------------------------------

RULES = {3: Decimal(5), 6: Decimal(10), 12: Decimal(20)}


@pytest.mark.parametrize(
    ("months", "expected"),
    [(1, None), (2, None), (3, 5), (5, 5), (6, 10), (11, 10), (12, 20), (24, 20)],
)
def test_duration_percent(months: int, expected: int | None) -> None:
    result = duration_percent(months, RULES)
    assert result == (None if expected is None else Decimal(expected))


def test_duration_percent_without_rules() -> None:
    assert duration_percent(12, {}) is None


def test_duration_percent_does_not_depend_on_rule_order() -> None:
    assert duration_percent(7, {12: Decimal(20), 3: Decimal(5), 6: Decimal(10)}) == Decimal(10)


# --- promo_problem --------------------------------------------------------------------------


def test_promo_ok() -> None:
    terms = promo_terms(
        percent=Decimal(10),
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=1),
        tariff_ids=frozenset({TARIFF, OTHER_TARIFF}),
    )
    assert promo_problem(terms, TARIFF, NOW) is None
    assert promo_problem(promo_terms(amount=100), TARIFF, NOW) is None


def test_promo_valid_from_is_inclusive() -> None:
    terms = promo_terms(percent=Decimal(10), valid_from=NOW)
    assert promo_problem(terms, TARIFF, NOW) is None
    assert promo_problem(terms, TARIFF, NOW - timedelta(microseconds=1)) == "promo_code_expired"


def test_promo_not_yet_valid() -> None:
    terms = promo_terms(percent=Decimal(10), valid_from=NOW + timedelta(hours=1))
    assert promo_problem(terms, TARIFF, NOW) == "promo_code_expired"


def test_promo_expired_at_exactly_valid_until() -> None:
    terms = promo_terms(percent=Decimal(10), valid_until=NOW)
    assert promo_problem(terms, TARIFF, NOW - timedelta(microseconds=1)) is None
    assert promo_problem(terms, TARIFF, NOW) == "promo_code_expired"
    assert promo_problem(terms, TARIFF, NOW + timedelta(days=1)) == "promo_code_expired"


def test_promo_inactive_reads_as_expired() -> None:
    terms = promo_terms(percent=Decimal(10), is_active=False)
    assert promo_problem(terms, TARIFF, NOW) == "promo_code_expired"


def test_promo_tariff_restriction() -> None:
    terms = promo_terms(percent=Decimal(10), tariff_ids=frozenset({OTHER_TARIFF}))
    assert promo_problem(terms, TARIFF, NOW) == "promo_code_not_applicable"
    assert promo_problem(terms, OTHER_TARIFF, NOW) is None


def test_promo_expiry_is_reported_before_tariff_restriction() -> None:
    terms = promo_terms(percent=Decimal(10), valid_until=NOW, tariff_ids=frozenset({OTHER_TARIFF}))
    assert promo_problem(terms, TARIFF, NOW) == "promo_code_expired"


@pytest.mark.parametrize(("percent", "amount"), [(None, None), (Decimal(10), 100)])
def test_promo_terms_need_exactly_one_of_percent_and_amount(
    percent: Decimal | None, amount: int | None
) -> None:
    with pytest.raises(ValueError):
        promo_terms(percent=percent, amount=amount)


def test_promo_terms_reject_negative_amount() -> None:
    with pytest.raises(ValueError):
        promo_terms(amount=-1)


# --- build_quote: worked examples -----------------------------------------------------------


def test_quote_without_discounts() -> None:
    q = quote(49_900, 2)
    assert q == Quote(
        tariff_id=TARIFF,
        months=2,
        currency="RUB",
        base_amount=99_800,
        discount=Discount(DiscountSource.NONE, None, 0),
        total_amount=99_800,
        considered=(),
    )


def test_quote_duration_discount() -> None:
    q = quote(49_900, 3, duration=Decimal(5))
    assert q.base_amount == 149_700
    assert q.discount == Discount(DiscountSource.DURATION, Decimal(5), 7_485)
    assert q.total_amount == 142_215
    assert q.considered == (q.discount,)


def test_quote_largest_discount_in_money_wins_and_others_are_recorded() -> None:
    q = quote(
        49_900,
        12,
        personal=Decimal("15"),
        duration=Decimal("20"),
        promo=promo_terms(amount=100_000),
    )
    assert q.base_amount == 598_800
    assert q.considered == (
        Discount(DiscountSource.PROMO, None, 100_000),
        Discount(DiscountSource.PERSONAL, Decimal(15), 89_820),
        Discount(DiscountSource.DURATION, Decimal(20), 119_760),
    )
    assert q.discount == Discount(DiscountSource.DURATION, Decimal(20), 119_760)
    assert q.total_amount == 479_040


def test_quote_discounts_do_not_add_up() -> None:
    q = quote(10_000, 1, personal=Decimal(30), duration=Decimal(30), promo=promo_terms(amount=10))
    assert q.discount.amount == 3_000
    assert q.total_amount == 7_000


def test_quote_percent_rounds_half_up() -> None:
    q = quote(1, 1, personal=Decimal(50))
    assert q.discount == Discount(DiscountSource.PERSONAL, Decimal(50), 1)
    assert q.total_amount == 0
    q = quote(100, 1, promo=promo_terms(percent=Decimal("33.33")))
    assert q.discount.amount == 33
    assert q.total_amount == 67


def test_fixed_promo_larger_than_base_is_capped() -> None:
    q = quote(49_900, 1, promo=promo_terms(amount=100_000))
    assert q.discount == Discount(DiscountSource.PROMO, None, 49_900)
    assert q.considered == (q.discount,)
    assert q.total_amount == 0


def test_full_personal_discount_is_free() -> None:
    q = quote(49_900, 6, personal=Decimal(100), duration=Decimal(10))
    assert q.discount == Discount(DiscountSource.PERSONAL, Decimal(100), 299_400)
    assert q.total_amount == 0


def test_free_tariff() -> None:
    q = quote(0, 3, personal=Decimal(10), promo=promo_terms(amount=500))
    assert q.base_amount == 0
    assert q.discount == Discount(DiscountSource.NONE, None, 0)
    assert q.total_amount == 0
    assert q.considered == (
        Discount(DiscountSource.PROMO, None, 0),
        Discount(DiscountSource.PERSONAL, Decimal(10), 0),
    )


def test_zero_percent_discount_is_considered_but_reported_as_none() -> None:
    q = quote(49_900, 1, personal=Decimal(0))
    assert q.discount == Discount(DiscountSource.NONE, None, 0)
    assert q.considered == (Discount(DiscountSource.PERSONAL, Decimal(0), 0),)
    assert q.total_amount == 49_900


@pytest.mark.parametrize(
    ("kwargs", "winner"),
    [
        ({"promo": promo_terms(percent=Decimal(10)), "personal": Decimal(10)}, "promo"),
        ({"promo": promo_terms(amount=4_990), "duration": Decimal(10)}, "promo"),
        ({"personal": Decimal(10), "duration": Decimal(10)}, "personal"),
        (
            {
                "promo": promo_terms(percent=Decimal(10)),
                "personal": Decimal(10),
                "duration": Decimal(10),
            },
            "promo",
        ),
        # equal percents of one base are equal money; a larger percent still wins outright
        ({"promo": promo_terms(percent=Decimal(5)), "duration": Decimal(10)}, "duration"),
    ],
)
def test_quote_tie_order(kwargs: dict[str, Any], winner: str) -> None:
    q = quote(49_900, 1, **kwargs)
    assert q.discount.source == DiscountSource(winner)
    assert q.discount.amount == 4_990


@pytest.mark.parametrize(("monthly_price", "months"), [(49_900, 0), (49_900, -1), (-1, 1)])
def test_quote_rejects_bad_input(monthly_price: int, months: int) -> None:
    with pytest.raises(ValueError):
        quote(monthly_price, months)


@pytest.mark.parametrize(
    ("monthly_price", "months", "personal"),
    [(499.0, 1, None), (49_900, 1.0, None), (49_900, 1, 5.0), (True, 1, None)],
)
def test_quote_rejects_floats(monthly_price: Any, months: Any, personal: Any) -> None:
    with pytest.raises(TypeError):
        quote(monthly_price, months, personal=personal)


def test_quote_rejects_out_of_range_percent() -> None:
    with pytest.raises(ValueError):
        quote(49_900, 1, duration=Decimal("100.01"))


# --- build_quote: properties ----------------------------------------------------------------

percents = st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n).scaleb(-2))
# a few round percents so that ties between sources actually happen
likely_tied_percents = st.sampled_from([Decimal(0), Decimal(5), Decimal(10), Decimal(100)])
any_percent = st.one_of(percents, likely_tied_percents)
promos = st.one_of(
    st.none(),
    any_percent.map(lambda p: promo_terms(percent=p)),
    st.integers(min_value=0, max_value=10**7).map(lambda a: promo_terms(amount=a)),
)
quote_inputs = st.fixed_dictionaries(
    {
        "tariff_id": st.uuids(),
        "monthly_price": st.one_of(
            st.integers(min_value=0, max_value=10**7), st.sampled_from([0, 1, 100, 49_900])
        ),
        "months": st.integers(min_value=1, max_value=36),
        "currency": st.sampled_from(["RUB", "USD"]),
        "personal_percent": st.none() | any_percent,
        "duration_percent": st.none() | any_percent,
        "promo": promos,
    }
)


def walk(value: object) -> list[object]:
    """Every leaf value inside dataclasses and tuples."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [leaf for f in dataclasses.fields(value) for leaf in walk(getattr(value, f.name))]
    if isinstance(value, tuple):
        return [leaf for item in value for leaf in walk(item)]
    return [value]


@given(quote_inputs)
def test_quote_invariants(inputs: dict[str, Any]) -> None:
    q = build_quote(**inputs)
    base = inputs["monthly_price"] * inputs["months"]

    assert q.base_amount == base
    assert 0 <= q.total_amount <= q.base_amount
    assert q.total_amount == q.base_amount - q.discount.amount
    assert all(0 <= c.amount <= base for c in q.considered)

    offered = [
        DiscountSource.PROMO if inputs["promo"] is not None else None,
        DiscountSource.PERSONAL if inputs["personal_percent"] is not None else None,
        DiscountSource.DURATION if inputs["duration_percent"] is not None else None,
    ]
    assert [c.source for c in q.considered] == [s for s in offered if s is not None]

    best = max((c.amount for c in q.considered), default=0)
    assert q.discount.amount == best
    if best == 0:
        assert q.discount == Discount(DiscountSource.NONE, None, 0)
    else:
        assert q.discount in q.considered
        # the winner is the first source in tie order among those worth the most
        tied = {c.source for c in q.considered if c.amount == best}
        assert q.discount.source == next(s for s in TIE_ORDER if s in tied)


@given(quote_inputs)
def test_quote_has_no_floats(inputs: dict[str, Any]) -> None:
    leaves = walk(build_quote(**inputs))
    assert not any(isinstance(leaf, float) for leaf in leaves)
    money = [leaf for leaf in leaves if isinstance(leaf, int) and not isinstance(leaf, bool)]
    assert all(type(leaf) is int for leaf in money)


@given(quote_inputs)
def test_quote_is_deterministic(inputs: dict[str, Any]) -> None:
    assert build_quote(**inputs) == build_quote(**dict(inputs))


def test_walk_finds_floats() -> None:
    """The float check above would catch one: a Discount holding a float is reported."""
    sneaky = Discount(DiscountSource.PERSONAL, Decimal(5), 1.5)  # type: ignore[arg-type]
    assert any(isinstance(leaf, float) for leaf in walk(sneaky))
