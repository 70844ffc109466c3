"""The outbox back-off: 10 s, doubling, never above the ceiling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.outbox.relay import retry_delay

HOUR = timedelta(hours=1)


def test_the_wait_doubles_from_ten_seconds() -> None:
    waits = [retry_delay(n, ceiling=HOUR).total_seconds() for n in range(1, 9)]
    assert waits == [10, 20, 40, 80, 160, 320, 640, 1280]


def test_the_wait_stops_at_the_ceiling_and_never_overflows() -> None:
    assert retry_delay(9, ceiling=HOUR) == timedelta(seconds=2560)
    assert retry_delay(10, ceiling=HOUR) == HOUR
    assert retry_delay(100, ceiling=HOUR) == HOUR
    assert retry_delay(10_000, ceiling=HOUR) == HOUR


def test_a_ceiling_below_the_base_wins() -> None:
    assert retry_delay(1, ceiling=timedelta(seconds=3)) == timedelta(seconds=3)


def test_another_base() -> None:
    assert retry_delay(3, ceiling=HOUR, base=timedelta(seconds=1)) == timedelta(seconds=4)


def test_there_is_no_zeroth_failure() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, ceiling=HOUR)
