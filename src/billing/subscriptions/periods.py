"""Period arithmetic (pure): calendar months, where a paid slice of access starts and ends."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months, clamped to the month's last day:
    31 Jan + 1 month = 28 Feb (29 in a leap year); the time of day is kept."""
    if months < 0:
        raise ValueError("months must not be negative")
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def extension(
    current_period_end: datetime | None, now: datetime, months: int
) -> tuple[datetime, datetime]:
    """The slice of access a payment for ``months`` buys: from the current period's end if it
    has not passed yet (paying early loses nothing), otherwise from now."""
    start = current_period_end if current_period_end and current_period_end > now else now
    return start, add_months(start, months)


def period_end_after_refund(
    current_period_end: datetime, slice_start: datetime, slice_end: datetime
) -> datetime:
    """Take back exactly the slice a refunded payment bought; later slices move earlier."""
    return current_period_end - (slice_end - slice_start)


def access_until(current_period_end: datetime, grace_period: timedelta) -> datetime:
    return current_period_end + grace_period
