"""The subscription jobs change their rows set-based per batch (one UPDATE, one multi-row
INSERT of events): they must write exactly what the per-row ORM path wrote, row for row and
event for event, and two runs at once must split the rows, never both take one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.batches import for_each_claimed
from billing.config import Settings
from billing.db import libpq_url
from billing.models import Subscription, SubscriptionStatus
from billing.outbox.events import RoleRevoke, SubscriptionExpired, SubscriptionExpiring
from billing.outbox.service import add_event
from billing.pricing.service import quote_for
from billing.subscriptions import tasks
from billing.subscriptions.periods import access_until
from billing.subscriptions.renewal_rules import next_charge_at
from billing.subscriptions.tasks import expire_subscriptions, remind_expiring
from tests.integration.checkout_helpers import add_tariff

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=2)
REMIND_BEFORE = timedelta(days=3)
FILLED_AT = NOW - timedelta(days=40)


# The per-row path the jobs had before (ORM objects, add_event per row), kept here as the
# reference the set-based path is compared with.


async def remind_per_row(sessions: Sessions, settings: Settings) -> dict[str, int]:
    async def remind(session: AsyncSession, subscription: Subscription) -> None:
        subscription.reminded_for_period_end = subscription.current_period_end
        renewal = None
        if subscription.auto_renew and subscription.payment_method_id is not None:
            priced = await quote_for(
                session,
                user_id=subscription.user_id,
                tariff_id=subscription.tariff_id,
                months=subscription.renewal_months or 1,
                promo_code=None,
                now=NOW,
                settings=settings,
            )
            renewal = priced.quote
        renews_at = next_charge_at(
            subscription.current_period_end, subscription.renewal_retry_at, settings.renew_before
        )
        add_event(
            session,
            SubscriptionExpiring(
                subscription_id=subscription.id,
                tariff_id=subscription.tariff_id,
                role=subscription.role,
                current_period_end=subscription.current_period_end,
                auto_renew=renewal is not None,
                renewal_amount=renewal.total_amount if renewal else None,
                currency=renewal.currency if renewal else None,
                renews_at=renews_at if renewal else None,
            ),
            user_id=subscription.user_id,
            occurred_at=NOW,
        )

    due = select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE,
        Subscription.current_period_end > NOW,
        Subscription.current_period_end <= NOW + settings.remind_before,
        Subscription.reminded_for_period_end.is_distinct_from(Subscription.current_period_end),
    )
    done = await for_each_claimed(
        sessions, due.order_by(Subscription.current_period_end), remind, batch_size=500
    )
    return {"reminded": done.handled, "failed": done.failed}


async def expire_per_row(sessions: Sessions) -> dict[str, int]:
    async def start_grace(session: AsyncSession, subscription: Subscription) -> None:
        subscription.status = SubscriptionStatus.GRACE
        add_event(
            session,
            SubscriptionExpired(
                subscription_id=subscription.id,
                tariff_id=subscription.tariff_id,
                role=subscription.role,
                current_period_end=subscription.current_period_end,
                access_until=access_until(subscription.current_period_end, GRACE),
            ),
            user_id=subscription.user_id,
            occurred_at=NOW,
        )

    async def expire(session: AsyncSession, subscription: Subscription) -> None:
        subscription.status = SubscriptionStatus.EXPIRED
        add_event(
            session,
            RoleRevoke(role=subscription.role, subscription_id=subscription.id),
            user_id=subscription.user_id,
            occurred_at=NOW,
        )

    by_end = Subscription.current_period_end
    ended = select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE, by_end <= NOW
    )
    over = select(Subscription).where(
        Subscription.status == SubscriptionStatus.GRACE, by_end <= NOW - GRACE
    )
    to_grace = await for_each_claimed(sessions, ended.order_by(by_end), start_grace, batch_size=500)
    to_expired = await for_each_claimed(sessions, over.order_by(by_end), expire, batch_size=500)
    return {
        "grace": to_grace.handled,
        "expired": to_expired.handled,
        "failed": to_grace.failed + to_expired.failed,
    }


# Every kind of row the jobs meet: to remind (some renewing by themselves, one with a
# personal discount, one with a declined renewal's retry planned), to move to grace, to
# expire, and rows neither job may touch.
SUBSCRIPTIONS = """
INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,
                           reminded_for_period_end, auto_renew, payment_method_id,
                           renewal_months, renewal_retry_at, created_at, updated_at)
SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s, 'premium', kind.status,
       %(now)s + kind.end_in + n * interval '1.5 seconds',
       CASE WHEN kind.reminded THEN %(now)s + kind.end_in + n * interval '1.5 seconds' END,
       kind.renews, CASE WHEN kind.renews THEN %(method)s::uuid END,
       CASE WHEN kind.renews THEN 3 END,
       CASE WHEN kind.retry THEN %(now)s + interval '5 hours' END,
       %(filled)s, %(filled)s
FROM (VALUES ('active', interval '1 day', false, false, false, 7),     -- remind
             ('active', interval '2 days', false, true, false, 4),     -- remind, renews
             ('active', interval '20 hours', false, true, true, 2),   -- remind, retry planned
             ('active', interval '1 day', true, false, false, 3),     -- already reminded
             ('active', interval '20 days', false, false, false, 3),  -- far from its end
             ('active', interval '-1 hour', true, false, false, 6),   -- ended: to grace
             ('grace', interval '-1 day', true, false, false, 2),     -- in grace
             ('grace', interval '-3 days', true, true, false, 5),     -- grace over: expire
             ('expired', interval '-60 days', true, false, false, 3)) -- long over
     AS kind(status, end_in, reminded, renews, retry, count),
     generate_series(1, kind.count) AS n
"""


@contextmanager
def connected(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        yield connection


async def fill(database_url: str, sessions: Sessions) -> None:
    tariff = await add_tariff(sessions)
    with connected(database_url) as connection:
        # The reminder only reads that a subscription has a saved method; the method's own
        # rows (its consent payment, that payment's invoice) are beside the point here, so
        # the foreign key is not enforced while filling.
        connection.execute("SET session_replication_role = replica")
        connection.execute(
            SUBSCRIPTIONS,
            {"tariff": tariff.id, "now": NOW, "method": uuid.uuid4(), "filled": FILLED_AT},
        )
        connection.execute("SET session_replication_role = DEFAULT")
        # One renewing viewer has a personal discount: the reminder's amount must show it.
        connection.execute(
            "INSERT INTO user_discounts (user_id, percent, valid_until) SELECT user_id, 15, NULL"
            " FROM subscriptions WHERE auto_renew AND status = 'active'"
            " ORDER BY current_period_end LIMIT 1"
        )


def state(database_url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every subscription (changed or not) and every event, without what is random per
    write (event ids, commit order)."""
    with connected(database_url) as connection:
        subscriptions = connection.execute(
            "SELECT id, status, reminded_for_period_end, updated_at > %(filled)s"
            " FROM subscriptions ORDER BY id",
            {"filled": FILLED_AT},
        ).fetchall()
        outbox = connection.execute(
            "SELECT type, user_id, payload, status, attempts, next_attempt_at, last_error,"
            " occurred_at, delivered_at FROM outbox_events ORDER BY type, user_id"
        ).fetchall()
    return subscriptions, outbox


def rows_as_filled(database_url: str) -> list[tuple[Any, ...]]:
    with connected(database_url) as connection:
        return connection.execute(
            "SELECT status, reminded_for_period_end, updated_at, id FROM subscriptions"
        ).fetchall()


def undo_jobs(database_url: str, filled: list[tuple[Any, ...]]) -> None:
    """Back to the filled state: the subscriptions as they were, no events."""
    with connected(database_url) as connection:
        connection.execute("DELETE FROM outbox_events")
        connection.cursor().executemany(
            "UPDATE subscriptions SET status = %s, reminded_for_period_end = %s,"
            " updated_at = %s WHERE id = %s",
            filled,
        )


async def test_the_set_based_jobs_write_what_the_per_row_path_wrote(
    database_url: str, sessions: Sessions, settings: Settings
) -> None:
    in_3_days = settings.model_copy(update={"remind_before": REMIND_BEFORE})
    await fill(database_url, sessions)
    filled = state(database_url)
    as_filled = rows_as_filled(database_url)

    assert await remind_per_row(sessions, in_3_days) == {"reminded": 13, "failed": 0}
    assert await expire_per_row(sessions) == {"grace": 6, "expired": 5, "failed": 0}
    per_row = state(database_url)
    undo_jobs(database_url, as_filled)
    assert state(database_url) == filled

    assert await remind_expiring(sessions, now=NOW, settings=in_3_days) == {
        "reminded": 13,
        "failed": 0,
    }
    assert await expire_subscriptions(sessions, now=NOW, grace_period=GRACE) == {
        "grace": 6,
        "expired": 5,
        "failed": 0,
    }
    set_based = state(database_url)
    assert set_based == per_row

    # What was compared is what a viewer is told: 13 reminders, 6 periods ended, 5 roles
    # revoked, and the renewing ones say what they will be charged, discount included.
    subscriptions, outbox = set_based
    assert [kind for kind, *_ in outbox].count("subscription.expiring") == 13
    assert [kind for kind, *_ in outbox].count("subscription.expired") == 6
    assert [kind for kind, *_ in outbox].count("role.revoke") == 5
    renewing = [payload for kind, _, payload, *_ in outbox if payload.get("auto_renew")]
    assert len(renewing) == 6
    amounts = [payload["renewal_amount"] for payload in renewing]
    assert min(amounts) < max(amounts)  # the personal discount
    retried_at = (NOW + timedelta(hours=5)).isoformat()
    assert [payload["renews_at"] for payload in renewing].count(retried_at) == 2
    # updated_at moved for exactly the 24 rows the jobs changed (the ORM's onupdate).
    assert sum(1 for *_, touched in subscriptions if touched) == 24


async def test_two_runs_at_once_split_the_rows_and_never_take_one_twice(
    database_url: str, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    tariff = await add_tariff(sessions)
    with connected(database_url) as connection:
        connection.execute(
            "INSERT INTO subscriptions (id, user_id, tariff_id, role, status, current_period_end,"
            " created_at, updated_at) SELECT gen_random_uuid(), gen_random_uuid(), %(tariff)s,"
            " 'premium', 'active', %(now)s - interval '3 days' - g * interval '1 second',"
            " %(now)s, %(now)s FROM generate_series(1, 2000) AS g",
            {"tariff": tariff.id, "now": NOW - timedelta(days=40)},
        )
    # Small batches, so the two runs take turns many times.
    monkeypatch.setattr(tasks, "BATCH_SIZE", 50)
    first, second = await asyncio.gather(
        expire_subscriptions(sessions, now=NOW, grace_period=GRACE),
        expire_subscriptions(sessions, now=NOW, grace_period=GRACE),
    )
    assert first["grace"] + second["grace"] == 2000
    assert first["expired"] + second["expired"] == 2000
    assert first["grace"] > 0 and second["grace"] > 0  # both worked: they split the rows
    assert first["failed"] == second["failed"] == 0
    with connected(database_url) as connection:
        per_subscription = connection.execute(
            "SELECT type, count(*), count(DISTINCT payload->>'subscription_id')"
            " FROM outbox_events GROUP BY type ORDER BY type"
        ).fetchall()
        statuses = connection.execute(
            "SELECT status, count(*) FROM subscriptions GROUP BY status"
        ).fetchall()
    # One event of each kind per subscription, none doubled.
    assert per_subscription == [("role.revoke", 2000, 2000), ("subscription.expired", 2000, 2000)]
    assert statuses == [("expired", 2000)]
