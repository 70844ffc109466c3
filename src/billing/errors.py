"""Errors leave the API as RFC 9457 problem+json with a stable machine-readable ``code``.

Each error an operation can answer is declared once as an :class:`ApiError` (status, code,
title), near the domain that raises it (``catalog/errors.py``, ``checkout/errors.py``, …);
the code raises it (``raise TARIFF_NOT_FOUND()``) and the OpenAPI document lists it from
the same object (``responses=problems(TARIFF_NOT_FOUND)``, :mod:`billing.openapi`). The
errors below are the ones many routes share.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
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


@dataclass(frozen=True)
class ApiError:
    """One error the API can answer: what the OpenAPI document lists, and what is raised."""

    status: int
    code: str
    title: str  # what it means, in a few words: the documentation, and the default detail

    def __call__(self, detail: str | None = None, **extra: Any) -> Problem:
        """The exception to raise; ``detail`` says what happened this time."""
        return Problem(self.status, self.code, detail or self.title, **extra)


def not_found(what: str = "resource", code: str = "not_found") -> Problem:
    return Problem(404, code, f"{what} not found")


# Errors shared by many routes; billing.openapi adds them to each route that can give them.
UNAUTHORIZED = ApiError(401, "unauthorized", "a valid Bearer token is required")
FORBIDDEN = ApiError(403, "forbidden", "the token has none of the roles this needs")
PAYLOAD_TOO_LARGE = ApiError(413, "payload_too_large", "the request body is over 1 MiB")
VALIDATION_ERROR = ApiError(422, "validation_error", "a parameter or the body is invalid")
IDEMPOTENCY_KEY_REUSED = ApiError(
    409, "idempotency_key_reused", "the Idempotency-Key was used for another request"
)
DATABASE_UNAVAILABLE = ApiError(
    503, "database_unavailable", "the database is unreachable; try again shortly"
)
WORKER_STOPPED = ApiError(503, "worker_stopped", "the in-process worker stopped")


class ProblemDetails(BaseModel):
    """An error answer (RFC 9457), media type ``application/problem+json``."""

    type: str = Field(description="`urn:billing:problem:` and the code")
    title: str = Field(description="the HTTP status's phrase")
    status: int
    code: str = Field(description="stable and machine-readable: what to act on")
    detail: str = Field(description="what happened, for a human")
    instance: str = Field(description="the request's path")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: `body`, `query`, `path` or `header`, …")
    message: str
    type: str | None = None


class ValidationProblemDetails(ProblemDetails):
    """A 422: with ``errors`` listing each invalid field when the request's shape was wrong."""

    errors: list[FieldError] | None = None


def problems(*errors: ApiError) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: each status of ``errors`` as problem+json with its codes."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        add_problem(responses, error)
    return responses


def add_problem(responses: dict[Any, dict[str, Any]], error: ApiError) -> None:
    """Document ``error`` in an operation's ``responses``: its status's entry lists its
    code and title (an entry in another format, such as FastAPI's 422, is replaced)."""
    key = error.status if error.status in responses else str(error.status)
    entry = responses.get(key, {})
    schema = entry.get("content", {}).get(PROBLEM_JSON, {}).get("schema")
    codes: list[str] = schema["properties"]["code"]["enum"] if schema else []
    lines = entry["description"].splitlines() if schema else []
    line = f"- `{error.code}`: {error.title}"
    if line in lines:
        return
    lines.append(line)
    if error.code not in codes:
        codes.append(error.code)
    model = (
        ValidationProblemDetails if VALIDATION_ERROR.code in codes else ProblemDetails
    ).__name__
    responses[key] = {
        "description": "\n".join(lines),
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "allOf": [{"$ref": f"#/components/schemas/{model}"}],
                    "properties": {"status": {"const": error.status}, "code": {"enum": codes}},
                }
            }
        },
    }


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
        request,
        VALIDATION_ERROR.status,
        VALIDATION_ERROR.code,
        f"{where}: {first['message']}",
        errors=errors,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers 400 for a JSON body that is not UTF-8, 422 for one that is not
        # JSON: both are a body that is not JSON, so both are the documented 422.
        message = "the body is not UTF-8 JSON"
        error = {"loc": ["body"], "message": message, "type": "json_invalid"}
        return problem_response(
            request, VALIDATION_ERROR.status, VALIDATION_ERROR.code, f"body: {message}",
            errors=[error],
        )  # fmt: skip
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
            request,
            VALIDATION_ERROR.status,
            VALIDATION_ERROR.code,
            "text must not contain NUL (\\u0000) characters",
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
        request, DATABASE_UNAVAILABLE.status, DATABASE_UNAVAILABLE.code, DATABASE_UNAVAILABLE.title
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
