"""The ``billing`` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
import uvloop
from pydantic import ValidationError

from billing.config import Settings, describe_error
from billing.db import (
    EmbeddedPostgres,
    create_engine,
    describe_database_error,
    is_database_unavailable,
    session_factory,
    transaction,
)
from billing.models import AdminRole
from billing.verify import Finding
from billing.worker import JOB_NAMES, Runtime

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(help="Subscription billing of the online cinema.", no_args_is_help=True)
admin_app = typer.Typer(help="Admin-panel accounts.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
jobs_app = typer.Typer(help="Scheduler jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

log = logging.getLogger("billing")


def load_settings() -> Settings:
    """Settings from the environment; a bad one stops here with one line naming it."""
    try:
        return Settings()
    except ValidationError as error:
        typer.echo(f"configuration error: {describe_error(error)}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def database(settings: Settings) -> Iterator[Settings]:
    """The settings with a database URL: the configured server, or the embedded one
    (started for the duration of the block and stopped cleanly after it)."""
    if not settings.uses_embedded_database:
        yield settings
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    url = embedded.start()
    try:
        yield settings.model_copy(update={"database_url": url})
    finally:
        embedded.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Procrastinate reports every periodic run at INFO (several a minute); ours say enough.
    logging.getLogger("procrastinate").setLevel(logging.WARNING)


def refuse_unless_schema_current(database_url: str) -> None:
    """A server database is migrated by ``billing migrate``, not by starting a process: a
    schema that is behind stops start-up with one line (exit 2, as a configuration error);
    a database that cannot be reached, with exit 1."""
    from billing.migrations import SchemaBehind, ensure_schema_current

    try:
        ensure_schema_current(database_url)
    except SchemaBehind as behind:
        typer.echo(str(behind), err=True)
        raise typer.Exit(2) from None
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        typer.echo(f"cannot reach the database: {describe_database_error(error)}", err=True)
        raise typer.Exit(1) from None


def api_from_environment() -> FastAPI:
    """The API of one of ``billing serve --workers N``'s processes (uvicorn's app factory):
    its settings come from the environment the parent prepared (database URL and public
    URL resolved there); never the scheduler, which runs in ``billing worker``."""
    from billing.app import create_app

    return create_app(load_settings(), with_worker=False, serving_process=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Don't run the scheduler in this process.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="API processes sharing the port; more than 1 needs --no-worker "
            "(run the scheduler with `billing worker`).",
        ),
    ] = 1,
) -> None:
    """Run the API, the admin panel and the sandbox (migrating an embedded database first);
    the scheduler runs in the same process unless --no-worker."""
    import uvicorn

    from billing.app import create_app
    from billing.http_limits import MAX_HEADER_BYTES
    from billing.migrations import upgrade

    _setup_logging()
    if workers > 1 and not no_worker:
        # One scheduler per API process would be N schedulers racing for the same periodic
        # runs; the scheduler is its own process (as many as needed) beside N API processes.
        typer.echo(
            "--workers above 1 needs --no-worker; run the scheduler with `billing worker`",
            err=True,
        )
        raise typer.Exit(2)
    settings = load_settings()
    if "public_url" not in settings.model_fields_set:
        # Nothing configured: the sandbox's pages and webhooks are wherever we listen.
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    with database(settings) as ready:
        assert ready.database_url is not None
        if settings.uses_embedded_database:
            upgrade(ready.database_url)
        else:
            refuse_unless_schema_current(ready.database_url)
        # uvicorn drains requests on SIGINT/SIGTERM and then raises the signal again; turning
        # SIGTERM into SystemExit lets the embedded database be stopped on the way out.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        if workers == 1:
            application: FastAPI | str = create_app(
                ready, with_worker=not no_worker, serving_process=True
            )
        else:
            # uvicorn starts each process afresh from an import string; they read their
            # settings from the environment, with the database (embedded one included) and
            # public URL resolved here.
            assert ready.database_url is not None
            os.environ["BILLING_DATABASE_URL"] = ready.database_url
            os.environ["BILLING_PUBLIC_URL"] = ready.public_url
            application = "billing.cli:api_from_environment"
        uvicorn.run(
            application,
            factory=workers > 1,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            # httptools (uvicorn's default) takes request headers of any size: a 4 MB header
            # reached the app. h11 refuses a head that grows past this bound.
            http="h11",
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            # The peer stays the peer: which proxies' X-Forwarded-For is believed is billing's
            # own rule (BILLING_TRUSTED_PROXIES), not uvicorn's default of trusting 127.0.0.1.
            proxy_headers=False,
        )


@asynccontextmanager
async def job_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """What the scheduler's jobs need, outside the API process."""
    from billing.app import OUTBOUND_TIMEOUT
    from billing.checkout.providers.registry import providers_from_settings
    from billing.clock import SystemClock

    assert settings.database_url is not None
    engine = create_engine(settings.database_url)
    try:
        async with httpx.AsyncClient(timeout=OUTBOUND_TIMEOUT) as outbound:
            yield Runtime(
                settings=settings,
                sessions=session_factory(engine),
                clock=SystemClock(),
                outbound=outbound,
                providers=providers_from_settings(settings, outbound),
            )
    finally:
        await engine.dispose()


@app.command()
def worker() -> None:
    """Run the scheduler and job worker alone (run as many as needed, on any machines)."""
    from billing.app import freeze_startup_objects
    from billing.worker import WorkerStopped, run_worker

    _setup_logging()
    settings = load_settings()

    async def work(ready: Settings) -> None:
        async with job_runtime(ready) as runtime:
            freeze_startup_objects()  # a long-lived process, as `billing serve`'s
            await run_worker(runtime, install_signal_handlers=True)

    with database(settings) as ready:
        try:
            # The loop `billing serve` runs too (uvicorn picks uvloop): psycopg's waits for
            # the database cost a third of asyncio's there, and the relay and the jobs are
            # a worker's CPU.
            uvloop.run(work(ready))
        except WorkerStopped as stopped:
            # Outages are ridden out; this is what a restart cannot cure (a schema behind).
            typer.echo(f"worker stopped: {stopped}", err=True)
            raise typer.Exit(2) from None


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(JOB_NAMES)}.")],
) -> None:
    """Run one scheduler job now and print what it did."""
    from billing.worker import run_job

    if name not in JOB_NAMES:
        typer.echo(f"unknown job {name!r}; jobs: {', '.join(JOB_NAMES)}", err=True)
        raise typer.Exit(2)
    settings = load_settings()

    async def run(ready: Settings) -> dict[str, int]:
        async with job_runtime(ready) as runtime:
            return await run_job(name, runtime)

    with database(settings) as ready:
        counts = uvloop.run(run(ready))  # as the worker runs its jobs
    typer.echo(f"{name}: " + " ".join(f"{key}={value}" for key, value in counts.items()))


@app.command()
def verify() -> None:
    """Check the database's invariants (money, periods, promo counts, outbox); exits 1 on
    any finding."""
    from billing.clock import SystemClock
    from billing.verify import verify as run_checks

    settings = load_settings()

    async def check(url: str) -> list[Finding]:
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                return await run_checks(
                    session, now=SystemClock().now(), grace_period=settings.grace_period
                )
        finally:
            await engine.dispose()

    with database(settings) as ready:
        assert ready.database_url is not None
        findings = asyncio.run(check(ready.database_url))
    for finding in findings:
        typer.echo(f"FAIL {finding.check.name}: {finding.check.meaning}")
        for row_id, description in finding.rows:
            typer.echo(f"     {row_id}  {description}")
    if findings:
        raise typer.Exit(1)
    typer.echo("OK: no findings")


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from billing.migrations import upgrade

    _setup_logging()
    settings = load_settings()
    with database(settings) as ready:
        assert ready.database_url is not None
        upgrade(ready.database_url)
    typer.echo("database is up to date")


@app.command()
def token(
    user: Annotated[str, typer.Option(help="The token's subject: a user UUID.")],
    role: Annotated[list[str] | None, typer.Option(help="A role to include (repeatable).")] = None,
    hours: Annotated[int, typer.Option(min=1, help="Lifetime in hours.")] = 12,
    email: Annotated[
        str | None, typer.Option(help="The email claim (receipts); default: made from --user.")
    ] = None,
) -> None:
    """Print a development JWT signed with the configured secret; it carries an ``email``
    claim, so fiscal receipts work against the sandbox."""
    from billing.auth import issue_token

    settings = load_settings()
    try:
        uuid.UUID(user)
    except ValueError:
        typer.echo("--user must be a UUID", err=True)
        raise typer.Exit(2) from None
    if settings.jwt_algorithm != "HS256":
        typer.echo(
            "billing token signs with the HS256 secret; RS256 tokens come from Auth", err=True
        )
        raise typer.Exit(2)
    address = email or f"{user}@example.com"
    typer.echo(issue_token(settings, user, role or [], ttl=timedelta(hours=hours), email=address))


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    role: Annotated[AdminRole, typer.Option(help="admin or marketing.")],
) -> None:
    """Create an admin-panel account (password asked, or read from stdin when piped)."""
    from billing.admin.service import create_admin_user
    from billing.errors import Problem

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    settings = load_settings()

    async def create(url: str) -> None:
        engine = create_engine(url)
        try:
            async with transaction(session_factory(engine)) as session:
                await create_admin_user(session, username, password, role)
        finally:
            await engine.dispose()

    with database(settings) as ready:
        assert ready.database_url is not None
        try:
            asyncio.run(create(ready.database_url))
        except Problem as problem:
            typer.echo(f"{problem.code}: {problem.detail}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"admin user {username!r} ({role.value}) created")


@admin_app.command("deactivate")
def admin_deactivate(username: Annotated[str, typer.Option(help="Login name.")]) -> None:
    """Deactivate an admin-panel account: it can no longer log in, and its sessions end now."""
    from billing.admin.service import deactivate_admin_user
    from billing.errors import Problem

    settings = load_settings()

    async def deactivate(url: str) -> None:
        engine = create_engine(url)
        try:
            async with transaction(session_factory(engine)) as session:
                await deactivate_admin_user(session, username, actor="cli")
        finally:
            await engine.dispose()

    with database(settings) as ready:
        assert ready.database_url is not None
        try:
            asyncio.run(deactivate(ready.database_url))
        except Problem as problem:
            typer.echo(f"{problem.code}: {problem.detail}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"admin user {username!r} deactivated; its sessions ended")


@app.command("demo-data")
def demo_data() -> None:
    """Create example tariffs, duration discounts and promo codes (safe to run again)."""
    from billing.clock import SystemClock
    from billing.demo import DemoDataReport, create_demo_data
    from billing.migrations import upgrade

    settings = load_settings()

    async def create(url: str) -> DemoDataReport:
        engine = create_engine(url)
        try:
            async with transaction(session_factory(engine)) as session:
                return await create_demo_data(
                    session, now=SystemClock().now(), currency=settings.currency
                )
        finally:
            await engine.dispose()

    with database(settings) as ready:
        assert ready.database_url is not None
        # As `billing serve` does: on a fresh laptop the embedded database has no tables yet.
        if settings.uses_embedded_database:
            upgrade(ready.database_url)
        report = asyncio.run(create(ready.database_url))
    for line in report.lines():
        typer.echo(line)


if __name__ == "__main__":
    app()
