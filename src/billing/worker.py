"""The scheduler: a Procrastinate app on billing's own PostgreSQL, and the periodic jobs.

Every job is an ordinary async function (in its domain's ``tasks.py``) that claims its rows
with ``FOR UPDATE SKIP LOCKED``, so any number of workers can run on any number of
machines; Procrastinate only decides *when* they run. ``billing jobs run NAME`` calls the
same functions directly.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.tasks import run_sync_roles
from billing.checkout.providers.base import PaymentProvider
from billing.checkout.tasks import expire_invoices, reconcile_payments
from billing.clock import Clock
from billing.config import Settings
from billing.db import libpq_url
from billing.outbox.tasks import run_deliver_outbox
from billing.subscriptions.tasks import expire_subscriptions, remind_expiring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What jobs work with; built by the API process or by ``billing worker``."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    outbound: httpx.AsyncClient
    provider: PaymentProvider


Job = Callable[[Runtime], Awaitable[dict[str, int]]]


async def _reconcile_payments(rt: Runtime) -> dict[str, int]:
    return await reconcile_payments(rt.sessions, rt.provider, now=rt.clock.now())


async def _expire_invoices(rt: Runtime) -> dict[str, int]:
    return await expire_invoices(rt.sessions, now=rt.clock.now())


async def _remind_expiring(rt: Runtime) -> dict[str, int]:
    return await remind_expiring(
        rt.sessions, now=rt.clock.now(), remind_before=rt.settings.remind_before
    )


async def _expire_subscriptions(rt: Runtime) -> dict[str, int]:
    return await expire_subscriptions(
        rt.sessions, now=rt.clock.now(), grace_period=rt.settings.grace_period
    )


async def _deliver_outbox(rt: Runtime) -> dict[str, int]:
    return await run_deliver_outbox(rt.sessions, rt.settings, rt.outbound, rt.clock.now())


async def _sync_roles(rt: Runtime) -> dict[str, int]:
    return await run_sync_roles(rt.sessions, rt.settings, rt.outbound)


# name → (job, cron schedule; a sixth column is seconds)
SCHEDULE: dict[str, tuple[Job, str]] = {
    "reconcile-payments": (_reconcile_payments, "* * * * *"),
    "expire-invoices": (_expire_invoices, "* * * * *"),
    "remind-expiring": (_remind_expiring, "*/5 * * * *"),
    "expire-subscriptions": (_expire_subscriptions, "* * * * *"),
    "deliver-outbox": (_deliver_outbox, "* * * * * */10"),
    "sync-roles": (_sync_roles, "*/5 * * * *"),
}
JOB_NAMES = tuple(SCHEDULE)


def build_queue(database_url: str) -> procrastinate.App:
    """A Procrastinate app on billing's database with every job on its schedule."""
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(database_url), min_size=1, max_size=4
    )
    queue = procrastinate.App(connector=connector)
    for name, (job, cron) in SCHEDULE.items():
        _register(queue, name, job, cron)
    return queue


def _register(queue: procrastinate.App, name: str, job: Job, cron: str) -> None:
    async def run(context: procrastinate.JobContext, timestamp: int) -> None:
        runtime: Runtime = context.additional_context["runtime"]
        counts = await job(runtime)
        # Most runs find nothing to do; only runs that did something are worth a log line.
        log.log(logging.INFO if any(counts.values()) else logging.DEBUG, "job %s: %s", name, counts)

    # queueing_lock: a job that is already waiting is not queued again behind itself.
    task = queue.task(name=name, queueing_lock=name, pass_context=True)(run)
    queue.periodic(cron=cron, periodic_id=name)(task)


async def run_job(name: str, runtime: Runtime) -> dict[str, int]:
    """One job now, in this process (``billing jobs run NAME``)."""
    job, _ = SCHEDULE[name]
    return await job(runtime)


async def run_worker(runtime: Runtime, *, install_signal_handlers: bool) -> None:
    """Run the scheduler and job worker until cancelled (or signalled, standalone)."""
    assert runtime.settings.database_url is not None
    queue = build_queue(runtime.settings.database_url)
    options: dict[str, Any] = {
        "additional_context": {"runtime": runtime},
        "install_signal_handlers": install_signal_handlers,
        "name": "billing-worker",
    }
    async with queue.open_async():
        await queue.run_worker_async(**options)
