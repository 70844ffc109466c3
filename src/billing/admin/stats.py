"""The dashboard's figures (``GET /api/v1/admin/stats`` and the panel's first page): set-based
SQL, one query per figure, each reading a range of its own index (migration 0015), so they
stay fast at millions of payments (tests/integration/test_stats_plans.py checks the plans,
bench/stats_at_scale.py measures them).

What each figure counts (PRODUCT.md names them; where it is silent, this decides):
- a day is a UTC calendar day; the period's days are all listed, zeros included;
- ``payments``/``gross``: payments that succeeded that day (by ``paid_at``), those refunded
  later included (they did succeed that day); ``refunds``/``refunded``: refunds that
  succeeded that day (by the payment's ``refunded_at``); only the billing currency's;
- ``active_subscriptions``: now, status ``active`` with a period end ahead, per tariff (every
  tariff listed);
- ``new_subscriptions``: subscriptions created in the period; ``churned_subscriptions``:
  subscriptions that ended (expired, or canceled by a refund) in the period (by their last
  change) whose user has no live subscription left — a move to another tariff is no churn;
- ``renewals``: invoices of ``kind = 'renewal'`` (auto-renewal's) created in the period, and
  those of them paid (refunded later included);
- ``mrr``: Σ over active subscriptions of their last paid invoice's total ÷ its months, in
  minor units, rounded half up once at the end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billing.admin.schemas import ActiveSubscriptions, DayFigures, Renewals, StatsOut
from billing.errors import VALIDATION_ERROR

DEFAULT_DAYS = 30
MAX_DAYS = 366


def parse_day(name: str, value: str) -> date:
    """``YYYY-MM-DD`` exactly (no week dates, no times)."""
    try:
        if len(value) != len("2025-05-01"):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise VALIDATION_ERROR(f"{name}: must be a date YYYY-MM-DD, got {value!r}") from None


def stats_period(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """The period asked for, inclusive: ``end`` defaults to today (UTC), ``start`` to
    ``DEFAULT_DAYS`` days ending on ``end``; at most ``MAX_DAYS`` days, ``start <= end``."""
    last = today if end is None else parse_day("to", end)
    first = last - timedelta(days=DEFAULT_DAYS - 1) if start is None else parse_day("from", start)
    if first > last:
        raise VALIDATION_ERROR(f"from: {first} is after to: {last}")
    if (last - first).days + 1 > MAX_DAYS:
        raise VALIDATION_ERROR(f"from, to: at most {MAX_DAYS} days at once")
    return first, last


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def query_bounds(first: date, last: date, *, currency: str, now: datetime) -> dict[str, Any]:
    """The parameters every query of ``QUERIES`` takes: the period as dates and as UTC
    instants (``since`` inclusive, ``until`` exclusive), the currency and now."""
    return {
        "first": first,
        "last": last,
        "since": _midnight(first),
        "until": _midnight(last + timedelta(days=1)),
        "currency": currency,
        "now": now,
    }


# Each day of the period is its own range of ix_payments_settled_paid_at (payments) and of
# ix_payments_refunded_at (refunds, each found by its payment), aggregated as it is read: no
# sort or hash of a year's payments. A day is [its UTC midnight, the next one). The days are
# numbered (an integer series, whose length the planner knows), not a timestamp series.
_DAYS = text(
    """
    WITH days AS (
        SELECT day, day::timestamp AT TIME ZONE 'UTC' AS since,
               (day + 1)::timestamp AT TIME ZONE 'UTC' AS until
        FROM generate_series(0, CAST(:last AS date) - CAST(:first AS date)) AS n,
             LATERAL (SELECT CAST(:first AS date) + n AS day) AS numbered
    )
    SELECT days.day, paid.payments, paid.gross, refunded.refunds, refunded.refunded
    FROM days
    CROSS JOIN LATERAL (
        SELECT count(*) AS payments, coalesce(sum(amount), 0)::bigint AS gross
        FROM payments
        WHERE status IN ('succeeded', 'refunded') AND currency = :currency
          AND paid_at >= days.since AND paid_at < days.until
    ) AS paid
    CROSS JOIN LATERAL (
        SELECT count(*) AS refunds, coalesce(sum(r.amount), 0)::bigint AS refunded
        FROM payments p
        CROSS JOIN LATERAL (
            SELECT amount FROM refunds
            WHERE payment_id = p.id AND status = 'succeeded' AND currency = :currency
            LIMIT 1  -- there is one at most (uq_refunds_one_per_payment): a probe per payment
        ) AS r
        WHERE p.refunded_at >= days.since AND p.refunded_at < days.until
    ) AS refunded
    ORDER BY days.day
    """
)

# One index-only count per tariff, over the active subscriptions only.
_ACTIVE = text(
    """
    SELECT t.id AS tariff_id, t.code,
           (SELECT count(*) FROM subscriptions s
            WHERE s.status = 'active' AND s.tariff_id = t.id
              AND s.current_period_end > :now) AS count
    FROM tariffs t
    ORDER BY t.code
    """
)

_NEW = text("SELECT count(*) FROM subscriptions WHERE created_at >= :since AND created_at < :until")

# The period's ended subscriptions, anti-joined to the live ones (a partial index of those).
_CHURNED = text(
    """
    SELECT count(*) FROM subscriptions s
    WHERE s.status IN ('expired', 'canceled') AND s.updated_at >= :since AND s.updated_at < :until
      AND NOT EXISTS (
        SELECT 1 FROM subscriptions live
        WHERE live.user_id = s.user_id AND live.status IN ('active', 'grace')
      )
    """
)

_RENEWALS = text(
    """
    SELECT count(*) AS attempted,
           count(*) FILTER (WHERE status IN ('paid', 'refunded')) AS succeeded
    FROM invoices
    WHERE kind = 'renewal' AND created_at >= :since AND created_at < :until
    """
)

# Per active subscription, the first entry of ix_invoices_paid_last for its user and tariff,
# read from the index alone: one probe each, whatever the number of invoices.
_MRR = text(
    """
    SELECT coalesce(round(sum(last_paid.total_amount::numeric / last_paid.months)), 0)::bigint
    FROM subscriptions s
    CROSS JOIN LATERAL (
        SELECT i.total_amount, i.months FROM invoices i
        WHERE i.user_id = s.user_id AND i.tariff_id = s.tariff_id AND i.status = 'paid'
          AND i.currency = :currency
        ORDER BY i.paid_at DESC NULLS LAST
        LIMIT 1
    ) AS last_paid
    WHERE s.status = 'active' AND s.current_period_end > :now
    """
)


# The queries are short index walks; a day-by-day plan's estimated cost (each day's range has
# the default selectivity) would still cross jit_above_cost, and compiling took longer than
# running (0.4 s of a 0.6 s query at 1 M payments). For the stats' transaction only.
NO_JIT = text("SET LOCAL jit = off")

# One query per figure, by name (the bench times each, the plan test explains each).
QUERIES = {
    "days": _DAYS,
    "active": _ACTIVE,
    "new": _NEW,
    "churned": _CHURNED,
    "renewals": _RENEWALS,
    "mrr": _MRR,
}


async def dashboard_stats(
    session: AsyncSession, first: date, last: date, *, currency: str, now: datetime
) -> StatsOut:
    """The figures of the days ``first``..``last`` (inclusive, UTC) and of now."""
    bounds = query_bounds(first, last, currency=currency, now=now)
    await session.execute(NO_JIT)
    days = [
        DayFigures(
            date=row.day,
            payments=row.payments,
            gross=row.gross,
            refunds=row.refunds,
            refunded=row.refunded,
            net=row.gross - row.refunded,
        )
        for row in await session.execute(_DAYS, bounds)
    ]
    active = [
        ActiveSubscriptions(tariff_id=row.tariff_id, code=row.code, count=row.count)
        for row in await session.execute(_ACTIVE, bounds)
    ]
    renewed = (await session.execute(_RENEWALS, bounds)).one()
    return StatsOut(
        from_=first,
        to=last,
        currency=currency,
        days=days,
        active_subscriptions=active,
        new_subscriptions=int(await session.scalar(_NEW, bounds) or 0),
        churned_subscriptions=int(await session.scalar(_CHURNED, bounds) or 0),
        renewals=Renewals(attempted=renewed.attempted, succeeded=renewed.succeeded),
        mrr=int(await session.scalar(_MRR, bounds) or 0),
    )
