"""`billing verify`: quiet on an honest database, names what is wrong on a broken one."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.db import libpq_url
from billing.verify import verify
from tests.e2e.test_serve_process import BILLING, environment
from tests.integration.checkout_helpers import add_tariff, make_viewer

Sessions = async_sessionmaker[AsyncSession]


async def findings(sessions: Sessions, clock: FrozenClock) -> dict[str, list[tuple[str, str]]]:
    async with sessions() as session:
        found = await verify(session, now=clock.now(), grace_period=timedelta(days=2))
    return {finding.check.name: finding.rows for finding in found}


async def test_a_busy_honest_database_has_no_findings(
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    await viewer.paid(tariff.id, months=1)
    refunded = await viewer.paid(tariff.id, months=2)
    assert (
        await client.post(f"/api/v1/payments/{refunded['id']}/refund", headers=viewer.headers)
    ).status_code == 200
    await viewer.issue_invoice(tariff.id)  # open
    assert await findings(sessions, clock) == {}


async def test_each_broken_invariant_is_named(
    client: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
    clock: FrozenClock,
    database_url: str,
    tmp_path: Path,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    payment = await viewer.paid(tariff.id)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as db:
        db.execute("UPDATE invoices SET status = 'open' WHERE id = %s", (payment["invoice_id"],))
        db.execute(
            "INSERT INTO promo_codes (id, code, percent, redemptions_count)"
            " VALUES (%s, 'GHOST', 5, 3)",
            (uuid.uuid4(),),
        )
        db.execute("UPDATE outbox_events SET status = 'failed', last_error = '410 Gone'")

    found = await findings(sessions, clock)
    assert set(found) == {
        "paid-payment-has-paid-invoice",
        "promo-count-matches-redemptions",
        "outbox-none-parked",
    }
    assert found["paid-payment-has-paid-invoice"] == [
        (payment["id"], "succeeded payment, invoice open")
    ]
    assert found["promo-count-matches-redemptions"][0][1] == "GHOST: count 3, live 0"

    clock.advance(timedelta(days=40))  # nobody ran the scheduler for weeks
    assert "subscription-not-overdue" in await findings(sessions, clock)

    process = await asyncio.create_subprocess_exec(
        BILLING,
        "verify",
        env=environment(tmp_path, BILLING_DATABASE_URL=database_url),
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 1
    assert "FAIL promo-count-matches-redemptions" in stdout.decode()
    assert "GHOST: count 3, live 0" in stdout.decode()


def test_verify_command_on_an_empty_database(database_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [BILLING, "verify"],
        env=environment(tmp_path, BILLING_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "OK: no findings")
