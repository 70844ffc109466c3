"""Database access: URLs, the async engine and sessions, the embedded PostgreSQL server."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), pool_pre_ping=True, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: responses are built from objects after their transaction commits.
    return async_sessionmaker(engine, expire_on_commit=False)


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
