"""Money helpers: percent rounding, formatting and parsing of minor units."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.money import format_amount, parse_amount, percent_of

amounts = st.integers(min_value=0, max_value=10**15)
# numeric(5,2) percents: 0.00 .. 100.00
percents = st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n).scaleb(-2))


@pytest.mark.parametrize(
    ("amount", "percent", "expected"),
    [
        (149_700, Decimal("5"), 7_485),
        (100, Decimal("33.33"), 33),
        (1, Decimal("50"), 1),  # 0.5 kopeck rounds half up
        (1, Decimal("49.99"), 0),
        (3, Decimal("50"), 2),  # 1.5 → 2
        (5, Decimal("50"), 3),  # 2.5 → 3, not banker's 2
        (49_900, Decimal("12.5"), 6_238),  # 6237.5 → 6238
        (49_900, Decimal("100"), 49_900),
        (49_900, Decimal("0"), 0),
        (0, Decimal("37.5"), 0),
        (10**30 + 1, Decimal("50"), 5 * 10**29 + 1),  # exact beyond the default precision
    ],
)
def test_percent_of_examples(amount: int, percent: Decimal, expected: int) -> None:
    result = percent_of(amount, percent)
    assert result == expected
    assert type(result) is int


@given(amounts)
def test_percent_of_zero_and_hundred(amount: int) -> None:
    assert percent_of(amount, Decimal(0)) == 0
    assert percent_of(amount, Decimal(100)) == amount
    assert percent_of(amount, Decimal("100.00")) == amount


@given(amounts, percents, percents)
def test_percent_of_monotone_in_percent(amount: int, p1: Decimal, p2: Decimal) -> None:
    low, high = sorted((p1, p2))
    assert percent_of(amount, low) <= percent_of(amount, high)


@given(amounts, percents)
def test_percent_of_is_exact_value_rounded_half_up(amount: int, percent: Decimal) -> None:
    result = percent_of(amount, percent)
    exact = Fraction(amount) * Fraction(percent) / 100
    # half up: the unique integer in (exact - 1/2, exact + 1/2]
    assert exact - Fraction(1, 2) < result <= exact + Fraction(1, 2)
    assert 0 <= result <= amount


@pytest.mark.parametrize(
    ("amount", "percent"),
    [(100, 5.0), (100.0, Decimal(5)), (100, 5), (True, Decimal(5)), ("100", Decimal(5))],
)
def test_percent_of_rejects_non_int_money_and_non_decimal_percent(
    amount: object, percent: object
) -> None:
    with pytest.raises(TypeError):
        percent_of(amount, percent)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "percent"),
    [
        (-1, Decimal(5)),
        (100, Decimal("-0.01")),
        (100, Decimal("100.01")),
        (100, Decimal("5.001")),
        (100, Decimal("NaN")),
        (100, Decimal("Infinity")),
    ],
)
def test_percent_of_rejects_out_of_range(amount: int, percent: Decimal) -> None:
    with pytest.raises(ValueError):
        percent_of(amount, percent)


def test_percent_of_accepts_trailing_zeros_beyond_two_places() -> None:
    assert percent_of(1000, Decimal("5.000")) == 50


@pytest.mark.parametrize(
    ("minor", "text"),
    [(49_900, "499.00"), (0, "0.00"), (1, "0.01"), (10, "0.10"), (149_705, "1497.05")],
)
def test_format_and_parse_examples(minor: int, text: str) -> None:
    assert format_amount(minor) == text
    assert parse_amount(text) == minor


@pytest.mark.parametrize(("text", "minor"), [("499", 49_900), ("499.5", 49_950), ("0.1", 10)])
def test_parse_amount_short_forms(text: str, minor: int) -> None:
    assert parse_amount(text) == minor


@pytest.mark.parametrize(
    "text", ["-1.00", "1.001", "", ".50", "1.", "1e3", "+1.00", " 1.00", "1,00", "NaN", "١٢"]
)
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_format_amount_rejects_negative_and_float() -> None:
    with pytest.raises(ValueError):
        format_amount(-1)
    with pytest.raises(TypeError):
        format_amount(4.99)  # type: ignore[arg-type]


@given(amounts)
def test_format_parse_round_trip(minor: int) -> None:
    assert parse_amount(format_amount(minor)) == minor
