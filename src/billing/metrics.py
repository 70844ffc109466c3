"""Prometheus metrics: request counts and latencies by route template (not raw path).

The label is the full template of the route that answers — ``/api/v1/invoices/{invoice_id}``,
``/sandbox/v3/payments``, ``/docs``, ``/admin/{identity}/list`` — so ids don't explode the
label space and routes of different routers stay apart; ``unmatched`` is left for requests
no route answers (real 404s). FastAPI records in the scope only the route as declared,
without its router's prefix (and nothing for plain Starlette routes such as ``/docs``), so
the template is found here: the path is matched against the app's routes with their full
paths (``fastapi.routing.iter_route_contexts``), in the router's order, as the router does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "billing_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = Histogram(
    "billing_http_request_duration_seconds", "HTTP request latency", ["method", "route"]
)
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class RouteTemplate:
    regex: re.Pattern[str]
    label: str
    methods: frozenset[str] | None  # None: a mount, any method
    inner: tuple[RouteTemplate, ...] = ()  # a mount's own routes (the admin panel's)


def route_templates(routes: Sequence[BaseRoute], prefix: str = "") -> tuple[RouteTemplate, ...]:
    """The app's routes, flattened, each with its full template."""
    templates = []
    for route in iter_route_contexts(routes):
        regex = getattr(route, "path_regex", None)
        if regex is None:  # not matched by path (a Host route): never a label
            continue
        if isinstance(route.original_route, Mount):
            mounted = prefix + str(route.path)
            inner = route_templates(route.routes, mounted)
            templates.append(RouteTemplate(regex, mounted, None, inner))
        else:
            methods = getattr(route, "methods", None)
            label = prefix + str(route.path_format)
            templates.append(RouteTemplate(regex, label, frozenset(methods) if methods else None))
    return tuple(templates)


def _match(templates: Sequence[RouteTemplate], path: str, method: str) -> str | None:
    # As Starlette's router: the first route matching path and method; else the first one
    # matching the path alone (it answers 405); a mount takes the rest of the path inside.
    wrong_method = None
    for template in templates:
        found = template.regex.match(path)
        if found is None:
            continue
        if template.methods is None:
            if not template.inner:  # static files and other apps without routes
                return template.label
            return _match(template.inner, "/" + found.group("path"), method)
        if method in template.methods:
            return template.label
        wrong_method = wrong_method or template.label
    return wrong_method


def template_of(templates: Sequence[RouteTemplate], path: str, method: str) -> str:
    """The label of a request for ``path`` (below the app's root path): its route's
    template, or ``unmatched``."""
    label = _match(templates, path, method)
    if label is None and path != "/":
        # The router answers a missing or extra trailing slash with a redirect to the route.
        other = path.removesuffix("/") if path.endswith("/") else path + "/"
        label = _match(templates, other, method)
    return label or UNMATCHED


def _app_path(scope: Scope) -> str:
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates: tuple[RouteTemplate, ...] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        path = _app_path(scope)  # before routing: a mount moves the scope's root path

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            if self.templates is None:  # the app's routes are all there by its first request
                self.templates = route_templates(scope["app"].routes)
            route = template_of(self.templates, path, scope["method"])
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
