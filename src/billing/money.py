"""Money: an ``int`` number of minor units (kopecks), never a float.

Floats cannot represent most decimal fractions exactly, so one stray float turns 49900 into
49899.99999 and an invoice into a rounding dispute. Every function here refuses floats
outright instead of converting them.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, localcontext

# The largest amount the API accepts anywhere: 100 million roubles in kopecks. Anything larger
# is a typo or an attack, and refusing it keeps every sum far from overflowing a bigint.
MAX_AMOUNT = 10_000_000_000

_HUNDRED = Decimal(100)
_CENT = Decimal("0.01")
# ASCII digits only: ``\d`` would also accept other scripts' digits.
_AMOUNT_RE = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<cents>[0-9]{1,2}))?")


def _check_amount(amount: int) -> None:
    # bool is an int subclass; True kopecks is always a bug.
    if isinstance(amount, (float, bool)) or not isinstance(amount, int):
        raise TypeError(f"money must be an int number of minor units, got {type(amount).__name__}")
    if amount < 0:
        raise ValueError(f"money must not be negative, got {amount}")


def _check_percent(percent: Decimal) -> None:
    if isinstance(percent, float) or not isinstance(percent, Decimal):
        raise TypeError(f"percent must be a Decimal, got {type(percent).__name__}")
    if not percent.is_finite() or not 0 <= percent <= _HUNDRED:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    # The database keeps percents as numeric(5,2); a finer value could not have come from it.
    if percent != percent.quantize(_CENT):
        raise ValueError(f"percent must have at most 2 decimal places, got {percent}")


def percent_of(amount: int, percent: Decimal) -> int:
    """``percent`` % of ``amount`` minor units, rounded half up to a whole minor unit.

    Half up (not banker's rounding) because that is what the product promises viewers and
    what ЮKassa and accountants expect: 0.5 kopeck becomes 1 kopeck.
    """
    _check_amount(amount)
    _check_percent(percent)
    with localcontext() as ctx:
        # Enough digits that amount * percent is exact however large the amount is.
        ctx.prec = max(28, len(str(amount)) + 10)
        exact = Decimal(amount) * percent / _HUNDRED
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_amount(minor: int) -> str:
    """``49900`` → ``"499.00"``: the decimal string ЮKassa's ``amount.value`` expects."""
    _check_amount(minor)
    units, cents = divmod(minor, 100)
    return f"{units}.{cents:02d}"


def parse_amount(value: str) -> int:
    """``"499.00"`` → ``49900``; the inverse of :func:`format_amount`.

    Strict on purpose: an amount read back from a provider with more than 2 decimals, a sign
    or an exponent is not something we issued, so it is an error rather than something to round.
    """
    if not isinstance(value, str):
        raise TypeError(f"amount must be a string, got {type(value).__name__}")
    match = _AMOUNT_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"not a non-negative amount with at most 2 decimals: {value!r}")
    cents = match["cents"] or "0"
    return int(match["units"]) * 100 + int(cents.ljust(2, "0"))
