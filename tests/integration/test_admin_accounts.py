"""The panel's accounts screen over HTTP: only admins see and use it; an account created
there logs in; a password reset or a deactivation ends the account's sessions at once; an
admin cannot lock themself out; the audit log names the author and never a secret."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from billing.admin.service import set_admin_user_active
from billing.config import Settings
from billing.db import transaction
from billing.errors import Problem
from billing.models import AdminRole, AdminSession, AdminUser, AuditEntry
from tests.integration.test_admin_panel_http import (
    PASSWORD,
    Sessions,
    add_admin,
    alert,
    login,
    panel_client,
    redirects_to_login,
)

NEW_PASSWORD = "a new and longer secret"
ACCOUNTS = "/admin/admin-user"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Read in English (the Russian labels: the browser test)."""
    return settings.model_copy(update={"admin_locale": "en"})


async def logged_in(app: FastAPI, username: str, password: str = PASSWORD) -> httpx.AsyncClient:
    browser = panel_client(app)
    response = await login(browser, username, password)
    assert response.status_code == 302, response.text
    return browser


@pytest.fixture
async def root(app: FastAPI, sessions: Sessions) -> httpx.AsyncClient:
    """A browser of ``root`` (admin), logged in."""
    await add_admin(sessions, "root", AdminRole.ADMIN)
    return await logged_in(app, "root")


async def account(sessions: Sessions, username: str) -> AdminUser:
    async with sessions() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
    assert user is not None
    return user


async def audit_of_accounts(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity_type == "admin_users")
            .order_by(AuditEntry.created_at, AuditEntry.id)
        )
        return list(rows)


async def assert_no_secret_in_the_audit_log(sessions: Sessions) -> None:
    hashes = {user.password_hash for user in await all_accounts(sessions)}
    for entry in await audit_of_accounts(sessions):
        written = json.dumps([entry.before, entry.after])
        assert "password_hash" not in written and "$argon2" not in written, written
        for secret in (PASSWORD, NEW_PASSWORD, *hashes):
            assert secret not in written


async def all_accounts(sessions: Sessions) -> list[AdminUser]:
    async with sessions() as session:
        return list(await session.scalars(select(AdminUser)))


def creation(username: str, password: str = PASSWORD, again: str | None = None) -> dict[str, str]:
    return {
        "username": username,
        "role": "marketing",
        "password": password,
        "password_again": password if again is None else again,
    }


def deactivation(user: AdminUser) -> str:
    return f"{ACCOUNTS}/action/deactivate?pks={user.id}"


# --- who sees the screen ------------------------------------------------------------------


async def test_marketing_gets_403_on_the_screen_and_its_changes(
    app: FastAPI, sessions: Sessions, root: httpx.AsyncClient
) -> None:
    marta_user = await add_admin(sessions, "marta")
    marta = await logged_in(app, "marta")
    target = marta_user.id
    index = await marta.get("/admin/")
    assert index.status_code == 200 and f"{ACCOUNTS}/list" not in index.text
    for method, path, data in [
        ("GET", f"{ACCOUNTS}/list", None),
        ("GET", f"{ACCOUNTS}/details/{target}", None),
        ("GET", f"{ACCOUNTS}/create", None),
        ("POST", f"{ACCOUNTS}/create", creation("intruder")),
        ("GET", f"{ACCOUNTS}/edit/{target}", None),
        ("POST", f"{ACCOUNTS}/edit/{target}", {"role": "admin"}),
        ("GET", f"{ACCOUNTS}/action/deactivate?pks={target}", None),
        ("GET", f"{ACCOUNTS}/action/reactivate?pks={target}", None),
        ("GET", f"{ACCOUNTS}/action/reset-password?pks={target}", None),
        ("GET", f"{ACCOUNTS}/reset-password/{target}", None),
        ("POST", f"{ACCOUNTS}/reset-password/{target}", creation("")),
    ]:
        answer = await marta.request(method, path, data=data)
        assert answer.status_code == 403, (method, path, answer.status_code)
    # Nothing changed: marta is still marketing with her password, and nobody was created.
    assert {(u.username, u.role) for u in await all_accounts(sessions)} == {
        ("root", "admin"),
        ("marta", "marketing"),
    }
    assert (await login(panel_client(app), "marta")).status_code == 302
    # The admin has it in the menu.
    assert f"{ACCOUNTS}/list" in (await root.get("/admin/")).text


async def test_without_a_login_the_screen_sends_to_the_login_page(app: FastAPI) -> None:
    target = uuid.uuid4()
    async with panel_client(app) as anonymous:
        for method, path in [
            ("GET", f"{ACCOUNTS}/list"),
            ("POST", f"{ACCOUNTS}/create"),
            ("GET", f"{ACCOUNTS}/action/deactivate?pks={target}"),
            ("GET", f"{ACCOUNTS}/reset-password/{target}"),
            ("POST", f"{ACCOUNTS}/reset-password/{target}"),
        ]:
            assert redirects_to_login(await anonymous.request(method, path)), path


async def test_the_list_and_the_page_of_an_account_show_no_password_hash(
    root: httpx.AsyncClient, sessions: Sessions
) -> None:
    marta = await add_admin(sessions, "marta")
    listed = await root.get(f"{ACCOUNTS}/list")
    assert listed.status_code == 200
    assert "marta" in listed.text and "marketing" in listed.text
    details = await root.get(f"{ACCOUNTS}/details/{marta.id}")
    assert details.status_code == 200 and "marta" in details.text
    for page in (listed, details):
        assert "$argon2" not in page.text and marta.password_hash not in page.text
        assert "password_hash" not in page.text.lower()
    edit = await root.get(f"{ACCOUNTS}/edit/{marta.id}")
    assert 'name="role"' in edit.text and 'name="password' not in edit.text
    assert (await root.get(f"{ACCOUNTS}/export/csv")).status_code == 403  # no export at all


# --- creating -----------------------------------------------------------------------------


async def test_an_account_created_in_the_panel_can_log_in(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    created = await root.post(f"{ACCOUNTS}/create", data=creation("  Olga "))
    assert created.status_code == 302, alert(created)
    olga = await account(sessions, "Olga")
    assert (olga.role, olga.is_active) == ("marketing", True)
    assert (await login(panel_client(app), "olga")).status_code == 302
    [entry] = [e for e in await audit_of_accounts(sessions) if e.entity_id == str(olga.id)]
    assert (entry.actor, entry.action, entry.after) == (
        "root",
        "create",
        {"username": "Olga", "role": "marketing"},
    )
    await assert_no_secret_in_the_audit_log(sessions)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (creation("ROOT"), "admin user &#39;ROOT&#39; already exists"),
        (creation("olga", again="something else"), "The passwords differ."),
        (creation("olga", password="short"), "password: at least 8 characters"),
        (creation("   "), "username: must not be empty"),
        (creation("x" * 151), "username: at most 150 characters"),
        (creation("ol\x01ga"), "username: only printable characters"),
        ({**creation("olga"), "role": "owner"}, "Not a valid choice"),
    ],
)
async def test_a_refused_account_is_not_created_and_the_form_says_why(
    root: httpx.AsyncClient, sessions: Sessions, form: dict[str, str], message: str
) -> None:
    refused = await root.post(f"{ACCOUNTS}/create", data=form)
    assert refused.status_code == 400
    assert message in refused.text
    assert [u.username for u in await all_accounts(sessions)] == ["root"]


# --- resetting a password -----------------------------------------------------------------


async def test_a_reset_password_ends_every_session_and_the_old_one_opens_nothing(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    marta_user = await add_admin(sessions, "marta")
    marta, marta_elsewhere = await logged_in(app, "marta"), await logged_in(app, "marta")
    button = await root.get(f"{ACCOUNTS}/action/reset-password?pks={marta_user.id}")
    assert button.headers["location"].endswith(f"{ACCOUNTS}/reset-password/{marta_user.id}")
    form_page = await root.get(button.headers["location"])
    assert form_page.status_code == 200 and 'name="password_again"' in form_page.text

    differ = await root.post(
        f"{ACCOUNTS}/reset-password/{marta_user.id}",
        data={"password": NEW_PASSWORD, "password_again": "typo"},
    )
    assert differ.status_code == 400 and "The passwords differ." in differ.text
    assert (await marta.get("/admin/")).status_code == 200  # nothing happened yet

    reset = await root.post(
        f"{ACCOUNTS}/reset-password/{marta_user.id}",
        data={"password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert reset.status_code == 302
    assert reset.headers["location"].endswith(f"{ACCOUNTS}/details/{marta_user.id}")
    assert "Password of marta reset" in (await root.get(reset.headers["location"])).text
    for browser in (marta, marta_elsewhere):
        assert redirects_to_login(await browser.get("/admin/"))
    assert (await login(panel_client(app), "marta")).status_code == 400  # the old password
    assert (await login(panel_client(app), "marta", NEW_PASSWORD)).status_code == 302
    [entry] = [e for e in await audit_of_accounts(sessions) if e.action == "reset_password"]
    assert (entry.actor, entry.entity_id, entry.before, entry.after) == (
        "root",
        str(marta_user.id),
        None,
        {"sessions_ended": 2},
    )
    await assert_no_secret_in_the_audit_log(sessions)


async def test_a_short_new_password_is_refused_on_the_form(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    marta_user = await add_admin(sessions, "marta")
    refused = await root.post(
        f"{ACCOUNTS}/reset-password/{marta_user.id}",
        data={"password": "short", "password_again": "short"},
    )
    assert refused.status_code == 400
    assert alert(refused) == "password: at least 8 characters"
    assert (await login(panel_client(app), "marta")).status_code == 302
    assert (await root.get(f"{ACCOUNTS}/reset-password/{uuid.uuid4()}")).status_code == 404
    assert (await root.get(f"{ACCOUNTS}/reset-password/not-an-id")).status_code == 404


# --- deactivating -------------------------------------------------------------------------


async def test_a_deactivated_account_s_live_session_goes_to_the_login_at_its_next_request(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    marta_user = await add_admin(sessions, "marta")
    marta = await logged_in(app, "marta")
    assert (await marta.get("/admin/payment/list")).status_code == 200

    done = await root.get(deactivation(marta_user))
    assert done.status_code == 302 and done.headers["location"].endswith(f"{ACCOUNTS}/list")
    assert "Deactivated: marta" in (await root.get(done.headers["location"])).text
    assert redirects_to_login(await marta.get("/admin/payment/list"))
    assert (await login(panel_client(app), "marta")).status_code == 400
    async with sessions() as session:
        assert list(await session.scalars(select(AdminSession.admin_user_id))) == [
            (await account(sessions, "root")).id
        ]

    # Reactivated: the password works again, the old session stays ended.
    assert (await root.get(f"{ACCOUNTS}/action/reactivate?pks={marta_user.id}")).status_code == 302
    assert redirects_to_login(await marta.get("/admin/payment/list"))
    assert (await login(panel_client(app), "marta")).status_code == 302
    assert [(e.actor, e.action, e.after) for e in await audit_of_accounts(sessions)][-2:] == [
        ("root", "deactivate", {"is_active": False}),
        ("root", "reactivate", {"is_active": True}),
    ]


async def test_an_admin_cannot_deactivate_or_demote_themself(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    root_user = await account(sessions, "root")
    refused = await root.get(deactivation(root_user))
    assert refused.status_code == 302
    assert (
        "cannot deactivate or demote their own account" in (await root.get(ACCOUNTS + "/list")).text
    )
    demoted = await root.post(f"{ACCOUNTS}/edit/{root_user.id}", data={"role": "marketing"})
    assert demoted.status_code == 400
    assert "cannot deactivate or demote their own account" in alert(demoted)
    assert (await account(sessions, "root")).is_active
    assert (await account(sessions, "root")).role == "admin"
    assert (await root.get(f"{ACCOUNTS}/list")).status_code == 200  # still signed in
    assert [e.action for e in await audit_of_accounts(sessions)] == ["create"]


async def test_an_admin_changes_another_account_s_role_and_it_applies_at_once(
    app: FastAPI, root: httpx.AsyncClient, sessions: Sessions
) -> None:
    marta_user = await add_admin(sessions, "marta")
    marta = await logged_in(app, "marta")
    assert (await marta.get("/admin/outbox-event/list")).status_code == 403
    promoted = await root.post(f"{ACCOUNTS}/edit/{marta_user.id}", data={"role": "admin"})
    assert promoted.status_code == 302, alert(promoted)
    assert (await marta.get("/admin/outbox-event/list")).status_code == 200  # same session
    [entry] = [e for e in await audit_of_accounts(sessions) if e.action == "update"]
    assert (entry.actor, entry.before, entry.after) == (
        "root",
        {"role": "marketing"},
        {"role": "admin"},
    )


async def test_two_admins_deactivating_each_other_at_once_leave_one_admin(
    sessions: Sessions,
) -> None:
    anna = await add_admin(sessions, "anna", AdminRole.ADMIN)
    boris = await add_admin(sessions, "boris", AdminRole.ADMIN)

    async def deactivate(target: AdminUser, by: AdminUser) -> str:
        try:
            async with transaction(sessions) as session:
                await set_admin_user_active(session, target.id, False, by=by)
        except Problem as problem:
            return problem.code
        return "done"

    outcomes = await asyncio.gather(deactivate(boris, anna), deactivate(anna, boris))
    assert sorted(outcomes) == ["done", "forbidden"]
    assert len([u for u in await all_accounts(sessions) if u.is_active]) == 1
