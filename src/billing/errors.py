"""Errors leave the API as RFC 9457 problem+json with a stable machine-readable ``code``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing.db import describe_database_error, is_database_unavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# Codes for plain HTTP errors raised by the framework (unknown route, wrong method, ...).
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class Problem(Exception):
    """A failure the client can act on: raised by services, rendered by the handler below."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def not_found(what: str = "resource", code: str = "not_found") -> Problem:
    return Problem(404, code, f"{what} not found")


def problem_response(
    request: Request, status: int, code: str, detail: str, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:billing:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        jsonable_encoder(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc.status, exc.code, exc.detail, **exc.extra)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(error.get("loc", ())),
            "message": error.get("msg", ""),
            "type": error.get("type"),
        }
        for error in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "message": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return problem_response(
        request, 422, "validation_error", f"{where}: {first['message']}", errors=errors
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    response = problem_response(request, exc.status_code, code, detail)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL text cannot hold NUL characters; any text field of any request may carry
    # one (`?entity_id=%00`), and it is the client's input that is wrong, not the server.
    if "NUL (0x00)" in str(getattr(exc, "orig", "")):
        return problem_response(
            request, 422, "validation_error", "text must not contain NUL (\\u0000) characters"
        )
    return await _on_unexpected(request, exc)


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_database_unavailable(exc):
        return await _on_unexpected(request, exc)
    # An outage fails every request at once: one line each, not a stack trace each.
    log.warning(
        "database unavailable on %s %s: %s",
        request.method,
        request.url.path,
        describe_database_error(exc),
    )
    response = problem_response(
        request, 503, "database_unavailable", "the database is unreachable; try again shortly"
    )
    response.headers["Retry-After"] = "5"
    return response


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The stack trace goes to the log, never to the client.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(DataError, _on_data_error)
    # Handled here, not by the catch-all below: Starlette re-raises what reaches the
    # catch-all, and uvicorn then logs a stack trace and drops the keep-alive connection.
    # OperationalError and InterfaceError are DBAPIErrors; psycopg's own errors arrive
    # unwrapped from code that uses the driver directly.
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(PoolTimeout, _on_database_error)
    app.add_exception_handler(psycopg.OperationalError, _on_database_error)
    app.add_exception_handler(Exception, _on_unexpected)
