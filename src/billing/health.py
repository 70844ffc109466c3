"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from billing.dependencies import SessionDep
from billing.errors import problem_response

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready", response_model=None)
async def ready(request: Request, session: SessionDep) -> dict[str, str] | JSONResponse:
    """The database answers; a load balancer sends traffic only when this is 200."""
    try:
        await session.execute(text("SELECT 1"))
    except Exception as error:  # any failure to reach the database means "not ready"
        return problem_response(
            request, 503, "database_unavailable", f"database unreachable: {type(error).__name__}"
        )
    return {"status": "ready"}
