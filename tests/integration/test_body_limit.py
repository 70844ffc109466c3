"""A request body over 1 MiB is a 413 `payload_too_large`, on every route, before the app
reads it whole, parses it or authenticates it; with a `Content-Length` or streamed chunked.
1 MiB exactly is an ordinary request."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.http_limits import MAX_BODY_BYTES
from billing.models import Payment
from tests.conftest import LoopbackTransport
from tests.integration.checkout_helpers import add_tariff, make_viewer, notification

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]
MIB = 1024 * 1024
CHUNK = 64 * 1024
JSON = {"Content-Type": "application/json"}


class RecordingLoopback(LoopbackTransport):
    """The app's outgoing calls, remembered: what billing asked its payment provider."""

    def __init__(self, public_host: str) -> None:
        super().__init__(public_host)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await super().handle_async_request(request)

    def asked_about(self, provider_payment_id: str) -> int:
        return sum(provider_payment_id in request.url.path for request in self.requests)


@pytest.fixture
async def outbound() -> RecordingLoopback:
    return RecordingLoopback(public_host="billing.test")


@pytest.fixture
async def app(
    settings: Settings, clock: FrozenClock, outbound: RecordingLoopback
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=clock, outbound_transport=outbound)
    outbound.app = application
    async with LifespanManager(application):
        yield application


def padded(body: object, size: int) -> bytes:
    """``body`` as JSON, then spaces up to ``size`` bytes: still the same JSON document."""
    content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    assert len(content) <= size
    return content + b" " * (size - len(content))


class Stream:
    """A chunked request body (no Content-Length) that counts how much of it was read."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.content), CHUNK):
            chunk = self.content[start : start + CHUNK]
            self.read += len(chunk)
            yield chunk


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"


# --- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize("authenticated", [False, True])
async def test_a_body_over_1_mib_is_refused_before_authentication(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, authenticated: bool
) -> None:
    tariff = await add_tariff(sessions)
    body = padded({"tariff_id": str(tariff.id), "months": 1}, MAX_BODY_BYTES + 1)
    headers = {**JSON, **(auth_headers(uuid.uuid4()) if authenticated else {})}

    declared = await client.post("/api/v1/invoices", content=body, headers=headers)
    assert_too_large(declared)
    assert declared.json()["instance"] == "/api/v1/invoices"

    stream = Stream(body)
    chunked = await client.post("/api/v1/invoices", content=stream, headers=headers)
    assert_too_large(chunked)
    assert stream.read <= MAX_BODY_BYTES + CHUNK


async def test_a_huge_streamed_body_is_not_read_whole(client: httpx.AsyncClient) -> None:
    stream = Stream(b"[" + b" " * (64 * MIB))
    response = await client.post("/api/v1/quotes", content=stream, headers=JSON)
    assert_too_large(response)
    assert stream.read <= MAX_BODY_BYTES + CHUNK


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/login"),  # the admin panel
        ("POST", "/sandbox/v3/payments"),  # the sandbox provider
        ("PUT", f"/api/v1/admin/users/{uuid.uuid4()}/discount"),  # the admin API
        ("GET", "/api/v1/tariffs"),  # a route that never reads a body
        ("POST", "/no/such/route"),
    ],
)
async def test_every_route_refuses_a_body_over_1_mib(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    assert_too_large(await client.request(method, path, content=body))
    assert_too_large(await client.request(method, path, content=Stream(body)))


async def test_a_webhook_over_1_mib_never_reaches_the_provider(
    client: httpx.AsyncClient,
    sessions: Sessions,
    settings: Settings,
    auth_headers: Headers,
    outbound: RecordingLoopback,
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    payment = await viewer.start_payment(invoice["id"])
    async with sessions() as session:
        provider_payment_id = (
            await session.get_one(Payment, uuid.UUID(payment["id"]))
        ).provider_payment_id
    assert provider_payment_id is not None
    delivery = notification(settings, "succeeded", provider_payment_id)
    asked_before = outbound.asked_about(provider_payment_id)

    too_large = padded(delivery.content, MAX_BODY_BYTES + 1)
    for content in (too_large, Stream(too_large)):
        response = await client.post(delivery.path, content=content, headers=delivery.headers)
        assert_too_large(response)
    assert outbound.asked_about(provider_payment_id) == asked_before

    # The same notification at 1 MiB exactly is a trigger as usual: billing asks the provider.
    exact = padded(delivery.content, MAX_BODY_BYTES)
    response = await client.post(delivery.path, content=exact, headers=delivery.headers)
    assert response.status_code == 200, response.text
    assert outbound.asked_about(provider_payment_id) > asked_before


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_of_1_mib_exactly_is_accepted(
    client: httpx.AsyncClient, sessions: Sessions, auth_headers: Headers, chunked: bool
) -> None:
    tariff = await add_tariff(sessions, price=49900)
    body = padded({"tariff_id": str(tariff.id), "months": 1}, MAX_BODY_BYTES)
    assert len(body) == MIB
    content: bytes | Stream = Stream(body) if chunked else body
    response = await client.post(
        "/api/v1/quotes", content=content, headers={**JSON, **auth_headers(uuid.uuid4())}
    )
    assert response.status_code == 200, response.text
    assert response.json()["total_amount"] == 49900


async def test_small_and_empty_bodies_are_untouched(
    client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    assert (await client.get("/api/v1/tariffs")).status_code == 200
    bad = await client.post(
        "/api/v1/quotes", content=b"{", headers={**JSON, **auth_headers(uuid.uuid4())}
    )
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_error")
