"""The panel as marketing sees it, in real Chromium against `billing serve` (Russian, the
default): the dashboard's figures equal the stats API's after known purchases and refunds,
the payment page, a price typed with a comma, the CSV, English per account; each main
screen (at 1366 px) saved under docs/screenshots/."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page

from billing.admin.service import create_admin_user
from billing.auth import issue_token
from billing.config import Settings
from billing.models import AdminRole, PaymentStatus, Refund
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_admin_panel import PASSWORD, Sessions, Watched, browser, chromium, log_in
from tests.e2e.test_serve_process import BILLING, environment, free_port, stop, wait_until_healthy
from tests.integration.checkout_helpers import add_tariff
from tests.integration.test_admin_api_payments import add_payment

__all__ = ["browser", "chromium"]  # the browser fixtures, shared with test_admin_panel
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREEN = {"width": 1366, "height": 900}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`billing serve` with the default language (Russian)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = environment(
        tmp_path / "data",
        BILLING_DATABASE_URL=database_url,
        BILLING_JWT_SECRET=TEST_JWT_SECRET,
        BILLING_PUBLIC_URL=base_url,
    )
    process = subprocess.Popen(
        [BILLING, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(base_url, process)
        yield base_url
    finally:
        output = stop(process)
        assert "Traceback" not in output, output


async def known_sales(sessions: Sessions) -> dict[str, uuid.UUID]:
    """Today: two premium payments (1 422,15 ₽ each), one of them refunded; yesterday: one."""
    premium = await add_tariff(sessions, price=142215, role="premium")
    now = datetime.now(UTC).replace(microsecond=0)
    # Early in the UTC day, so "today" holds them whatever the hour (add_payment pays a
    # minute after creation and refunds a minute after that).
    today = now.replace(hour=0, minute=5, second=0) if now.hour else now - timedelta(minutes=5)
    kept = await add_payment(
        sessions, premium, user_id=uuid.uuid4(), created_at=today, amount=142215
    )
    refunded = await add_payment(
        sessions, premium, user_id=uuid.uuid4(), created_at=today, amount=142215,
        status=PaymentStatus.REFUNDED,
    )  # fmt: skip
    await add_payment(
        sessions, premium, user_id=uuid.uuid4(), created_at=today - timedelta(days=1), amount=49900
    )
    async with sessions() as session, session.begin():
        session.add(
            Refund(
                id=uuid.uuid4(), payment_id=refunded, status="succeeded", reason="requested",
                amount=142215, currency="RUB",
                receipt={
                    "customer_email": "viewer@example.com", "currency": "RUB",
                    "items": [{"description": "Premium, 1 месяц", "amount": 142215, "vat_code": 1,
                               "payment_subject": "service", "payment_mode": "full_payment",
                               "measure": "piece"}],
                    "tax_system_code": 1,
                },
            )
        )  # fmt: skip
    return {"tariff": premium.id, "kept": kept, "refunded": refunded}


async def stats_api(server: str, days: int) -> dict:
    settings = Settings(jwt_secret=TEST_JWT_SECRET)
    token = issue_token(settings, "marta@marketing", ["marketing"], email="m@example.com")
    async with httpx.AsyncClient(base_url=server) as http:
        today = datetime.now(UTC).date()
        response = await http.get(
            "/api/v1/admin/stats",
            params={"from": str(today - timedelta(days=days - 1)), "to": str(today)},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


async def shown_days(page: Page) -> list[dict[str, object]]:
    rows: list[dict[str, str]] = await page.eval_on_selector_all(
        "#days tbody tr", "rows => rows.map(row => ({...row.dataset}))"
    )
    return [
        {name: (value if name == "date" else int(value)) for name, value in row.items()}
        for row in rows
    ]


async def test_the_panel_as_marketing_sees_it(
    server: str, browser: Browser, sessions: Sessions, tmp_path: Path
) -> None:
    # The committed screenshots are renewed only when asked (BILLING_UPDATE_SCREENSHOTS=1):
    # a test run leaves the repository as it found it.
    updating = os.environ.get("BILLING_UPDATE_SCREENSHOTS") == "1"
    shots = DOCS_SCREENSHOTS if updating else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    sales = await known_sales(sessions)
    context = await browser.new_context(viewport=SCREEN, accept_downloads=True)
    watched = Watched(await context.new_page())
    page = watched.page

    await log_in(page, server, "marta", PASSWORD)
    assert page.url == f"{server}/admin/"
    assert await page.get_attribute("html", "lang") == "ru"
    assert "Сводка" in await page.inner_text("h2.card-title")
    await page.click("#period-7")
    await page.wait_for_selector("body[data-charts-drawn='3']")
    api = await stats_api(server, 7)
    assert await shown_days(page) == api["days"]
    assert api["days"][-1]["payments"] == 2 and api["days"][-1]["refunded"] == 142215
    # 2 × 1 422,15 + 499,00 − 1 422,15
    assert await page.inner_text("#kpi-net") == "1\u00a0921,15\u00a0₽"
    assert await watched.violations() == [] and watched.script_errors == []
    await page.screenshot(path=str(shots / "dashboard-ru.png"), full_page=True)

    # Payments: the list, and the page of a refunded payment telling the whole story.
    await page.goto(f"{server}/admin/payment/list")
    assert "1\u00a0422,15\u00a0₽" in await page.inner_text("table")
    await page.screenshot(path=str(shots / "payments-ru.png"), full_page=True)
    await page.goto(f"{server}/admin/payment/details/{sales['refunded']}")
    assert await page.inner_text("#breakdown-total") == "1\u00a0422,15\u00a0₽"
    assert "по просьбе зрителя" in await page.inner_text("#refunds")
    assert "Premium, 1 месяц" in await page.inner_text("#refund-receipt + table")
    await page.screenshot(path=str(shots / "payment-ru.png"), full_page=True)

    # The export: readable headers, roubles with a point.
    await page.goto(f"{server}/admin/payment/list")
    async with page.expect_download() as download_info:
        await page.click("#export-csv")
    exported = await asyncio.to_thread(Path(await (await download_info.value).path()).read_text)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["Сумма"] for row in rows} == {"1422.15", "499.00"}
    assert {row["Возвращён"] for row in rows} >= {""}

    # A price typed with the Russian decimal comma.
    await page.goto(f"{server}/admin/tariff/edit/{sales['tariff']}")
    assert await page.input_value("input[name=monthly_price]") == "1422,15"
    await page.fill("input[name=monthly_price]", "549,00")
    await page.click("input[type=submit][name=save] >> nth=0")
    assert page.url.startswith(f"{server}/admin/tariff/list")
    assert "549,00\u00a0₽" in await page.inner_text("table")
    await page.screenshot(path=str(shots / "tariffs-ru.png"), full_page=True)

    # English, for this account only.
    await page.goto(f"{server}/admin/")
    await page.click("#language-en")
    await page.wait_for_selector("body[data-charts-drawn='3']")
    assert await page.get_attribute("html", "lang") == "en"
    assert "Dashboard" in await page.inner_text("h2.card-title")
    assert "549.00\u00a0₽" in await (await page.goto(f"{server}/admin/tariff/list") or page).text()
    await page.goto(f"{server}/admin/")
    await page.wait_for_selector("body[data-charts-drawn='3']")
    await page.screenshot(path=str(shots / "dashboard-en.png"), full_page=True)
    assert await watched.violations() == [] and watched.script_errors == []
