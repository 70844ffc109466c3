"""Bounded batch processing for scheduler jobs, safe with any number of workers at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction

Row = TypeVar("Row")

# A run ends even if rows keep arriving; the next run continues.
MAX_BATCHES = 200


async def for_each_claimed(
    sessions: async_sessionmaker[AsyncSession],
    query: Select[Any],
    handle: Callable[[AsyncSession, Row], Awaitable[None]],
    *,
    batch_size: int,
    max_batches: int = MAX_BATCHES,
) -> int:
    """Claim the rows of ``query`` a batch at a time and handle each in the claiming
    transaction; answers how many were handled.

    ``FOR UPDATE SKIP LOCKED`` lets concurrent workers split the rows between them, and a
    worker that dies mid-batch releases its rows with its transaction. ``handle`` must take
    each row out of ``query``'s reach (change its status, stamp it), or the next batch
    would claim it again. Memory holds one batch, whatever the table's size.
    """
    handled = 0
    for _ in range(max_batches):
        async with transaction(sessions) as session:
            claimed = query.limit(batch_size).with_for_update(skip_locked=True)
            batch = list(await session.scalars(claimed))
            for row in batch:
                await handle(session, row)
        handled += len(batch)
        if len(batch) < batch_size:
            break
    return handled
