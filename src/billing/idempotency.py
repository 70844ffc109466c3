"""``Idempotency-Key`` on creating POSTs: the same key and body get the same answer again.

The key is claimed in its own committed transaction before the work starts, so a concurrent
duplicate sees the claim (the unique constraint decides the race) instead of doing the work
twice. Answers below 500 are kept and replayed; a 5xx (say, the provider was down) releases
the key, so the client's retry really retries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.db import transaction
from billing.errors import IDEMPOTENCY_KEY_REUSED, VALIDATION_ERROR, Problem
from billing.models import IdempotencyKey

MAX_KEY_LENGTH = 255

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Same key and body → the same answer again",
    ),
]

Answer = tuple[int, Any]


def _fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(
        [method, path, jsonable_encoder(body)], sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(row: IdempotencyKey, fingerprint: str) -> Answer:
    if row.request_hash != fingerprint:
        raise IDEMPOTENCY_KEY_REUSED("this Idempotency-Key was used for another request")
    if row.response_status is None:
        raise IDEMPOTENCY_KEY_REUSED("a request with this Idempotency-Key is in progress")
    if row.response_status >= 400:
        body = row.response_body or {}
        raise Problem(row.response_status, body.get("code", "error"), body.get("detail", ""))
    return row.response_status, row.response_body


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    *,
    owner: str,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    run: Callable[[], Awaitable[Answer]],
) -> Answer:
    """Run ``run`` at most once per (owner, key); answers (status, JSON body)."""
    if key is None:
        return await run()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise VALIDATION_ERROR(f"Idempotency-Key: 1 to {MAX_KEY_LENGTH} characters")
    fingerprint = _fingerprint(method, path, body)
    async with transaction(sessions) as session:
        claimed = await session.scalar(
            insert(IdempotencyKey)
            .values(owner=owner, key=key, method=method, path=path, request_hash=fingerprint)
            .on_conflict_do_nothing(index_elements=["owner", "key"])
            .returning(IdempotencyKey.id)
        )
        if claimed is None:
            existing = await session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.owner == owner, IdempotencyKey.key == key
                )
            )
            assert existing is not None
            return _replay(existing, fingerprint)

    try:
        status, answer = await run()
    except Problem as problem:
        if problem.status >= 500:
            await _release(sessions, claimed)
        else:
            await _keep(
                sessions, claimed, problem.status, {"code": problem.code, "detail": problem.detail}
            )
        raise
    except BaseException:
        await _release(sessions, claimed)
        raise
    await _keep(sessions, claimed, status, jsonable_encoder(answer))
    return status, answer


async def respond_once(
    request: Request,
    sessions: async_sessionmaker[AsyncSession],
    *,
    owner: str,
    key: str | None,
    body: Any,
    run: Callable[[], Awaitable[Answer]],
) -> JSONResponse:
    """:func:`run_once` for an endpoint: the request names the method and path."""
    status, answer = await run_once(
        sessions,
        owner=owner,
        key=key,
        method=request.method,
        path=request.url.path,
        body=body,
        run=run,
    )
    return JSONResponse(answer, status_code=status)


async def _keep(
    sessions: async_sessionmaker[AsyncSession], claim: Any, status: int, body: Any
) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim)
            .values(response_status=status, response_body=body)
        )


async def _release(sessions: async_sessionmaker[AsyncSession], claim: Any) -> None:
    async with transaction(sessions) as session:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim))
