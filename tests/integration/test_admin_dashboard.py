"""The panel's first page is the dashboard: the same figures as GET /api/v1/admin/stats,
charts from Chart.js served by billing itself, the period picker."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from billing.clock import FrozenClock
from billing.config import Settings
from tests.integration.test_admin_panel_http import (
    Headers,
    Sessions,
    add_admin,
    login,
    panel_client,
)
from tests.integration.test_admin_stats import known_sales


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_locale": "en"})


async def _marta(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    await add_admin(sessions, "marta")
    client = panel_client(app)
    assert (await login(client, "marta")).status_code == 302
    return client


@pytest.fixture
async def marta(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    return await _marta(app, sessions)


def day_rows(page: str) -> list[dict[str, str]]:
    pattern = re.compile(
        r'data-date="([^"]+)" data-payments="(\d+)" data-gross="(\d+)"\s+data-refunds="(\d+)" '
        r'data-refunded="(\d+)" data-net="(-?\d+)"'
    )
    names = ("date", "payments", "gross", "refunds", "refunded", "net")
    return [dict(zip(names, match, strict=True)) for match in pattern.findall(page)]


async def test_dashboard_shows_the_stats_apis_figures(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth_headers: Headers,
    sessions: Sessions,
    clock: FrozenClock,
) -> None:
    sales = await known_sales(client, auth_headers, sessions, clock)
    marta = await _marta(app, sessions)  # after the sales: they move the clock a day on
    period = {
        "from": str(sales["day0"] - timedelta(days=1)),
        "to": str(sales["day0"] + timedelta(days=1)),
    }
    api = await client.get(
        "/api/v1/admin/stats", params=period, headers=auth_headers("m", "marketing")
    )
    page = await marta.get("/admin/", params=period)
    assert page.status_code == 200
    shown = day_rows(page.text)
    assert shown == [
        {name: str(value) for name, value in day.items()} for day in api.json()["days"]
    ]
    assert shown[1]["gross"] == "69800" and shown[1]["refunded"] == "19900"
    assert '<span id="kpi-new">3</span>' in page.text
    assert '<span id="kpi-churned">1</span>' in page.text
    assert "990.52\u00a0₽" in page.text  # MRR: 99052 kopecks
    assert 'id="dashboard-data"' in page.text and 'type="application/json"' in page.text
    assert "/admin/statics/chart.umd.min.js" in page.text
    assert "/admin/statics/dashboard.js" in page.text
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it


async def test_presets_and_a_bad_custom_period(
    marta: httpx.AsyncClient, clock: FrozenClock
) -> None:
    week = await marta.get("/admin/", params={"days": "7"})
    assert len(day_rows(week.text)) == 7
    assert day_rows(week.text)[-1]["date"] == str(clock.now().date())
    default = await marta.get("/admin/")
    assert len(day_rows(default.text)) == 30
    refused = await marta.get("/admin/", params={"from": "2025-05-02", "to": "2025-05-01"})
    assert refused.status_code == 200
    assert 'id="period-error"' in refused.text
    assert "The period starts after it ends." in refused.text
    assert len(day_rows(refused.text)) == 30  # the default period instead


async def test_chart_library_is_served_by_billing_without_a_session(app: FastAPI) -> None:
    async with panel_client(app) as anonymous:
        library = await anonymous.get("/admin/statics/chart.umd.min.js")
        script = await anonymous.get("/admin/statics/dashboard.js")
        sqladmins = await anonymous.get("/admin/statics/css/tabler.min.css")
    assert library.status_code == 200 and library.text.startswith("/*!\n * Chart.js v4.")
    assert "javascript" in library.headers["content-type"]
    assert script.status_code == 200 and "dashboard-data" in script.text
    assert sqladmins.status_code == 200
    assert library.headers["content-security-policy"].startswith("default-src 'self'")


async def test_the_dashboard_needs_a_login(app: FastAPI) -> None:
    async with panel_client(app) as anonymous:
        response = await anonymous.get("/admin/")
    assert response.status_code in (302, 303)
    assert response.headers["location"].endswith("/admin/login")
