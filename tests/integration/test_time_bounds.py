"""Times are accepted between 1970 and 2200 (as UTC instants), everywhere: outside, a 422
`validation_error` and nothing written. Year 10000 in UTC (`9999-12-31T23:59:59-14:00`)
used to be stored and then poison every later read with a 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.clock import FrozenClock
from billing.config import Settings
from billing.models import AdminRole, Base
from tests.conftest import LoopbackTransport
from tests.integration.checkout_helpers import add_tariff, make_viewer
from tests.integration.test_admin_panel_http import add_admin, alert, login, panel_client

Headers = Callable[..., dict[str, str]]
Sessions = async_sessionmaker[AsyncSession]

YEAR_10000_IN_UTC = "9999-12-31T23:59:59-14:00"
# Each is outside [1970-01-01, 2200-01-01) as a UTC instant, whatever its offset says.
OUT_OF_RANGE = [
    YEAR_10000_IN_UTC,
    "9999-12-31T00:00:00Z",
    "2200-01-01T00:00:00Z",
    "2199-12-31T20:00:00-14:00",  # 2200-01-01T10:00Z
    "1969-12-31T23:59:59Z",
    "1970-01-01T09:59:59+10:00",  # 1969-12-31T23:59:59Z
]
LATEST = "2199-12-31T23:59:59Z"
LATEST_WITH_OFFSET = "2200-01-01T09:00:00+10:00"  # 2199-12-31T23:00Z


@pytest.fixture
def admin(auth_headers: Headers) -> dict[str, str]:
    return auth_headers("marta@marketing", "marketing")


async def database_state(sessions: Sessions) -> dict[str, str]:
    """Every table's rows, fingerprinted: equal before and after means nothing was written."""
    state = {}
    async with sessions() as session:
        for table in Base.metadata.sorted_tables:
            rows = text(f"SELECT string_agg(t::text, '|' ORDER BY t::text) FROM {table} t")
            state[table.name] = str(await session.scalar(rows))
    return state


def assert_refused_as_out_of_range(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["detail"]
    assert "between 1970-01-01 and 2200-01-01" in body["detail"], body["detail"]


# --- personal discounts ---------------------------------------------------------------------


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_a_personal_discount_valid_until_out_of_range_is_refused(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], moment: str
) -> None:
    user = uuid.uuid4()
    url = f"/api/v1/admin/users/{user}/discount"
    kept = await client.put(url, json={"percent": 10, "valid_until": LATEST}, headers=admin)
    assert kept.status_code == 200, kept.text
    before = await database_state(sessions)

    refused = await client.put(url, json={"percent": 50, "valid_until": moment}, headers=admin)

    assert_refused_as_out_of_range(refused, "valid_until")
    assert await database_state(sessions) == before
    shown = await client.get(url, headers=admin)
    assert shown.status_code == 200
    assert shown.json()["percent"] == 10


async def test_a_personal_discount_until_2199_is_kept_and_read_everywhere(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions, price=10000)
    viewer = make_viewer(client, auth_headers)
    url = f"/api/v1/admin/users/{viewer.user_id}/discount"
    for moment in (LATEST_WITH_OFFSET, LATEST):
        response = await client.put(url, json={"percent": 10, "valid_until": moment}, headers=admin)
        assert response.status_code == 200, response.text
    shown = await client.get(url, headers=admin)
    assert shown.status_code == 200
    assert shown.json()["valid_until"].startswith("2199-12-31T23:59:59")

    quote = await client.post(
        "/api/v1/quotes", json={"tariff_id": str(tariff.id), "months": 1}, headers=viewer.headers
    )
    assert quote.status_code == 200, quote.text
    assert (quote.json()["discount"]["source"], quote.json()["total_amount"]) == ("personal", 9000)
    invoice = await viewer.issue_invoice(tariff.id)
    fetched = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=viewer.headers)
    assert fetched.status_code == 200
    assert fetched.json()["total_amount"] == 9000
    assert (await client.delete(url, headers=admin)).status_code == 204


# --- promo codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["valid_from", "valid_until"])
@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_a_promo_code_window_out_of_range_is_refused(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], field: str, moment: str
) -> None:
    before = await database_state(sessions)
    response = await client.post(
        "/api/v1/admin/promo-codes", json={"code": "SPRING", "percent": 10, field: moment},
        headers=admin,
    )  # fmt: skip
    assert_refused_as_out_of_range(response, field)
    assert await database_state(sessions) == before


async def test_a_promo_code_valid_until_2199_is_kept_and_listed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/admin/promo-codes",
        json={"code": "LONG", "percent": 10, "valid_from": "1970-01-01T00:00:00Z",
              "valid_until": LATEST_WITH_OFFSET},
        headers=admin,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    listed = await client.get("/api/v1/admin/promo-codes", headers=admin)
    assert listed.status_code == 200
    [code] = listed.json()
    assert code["valid_until"].startswith("2199-12-31T23:00:00")


# --- a user's subscription, by an administrator ----------------------------------------------


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_a_subscription_period_end_out_of_range_is_refused_and_nothing_committed(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], moment: str
) -> None:
    tariff = await add_tariff(sessions)
    before = await database_state(sessions)
    response = await client.put(
        f"/api/v1/admin/users/{uuid.uuid4()}/subscription",
        json={"tariff_id": str(tariff.id), "current_period_end": moment},
        headers=admin,
    )
    assert_refused_as_out_of_range(response, "current_period_end")
    assert await database_state(sessions) == before


async def test_a_subscription_period_end_in_2199_is_kept_and_read(
    client: httpx.AsyncClient, sessions: Sessions, admin: dict[str, str], auth_headers: Headers
) -> None:
    tariff = await add_tariff(sessions)
    viewer = make_viewer(client, auth_headers)
    response = await client.put(
        f"/api/v1/admin/users/{viewer.user_id}/subscription",
        json={"tariff_id": str(tariff.id), "current_period_end": LATEST},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    assert response.json()["access_until"].startswith("2200-01-02T23:59:59")
    [mine] = await viewer.subscriptions()
    assert mine["current_period_end"].startswith("2199-12-31T23:59:59")


async def test_an_answer_that_cannot_be_made_rolls_the_subscription_change_back(
    settings: Settings, clock: FrozenClock, sessions: Sessions, auth_headers: Headers
) -> None:
    """The change used to commit before its answer was made, so a failure there (access_until
    overflowing past year 9999) left it committed behind a 500. A grace period of 8,000
    years makes the same failure within the accepted range."""
    tariff = await add_tariff(sessions)
    ages = settings.model_copy(update={"grace_period": settings.grace_period * 1_500_000})
    app = _app(ages, clock)
    before = await database_state(sessions)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as http:
            response = await http.put(
                f"/api/v1/admin/users/{uuid.uuid4()}/subscription",
                json={"tariff_id": str(tariff.id), "current_period_end": LATEST},
                headers=auth_headers("root", "admin"),
            )
    assert response.status_code == 500
    assert await database_state(sessions) == before


def _app(settings: Settings, clock: FrozenClock) -> FastAPI:
    from billing.app import create_app

    return create_app(settings, clock=clock, outbound_transport=LoopbackTransport("billing.test"))


# --- list filters -------------------------------------------------------------------------------


@pytest.mark.parametrize("bound", ["from", "to"])
@pytest.mark.parametrize("moment", [*OUT_OF_RANGE, "1969-12-31", "2200-01-01"])
async def test_payment_filters_out_of_range_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], bound: str, moment: str
) -> None:
    response = await client.get("/api/v1/admin/payments", params={bound: moment}, headers=admin)
    assert_refused_as_out_of_range(response, bound)


async def test_payment_filters_take_the_whole_range(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.get(
        "/api/v1/admin/payments", params={"from": "1970-01-01", "to": "2199-12-31"}, headers=admin
    )
    assert response.status_code == 200, response.text
    response = await client.get(
        "/api/v1/admin/payments",
        params={"from": "1970-01-01T00:00:00Z", "to": LATEST_WITH_OFFSET},
        headers=admin,
    )
    assert response.status_code == 200, response.text


# --- the admin panel's forms ----------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The panel in English, whose times these tests read (Russian: test_admin_panel_i18n)."""
    return settings.model_copy(update={"admin_locale": "en"})


@pytest.fixture
async def panel(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    await add_admin(sessions, "root", AdminRole.ADMIN)
    browser = panel_client(app)
    assert (await login(browser, "root")).status_code == 302
    return browser


# The panel's date-time boxes are UTC wall-clock times.
PANEL_OUT_OF_RANGE = ["9999-12-31 23:59:59", "2200-01-01 00:00:00", "1969-12-31 23:59:59"]
PANEL_LATEST = "2199-12-31 23:59:59"


@pytest.mark.parametrize("moment", PANEL_OUT_OF_RANGE)
async def test_the_panels_time_fields_refuse_out_of_range(
    panel: httpx.AsyncClient, sessions: Sessions, moment: str
) -> None:
    tariff = await add_tariff(sessions)
    before = await database_state(sessions)
    forms = [
        ("/admin/user-discount/create",
         {"user_id": str(uuid.uuid4()), "percent": "10", "valid_until": moment}),
        ("/admin/promo-code/create",
         {"code": "PANEL", "percent": "10", "valid_from": moment, "once_per_user": "y"}),
        ("/admin/promo-code/create",
         {"code": "PANEL", "percent": "10", "valid_until": moment, "once_per_user": "y"}),
        ("/admin/subscription/create",
         {"user_id": str(uuid.uuid4()), "tariff_id": str(tariff.id),
          "current_period_end": moment}),
    ]  # fmt: skip
    for path, form in forms:
        response = await panel.post(path, data={**form, "save": "Save"})
        assert response.status_code == 400, (path, response.text)
        assert "between 1970-01-01 and 2200-01-01" in alert(response), (path, alert(response))
    assert await database_state(sessions) == before

    day = moment[:10]
    listed = await panel.get("/admin/payment/list", params={"from": day})
    assert listed.status_code == 400


async def test_the_panels_time_fields_take_2199(
    panel: httpx.AsyncClient, sessions: Sessions
) -> None:
    tariff = await add_tariff(sessions)
    forms = [
        ("/admin/user-discount/create",
         {"user_id": str(uuid.uuid4()), "percent": "10", "valid_until": PANEL_LATEST}),
        ("/admin/promo-code/create",
         {"code": "PANEL", "percent": "10", "valid_from": "1970-01-01 00:00:00",
          "valid_until": PANEL_LATEST, "once_per_user": "y"}),
        ("/admin/subscription/create",
         {"user_id": str(uuid.uuid4()), "tariff_id": str(tariff.id),
          "current_period_end": PANEL_LATEST}),
    ]  # fmt: skip
    for path, form in forms:
        response = await panel.post(path, data={**form, "save": "Save"})
        assert response.status_code == 302, (path, alert(response) or response.text)
    for listing in ("user-discount", "promo-code", "subscription"):
        page = await panel.get(f"/admin/{listing}/list")
        assert page.status_code == 200
        assert "2199-12-31 23:59:59" in page.text, listing
    filtered = await panel.get("/admin/payment/list", params={"from": "2199-12-31"})
    assert filtered.status_code == 200
