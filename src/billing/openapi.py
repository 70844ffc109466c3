"""The OpenAPI document tells the truth about errors.

Each route lists the errors of its own domain (``responses=problems(...)``); the errors
that come with what a route depends on are added here, once, from the route itself:

- a Bearer token (``current_principal``): 401 ``unauthorized``;
- a role check (``require_roles``): 403 ``forbidden``;
- a body: 413 ``payload_too_large``; parameters or a body: 422 ``validation_error``;
- an ``Idempotency-Key`` header: 409 ``idempotency_key_reused``;
- a database session: 503 ``database_unavailable``;
- the payment providers: 503 ``provider_unavailable``.

Every error is ``application/problem+json`` (``ProblemDetails``); FastAPI's own 422 schema
(``HTTPValidationError``), which is not what the API answers, is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic.json_schema import models_json_schema

from billing.auth import current_principal, require_roles
from billing.checkout.endpoints import get_providers
from billing.checkout.errors import PROVIDER_UNAVAILABLE
from billing.dependencies import get_read_session, get_session, get_sessions
from billing.errors import (
    DATABASE_UNAVAILABLE,
    FORBIDDEN,
    IDEMPOTENCY_KEY_REUSED,
    PAYLOAD_TOO_LARGE,
    UNAUTHORIZED,
    VALIDATION_ERROR,
    ApiError,
    ProblemDetails,
    ValidationProblemDetails,
    add_problem,
)
from billing.idempotency import IdempotencyKeyHeader

# Every role check is a closure of ``require_roles``: they share its code object.
_ROLE_CHECK = require_roles().dependency.__code__
_IDEMPOTENCY_KEY = get_args(IdempotencyKeyHeader)[1].alias  # "Idempotency-Key"


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) the document described above."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = error_complete_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_complete_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        webhooks=app.webhooks.routes,
    )
    # Routes of included routers come as contexts: the route with its router's prefix and
    # dependencies, as FastAPI's own get_openapi sees them.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            responses = document["paths"][route.path_format][method.lower()]["responses"]
            for error in errors_from_dependencies(route):
                add_problem(responses, error)
            document["paths"][route.path_format][method.lower()]["responses"] = dict(
                sorted(responses.items())
            )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    _, problem_schemas = models_json_schema(
        [(ProblemDetails, "serialization"), (ValidationProblemDetails, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    schemas.update(problem_schemas["$defs"])
    return document


def errors_from_dependencies(route: RouteContext) -> list[ApiError]:
    """The errors ``route`` can answer because of what it takes and depends on."""
    calls = set(_calls(route.dependant))
    codes = {getattr(call, "__code__", None) for call in calls}
    params = get_flat_params(route.dependant)
    errors = []
    if current_principal in calls:
        errors.append(UNAUTHORIZED)
    if _ROLE_CHECK in codes:
        errors.append(FORBIDDEN)
    if route.body_field is not None:
        errors.append(PAYLOAD_TOO_LARGE)
    if params or route.body_field is not None:
        errors.append(VALIDATION_ERROR)
    if any(param.alias == _IDEMPOTENCY_KEY for param in params):
        errors.append(IDEMPOTENCY_KEY_REUSED)
    if calls & {get_read_session, get_session, get_sessions}:
        errors.append(DATABASE_UNAVAILABLE)
    if get_providers in calls:
        errors.append(PROVIDER_UNAVAILABLE)
    return errors


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
