"""The scheduler: a Procrastinate app on billing's own PostgreSQL, and the periodic jobs.

Every job is an ordinary async function (in its domain's ``tasks.py``) that claims its rows
with ``FOR UPDATE SKIP LOCKED``, so any number of workers can run on any number of
machines; Procrastinate only decides *when* they run. ``billing jobs run NAME`` calls the
same functions directly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.catalog.tasks import run_sync_roles
from billing.checkout.providers.registry import Providers
from billing.checkout.renewals import renew_subscriptions
from billing.checkout.tasks import expire_invoices, reconcile_payments
from billing.clock import Clock
from billing.config import Settings
from billing.db import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    describe_database_error,
    is_database_unavailable,
    libpq_url,
)
from billing.migrations import SchemaBehind, check_schema_current
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
    providers: Providers


Job = Callable[[Runtime], Awaitable[dict[str, int]]]


async def _reconcile_payments(rt: Runtime) -> dict[str, int]:
    return await reconcile_payments(
        rt.sessions, rt.providers, now=rt.clock.now(), settings=rt.settings
    )


async def _renew_subscriptions(rt: Runtime) -> dict[str, int]:
    return await renew_subscriptions(
        rt.sessions, rt.providers, now=rt.clock.now(), settings=rt.settings
    )


async def _expire_invoices(rt: Runtime) -> dict[str, int]:
    return await expire_invoices(rt.sessions, now=rt.clock.now())


async def _remind_expiring(rt: Runtime) -> dict[str, int]:
    return await remind_expiring(rt.sessions, now=rt.clock.now(), settings=rt.settings)


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
    "renew-subscriptions": (_renew_subscriptions, "* * * * *"),
    "deliver-outbox": (_deliver_outbox, "* * * * * */10"),
    "sync-roles": (_sync_roles, "*/5 * * * *"),
}
JOB_NAMES = tuple(SCHEDULE)


def build_queue(database_url: str) -> procrastinate.App:
    """A Procrastinate app on billing's database with every job on its schedule."""
    connector = procrastinate.PsycopgConnector(
        conninfo=libpq_url(database_url),
        min_size=1,
        max_size=4,
        # An outage is noticed in seconds, not after psycopg_pool's default 30 s wait.
        kwargs={"connect_timeout": CONNECT_TIMEOUT},
        timeout=POOL_TIMEOUT,
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


class WorkerStopped(Exception):
    """A fault the worker cannot ride out: starting again would meet it again."""


# Seconds between restarts after a failure; the last one repeats for as long as it takes.
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
# A run that lasted this long was healthy: the next failure starts the delays over.
HEALTHY_RUN = 60.0


async def run_worker(runtime: Runtime, *, install_signal_handlers: bool) -> None:
    """Run the scheduler and job worker until cancelled, or (``install_signal_handlers``,
    standalone) until SIGTERM/SIGINT, which let running jobs finish and then return.

    A database outage stops Procrastinate's worker (its listener, heartbeat or job fetch
    fails and it shuts down); it is started again, with back-off and a log line per
    attempt, for as long as the outage lasts. Only a fault that a restart cannot cure
    raises ``WorkerStopped``: a schema that is behind (checked before every start).
    """
    if not install_signal_handlers:
        await _supervise(runtime)
        return
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    signalled = False

    def stop() -> None:  # a second signal cancels the running jobs too
        nonlocal signalled
        if not signalled:
            log.info("worker: stop requested, letting running jobs finish")
        signalled = True
        main.cancel()

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop)
    try:
        await _supervise(runtime)
    except asyncio.CancelledError:
        if not signalled:
            raise
        main.uncancel()
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


async def run_in_process_worker(runtime: Runtime) -> str:
    """The worker inside ``billing serve``, until cancelled. A fault it cannot ride out is
    logged and ends it, answering why (``/ready`` then says so); the API keeps serving."""
    try:
        await run_worker(runtime, install_signal_handlers=False)
    except WorkerStopped as stopped:
        log.error("the in-process worker stopped: %s", stopped)
        return str(stopped)
    raise AssertionError("run_worker returns only when signalled, and serve gives no signals")


async def _supervise(runtime: Runtime) -> None:
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await _check_schema(runtime)
            if failures:
                log.info("worker: the database answers again, starting the worker")
            await _run_procrastinate(runtime)
            problem = "the worker stopped by itself (a side task failed)"
        except SchemaBehind as behind:
            raise WorkerStopped(str(behind)) from behind
        except Exception as error:
            if outage := _database_unavailable(error):
                problem = f"database unavailable: {describe_database_error(outage)}"
            else:  # not an outage: worth its stack trace, then a restart all the same
                log.exception("worker: unexpected failure")
                problem = f"{type(error).__name__}: {error}"
        if time.monotonic() - started >= HEALTHY_RUN:
            failures = 0
        delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
        failures += 1
        log.warning("worker: %s; restart %d in %.0f s", problem, failures, delay)
        await asyncio.sleep(delay)


def _database_unavailable(error: BaseException) -> BaseException | None:
    """The connection failure behind ``error``, if any (Procrastinate wraps the driver's
    errors in its own ``ConnectorException``)."""
    cause: BaseException | None = error
    while cause is not None:
        if is_database_unavailable(cause):
            return cause
        cause = cause.__cause__
    return None


async def _check_schema(runtime: Runtime) -> None:
    async with runtime.sessions() as session:
        connection = await session.connection()
        await connection.run_sync(check_schema_current)


async def _run_procrastinate(runtime: Runtime) -> None:
    """One life of Procrastinate's worker, on a connection pool of its own (a fresh one
    each time: connections broken by an outage go with the old one)."""
    assert runtime.settings.database_url is not None
    queue = build_queue(runtime.settings.database_url)
    options: dict[str, Any] = {
        "additional_context": {"runtime": runtime},
        "install_signal_handlers": False,  # run_worker handles signals
        "name": "billing-worker",
    }
    async with queue.open_async():
        await queue.run_worker_async(**options)
