"""The sandboxes' test cards, as providers' test modes have them: the checkout page's ``card``
field picks one, and what it does — now and when a saved card is charged later without the
viewer — is decided here, for both sandboxes.

- ``ok``: pays now and later.
- ``declines_later_insufficient_funds`` / ``declines_later_expired``: pays now (and is saved
  when the shop asked to save it), but every later charge without the viewer is declined for
  insufficient funds / because the card has expired.
- ``insufficient_funds``: declined now for insufficient funds.

The last four digits tell them apart in titles and objects, as real test cards do.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class TestCard(StrEnum):
    __test__ = False  # a product type, not a pytest class

    OK = "ok"
    DECLINES_LATER_INSUFFICIENT_FUNDS = "declines_later_insufficient_funds"
    DECLINES_LATER_EXPIRED = "declines_later_expired"
    INSUFFICIENT_FUNDS = "insufficient_funds"


class Decline(StrEnum):
    """Why a card is declined, in the sandbox's words (each provider spells it its way)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED = "expired"


LAST4 = {
    TestCard.DECLINES_LATER_INSUFFICIENT_FUNDS: "0002",
    TestCard.DECLINES_LATER_EXPIRED: "0069",
    TestCard.INSUFFICIENT_FUNDS: "9995",
}
LABELS = {
    TestCard.OK: "Card that pays",
    TestCard.DECLINES_LATER_INSUFFICIENT_FUNDS: (
        "Pays now; later charges declined: insufficient funds"
    ),
    TestCard.DECLINES_LATER_EXPIRED: "Pays now; later charges declined: card expired",
    TestCard.INSUFFICIENT_FUNDS: "Declined now: insufficient funds",
}
# How far ahead a card that does not expire is valid: it never runs out in a test.
_VALID_YEARS = 8


def card_of(value: object) -> TestCard:
    """The card a state or a form names; records made before test cards were ``ok``."""
    try:
        return TestCard(value) if isinstance(value, str) else TestCard.OK
    except ValueError:  # the Stripe page's delayed card pays as ``ok`` does
        return TestCard.OK


def last4(card: TestCard, *, ok: str) -> str:
    """``ok``: the sandbox's usual card number (ЮKassa's 4477, Stripe's 4242)."""
    return LAST4.get(card, ok)


def declined_now(card: TestCard) -> Decline | None:
    return Decline.INSUFFICIENT_FUNDS if card == TestCard.INSUFFICIENT_FUNDS else None


def declined_later(card: TestCard) -> Decline | None:
    """What a later charge of the saved card without the viewer meets."""
    if card == TestCard.DECLINES_LATER_INSUFFICIENT_FUNDS:
        return Decline.INSUFFICIENT_FUNDS
    if card == TestCard.DECLINES_LATER_EXPIRED:
        return Decline.EXPIRED
    return None


def expiry(card: TestCard, saved_at: datetime) -> tuple[int, int]:
    """(month, year): the card that expires later runs out at the end of the month it was
    paid with, so any later charge finds it expired; the others are valid for years."""
    if card == TestCard.DECLINES_LATER_EXPIRED:
        return saved_at.month, saved_at.year
    return 12, saved_at.year + _VALID_YEARS
