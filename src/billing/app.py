"""The FastAPI application: routers, the admin panel, error handlers, metrics, lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
from fastapi import FastAPI

from billing import health
from billing.admin import endpoints as admin_endpoints
from billing.admin.panel import mount_admin_panel
from billing.audit import endpoints as audit_endpoints
from billing.catalog import endpoints as catalog_endpoints
from billing.checkout import admin_endpoints as checkout_admin_endpoints
from billing.checkout import browser as checkout_browser
from billing.checkout import endpoints as checkout_endpoints
from billing.checkout.providers.registry import providers_from_settings
from billing.clock import Clock, SystemClock
from billing.config import Settings
from billing.db import create_engine, session_factory
from billing.docs_assets import install_docs
from billing.errors import install_error_handlers
from billing.http_limits import BodySizeLimit
from billing.metrics import MetricsMiddleware, metrics_endpoint
from billing.openapi import install_openapi
from billing.outbox import endpoints as outbox_endpoints
from billing.outbox.webhooks import document_events
from billing.payment_methods import endpoints as payment_method_endpoints
from billing.pricing import endpoints as pricing_endpoints
from billing.sandbox import endpoints as sandbox_endpoints
from billing.sandbox import stripe_endpoints as sandbox_stripe_endpoints
from billing.subscriptions import admin_endpoints as subscription_admin_endpoints
from billing.subscriptions import endpoints as subscription_endpoints

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/api/v1/admin"
# Connect fast, read within a few seconds: a slow provider must not hold a viewer's request.
OUTBOUND_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, routes, the ORM's mappings: ≈ 170 000) out of
    the cyclic garbage collector's reach. A full collection walks every tracked object: with
    them it paused the process for 60–100 ms, stalling every request in flight (the p99);
    without them it takes a few ms. They live as long as the process anyway; what becomes
    garbage later is collected as before."""
    gc.collect()  # what start-up already dropped goes first, not into the frozen set
    gc.freeze()


def create_app(
    settings: Settings,
    clock: Clock | None = None,
    outbound_transport: httpx.AsyncBaseTransport | None = None,
    with_worker: bool = False,
    serving_process: bool = False,
) -> FastAPI:
    """The whole service on one app; ``settings.database_url`` must name a running server.

    ``outbound_transport`` carries every outgoing HTTP call (provider, sandbox notifications,
    Auth, Notification); tests route it to the app itself and to fakes. ``with_worker`` runs
    the scheduler and job worker in this process (``billing serve`` without ``--no-worker``).
    ``serving_process``: this process serves this one app until it exits (``billing serve``),
    so what start-up made is kept out of the garbage collector's full passes
    (``freeze_startup_objects``); a process that makes many apps (the tests) must not.
    """
    if settings.database_url is None:
        raise ValueError("create_app needs a database URL (the CLI starts the embedded one)")
    # Made here rather than in the lifespan because the admin panel needs it when mounted;
    # an engine connects only when first used, so this opens nothing yet.
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            transport=outbound_transport, timeout=OUTBOUND_TIMEOUT
        ) as outbound:
            app.state.outbound = outbound
            app.state.providers = providers_from_settings(settings, outbound)
            worker = _start_worker(app) if with_worker else None
            if serving_process:
                freeze_startup_objects()
            try:
                yield
            finally:
                if worker is not None:
                    worker.cancel()
                    with suppress(asyncio.CancelledError):
                        await worker
                await engine.dispose()

    app = FastAPI(
        title="Billing",
        summary="Subscription billing of the online cinema",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are billing's own, with no CDN (install_docs)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.clock = clock or SystemClock()
    app.state.engine = engine
    app.state.sessions = sessions
    install_error_handlers(app)
    install_openapi(app)  # every error each operation answers, as problem+json
    app.add_middleware(BodySizeLimit)  # inside the metrics, so refusals are counted
    app.add_middleware(MetricsMiddleware)
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    install_docs(app)
    document_events(app.webhooks)  # the events the relay sends, for their receivers
    app.include_router(health.router)
    app.include_router(catalog_endpoints.router, prefix=API_PREFIX)
    app.include_router(pricing_endpoints.router, prefix=API_PREFIX)
    app.include_router(checkout_endpoints.router, prefix=API_PREFIX)
    app.include_router(checkout_browser.router, prefix=API_PREFIX)
    app.include_router(subscription_endpoints.router, prefix=API_PREFIX)
    app.include_router(payment_method_endpoints.router, prefix=API_PREFIX)
    app.include_router(catalog_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(pricing_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(admin_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(audit_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(outbox_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(checkout_admin_endpoints.admin_router, prefix=ADMIN_PREFIX)
    app.include_router(subscription_admin_endpoints.admin_router, prefix=ADMIN_PREFIX)
    # The sandbox exists only while a provider's address points at it: with both on their
    # real APIs, /sandbox is a 404 and its well-known keys open nothing.
    if settings.sandbox_serves_yookassa:
        app.include_router(sandbox_endpoints.router, prefix="/sandbox")
    if settings.sandbox_serves_stripe:
        app.include_router(sandbox_stripe_endpoints.router, prefix="/sandbox/stripe")
    mount_admin_panel(
        app, engine=engine, sessions=sessions, settings=settings, clock=app.state.clock
    )
    return app


def _start_worker(app: FastAPI) -> asyncio.Task[str]:
    from billing.worker import Runtime, run_in_process_worker

    runtime = Runtime(
        settings=app.state.settings,
        sessions=app.state.sessions,
        clock=app.state.clock,
        outbound=app.state.outbound,
        providers=app.state.providers,
    )
    worker = asyncio.create_task(run_in_process_worker(runtime), name="billing-worker")
    app.state.worker = worker  # /ready tells when it has stopped for good
    return worker
