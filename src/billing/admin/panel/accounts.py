"""The panel's own accounts, for the ``admin`` role only: create, change the role, deactivate
and reactivate, reset a password (``admin.service``: the rules and the audit log). No page,
form or export shows a password hash."""

from __future__ import annotations

import uuid
from typing import Any

from sqladmin import action, expose
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from wtforms import Field, Form, PasswordField, SelectField, StringField, validators

from billing.admin.panel.auth import current_admin
from billing.admin.panel.base import BillingView, control, notify
from billing.admin.panel.locale import Label, gettext
from billing.admin.service import (
    MIN_PASSWORD_LENGTH,
    change_admin_role,
    create_admin_user,
    reset_admin_password,
    set_admin_user_active,
)
from billing.errors import Problem
from billing.models import AdminRole, AdminUser


def _password_fields() -> dict[str, Field]:
    return {
        "password": PasswordField(
            gettext("Password"),
            [validators.InputRequired()],
            description=gettext("At least %(count)s characters.") % {"count": MIN_PASSWORD_LENGTH},
            render_kw=control(autocomplete="new-password"),
        ),
        "password_again": PasswordField(
            gettext("Password again"),
            [
                validators.InputRequired(),
                validators.EqualTo("password", message=gettext("The passwords differ.")),
            ],
            render_kw=control(autocomplete="new-password"),
        ),
    }


class AdminUserAdmin(BillingView, model=AdminUser):
    """Who may use the panel. An account is never deleted (the audit log names it):
    deactivating it ends its sessions at once. An admin cannot deactivate or demote their
    own account, so the panel always keeps an active admin."""

    name = Label("Admin account")
    name_plural = Label("Admin accounts")
    icon = "fa-solid fa-user-shield"
    summary = "who may use the panel: create, deactivate, reset a password"
    can_create = True
    can_edit = True
    column_list = [  # noqa: RUF012
        AdminUser.username,
        AdminUser.role,
        AdminUser.is_active,
        AdminUser.created_at,
    ]
    column_details_list = column_list
    column_labels = {  # noqa: RUF012
        AdminUser.username: Label("Username"),
        AdminUser.role: Label("Role"),
        AdminUser.is_active: Label("Can log in"),
        AdminUser.created_at: Label("Created"),
    }
    column_formatters = {AdminUser.role: lambda row, _: gettext(row.role)}  # noqa: RUF012
    column_formatters_detail = column_formatters
    column_sortable_list = [AdminUser.username, AdminUser.created_at]  # noqa: RUF012
    column_default_sort = [("username", False)]  # noqa: RUF012
    column_searchable_list = [AdminUser.username]  # noqa: RUF012
    form_create_rules = ["username", "role", "password", "password_again"]  # noqa: RUF012
    form_edit_rules = ["role"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        return {
            "username": StringField(
                gettext("Username"),
                [validators.InputRequired()],
                description=gettext("The login name; case does not matter."),
                render_kw=control(autocomplete="off"),
            ),
            "role": SelectField(
                gettext("Role"),
                choices=[(role.value, gettext(role.value)) for role in AdminRole],
                default=AdminRole.MARKETING.value,
                render_kw=control(),
            ),
            **_password_fields(),
        }

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        async with self.transaction() as session:
            return await create_admin_user(
                session,
                data["username"],
                data["password"],
                AdminRole(data["role"]),
                actor=self.actor(request),
            )

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        async with self.transaction() as session:
            return await change_admin_role(
                session, uuid.UUID(pk), AdminRole(data["role"]), by=current_admin(request)
            )

    # Deactivate, reactivate ---------------------------------------------------------------

    async def _set_active(self, request: Request, active: bool, done: str) -> Response:
        async def set_active(session: AsyncSession, pk: str) -> str:
            user = await set_admin_user_active(
                session, uuid.UUID(pk), active, by=current_admin(request)
            )
            return user.username

        changed = await self.for_each_selected(request, set_active, not_an_id="not an account id")
        if changed:
            notify(request, f"{gettext(done)}: {', '.join(changed)}")
        # The list, from the list or a detail page alike: it shows who can log in now.
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), 302)

    @action(
        name="deactivate",
        label=Label("Deactivate"),
        confirmation_message=Label("Deactivate the selected accounts and end their sessions?"),
    )
    async def deactivate(self, request: Request) -> Response:
        return await self._set_active(request, False, "Deactivated")

    @action(
        name="reactivate",
        label=Label("Reactivate"),
        confirmation_message=Label("Let the selected accounts log in again?"),
    )
    async def reactivate(self, request: Request) -> Response:
        return await self._set_active(request, True, "Reactivated")

    # Reset a password ---------------------------------------------------------------------

    @action(name="reset-password", label=Label("Reset password"), add_in_list=False)
    async def reset_password_button(self, request: Request) -> Response:
        """The detail page's button: the form of the account shown."""
        pk = request.query_params.get("pks", "").split(",")[0]
        return RedirectResponse(self._reset_url(request, pk), 302)

    def _reset_url(self, request: Request, pk: str) -> str:
        return str(request.url_for(f"admin:view-{self.identity}-reset_password", pk=pk))

    @expose("/reset-password/{pk}", methods=["GET", "POST"])
    async def reset_password(self, request: Request) -> Response:
        """A new password, typed twice; every session of the account ends."""
        account = await self._account(request.path_params["pk"])
        form_class = type("ResetPasswordForm", (Form,), _password_fields())
        form = form_class(await request.form() if request.method == "POST" else None)
        error = None
        if request.method == "POST" and form.validate():
            try:
                async with self.transaction() as session:
                    await reset_admin_password(
                        session, account.id, form["password"].data, by=current_admin(request)
                    )
            except Problem as problem:
                error = problem.detail
            else:
                notify(
                    request,
                    gettext("Password of %(username)s reset; its sessions ended.")
                    % {"username": account.username},
                )
                details = request.url_for("admin:details", identity=self.identity, pk=account.id)
                return RedirectResponse(details, 302)
        return await self.templates.TemplateResponse(
            request,
            "billing_admin/reset_password.html",
            {"model_view": self, "account": account, "form": form, "error": error},
            status_code=400 if request.method == "POST" else 200,
        )

    async def _account(self, pk: str) -> AdminUser:
        try:
            user_id = uuid.UUID(pk)
        except ValueError:
            raise HTTPException(status_code=404) from None
        found = await self._run_query(select(AdminUser).where(AdminUser.id == user_id))
        if not found:
            raise HTTPException(status_code=404)
        account: AdminUser = found[0]
        return account
