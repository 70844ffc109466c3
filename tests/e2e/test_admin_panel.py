"""The admin panel in a real browser (Debian's Chromium through Playwright) against a real
`billing serve` process on the test database: log in, change a price, export payments; the
pages work under their Content-Security-Policy with no violation, a form on another site
cannot change a price, and after logout the old cookie opens nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.admin.service import create_admin_user
from billing.models import (
    AdminRole,
    AdminSession,
    AuditEntry,
    PaymentStatus,
    PromoCode,
    Tariff,
    TariffPrice,
)
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_serve_process import BILLING, environment, free_port, stop, wait_until_healthy
from tests.integration.checkout_helpers import add_tariff
from tests.integration.test_admin_api_payments import add_payment

Sessions = async_sessionmaker[AsyncSession]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`billing serve` on a free port, on this test's (migrated, emptied) database."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = environment(
        tmp_path / "data",
        BILLING_DATABASE_URL=database_url,
        BILLING_JWT_SECRET=TEST_JWT_SECRET,
        BILLING_PUBLIC_URL=base_url,
        BILLING_ADMIN_LOCALE="en",  # these tests read English; Russian: test_admin_panel_pages
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
        assert process.returncode == 0, output
        assert "Traceback" not in output, output


@pytest.fixture
def chromium() -> Path:
    # Never skipped: a machine without the browser fails here, saying what to install.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests use Debian's Chromium "
            "(apt-get install chromium; .ci/run installs it)"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def log_in(page: Page, base_url: str, username: str, password: str) -> None:
    await page.goto(f"{base_url}/admin/")
    # Not logged in: the panel sends the browser to its login page.
    assert page.url == f"{base_url}/admin/login"
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_log_in_change_a_price_and_export_payments(
    server: str, browser: Browser, sessions: Sessions, tmp_path: Path
) -> None:
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    tariff = await add_tariff(sessions, price=49900)
    payment_id = await add_payment(
        sessions,
        tariff,
        user_id=uuid.uuid4(),
        created_at=datetime(2025, 5, 10, tzinfo=UTC),
        status=PaymentStatus.SUCCEEDED,
    )
    page = await browser.new_page()

    await log_in(page, server, "marta", "not her password")
    assert await page.inner_text("#login-error") == "Wrong username or password."
    assert await page.input_value("input[name=username]") == "marta"  # kept for the retry

    await log_in(page, server, "marta", PASSWORD)
    assert page.url == f"{server}/admin/"
    assert await page.inner_text("#signed-in-as") == "marta"

    # Change the price from the tariff list's edit button.
    await page.click("a[href$='/admin/tariff/list']")
    await page.click(f"a[href*='/admin/tariff/edit/{tariff.id}']")
    assert await page.input_value("input[name=monthly_price]") == "499.00"
    await page.fill("input[name=monthly_price]", "cheap")
    await page.click("input[type=submit][value=Save]")
    assert "an amount like 499.00 or 499,00" in await page.inner_text("form[enctype]")
    await page.fill("input[name=monthly_price]", "599.00")
    await page.click("input[type=submit][value=Save]")
    assert page.url.startswith(f"{server}/admin/tariff/list")
    assert "599.00\u00a0₽" in await page.inner_text("table")
    await page.screenshot(path=str(tmp_path / "tariffs.png"))

    # Its page shows the price history, naming who changed it.
    await page.goto(f"{server}/admin/tariff/details/{tariff.id}")
    history = await page.inner_text("#price-history")
    assert "499.00\u00a0₽" in history and "599.00\u00a0₽" in history and "marta" in history

    async with sessions() as session:
        [change] = await session.scalars(select(TariffPrice))
        [entry] = await session.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == "tariffs")
        )
    assert (change.previous_price, change.monthly_price, change.changed_by) == (
        49900,
        59900,
        "marta",
    )
    assert (entry.actor, entry.action) == ("marta", "update")

    # Payments: filter by status, then export what the list shows.
    await page.goto(f"{server}/admin/payment/list")
    assert str(payment_id) in await page.content()
    await page.click("a[href$='status=succeeded']")
    async with page.expect_download() as download_info:
        await page.click("#export-csv")
    download = await download_info.value
    assert download.suggested_filename.endswith(".csv")
    exported = await asyncio.to_thread(Path(await download.path()).read_text)
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert (row["Payment"], row["Status"], row["Amount"]) == (
        str(payment_id),
        "succeeded",
        "499.00",
    )

    # Logging out ends the session.
    await page.click("a[href$='/admin/logout']")
    assert page.url == f"{server}/admin/login"
    await page.goto(f"{server}/admin/payment/list")
    assert page.url == f"{server}/admin/login"


# Every violation of the page's policy, as the page itself reports it (the event fires for
# each one, whether or not the console shows it).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


class Watched:
    """A page whose policy violations, console errors and script errors are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.script_errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    async def violations(self) -> list[str]:
        found: list[str] = await self.page.evaluate("window.cspViolations || []")
        return found

    async def assert_clean(self, where: str) -> None:
        assert await self.violations() == [], where
        assert self.console_errors == [], where
        assert self.script_errors == [], where


async def test_the_panel_works_under_its_policy_and_logout_ends_the_session(
    server: str, browser: Browser, sessions: Sessions
) -> None:
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    tariff = await add_tariff(sessions, price=49900)
    await add_payment(
        sessions,
        tariff,
        user_id=uuid.uuid4(),
        created_at=datetime(2025, 5, 10, tzinfo=UTC),
        status=PaymentStatus.SUCCEEDED,
    )
    context = await browser.new_context()
    await context.add_init_script(RECORD_VIOLATIONS)
    watched = Watched(await context.new_page())
    page = watched.page

    # The watch itself works: something the policy forbids is reported.
    await page.goto(f"{server}/admin/login")
    await page.evaluate(
        "() => { const image = new Image(); image.src = 'http://elsewhere.test/pixel.png';"
        " document.body.append(image); }"
    )
    await page.wait_for_function("window.cspViolations.length > 0")
    assert await watched.violations() == ["img-src http://elsewhere.test/pixel.png"]
    await page.reload()
    watched.console_errors.clear()  # the refused image's own console line

    response = await page.goto(f"{server}/admin/login")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    await watched.assert_clean("login page")

    await log_in(page, server, "marta", PASSWORD)
    assert page.url == f"{server}/admin/"
    await watched.assert_clean("first page")

    # A list with filters and an export button, forms with times typed as the language
    # writes them, a message after saving, a delete dialog (its DELETE sent by the page's
    # script).
    await page.goto(f"{server}/admin/payment/list")
    await page.click("a[href$='status=succeeded']")
    await watched.assert_clean("payments")
    await page.goto(f"{server}/admin/subscription/create")
    period_end = "input[name=current_period_end]"
    assert await page.get_attribute(period_end, "placeholder") == "YYYY-MM-DD HH:MM"
    await watched.assert_clean("subscription form")
    await page.goto(f"{server}/admin/promo-code/create")
    await page.fill("input[name=code]", "SPRING25")
    await page.fill("input[name=percent]", "25")
    # A time typed as the language writes it (English: ISO), a text box with its format.
    assert await page.get_attribute("input[name=valid_until]", "placeholder") == "YYYY-MM-DD HH:MM"
    await page.fill("input[name=valid_until]", "2027-12-31 23:59")
    await page.click("input[type=submit][value=Save]")
    assert page.url.startswith(f"{server}/admin/promo-code/list")
    assert "SPRING25" in await page.inner_text("table")
    async with sessions() as session:
        spring = await session.scalar(select(PromoCode))
    assert spring is not None and spring.valid_until == datetime(2027, 12, 31, 23, 59, tzinfo=UTC)
    # The message is shown without the inline script SQLAdmin has for it, and closes.
    toast = page.locator(".toast")
    assert "created" in await toast.inner_text()
    await page.click(".toast .btn-close")
    await toast.wait_for(state="hidden")
    await page.click("a[data-bs-target='#modal-delete'][data-pk]")
    await page.wait_for_selector("#modal-delete-button", state="visible")
    async with page.expect_navigation():
        await page.click("#modal-delete-button")  # a DELETE from the page's script
    async with sessions() as session:
        assert list(await session.scalars(select(PromoCode))) == []
    await page.goto(f"{server}/admin/tariff/edit/{tariff.id}")
    assert await page.input_value("input[name=monthly_price]") == "499.00"
    await watched.assert_clean("promo codes and tariffs")

    # A form on another site (here: a page of no origin) posting a new price is refused.
    cookies: list[Any] = await context.cookies()
    [session_cookie] = [cookie for cookie in cookies if cookie["name"] == "billing_admin"]
    await page.goto("about:blank")
    await page.set_content(
        f'<form method="post" action="{server}/admin/tariff/edit/{tariff.id}">'
        '<input name="name" value="Hacked"><input name="monthly_price" value="1">'
        '<input name="save" value="Save"><button id="send">send</button></form>'
    )
    async with page.expect_navigation() as navigation:
        await page.click("#send")
    refused = await navigation.value
    assert refused is not None and refused.status == 403
    assert "sent from another site" in await page.inner_text("body")
    watched.console_errors.remove(
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    )
    async with sessions() as session:
        unchanged = await session.get_one(Tariff, tariff.id)
    assert (unchanged.name, unchanged.monthly_price) == (tariff.name, 49900)

    # Logging out ends the session on the server: the old cookie, replayed, opens nothing.
    await page.goto(f"{server}/admin/")
    await page.click("a[href$='/admin/logout']")
    assert page.url == f"{server}/admin/login"
    async with sessions() as session:
        assert list(await session.scalars(select(AdminSession))) == []
    await context.add_cookies([session_cookie])
    await page.goto(f"{server}/admin/payment/list")
    assert page.url == f"{server}/admin/login"
    await watched.assert_clean("after logout")
    await context.close()


async def test_deactivating_an_account_from_the_command_line_ends_its_sessions(
    server: str, sessions: Sessions, database_url: str, tmp_path: Path
) -> None:
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    async with httpx.AsyncClient(base_url=server) as browser:
        response = await browser.post(
            "/admin/login", data={"username": "marta", "password": PASSWORD}
        )
        assert response.status_code == 302
        assert (await browser.get("/admin/")).status_code == 200

        command = [BILLING, "admin", "deactivate", "--username", "Marta"]
        env = environment(tmp_path / "cli", BILLING_DATABASE_URL=database_url)
        done = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()
        assert "sessions ended" in done.stdout.decode()

        out = await browser.get("/admin/")
        assert (out.status_code, out.headers["location"]) == (302, f"{server}/admin/login")
        again = await browser.post("/admin/login", data={"username": "marta", "password": PASSWORD})
        assert again.status_code == 400
    unknown = await asyncio.to_thread(
        subprocess.run,
        [BILLING, "admin", "deactivate", "--username", "nobody"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert unknown.returncode == 1
    assert "no admin user 'nobody'" in unknown.stderr.decode()
