"""Pooled connections the server dropped are replaced before use once they sat idle
(``db.PING_AFTER_IDLE``), without a ping on every checkout."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billing.db import PING_AFTER_IDLE, create_engine, is_database_unavailable, libpq_url


def terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_an_idle_connection_the_server_dropped_is_replaced(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        terminate(database_url, first)  # a restart or a failover, as far as this pool knows
        await asyncio.sleep(PING_AFTER_IDLE + 0.5)

        async with engine.connect() as connection:
            second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await engine.dispose()


async def test_a_connection_dropped_while_busy_fails_as_unavailable_once(
    database_url: str,
) -> None:
    """Within the idle second there is no ping: the request meets the dropped connection,
    which counts as the database being unavailable (a 503), and the next one is served."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        terminate(database_url, first)

        with pytest.raises(DBAPIError) as failed:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert is_database_unavailable(failed.value)

        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
