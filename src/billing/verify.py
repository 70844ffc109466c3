"""``billing verify``: read-only checks of the invariants the database alone cannot express.

Each check is one query returning the offending rows (an id and a short description); the
constraints of the schema already cover single-row rules (totals add up, percents in range,
counts within limits), so these look across rows and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# How late the scheduler may be before a due item counts as stuck.
SCHEDULER_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class Check:
    name: str
    meaning: str
    sql: str


CHECKS = (
    Check(
        "payment-amount-matches-invoice",
        "a payment asks for another amount or currency than its invoice",
        """SELECT p.id, p.amount || ' ' || p.currency || ' vs ' || i.total_amount || ' '
                  || i.currency
           FROM payments p JOIN invoices i ON i.id = p.invoice_id
           WHERE p.amount <> i.total_amount OR p.currency <> i.currency""",
    ),
    Check(
        "paid-payment-has-paid-invoice",
        "a succeeded payment whose invoice is not paid, or a refunded one not refunded",
        # A payment that succeeded after its invoice expired and went straight back
        # (reason invoice_expired) leaves its invoice expired.
        """SELECT p.id, p.status || ' payment, invoice ' || i.status
           FROM payments p JOIN invoices i ON i.id = p.invoice_id
           WHERE (p.status = 'succeeded' AND i.status <> 'paid'
                  AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id
                                  AND r.reason = 'invoice_expired' AND r.status = 'pending'))
              OR (p.status = 'refunded' AND i.status <> 'refunded'
                  AND NOT (i.status = 'expired' AND EXISTS (
                      SELECT 1 FROM refunds r WHERE r.payment_id = p.id
                      AND r.reason = 'invoice_expired' AND r.status = 'succeeded')))""",
    ),
    Check(
        "paid-invoice-has-payment",
        "a paid or refunded invoice with a total but no successful payment",
        """SELECT i.id, i.status || ' invoice of ' || i.total_amount || ' ' || i.currency
           FROM invoices i
           WHERE i.status IN ('paid', 'refunded') AND i.total_amount > 0
             AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.invoice_id = i.id
                             AND p.status IN ('succeeded', 'refunded'))""",
    ),
    Check(
        "refunded-payment-has-refund",
        "a refunded payment without its refund record",
        """SELECT p.id, 'refunded at ' || p.refunded_at FROM payments p
           WHERE p.status = 'refunded'
             AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id)""",
    ),
    Check(
        "paid-payment-bought-a-period",
        "a successful payment without the slice of access it bought",
        """SELECT p.id, coalesce(p.period_start::text, '?') || ' .. '
                  || coalesce(p.period_end::text, '?')
           FROM payments p
           WHERE p.status IN ('succeeded', 'refunded')
             AND (p.period_start IS NULL OR p.period_end IS NULL
                  OR p.period_end <= p.period_start)
             AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.payment_id = p.id
                             AND r.reason = 'invoice_expired' AND r.status <> 'canceled')""",
    ),
    Check(
        "promo-count-matches-redemptions",
        "a promo code whose redemption count differs from its live redemptions",
        """SELECT c.id, c.code || ': count ' || c.redemptions_count || ', live '
                  || count(r.id)
           FROM promo_codes c
           LEFT JOIN promo_redemptions r
             ON r.promo_code_id = c.id AND r.status IN ('reserved', 'redeemed')
           GROUP BY c.id HAVING c.redemptions_count <> count(r.id)""",
    ),
    Check(
        "promo-redemption-follows-invoice",
        "a redemption whose state disagrees with its invoice (paid → redeemed, open → reserved)",
        """SELECT r.id, 'redemption ' || r.status || ', invoice ' || i.status
           FROM promo_redemptions r JOIN invoices i ON i.id = r.invoice_id
           WHERE (i.status IN ('paid', 'refunded') AND r.status <> 'redeemed')
              OR (i.status = 'open' AND r.status <> 'reserved')
              OR (i.status IN ('expired', 'canceled') AND r.status = 'reserved')""",
    ),
    Check(
        "subscription-not-overdue",
        "an active or grace subscription far past its end: the scheduler is not running",
        """SELECT s.id, s.status || ' until ' || s.current_period_end FROM subscriptions s
           WHERE (s.status = 'active' AND s.current_period_end < :now - :slack)
              OR (s.status = 'grace' AND s.current_period_end < :now - :grace - :slack)""",
    ),
    Check(
        "invoice-not-overdue",
        "an open invoice far past its expiry: the scheduler is not running",
        """SELECT i.id, 'open, expired at ' || i.expires_at FROM invoices i
           WHERE i.status = 'open' AND i.expires_at < :now - :slack""",
    ),
    Check(
        "renewal-charged-once",
        "a subscription's period renewed by more than one successful charge",
        """SELECT a.subscription_id, 'period ending ' || a.period_end || ': '
                  || count(*) || ' charges'
           FROM renewal_attempts a JOIN payments p ON p.id = a.payment_id
           WHERE p.status IN ('succeeded', 'refunded')
           GROUP BY a.subscription_id, a.period_end HAVING count(*) > 1""",
    ),
    Check(
        "refund-not-stuck",
        "a refund asked for long ago whose outcome is still unknown: reconciliation is stuck",
        """SELECT r.id, r.reason || ' refund pending since ' || r.created_at FROM refunds r
           WHERE r.status = 'pending' AND r.created_at < :now - :slack""",
    ),
    Check(
        "outbox-none-parked",
        "an outbox event parked after failing: needs an admin (retry it once fixed)",
        """SELECT e.id, e.type || ' after ' || e.attempts || ' attempts: '
                  || left(coalesce(e.last_error, ''), 120)
           FROM outbox_events e WHERE e.status = 'failed'""",
    ),
    Check(
        "outbox-not-stuck",
        "an outbox event due long ago and still pending: delivery is stuck",
        """SELECT e.id, e.type || ' due since ' || e.next_attempt_at FROM outbox_events e
           WHERE e.status = 'pending' AND e.next_attempt_at < :now - :slack""",
    ),
)


@dataclass(frozen=True)
class Finding:
    check: Check
    rows: list[tuple[str, str]]


async def verify(
    session: AsyncSession, *, now: datetime, grace_period: timedelta, examples: int = 5
) -> list[Finding]:
    """Every check's offending rows (at most ``examples`` each); empty when all is well."""
    findings = []
    params = {"now": now, "slack": SCHEDULER_SLACK, "grace": grace_period}
    for check in CHECKS:
        query = text(f"SELECT * FROM ({check.sql}) AS found LIMIT :examples")  # noqa: S608
        used = {key: value for key, value in params.items() if f":{key}" in check.sql}
        rows = (await session.execute(query, {**used, "examples": examples})).all()
        if rows:
            findings.append(Finding(check, [(str(row[0]), str(row[1])) for row in rows]))
    return findings
