"""The accounts screen in real Chromium against `billing serve` (Russian, the default): an
admin creates an account and deactivates marketing's while marketing is logged in in
another browser, whose next click lands on the login page. The list is saved as
docs/screenshots/admin-accounts-ru.png (renewed with BILLING_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.async_api import Browser, BrowserContext
from sqlalchemy import select

from billing.admin.service import create_admin_user
from billing.models import AdminRole, AdminSession, AdminUser
from tests.e2e.test_admin_panel import (
    PASSWORD,
    RECORD_VIOLATIONS,
    Sessions,
    Watched,
    browser,
    chromium,
    log_in,
)
from tests.e2e.test_admin_panel_pages import DOCS_SCREENSHOTS, SCREEN, server

__all__ = ["browser", "chromium", "server"]  # the fixtures, shared with the panel's tests


async def watched_context(browser: Browser) -> tuple[BrowserContext, Watched]:
    context = await browser.new_context(viewport=SCREEN)
    await context.add_init_script(RECORD_VIOLATIONS)
    return context, Watched(await context.new_page())


async def test_an_admin_deactivates_marketing_whose_next_click_lands_on_the_login_page(
    server: str, browser: Browser, sessions: Sessions, tmp_path: Path
) -> None:
    updating = os.environ.get("BILLING_UPDATE_SCREENSHOTS") == "1"
    shots = DOCS_SCREENSHOTS if updating else tmp_path
    async with sessions() as session, session.begin():
        await create_admin_user(session, "root", PASSWORD, AdminRole.ADMIN)
        marta = await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    admin_context, admin = await watched_context(browser)
    marketing_context, marketing = await watched_context(browser)

    await log_in(marketing.page, server, "marta", PASSWORD)
    assert marketing.page.url == f"{server}/admin/"
    # Marketing has no accounts screen.
    assert await marketing.page.locator("a[href$='/admin/admin-user/list']").count() == 0

    page = admin.page
    await log_in(page, server, "root", PASSWORD)
    await page.click("a[href$='/admin/admin-user/list']")
    assert "Учётные записи" in await page.inner_text("h3.card-title")
    assert "маркетинг" in await page.inner_text("table")

    # A new account, from the form in Russian.
    await page.click("a[href$='/admin/admin-user/create']")
    await page.fill("input[name=username]", "olga")
    await page.select_option("select[name=role]", "marketing")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password_again]", "not the same")
    await page.click("input[type=submit][name=save] >> nth=0")
    assert "Пароли не совпадают." in await page.inner_text("form[enctype]")
    await page.fill("input[name=password]", PASSWORD)
    await page.fill("input[name=password_again]", PASSWORD)
    await page.click("input[type=submit][name=save] >> nth=0")
    assert page.url.startswith(f"{server}/admin/admin-user/list")
    assert "olga" in await page.inner_text("table")

    # Deactivate marta from her page, confirming in the dialog.
    await page.goto(f"{server}/admin/admin-user/details/{marta.id}")
    assert "$argon2" not in await page.content()
    await page.click("a[data-bs-target='#modal-confirmation-deactivate']")
    await page.click("#modal-confirmation-deactivate a.btn-blue")
    await page.wait_for_url(f"{server}/admin/admin-user/list")
    assert "Отключено: marta" in await page.content()
    async with sessions() as session:
        user = await session.get_one(AdminUser, marta.id)
        left = await session.scalar(
            select(AdminSession.token_hash).where(AdminSession.admin_user_id == marta.id)
        )
    assert user.is_active is False and left is None
    shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(shots / "admin-accounts-ru.png"), full_page=True)

    # Marta's next click, in her own browser, lands on the login page.
    await marketing.page.click("a[href$='/admin/payment/list']")
    assert marketing.page.url == f"{server}/admin/login"
    await marketing.page.fill("input[name=username]", "marta")
    await marketing.page.fill("input[name=password]", PASSWORD)
    await marketing.page.click("button[type=submit]")
    assert marketing.page.url == f"{server}/admin/login"  # and she cannot log in again

    for watched in (admin, marketing):
        assert await watched.violations() == [] and watched.script_errors == []
    await admin_context.close()
    await marketing_context.close()
