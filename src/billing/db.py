"""Database access: URLs, the async engine and sessions, the embedded PostgreSQL server."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)


def sqlalchemy_url(url: str) -> str:
    """An ordinary ``postgresql://`` URL, as SQLAlchemy's psycopg 3 dialect wants it."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise ValueError(f"not a PostgreSQL URL: {url.split('://')[0]}://…")


def libpq_url(url: str) -> str:
    """The same URL as libpq (psycopg, Procrastinate) reads it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# A request never waits for the database longer than a client waits for billing: with the
# database away a connection attempt fails within CONNECT_TIMEOUT (libpq's connect_timeout),
# a request finding the pool exhausted gives up after POOL_TIMEOUT, and either way the
# client gets a 503 at once instead of a hang (errors.py). POOL_SIZE + MAX_OVERFLOW bounds
# the connections one process opens (PostgreSQL's max_connections is shared by every API
# and worker process). A connection that sat idle in the pool is pinged before use and
# replaced if the server dropped it (a restart, a failover), so the pool recovers by itself
# once the database is back.
POOL_SIZE = 10
MAX_OVERFLOW = 10
POOL_TIMEOUT = 5  # seconds
CONNECT_TIMEOUT = 3  # seconds
# SQLAlchemy's pool_pre_ping pings on every checkout: 5 of the 30 round trips of a payment
# confirmation (bench/round_trips.py). A connection returned less than this long ago has
# just worked, so only connections idle for longer are pinged. A server that goes away
# within that second costs the requests already under way a 503, as any outage does, and
# the disconnect they meet makes SQLAlchemy discard every pooled connection.
PING_AFTER_IDLE = 1.0  # seconds


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    options: dict[str, Any] = {}
    if "poolclass" not in kwargs:  # NullPool and friends take no sizing
        options.update(pool_size=POOL_SIZE, max_overflow=MAX_OVERFLOW, pool_timeout=POOL_TIMEOUT)
    if "connect_timeout" not in url:  # an operator's own choice in the URL wins
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    engine = create_async_engine(sqlalchemy_url(url), **options | kwargs)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def idle_from_now(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # A new connection has no idle_since: it was just made, nothing to check.
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and retries the checkout with a fresh one.
            raise DisconnectionError(describe_database_error(error)) from error


def is_database_unavailable(error: BaseException) -> bool:
    """The database cannot be reached now (down, restarting, unreachable, or no connection
    left in the pool): a fault to answer 503 and retry later, not a bug or bad input."""
    if isinstance(error, (PoolTimeout, psycopg.OperationalError)):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, (OperationalError, InterfaceError))
    return False


def describe_database_error(error: BaseException) -> str:
    """One line for the log: the driver's message without SQL, parameters or links."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


class _Session(AsyncSession):
    async def close(self) -> None:
        try:
            await super().close()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            # The server went away while a transaction was open (an outage, a failover):
            # the server has rolled it back, and the connection is already discarded. A
            # request's session closes after its response is sent; raising here would make
            # the server drop the client's connection. Closing again finishes the job.
            log.warning(
                "connection lost before closing a session: %s", describe_database_error(error)
            )
            await super().close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: responses are built from objects after their transaction commits.
    return async_sessionmaker(engine, class_=_Session, expire_on_commit=False)


async def autocommit_statements(session: AsyncSession) -> None:
    """Each statement of this session is its own transaction, on an autocommit connection
    of the same pool: no BEGIN before it, no COMMIT or ROLLBACK after (a one-statement read:
    3 round trips become 1). For a session that only reads and needs no two reads to agree
    (the catalogue, entitlements, a viewer's own rows, a payment before its provider is
    asked), or whose one write is atomic by itself (a conditional ``UPDATE``). Call it
    first; never on a session whose changes must commit together."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One use case, one transaction: commits on success, rolls back on any exception."""
    async with sessions() as session, session.begin():
        yield session


class EmbeddedPostgres:
    """A PostgreSQL server shipped inside the ``pgserver`` wheel, its data in ``data_dir``.

    It listens on a Unix socket only. Whoever starts the server owns it: ``stop()`` shuts it
    down cleanly (a fast shutdown, as on SIGTERM) and starting again reuses the data. A
    process that finds it already running (``billing migrate`` beside ``billing serve``)
    uses it and leaves it running.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server: Any = None
        self._owned = False

    def start(self) -> str:
        # platformdirs (used by pgserver) warns when XDG_RUNTIME_DIR is unset, as in
        # containers and CI: harmless, and noise on every command.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._start()

    def _start(self) -> str:
        # Imported here: only the embedded mode needs pgserver.
        from pgserver import postgres_server
        from pgserver.utils import PostmasterInfo

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = PostmasterInfo.read_from_pgdata(self.pgdata)
        self._owned = running is None or not running.is_running()
        log.info(
            "%s embedded PostgreSQL in %s", "starting" if self._owned else "using", self.pgdata
        )
        # cleanup_mode=None: pgserver's own reference counting by pid is left out; the
        # ownership rule above decides who stops the server.
        self._server = postgres_server.get_server(self.pgdata, cleanup_mode=None)
        uri: str = self._server.get_uri()
        return uri

    def stop(self) -> None:
        if self._server is None:
            return
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        if self._owned:
            log.info("stopping embedded PostgreSQL")
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self._server.system_user)
        self._server = None
