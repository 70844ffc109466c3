"""Bounded batch processing for scheduler jobs, safe with any number of workers at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Row, Select, all_, bindparam, inspect, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import is_database_unavailable, transaction

log = logging.getLogger(__name__)

Item = TypeVar("Item")

# A run ends even if rows keep arriving; the next run continues.
MAX_BATCHES = 200


@dataclass
class BatchReport:
    handled: int = 0
    failed: int = 0  # rolled back, logged with the row's id, left for the next run


async def for_each_claimed(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[Any],
    handle: Callable[[AsyncSession, Item], Awaitable[None]],
    *,
    batch_size: int,
    max_batches: int = MAX_BATCHES,
) -> BatchReport:
    """Claim the rows of ``query`` (one mapped entity) a batch at a time and handle each in
    the claiming transaction; answers how many were handled and how many failed.

    ``FOR UPDATE SKIP LOCKED`` lets concurrent workers split the rows between them, and a
    worker that dies mid-batch releases its rows with its transaction. ``handle`` must take
    each row out of ``query``'s reach (change its status, stamp it), or the next batch
    would claim it again. Memory holds one batch, whatever the table's size.

    One bad row never stops the batch: a batch is handled in one savepoint, and if a row
    raises, the batch is handled again row by row, each in its own savepoint; the bad row is
    rolled back alone, logged with its id, counted, and not claimed again in this run (it
    stays in ``query``'s reach for the next run). A database outage is no bad row: it ends
    the run, to be retried whole.
    """
    entity = query.column_descriptions[0]["entity"]
    [key] = inspect(entity).primary_key

    async def claim(session: AsyncSession, claimed: Select[Any]) -> list[Any]:
        return list(await session.scalars(claimed))

    async def handle_each(session: AsyncSession, rows: Sequence[Item]) -> None:
        for row in rows:
            await handle(session, row)

    async def reread(session: AsyncSession, rows: Sequence[Any]) -> list[Any]:
        # The rollback expired what the first pass changed on the objects.
        again = select(entity).where(key.in_([identity_of(row) for row in rows]))
        populated = again.order_by(key).execution_options(populate_existing=True)
        return list(await session.scalars(populated))

    def identity_of(row: Any) -> Any:
        return inspect(row).identity[0]

    return await _claim_batches(
        sessions, query, key, claim, handle_each, reread, identity_of, batch_size, max_batches
    )


async def for_each_claimed_batch(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[*tuple[Any, ...]],
    handle_batch: Callable[[AsyncSession, Sequence[Row[Any]]], Awaitable[None]],
    *,
    batch_size: int,
    max_batches: int = MAX_BATCHES,
) -> BatchReport:
    """``for_each_claimed`` for set-based handlers: ``query`` selects columns (Core rows, no
    ORM objects; the first column is the table's primary key) and ``handle_batch`` gets the
    whole claimed batch at once, to change it with one statement per kind of change (an
    ``UPDATE … WHERE id = ANY(…)``, one multi-row ``INSERT`` of its events).

    The guarantees are ``for_each_claimed``'s: ``SKIP LOCKED`` splits the rows between
    workers, and if the batch raises, its savepoint is rolled back and ``handle_batch`` is
    called again with one row at a time, each in its own savepoint, so a bad row is
    rolled back alone, logged, counted as failed and left for the next run.
    """
    key = query.selected_columns[0]

    async def claim(session: AsyncSession, claimed: Select[Any]) -> list[Any]:
        return list(await session.execute(claimed))

    async def reread(session: AsyncSession, rows: Sequence[Any]) -> Sequence[Any]:
        # Rows are values read under our lock; the rolled-back savepoint left them true.
        return rows

    return await _claim_batches(
        sessions,
        query,
        key,
        claim,
        handle_batch,
        reread,
        lambda row: row[0],
        batch_size,
        max_batches,
    )


async def _claim_batches(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[Any],
    key: ColumnElement[Any],
    claim: Callable[[AsyncSession, Select[Any]], Awaitable[list[Any]]],
    handle_batch: Callable[[AsyncSession, Sequence[Any]], Awaitable[None]],
    reread: Callable[[AsyncSession, Sequence[Any]], Awaitable[Sequence[Any]]],
    identity_of: Callable[[Any], Any],
    batch_size: int,
    max_batches: int,
) -> BatchReport:
    failed_ids: list[Any] = []
    not_failed = key != all_(bindparam("failed_ids", type_=ARRAY(key.type)))
    report = BatchReport()
    for _ in range(max_batches):
        pending = query.where(not_failed).params(failed_ids=failed_ids) if failed_ids else query
        async with transaction(sessions) as session:
            claimed = pending.limit(batch_size).with_for_update(skip_locked=True)
            batch = await claim(session, claimed)
            if not batch:
                break  # nothing left: no empty statements for the handler to send
            try:
                # The whole batch in one savepoint: the common case costs no more round trips
                # than without bad-row handling.
                async with session.begin_nested():
                    await handle_batch(session, batch)
                report.handled += len(batch)
            except Exception as error:
                if is_database_unavailable(error):
                    raise
                # Some row is bad: the batch's savepoint is rolled back; redo it row by row.
                for row in await reread(session, batch):
                    await _handle_alone(
                        session, row, identity_of(row), handle_batch, key, failed_ids, report
                    )
        if len(batch) < batch_size:
            break
    return report


async def _handle_alone(
    session: AsyncSession,
    row: Any,
    row_id: Any,
    handle_batch: Callable[[AsyncSession, Sequence[Any]], Awaitable[None]],
    key: ColumnElement[Any],
    failed_ids: list[Any],
    report: BatchReport,
) -> None:
    try:
        async with session.begin_nested():
            await handle_batch(session, [row])
    except Exception as error:
        if is_database_unavailable(error):
            raise
        table = key.table.name
        log.exception("%s %s failed, left for the next run", table, row_id)
        failed_ids.append(row_id)
        report.failed += 1
    else:
        report.handled += 1
