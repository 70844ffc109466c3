"""Test fixtures: a real PostgreSQL for the session, a clean database for every test.

The server is the one named by ``BILLING_TEST_DATABASE_URL`` when set (CI points it at the
machine's PostgreSQL), otherwise an embedded one started for this test session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.auth import issue_token
from billing.clock import FrozenClock
from billing.config import Settings
from billing.db import EmbeddedPostgres, create_engine, libpq_url, session_factory
from billing.migrations import upgrade
from billing.models import Base
from tests.private_postgres import server_directory

TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def with_database(server_url: str, name: str) -> str:
    """The same server URL, naming another database (keeps ``?host=`` and credentials)."""
    head, _, query = libpq_url(server_url).partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("BILLING_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    # As root the server runs as another user, who must reach its directory: not under
    # pytest's own (which any other pytest session resets to mode 700).
    with server_directory(tmp_path_factory.mktemp("embedded-pg")) as directory:
        embedded = EmbeddedPostgres(directory)
        try:
            yield embedded.start()
        finally:
            embedded.stop()


def create_database(server_url: str, prefix: str = "billing_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    name = libpq_url(database_url).partition("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(libpq_url(server_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A database of this test session (one per xdist worker), migrated to head."""
    url = create_database(server_url)
    upgrade(url)
    yield url
    drop_database(server_url, url)


@pytest.fixture(autouse=True)
def clean_tables(request: pytest.FixtureRequest) -> None:
    """Every test that touches the database starts from empty tables."""
    if "database_url" not in request.fixturenames:
        return
    url = request.getfixturevalue("database_url")
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with psycopg.connect(libpq_url(url), autocommit=True) as connection:
        connection.execute(f"TRUNCATE {tables}, procrastinate_jobs RESTART IDENTITY CASCADE")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def provider_name() -> str:
    """The payment provider of the app under test; tests that must pass with every provider
    parametrise it (``tests.integration.checkout_helpers.both_providers``)."""
    return "yookassa"


@pytest.fixture
def settings(database_url: str, tmp_path: Path, provider_name: str) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://billing.test",
        provider=provider_name,
    )


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Outgoing calls of the app under test: to its own public URL (the sandbox provider, its
    notifications) they go back into the app in-process; anything else goes out for real
    (respx intercepts it in tests that fake other services)."""

    def __init__(self, public_host: str) -> None:
        self.public_host = public_host
        self.app: FastAPI | None = None
        self.network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self.public_host:
            assert self.app is not None
            return await httpx.ASGITransport(app=self.app).handle_async_request(request)
        return await self.network.handle_async_request(request)


@pytest.fixture
async def app(settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    loopback = LoopbackTransport(public_host="billing.test")
    application = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = application
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
        yield http


@pytest.fixture
def auth_headers(settings: Settings) -> Callable[..., dict[str, str]]:
    """``auth_headers(user_id, "admin")`` → an Authorization header for that principal."""

    def make(subject: uuid.UUID | str, *roles: str) -> dict[str, str]:
        # The Auth service's tokens carry the viewer's e-mail (receipts go there).
        token = issue_token(settings, str(subject), roles, email=f"{subject}@example.com")
        return {"Authorization": f"Bearer {token}"}

    return make
