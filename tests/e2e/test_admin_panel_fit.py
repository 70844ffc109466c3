"""Every list of the panel fits a 1366 px and a 1920 px screen in both languages, with long
realistic rows in each table: no column is pushed out of sight behind a horizontal scroll,
every header is on screen, and no English is left on a Russian page."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from billing.admin.service import create_admin_user
from billing.models import (
    AdminRole,
    AuditEntry,
    DurationDiscount,
    OutboxEvent,
    PaymentStatus,
    PromoCode,
    Subscription,
    TariffPrice,
    UserDiscount,
)
from tests.e2e.test_admin_panel import PASSWORD, Sessions, browser, chromium, log_in
from tests.e2e.test_admin_panel_pages import DOCS_SCREENSHOTS, server
from tests.integration.checkout_helpers import add_tariff
from tests.integration.test_admin_api_payments import add_payment

__all__ = ["browser", "chromium", "server"]  # fixtures shared with the other panel tests
LISTS = (
    "payment",
    "subscription",
    "tariff",
    "tariff-price",
    "user-discount",
    "duration-discount",
    "promo-code",
    "audit-entry",
    "outbox-event",
)
# The lists' screenshots under docs/screenshots/ (payments and tariffs: test_admin_panel_pages).
SHOTS = {
    "subscription": "subscriptions",
    "tariff-price": "price-history",
    "user-discount": "personal-discounts",
    "duration-discount": "duration-discounts",
    "promo-code": "promo-codes",
    "audit-entry": "audit-log",
    "outbox-event": "outbox",
}
SCREENS = ({"width": 1366, "height": 768}, {"width": 1920, "height": 1080})
LONG_ERROR = (
    "AMQPConnectionError: Server connection was lost while publishing to exchange "
    "billing.notifications (routing key subscription.renewal_failed); retrying in 300 s"
)


async def long_rows(sessions: Sessions) -> None:
    """A few rows in every table the panel lists, with the longest values people write."""
    now = datetime.now(UTC).replace(microsecond=0)
    tariff = await add_tariff(sessions, price=1_234_567_89, role="premium-family-4k-hdr-annual")
    users = [uuid.uuid4() for _ in range(3)]
    for index, user in enumerate(users):
        await add_payment(
            sessions, tariff, user_id=user, created_at=now - timedelta(hours=index),
            amount=1_234_567_89,
            status=(PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)[index % 2],
        )  # fmt: skip
    async with sessions() as session, session.begin():
        for index, user in enumerate(users):
            session.add_all(
                [
                    Subscription(
                        id=uuid.uuid4(),
                        user_id=user,
                        tariff_id=tariff.id,
                        role=tariff.role,
                        status="active",
                        current_period_end=now + timedelta(days=30),
                        auto_renew=True,
                        renewal_months=12,
                    ),
                    TariffPrice(
                        id=uuid.uuid4(),
                        tariff_id=tariff.id,
                        previous_price=99_999_99,
                        monthly_price=1_234_567_89,
                        currency="RUB",
                        changed_by="marketing.lead.ekaterina.konstantinopolskaya@cinema.example",
                    ),
                    UserDiscount(
                        user_id=user,
                        percent=Decimal("12.5"),
                        valid_until=now + timedelta(days=90),
                        reason="Компенсация за недоступность сервиса 14–16 ноября (обращение "
                        "в поддержку №48213), согласовано руководителем отдела",
                    ),
                    DurationDiscount(months=3 + index * 3, percent=Decimal("7.5") + index),
                    PromoCode(
                        id=uuid.uuid4(),
                        code=f"NEWYEAR2027-FAMILY-{index:04d}-XMAS",
                        amount=99_999_99 if index % 2 else None,
                        currency="RUB" if index % 2 else None,
                        percent=None if index % 2 else Decimal("33.33"),
                        valid_from=now,
                        valid_until=now + timedelta(days=365),
                        max_redemptions=1_000_000,
                        redemptions_count=999_999,
                        created_by="marketing.lead.ekaterina.konstantinopolskaya@cinema.example",
                    ),
                    AuditEntry(
                        id=uuid.uuid4(),
                        actor="marketing.lead.ekaterina.konstantinopolskaya@cinema.example",
                        action="update",
                        entity_type="promo_codes",
                        entity_id=str(uuid.uuid4()),
                        before={
                            "code": "NEWYEAR2027-FAMILY-0001-XMAS",
                            "percent": "33.33",
                            "valid_until": "2027-12-31T23:59:59+00:00",
                            "max_redemptions": 10,
                        },
                        after={
                            "code": "NEWYEAR2027-FAMILY-0001-XMAS",
                            "percent": "33.33",
                            "valid_until": "2028-12-31T23:59:59+00:00",
                            "max_redemptions": 1000000,
                        },
                    ),
                    OutboxEvent(
                        id=uuid.uuid4(),
                        type="subscription.renewal_failed",
                        user_id=user,
                        payload={"user_id": str(user), "reason": "card_declined"},
                        status="failed",
                        attempts=12,
                        next_attempt_at=now + timedelta(hours=2),
                        last_error=LONG_ERROR,
                        delivered_at=None,
                    ),
                ]
            )
            await session.flush()  # the subscriptions' partial unique index: one live per user


async def fits(page: Page) -> dict[str, object]:
    """What a person sees of the list's table: does it fit its box, is every header on
    screen (not clipped by the box or the window)."""
    measured: dict[str, object] = await page.evaluate(
        """() => {
          const table = document.querySelector('.card-table');
          const box = table.parentElement;
          const right = Math.min(box.getBoundingClientRect().right, window.innerWidth);
          const hidden = [...table.querySelectorAll('thead th')]
            .filter(th => th.getBoundingClientRect().right > right + 1
                       || th.getBoundingClientRect().width < 8)
            .map(th => th.innerText.trim());
          return {scroll: box.scrollWidth, client: box.clientWidth, hidden,
                  page: document.documentElement.scrollWidth, window: window.innerWidth,
                  headers: table.querySelectorAll('thead th').length};
        }"""
    )
    return measured


@pytest.mark.parametrize("locale", ["ru", "en"])
async def test_every_list_fits_the_screen(
    server: str, browser: Browser, sessions: Sessions, tmp_path: Path, locale: str
) -> None:
    shots = DOCS_SCREENSHOTS if os.environ.get("BILLING_UPDATE_SCREENSHOTS") == "1" else tmp_path
    async with sessions() as session, session.begin():
        marta = await create_admin_user(session, "marta", PASSWORD, AdminRole.ADMIN)
        marta.locale = locale
    await long_rows(sessions)
    misfits = []
    for screen in SCREENS:
        context = await browser.new_context(viewport=screen)
        page = await context.new_page()
        await log_in(page, server, "marta", PASSWORD)
        for identity in LISTS:
            await page.goto(f"{server}/admin/{identity}/list")
            assert await page.locator(".card-table tbody tr").count() >= 1, identity
            measured = await fits(page)
            where = f"{identity} at {screen['width']} px in {locale}"
            if screen["width"] == 1366:
                if locale == "ru" and identity in SHOTS:
                    await page.screenshot(path=str(shots / f"{SHOTS[identity]}-ru.png"))
                elif locale == "en" and identity in ("payment", "promo-code"):
                    await page.screenshot(path=str(shots / f"{identity}s-en.png"))
            if not (
                measured["scroll"] <= measured["client"]
                and measured["page"] <= measured["window"]
                and measured["hidden"] == []
            ):
                misfits.append((where, measured))
        await context.close()
    assert misfits == []


# Every word in Latin letters a person sees on the page (text, placeholders, tooltips,
# buttons), the list's rows aside (data, not labels).
ENGLISH_WORDS = r"""() => {
  const skip = el => el.closest(
    '.card-table tbody, script, style, .short-id, #language-switch, .flatpickr-calendar');
  const words = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && !skip(node.parentElement)
        && node.parentElement.getClientRects().length) {
      (node.textContent.match(/[A-Za-z_]{2,}/g) || []).forEach(w => words.add(w));
    }
  }
  const labelled = '[placeholder], [title], [aria-label], input[type=submit]';
  document.querySelectorAll(labelled).forEach(el => {
    if (skip(el)) return;
    for (const text of [el.getAttribute('placeholder'), el.getAttribute('title'),
                        el.getAttribute('aria-label'), el.type === 'submit' ? el.value : null]) {
      (text || '').match(/[A-Za-z_]{2,}/g)?.forEach(w => words.add(w));
    }
  });
  return [...words].sort();
}"""


# What may stay in Latin letters on a Russian page: names (API, Auth, MRR, UTC, CSV, UUID,
# RUB, yookassa) and the data of long_rows.
LATIN_ALLOWED = {
    "API", "Auth", "MRR", "UTC", "CSV", "UUID", "Id", "RUB", "yookassa", "marta", "cli",
    "premium", "family", "annual", "hdr", "Premium", "Family", "Annual", "Hdr", "SPRING",
    "marketing", "lead", "ekaterina", "konstantinopolskaya", "cinema", "example",
    "subscription", "renewal_failed",
}  # fmt: skip


def english_left(words: list[str]) -> list[str]:
    """Latin words that are neither allowed nor pieces of a UUID (``a3eb``)."""
    return [w for w in words if w not in LATIN_ALLOWED and not set(w) <= set("abcdef")]


async def test_no_english_is_left_on_russian_pages(
    server: str, browser: Browser, sessions: Sessions
) -> None:
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.ADMIN)
    await long_rows(sessions)
    page = await browser.new_page(viewport={"width": 1366, "height": 768})
    await page.goto(f"{server}/admin/login")
    await page.fill("input[name=username]", "marta")
    await page.fill("input[name=password]", "not her password")
    await page.click("button[type=submit]")
    english = {"login": english_left(await page.evaluate(ENGLISH_WORDS))}
    await log_in(page, server, "marta", PASSWORD)
    await page.wait_for_selector("body[data-charts-drawn='3']")  # its scripts ran
    english["dashboard"] = english_left(await page.evaluate(ENGLISH_WORDS))
    for identity in LISTS:
        await page.goto(f"{server}/admin/{identity}/list")
        english[f"{identity} list"] = english_left(await page.evaluate(ENGLISH_WORDS))
        for kind in ("details", "edit"):
            link = page.locator(f".card-table tbody a[href*='/{kind}/']")
            if await link.count():
                await page.goto(str(await link.first.get_attribute("href")))
                english[f"{identity} {kind}"] = english_left(await page.evaluate(ENGLISH_WORDS))
                await page.go_back()
        if await page.locator(f"a[href$='/admin/{identity}/create']").count():
            await page.goto(f"{server}/admin/{identity}/create")
            english[f"{identity} create"] = english_left(await page.evaluate(ENGLISH_WORDS))
    assert {where: words for where, words in english.items() if words} == {}


async def test_dates_are_typed_as_the_language_writes_them(
    server: str, browser: Browser, sessions: Sessions, tmp_path: Path
) -> None:
    """Russian (the default): ДД.ММ.ГГГГ in the filters, the dashboard's period and the
    forms' times, read on the server, and percents with a comma; a wrong password keeps the
    username typed."""
    shots = DOCS_SCREENSHOTS if os.environ.get("BILLING_UPDATE_SCREENSHOTS") == "1" else tmp_path
    async with sessions() as session, session.begin():
        await create_admin_user(session, "marta", PASSWORD, AdminRole.MARKETING)
    tariff = await add_tariff(sessions)
    for day in (10, 20):
        await add_payment(
            sessions,
            tariff,
            user_id=uuid.uuid4(),
            created_at=datetime(2025, 5, day, 12, tzinfo=UTC),
        )
    page = await browser.new_page(viewport={"width": 1366, "height": 768})

    await log_in(page, server, "marta", "not her password")
    assert await page.inner_text("#login-error") == "Неверное имя пользователя или пароль."
    assert await page.input_value("input[name=username]") == "marta"
    await page.screenshot(path=str(shots / "login-ru.png"))
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    assert page.url == f"{server}/admin/"

    # The dashboard's own period.
    assert await page.get_attribute("input[name=from]", "placeholder") == "ДД.ММ.ГГГГ"
    await page.fill("input[name=from]", "01.05.2025")
    await page.fill("input[name=to]", "31.05.2025")
    await page.click("#period button[type=submit]")
    assert await page.inner_text("#period-shown") == "01.05.2025 – 31.05.2025 (UTC)"
    assert await page.input_value("input[name=from]") == "01.05.2025"
    await page.fill("input[name=from]", "31.05.2025")
    await page.fill("input[name=to]", "01.05.2025")
    await page.click("#period button[type=submit]")
    assert await page.inner_text("#period-error") == "Начало периода позже его конца."

    # A date filter of the payments.
    await page.goto(f"{server}/admin/payment/list")
    box = page.get_by_label("Создан не раньше")
    assert await box.get_attribute("placeholder") == "ДД.ММ.ГГГГ"
    await box.fill("15.05.2025")
    await box.press("Enter")
    table = await page.inner_text(".card-table tbody")
    assert "20.05.2025" in table and "10.05.2025" not in table
    await page.goto(f"{server}/admin/payment/list?from=2025%2F05%2F15")
    assert "Создан не раньше: дата вида ДД.ММ.ГГГГ" in await page.inner_text("body")
    await page.goto(f"{server}/admin/payment/list?user_id=someone")
    assert "Пользователь: это не UUID" in await page.inner_text("body")

    # A time in a form: refused as typed, kept in its box; then saved and shown back.
    user = uuid.uuid4()
    await page.goto(f"{server}/admin/user-discount/create")
    until = page.locator("input[name=valid_until]")
    assert await until.get_attribute("placeholder") == "ДД.ММ.ГГГГ ЧЧ:ММ"
    await page.fill("input[name=user_id]", str(user))
    await page.fill("input[name=percent]", "12,5")  # the Russian decimal comma
    await until.fill("31/12/2027")
    await page.click("input[type=submit][name=save]")
    assert "дата вида ДД.ММ.ГГГГ ЧЧ:ММ" in await page.inner_text("form[enctype]")
    assert await until.input_value() == "31/12/2027"
    await until.fill("31.12.2027 23:59")
    await page.click("input[type=submit][name=save]")
    assert page.url.startswith(f"{server}/admin/user-discount/list")
    async with sessions() as session:
        discount = await session.get_one(UserDiscount, user)
    assert discount.valid_until == datetime(2027, 12, 31, 23, 59, tzinfo=UTC)
    assert discount.percent == Decimal("12.5")
    await page.goto(f"{server}/admin/user-discount/edit/{user}")
    assert await until.input_value() == "31.12.2027 23:59:00"
    assert await page.input_value("input[name=percent]") == "12,5"

    # The delete dialog asks in Russian (SQLAdmin's script writes English; panel.js ours).
    await page.goto(f"{server}/admin/user-discount/list")
    await page.click(f"a[data-bs-target='#modal-delete'][data-pk='{user}']")
    question = page.locator("#modal-delete-text")
    await question.wait_for(state="visible")
    assert await question.inner_text() == f"Удалить навсегда: Персональная скидка {user}?"
