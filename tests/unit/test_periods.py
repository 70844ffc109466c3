"""Period arithmetic: calendar months, extension slices, refunds, the refund window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.checkout.refund_window import refund_deadline, refund_window_open
from billing.subscriptions.periods import (
    access_until,
    add_months,
    extension,
    period_end_after_refund,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (utc(2026, 1, 31, 10), 1, utc(2026, 2, 28, 10)),
        (utc(2028, 1, 31, 10), 1, utc(2028, 2, 29, 10)),  # leap year
        (utc(2026, 1, 15), 1, utc(2026, 2, 15)),
        (utc(2026, 11, 30), 3, utc(2027, 2, 28)),
        (utc(2026, 12, 31), 12, utc(2027, 12, 31)),
        (utc(2026, 3, 31), 1, utc(2026, 4, 30)),
        (utc(2026, 5, 5), 0, utc(2026, 5, 5)),
    ],
)
def test_a_month_is_a_calendar_month(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


# hypothesis takes naive bounds and attaches the time zone itself
NAIVE_2000, NAIVE_2100 = datetime(2000, 1, 1), datetime(2100, 1, 1)  # noqa: DTZ001


@given(
    st.datetimes(min_value=NAIVE_2000, max_value=NAIVE_2100, timezones=st.just(UTC)),
    st.integers(min_value=1, max_value=120),
)
def test_adding_months_moves_forward_between_28_and_31_days_each(
    moment: datetime, months: int
) -> None:
    later = add_months(moment, months)
    assert timedelta(days=28 * months) <= later - moment <= timedelta(days=31 * months)
    assert later.time() == moment.time()


def test_paying_early_extends_from_the_current_end_and_late_from_now() -> None:
    now = utc(2026, 11, 27, 12)
    assert extension(utc(2026, 12, 10), now, 1) == (utc(2026, 12, 10), utc(2027, 1, 10))
    assert extension(utc(2026, 11, 20), now, 1) == (now, utc(2026, 12, 27, 12))
    assert extension(None, now, 2) == (now, utc(2027, 1, 27, 12))


def test_a_refund_takes_back_exactly_its_slice() -> None:
    end = period_end_after_refund(utc(2027, 3, 1), utc(2027, 1, 1), utc(2027, 2, 1))
    assert end == utc(2027, 3, 1) - timedelta(days=31)


def test_access_continues_through_the_grace_period() -> None:
    assert access_until(utc(2026, 12, 1), timedelta(days=2)) == utc(2026, 12, 3)


def test_the_refund_window_includes_its_last_second() -> None:
    paid = utc(2026, 11, 27, 12)
    hour = timedelta(hours=1)
    assert refund_deadline(paid, hour) == utc(2026, 11, 27, 13)
    assert refund_window_open(paid, paid, hour)
    assert refund_window_open(paid, utc(2026, 11, 27, 13), hour)
    assert not refund_window_open(paid, utc(2026, 11, 27, 13, 0, 1), hour)
