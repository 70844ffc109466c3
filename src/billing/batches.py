"""Bounded batch processing for scheduler jobs, safe with any number of workers at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, all_, bindparam, inspect, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import is_database_unavailable, transaction

log = logging.getLogger(__name__)

Row = TypeVar("Row")

# A run ends even if rows keep arriving; the next run continues.
MAX_BATCHES = 200


@dataclass
class BatchReport:
    handled: int = 0
    failed: int = 0  # rolled back, logged with the row's id, left for the next run


async def for_each_claimed(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[Any],
    handle: Callable[[AsyncSession, Row], Awaitable[None]],
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
    mapper = inspect(query.column_descriptions[0]["entity"])
    [key] = mapper.primary_key
    failed_ids: list[Any] = []
    not_failed = key != all_(bindparam("failed_ids", type_=ARRAY(key.type)))
    report = BatchReport()
    for _ in range(max_batches):
        pending = query.where(not_failed).params(failed_ids=failed_ids) if failed_ids else query
        async with transaction(sessions) as session:
            claimed = pending.limit(batch_size).with_for_update(skip_locked=True)
            batch = list(await session.scalars(claimed))
            try:
                # The whole batch in one savepoint: the common case costs no more round trips
                # than without bad-row handling.
                async with session.begin_nested():
                    for row in batch:
                        await handle(session, row)
                report.handled += len(batch)
            except Exception as error:
                if is_database_unavailable(error):
                    raise
                # Some row is bad: the batch's savepoint is rolled back; redo it row by row
                # (re-read, as the rollback expired what the first pass changed).
                ids = [inspect(row).identity[0] for row in batch]
                again = query.column_descriptions[0]["entity"]
                rows = await session.scalars(
                    select(again)
                    .where(key.in_(ids))
                    .order_by(key)
                    .execution_options(populate_existing=True)
                )
                for row in rows:
                    await _handle_alone(session, row, handle, mapper, failed_ids, report)
        if len(batch) < batch_size:
            break
    return report


async def _handle_alone(
    session: AsyncSession,
    row: Any,
    handle: Callable[[AsyncSession, Any], Awaitable[None]],
    mapper: Any,
    failed_ids: list[Any],
    report: BatchReport,
) -> None:
    row_id = inspect(row).identity[0]
    try:
        async with session.begin_nested():
            await handle(session, row)
    except Exception as error:
        if is_database_unavailable(error):
            raise
        log.exception("%s %s failed, left for the next run", mapper.local_table.name, row_id)
        failed_ids.append(row_id)
        report.failed += 1
    else:
        report.handled += 1
