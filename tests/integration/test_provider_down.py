"""The provider down: a clear 503 and nothing half-written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager

from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import Payment
from tests.conftest import TEST_JWT_SECRET, LoopbackTransport
from tests.integration.checkout_helpers import add_tariff, both_providers, count, make_viewer

pytestmark = both_providers
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


@respx.mock(assert_all_called=False)
async def test_provider_down_gives_503_and_writes_no_payment(
    respx_mock: respx.MockRouter,
    client_with_remote_provider: httpx.AsyncClient,
    auth_headers: Callable[..., dict[str, str]],
    sessions: object,
    provider_name: str,
) -> None:
    create_payment = CREATE_PAYMENT[provider_name]
    respx_mock.post(create_payment).mock(return_value=httpx.Response(503))
    tariff = await add_tariff(sessions)  # type: ignore[arg-type]
    viewer = make_viewer(client_with_remote_provider, auth_headers)
    invoice = await viewer.issue_invoice(tariff.id)

    response = await client_with_remote_provider.post(
        f"/api/v1/invoices/{invoice['id']}/payments", json={}, headers=viewer.headers
    )
    assert response.status_code == 503
    assert response.json()["code"] == "provider_unavailable"
    assert await count(sessions, Payment) == 0  # type: ignore[arg-type]

    # With a key, the failed attempt doesn't burn it: the retry really retries.
    respx_mock.post(create_payment).mock(side_effect=httpx.ConnectError("refused"))
    keyed = {**viewer.headers, "Idempotency-Key": "k1"}
    url = f"/api/v1/invoices/{invoice['id']}/payments"
    first = await client_with_remote_provider.post(url, json={}, headers=keyed)
    second = await client_with_remote_provider.post(url, json={}, headers=keyed)
    assert first.status_code == second.status_code == 503
