"""Editing a promo code in the panel, in real Chromium against `billing serve` (Russian, the
default): a viewer pays with the code and the code's page lists the redemption; marketing
changes its limit and end date (a limit below what is taken is refused in words), then
deactivates and reactivates it, each change in the audit log. The code's page is saved as
docs/screenshots/promo-code-ru.png when BILLING_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page
from sqlalchemy import select

from billing.admin.service import create_admin_user
from billing.auth import issue_token
from billing.config import Settings
from billing.models import AdminRole, AuditEntry, PromoCode
from tests.conftest import TEST_JWT_SECRET
from tests.e2e.test_admin_panel import (
    PASSWORD,
    RECORD_VIOLATIONS,
    Sessions,
    Watched,
    browser,
    chromium,
    log_in,
)
from tests.e2e.test_admin_panel_pages import SCREEN, server
from tests.e2e.test_browser_checkout import screenshots
from tests.integration.checkout_helpers import add_tariff

__all__ = ["browser", "chromium", "server"]  # the fixtures


async def issue_invoice(server: str, tariff_id: uuid.UUID, promo_code: str) -> tuple[str, dict]:
    """A new viewer's invoice with the code: the viewer, and the invoice."""
    user = str(uuid.uuid4())
    token = issue_token(Settings(jwt_secret=TEST_JWT_SECRET), user, email=f"{user}@example.com")
    async with httpx.AsyncClient(base_url=server) as http:
        response = await http.post(
            "/api/v1/invoices",
            json={"tariff_id": str(tariff_id), "months": 1, "promo_code": promo_code},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    return user, response.json()


async def pay(page: Page, checkout_url: str) -> None:
    """What the viewer does: the invoice's link, the provider's page, the pay button."""
    await page.goto(checkout_url)
    await page.click("button[value=pay]")
    await page.wait_for_url("**/api/v1/checkout/return?**")
    assert await page.get_by_test_id("outcome").get_attribute("data-outcome") == "succeeded"


async def promo(sessions: Sessions, promo_id: uuid.UUID) -> PromoCode:
    async with sessions() as session:
        return await session.get_one(PromoCode, promo_id)


async def test_marketing_edits_deactivates_and_reactivates_a_code_and_sees_who_paid(
    server: str,
    browser: Browser,
    sessions: Sessions,
    tmp_path: Path,
) -> None:
    shots = screenshots(tmp_path)
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    tariff = await add_tariff(sessions, price=49900)
    now = datetime.now(UTC).replace(microsecond=0)
    code = PromoCode(
        id=uuid.uuid4(), code="SPRING20", percent=20, max_redemptions=100,
        valid_until=now + timedelta(days=7), created_by="marta",
    )  # fmt: skip
    async with sessions() as session, session.begin():
        session.add(code)
    # One viewer pays with the code (in a browser of their own), another holds an invoice
    # with it: 2 of 100 are taken.
    payer, paid = await issue_invoice(server, tariff.id, "spring20")
    viewers_browser = await browser.new_context()
    await pay(await viewers_browser.new_page(), paid["checkout_url"])
    await viewers_browser.close()
    holder, held = await issue_invoice(server, tariff.id, "SPRING20")
    context = await browser.new_context(viewport=SCREEN)
    await context.add_init_script(RECORD_VIOLATIONS)
    watched = Watched(await context.new_page())
    page = watched.page

    await log_in(page, server, "marta", PASSWORD)
    await page.goto(f"{server}/admin/promo-code/details/{code.id}")
    rows = page.locator("#redemptions tr.redemption")
    assert await rows.count() == 2
    newest, oldest = rows.nth(0), rows.nth(1)
    assert await newest.get_attribute("data-status") == "reserved"
    assert await newest.locator(".redemption-user").inner_text() == holder
    assert await newest.locator(".redemption-invoice").inner_text() == held["id"]
    assert await oldest.get_attribute("data-status") == "redeemed"
    assert await oldest.locator(".redemption-user").inner_text() == payer
    assert "использован" in await oldest.inner_text()
    # 20 % of 499,00 ₽.
    assert await oldest.locator(".redemption-discount").inner_text() == "99,80\u00a0₽"
    await watched.assert_clean("the code's page")

    # The limit cannot go below the two taken; said in Russian, nothing changed.
    await page.click(f"a[href$='/admin/promo-code/edit/{code.id}']")
    assert await page.input_value("input[name=max_redemptions]") == "100"
    await page.fill("input[name=max_redemptions]", "1")
    await page.click("input[type=submit][name=save] >> nth=0")
    assert await page.inner_text("[role=alert]") == (
        "Лимит не может быть меньше уже забронированных и использованных: 2."
    )
    assert (await promo(sessions, code.id)).max_redemptions == 100
    watched.console_errors.remove(  # the refused form's answer
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    )

    # A new limit and a new end date.
    new_end = now + timedelta(days=60)
    await page.fill("input[name=valid_until]", new_end.strftime("%Y-%m-%d %H:%M:%S"))
    await page.fill("input[name=max_redemptions]", "50")
    # Enter saves (the form's first button): a date picker, if any, may cover the buttons.
    await page.press("input[name=max_redemptions]", "Enter")
    await page.wait_for_url("**/admin/promo-code/list**")
    assert page.url.startswith(f"{server}/admin/promo-code/list")
    edited = await promo(sessions, code.id)
    assert (edited.max_redemptions, edited.valid_until) == (50, new_end)

    # Deactivate (confirmed in a dialog) and reactivate from the code's page.
    await page.goto(f"{server}/admin/promo-code/details/{code.id}")
    await page.click("a[data-bs-target='#modal-confirmation-deactivate']")
    confirm = page.locator("#modal-confirmation-deactivate a.btn-blue")
    await confirm.wait_for(state="visible")
    async with page.expect_navigation():
        await confirm.click()
    assert page.url == f"{server}/admin/promo-code/details/{code.id}"
    assert "Отключено промокодов: 1" in await page.locator(".toast").inner_text()
    assert (await promo(sessions, code.id)).is_active is False

    async with page.expect_navigation():
        await page.click("a[href*='/admin/promo-code/action/reactivate']")
    assert "Снова включено промокодов: 1" in await page.locator(".toast").inner_text()
    assert (await promo(sessions, code.id)).is_active is True
    await page.click(".toast .btn-close")
    await watched.assert_clean("edit, deactivate, reactivate")
    await page.screenshot(path=str(shots / "promo-code-ru.png"), full_page=True)
    await context.close()

    async with sessions() as session:
        entries = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "promo_codes")
            .order_by(AuditEntry.created_at)
        )
        audited = [(entry.actor, entry.action) for entry in entries]
    assert audited == [("marta", "update"), ("marta", "deactivate"), ("marta", "reactivate")]
