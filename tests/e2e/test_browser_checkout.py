"""The browser's checkout in real Chromium against `billing serve`: the invoice's link, the
provider's page, and the page the viewer lands on. No header is ever added by hand.

``BILLING_UPDATE_SCREENSHOTS=1`` writes the screenshots to ``docs/screenshots/`` (committed
and shown in the docs); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
from playwright.async_api import Browser, Route
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.auth import issue_token
from billing.config import Settings
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_admin_panel import browser, chromium, server  # noqa: F401 - fixtures
from tests.integration.checkout_helpers import add_tariff

Sessions = async_sessionmaker[AsyncSession]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshots(tmp_path: Path) -> Path:
    if os.environ.get("BILLING_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path


async def only_this_machine(route: Route) -> None:
    """Nothing may load from elsewhere: the pages work offline."""
    host = httpx.URL(route.request.url).host
    if host == "127.0.0.1":
        await route.continue_()
    else:
        await route.abort()


async def test_a_viewer_pays_from_the_link_and_reads_the_outcome(
    server: str,  # noqa: F811 - the fixture
    browser: Browser,  # noqa: F811 - the fixture
    sessions: Sessions,
    tmp_path: Path,
) -> None:
    tariff = await add_tariff(sessions)
    user = str(uuid.uuid4())
    token = issue_token(Settings(jwt_secret=TEST_JWT_SECRET), user, email=f"{user}@example.com")
    async with httpx.AsyncClient(base_url=server) as http:
        invoice = await http.post(
            "/api/v1/invoices",
            json={"tariff_id": str(tariff.id), "months": 3},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert invoice.status_code == 201, invoice.text
    shots = screenshots(tmp_path)

    context = await browser.new_context(locale="ru-RU", viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    await page.route("**/*", only_this_machine)
    await page.goto(invoice.json()["checkout_url"])
    assert "/sandbox/checkout/" in page.url  # the provider's page, reached without a header
    await page.screenshot(path=shots / "checkout-provider-page.png")

    await page.click("button[value=pay]")
    await page.wait_for_url("**/api/v1/checkout/return?**")
    outcome = page.get_by_test_id("outcome")
    assert await outcome.get_attribute("data-outcome") == "succeeded"
    assert await outcome.inner_text() == "Оплачено"
    message = await page.get_by_test_id("message").inner_text()
    assert message.startswith("Доступ к тарифу «Premium» открыт до ")
    await page.screenshot(path=shots / "checkout-paid-ru.png")

    await page.click("nav a")  # the other language
    assert await page.get_by_test_id("outcome").inner_text() == "Paid"
    await page.screenshot(path=shots / "checkout-paid-en.png")
    await context.close()
