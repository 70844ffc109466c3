"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from billing.dependencies import SessionDep
from billing.errors import DATABASE_UNAVAILABLE, WORKER_STOPPED, problem_response, problems

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready", response_model=None, responses=problems(WORKER_STOPPED))
async def ready(request: Request, session: SessionDep) -> dict[str, str] | JSONResponse:
    """The database answers (and the in-process worker, if any, is still running); a load
    balancer sends traffic only when this is 200."""
    try:
        await session.execute(text("SELECT 1"))
    except Exception as error:  # any failure to reach the database means "not ready"
        return problem_response(
            request,
            DATABASE_UNAVAILABLE.status,
            DATABASE_UNAVAILABLE.code,
            f"database unreachable: {type(error).__name__}",
        )
    worker: asyncio.Task[str] | None = getattr(request.app.state, "worker", None)
    if worker is not None and worker.done() and not worker.cancelled():
        # It rides out outages by itself; done means a fault no restart cures.
        return problem_response(
            request,
            WORKER_STOPPED.status,
            WORKER_STOPPED.code,
            f"the in-process worker stopped: {worker.result()}",
        )
    return {"status": "ready"}
