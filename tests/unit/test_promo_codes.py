"""Promo-code strings: generation, normalisation, validation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.pricing.codes import PROMO_ALPHABET, generate_code, is_valid_code, normalize_code


def test_alphabet_has_no_ambiguous_characters() -> None:
    assert not set("0O1IL") & set(PROMO_ALPHABET)
    assert len(PROMO_ALPHABET) == 36 - 5
    assert set(PROMO_ALPHABET) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def test_generated_codes_are_unique_and_unambiguous() -> None:
    codes = [generate_code() for _ in range(10_000)]
    assert len(set(codes)) == 10_000
    for code in codes:
        assert len(code) == 10
        assert set(code) <= set(PROMO_ALPHABET)
        assert is_valid_code(code)
        assert normalize_code(code) == code


def test_generate_code_with_prefix_and_length() -> None:
    code = generate_code(6, prefix="summer-")
    assert code.startswith("SUMMER-")
    assert len(code) == len("SUMMER-") + 6
    assert set(code.removeprefix("SUMMER-")) <= set(PROMO_ALPHABET)


@pytest.mark.parametrize(
    ("length", "prefix"), [(0, "ABC"), (-1, ""), (2, ""), (33, ""), (5, "bad prefix"), (30, "XYZ")]
)
def test_generate_code_rejects_invalid_results(length: int, prefix: str) -> None:
    with pytest.raises(ValueError):
        generate_code(length, prefix=prefix)


def test_normalize_code() -> None:
    assert normalize_code("  summer-25 ") == "SUMMER-25"
    assert normalize_code("Promo_X\n") == "PROMO_X"


@pytest.mark.parametrize("code", ["ABC", "summer-25", " promo_x ", "A" * 32, "0O1IL", "-_-"])
def test_valid_codes(code: str) -> None:
    assert is_valid_code(code)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "AB",
        "  ab  ",
        "A" * 33,
        "SUMMER 25",
        "скидка",
        "PROMO!",
        "ÄBC",
        "AB\nC",
        "ßale",
        "ıabc",
        "ﬀabc",
    ],
)
def test_invalid_codes(code: str) -> None:
    assert not is_valid_code(code)


@given(st.text(max_size=40))
def test_valid_codes_are_plain_ascii_after_normalising(code: str) -> None:
    if is_valid_code(code):
        normalized = normalize_code(code)
        assert 3 <= len(normalized) <= 32
        assert set(normalized) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        assert is_valid_code(normalized)
