"""The provider down: a clear 503, and an attempt on record that the retry completes with
the same idempotence key — never a second payment at the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Payment
from tests.conftest import TEST_JWT_SECRET, LoopbackTransport
from tests.integration.checkout_helpers import (
    add_tariff,
    both_providers,
    count,
    make_viewer,
)
from tests.integration.test_stripe_adapter import open_session
from tests.integration.test_yookassa_adapter import pending_payment

pytestmark = both_providers
Sessions = async_sessionmaker[AsyncSession]
# Where each provider's "create a payment" goes when its API is at http://provider.test.
CREATE_PAYMENT = {
    "yookassa": "http://provider.test/v3/payments",
    "stripe": "http://provider.test/v1/checkout/sessions",
}


@pytest.fixture
async def client_with_remote_provider(
    database_url: str, tmp_path: Path, clock: FrozenClock, provider_name: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path,
        jwt_secret=TEST_JWT_SECRET,
        public_url="http://billing.test",
        provider=provider_name,
        yookassa_api_url="http://provider.test/v3",
        stripe_api_base="http://provider.test",
    )
    loopback = LoopbackTransport(public_host="billing.test")
    app = create_app(settings, clock=clock, outbound_transport=loopback)
    loopback.app = app
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            yield http


# What each provider answers once it is back: the payment it made (the documentation's examples).
CREATED = {"yookassa": pending_payment, "stripe": open_session}
KEY_HEADER = {"yookassa": "Idempotence-Key", "stripe": "Idempotency-Key"}


@respx.mock(assert_all_called=False)
async def test_provider_down_gives_503_and_the_retry_asks_with_the_same_key(
    respx_mock: respx.MockRouter,
    client_with_remote_provider: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
    provider_name: str,
) -> None:
    create_payment = respx_mock.post(CREATE_PAYMENT[provider_name])
    create_payment.mock(return_value=httpx.Response(503))
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client_with_remote_provider, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    url = f"/api/v1/invoices/{invoice['id']}/payments"

    response = await client_with_remote_provider.post(url, json={}, headers=viewer.headers)
    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    # The attempt is on record (it may have reached the provider): pending, no page yet.
    [payment] = await rows(sessions, Payment)
    assert (payment.status, payment.provider_payment_id, payment.confirmation_url) == (
        "pending", None, None
    )  # fmt: skip

    create_payment.mock(side_effect=httpx.ConnectError("refused"))
    again = await client_with_remote_provider.post(url, json={}, headers=viewer.headers)
    assert again.status_code == 503

    create_payment.mock(return_value=httpx.Response(200, json=CREATED[provider_name]()))
    started = await client_with_remote_provider.post(url, json={}, headers=viewer.headers)
    assert started.status_code == 201
    assert started.json()["id"] == str(payment.id)
    assert started.json()["confirmation_url"]
    assert await count(sessions, Payment) == 1
    # Every attempt, first to last, carried the one key: the provider holds one payment.
    keys = {call.request.headers[KEY_HEADER[provider_name]] for call in create_payment.calls}
    assert keys == {str(payment.idempotence_key)}


@respx.mock(assert_all_called=False)
async def test_a_provider_that_refuses_the_payment_cancels_the_attempt(
    respx_mock: respx.MockRouter,
    client_with_remote_provider: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: Sessions,
    provider_name: str,
) -> None:
    create_payment = respx_mock.post(CREATE_PAYMENT[provider_name])
    create_payment.mock(return_value=httpx.Response(400, json=REFUSAL[provider_name]))
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client_with_remote_provider, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)
    url = f"/api/v1/invoices/{invoice['id']}/payments"

    response = await client_with_remote_provider.post(url, json={}, headers=viewer.headers)
    assert response.status_code == 503
    [refused] = await rows(sessions, Payment)
    assert refused.status == "canceled"

    # The next click is a new attempt with a new key.
    create_payment.mock(return_value=httpx.Response(200, json=CREATED[provider_name]()))
    started = await client_with_remote_provider.post(url, json={}, headers=viewer.headers)
    assert started.status_code == 201
    assert started.json()["id"] != str(refused.id)
    assert create_payment.calls.last.request.headers[KEY_HEADER[provider_name]] != str(
        refused.idempotence_key
    )


REFUSAL = {
    "yookassa": {"type": "error", "id": "0e6f", "code": "invalid_request",
                 "description": "Invalid amount", "parameter": "amount"},
    "stripe": {"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer",
                         "message": "Invalid integer", "param": "line_items[0][price_data]"}},
}  # fmt: skip


async def rows(sessions: Sessions, model: type[Payment]) -> list[Payment]:
    async with sessions() as session:
        return list(await session.scalars(select(model)))
