"""The refund window (pure): a paid payment can be refunded for a while after payment."""

from __future__ import annotations

from datetime import datetime, timedelta


def refund_deadline(paid_at: datetime, window: timedelta) -> datetime:
    return paid_at + window


def refund_window_open(paid_at: datetime, now: datetime, window: timedelta) -> bool:
    """Open up to and including the deadline itself."""
    return now <= refund_deadline(paid_at, window)
