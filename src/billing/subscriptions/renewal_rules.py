"""When a declined renewal is tried again (pure).

A soft decline (the money or the issuer may be there later) is retried at the configured
offsets from the first declined attempt (``BILLING_RENEW_RETRY``, default 6 h, 1 d, 2 d),
never once access has ended; a hard decline (the card expired, the method was revoked,
fraud) is not retried: the viewer pays by hand.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.checkout.providers.base import DeclineReason

SOFT_DECLINES = frozenset(
    {
        DeclineReason.INSUFFICIENT_FUNDS,
        DeclineReason.ISSUER_UNAVAILABLE,
        DeclineReason.PROVIDER_UNAVAILABLE,
    }
)


def is_soft(reason: DeclineReason) -> bool:
    return reason in SOFT_DECLINES


def next_attempt_at(
    reason: DeclineReason,
    *,
    attempt: int,
    first_declined_at: datetime,
    access_ends_at: datetime,
    retry_offsets: tuple[timedelta, ...],
) -> datetime | None:
    """When attempt ``attempt + 1`` is made after attempt ``attempt`` was declined for
    ``reason``; None when no retry follows."""
    if not is_soft(reason) or attempt > len(retry_offsets):
        return None
    moment = first_declined_at + retry_offsets[attempt - 1]
    return moment if moment < access_ends_at else None


def next_charge_at(
    period_end: datetime, retry_at: datetime | None, renew_before: timedelta
) -> datetime:
    """When an auto-renewing subscription is charged next: a declined renewal's planned
    retry, else ``renew_before`` (``BILLING_RENEW_BEFORE``) before its period ends."""
    return retry_at or period_end - renew_before
