"""The panel speaks Russian by default (BILLING_ADMIN_LOCALE) and English when the account
chooses it; money, dates and messages follow the language."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from billing.models import AdminUser
from tests.integration.checkout_helpers import add_tariff
from tests.integration.test_admin_panel_http import Sessions, add_admin, login, panel_client


async def logged_in(app: FastAPI, sessions: Sessions, name: str = "marta") -> httpx.AsyncClient:
    await add_admin(sessions, name)
    client = panel_client(app)
    assert (await login(client, name)).status_code == 302
    return client


async def test_russian_by_default_english_when_the_account_chooses(
    app: FastAPI, sessions: Sessions
) -> None:
    await add_tariff(sessions, price=142215)
    marta = await logged_in(app, sessions)
    page = await marta.get("/admin/")
    assert '<html lang="ru">' in page.text
    assert "Сводка" in page.text and "Выход" in page.text  # ours and SQLAdmin's catalogue
    tariffs = await marta.get("/admin/tariff/list")
    assert "1\u00a0422,15\u00a0₽" in tariffs.text

    switched = await marta.post(
        "/admin/language", data={"locale": "en"}, headers={"Origin": "http://billing.test"}
    )
    assert switched.status_code == 303
    page = await marta.get("/admin/")
    assert '<html lang="en">' in page.text and "Dashboard" in page.text and "Logout" in page.text
    assert "1,422.15\u00a0₽" in (await marta.get("/admin/tariff/list")).text
    async with sessions() as session:
        assert await session.scalar(select(AdminUser.locale)) == "en"

    other = await logged_in(app, sessions, "boris")  # another account keeps the default
    assert '<html lang="ru">' in (await other.get("/admin/")).text


async def test_an_unknown_language_changes_nothing(app: FastAPI, sessions: Sessions) -> None:
    marta = await logged_in(app, sessions)
    await marta.post("/admin/language", data={"locale": "xx"})
    assert '<html lang="ru">' in (await marta.get("/admin/")).text


async def test_a_language_switch_from_another_site_is_refused(
    app: FastAPI, sessions: Sessions
) -> None:
    marta = await logged_in(app, sessions)
    refused = await marta.post(
        "/admin/language", data={"locale": "en"}, headers={"Origin": "http://evil.test"}
    )
    assert refused.status_code == 403
    assert '<html lang="ru">' in (await marta.get("/admin/")).text
