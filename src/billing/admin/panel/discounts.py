"""Panel views of discounts: personal, by duration, promo codes (one or many at once)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqladmin import action
from sqladmin.fields import BooleanField, UuidField
from sqladmin.filters import BooleanFilter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from wtforms import (
    Field,
    IntegerField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    validators,
)

from billing.admin.panel.base import (
    AmountField,
    BillingView,
    PercentField,
    control,
    moment,
    moment_field,
    money,
    notify,
    percent,
    validated,
)
from billing.admin.panel.locale import Label, clipped, gettext, short_id
from billing.errors import Problem, not_found
from billing.models import DurationDiscount, PromoCode, Tariff, UserDiscount
from billing.pricing import promo_codes, service
from billing.pricing.errors import PROMO_CODE_LIMIT_BELOW_TAKEN, PROMO_CODE_NOT_REACTIVATABLE
from billing.pricing.schemas import (
    DurationDiscountIn,
    PromoCodeChange,
    PromoCodeIn,
    UserDiscountIn,
)
from billing.schemas import Page

CODES_LISTED = 20  # in the message after a bulk generation; the list and its export have all
REDEMPTIONS_SHOWN = 100  # on a code's page, newest first; the API pages through them all


def _percent_field(label: str, required: bool = True, **kwargs: Any) -> Field:
    check = validators.InputRequired() if required else validators.Optional()
    return PercentField(label, [check], places=None, render_kw=control(placeholder="10"), **kwargs)


def _until_field(label: str, description: str) -> Field:
    return moment_field(gettext(label), gettext(description))


class UserDiscountAdmin(BillingView, model=UserDiscount):
    """Each user's personal discount (``pricing.service``)."""

    name = "Personal discount"
    name_plural = "Personal discounts"
    icon = "fa-solid fa-user-tag"
    summary = "view and change each user's personal discount"
    can_create = True
    can_edit = True
    can_delete = True
    column_list = [  # noqa: RUF012
        UserDiscount.user_id,
        UserDiscount.percent,
        UserDiscount.valid_until,
        UserDiscount.reason,
        UserDiscount.updated_at,
    ]
    column_details_list = [  # noqa: RUF012
        UserDiscount.user_id,
        UserDiscount.percent,
        UserDiscount.valid_until,
        UserDiscount.reason,
        UserDiscount.created_at,
        UserDiscount.updated_at,
    ]
    column_labels = {  # noqa: RUF012
        UserDiscount.user_id: Label("User"),
        UserDiscount.percent: Label("Percent"),
        UserDiscount.valid_until: Label("Valid until"),
        UserDiscount.reason: Label("Reason"),
        UserDiscount.created_at: Label("Created"),
        UserDiscount.updated_at: Label("Updated"),
    }
    column_formatters = {  # noqa: RUF012
        UserDiscount.user_id: lambda row, _: short_id(row.user_id),
        UserDiscount.percent: lambda row, _: percent(row.percent),
        UserDiscount.reason: lambda row, _: clipped(row.reason),
    }
    column_formatters_detail = {UserDiscount.percent: lambda row, _: percent(row.percent)}  # noqa: RUF012
    column_sortable_list = [  # noqa: RUF012
        UserDiscount.percent,
        UserDiscount.valid_until,
        UserDiscount.updated_at,
    ]
    column_default_sort = [("updated_at", True)]  # noqa: RUF012
    column_searchable_list = [UserDiscount.user_id, UserDiscount.reason]  # noqa: RUF012
    form_create_rules = ["user_id", "percent", "valid_until", "reason"]  # noqa: RUF012
    form_edit_rules = ["percent", "valid_until", "reason"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        return {
            "user_id": UuidField(
                gettext("User id"),
                [validators.InputRequired()],
                render_kw=control(placeholder="UUID"),
            ),
            "percent": _percent_field(gettext("Percent")),
            "valid_until": _until_field("Valid until", "UTC; empty: no expiry."),
            "reason": TextAreaField(gettext("Reason"), render_kw=control(rows=2)),
        }

    async def _set(self, request: Request, user_id: uuid.UUID, data: dict[str, Any]) -> Any:
        body = validated(
            UserDiscountIn,
            {
                "percent": data["percent"],
                "valid_until": data["valid_until"],
                "reason": data["reason"] or "",
            },
        )
        async with self.transaction() as session:
            return await service.set_user_discount(
                session, user_id, body, actor=self.actor(request), now=self.now()
            )

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        return await self._set(request, data["user_id"], data)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        return await self._set(request, uuid.UUID(pk), data)

    async def delete_model(self, request: Request, pk: Any) -> None:
        async with self.transaction() as session:
            await service.delete_user_discount(
                session, uuid.UUID(str(pk)), actor=self.actor(request)
            )


class DurationDiscountAdmin(BillingView, model=DurationDiscount):
    """Discounts by months bought: the rule with the largest months not above applies."""

    name = "Duration discount"
    name_plural = "Duration discounts"
    icon = "fa-solid fa-calendar-days"
    summary = "discounts by the number of months bought"
    can_create = True
    can_edit = True
    can_delete = True
    can_view_details = False
    column_list = [DurationDiscount.months, DurationDiscount.percent, DurationDiscount.updated_at]  # noqa: RUF012
    column_labels = {  # noqa: RUF012
        DurationDiscount.months: Label("Months bought (or more)"),
        DurationDiscount.percent: Label("Percent"),
        DurationDiscount.updated_at: Label("Updated"),
    }
    column_formatters = {DurationDiscount.percent: lambda row, _: percent(row.percent)}  # noqa: RUF012
    column_default_sort = [("months", False)]  # noqa: RUF012
    form_create_rules = ["months", "percent"]  # noqa: RUF012
    form_edit_rules = ["percent"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        most = self.panel.settings.max_months
        return {
            "months": IntegerField(
                gettext("Months"),
                [validators.InputRequired()],
                description=f"1–{most}",
                render_kw=control(placeholder="3"),
            ),
            "percent": _percent_field(gettext("Percent")),
        }

    async def _set(self, request: Request, months: int, data: dict[str, Any]) -> Any:
        body = validated(DurationDiscountIn, {"percent": data["percent"]})
        async with self.transaction() as session:
            return await service.set_duration_discount(
                session,
                months,
                body.percent,
                actor=self.actor(request),
                settings=self.panel.settings,
            )

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        return await self._set(request, data["months"], data)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        return await self._set(request, int(pk), data)

    async def delete_model(self, request: Request, pk: Any) -> None:
        async with self.transaction() as session:
            await service.delete_duration_discount(session, int(pk), actor=self.actor(request))


class PromoCodeAdmin(BillingView, model=PromoCode):
    """Promo codes: one (given or generated) or ``count`` generated at once; their window and
    limit edited, deactivated and reactivated; deleting a used code deactivates it
    (``pricing.promo_codes``). The discount and tariffs are never edited: they are what
    viewers were quoted. A code's page lists its redemptions."""

    name = "Promo code"
    name_plural = "Promo codes"
    icon = "fa-solid fa-ticket"
    summary = "create one or many at once, edit window and limit, deactivate, export"
    can_create = True
    can_edit = True
    can_delete = True
    can_export = True
    column_list = [  # noqa: RUF012
        PromoCode.code,
        PromoCode.percent,
        PromoCode.amount,
        PromoCode.valid_until,
        PromoCode.redemptions_count,
        PromoCode.max_redemptions,
        PromoCode.is_active,
    ]
    column_details_exclude_list = [PromoCode.id]  # noqa: RUF012
    column_export_exclude_list = [PromoCode.id]  # noqa: RUF012
    column_labels = {  # noqa: RUF012
        PromoCode.code: Label("Code"),
        PromoCode.percent: Label("Percent"),
        PromoCode.amount: Label("Amount"),
        PromoCode.currency: Label("Currency"),
        PromoCode.redemptions_count: Label("Used"),
        PromoCode.max_redemptions: Label("Limit"),
        PromoCode.is_active: Label("Active"),
        PromoCode.once_per_user: Label("Once per user"),
        PromoCode.valid_from: Label("Valid from"),
        PromoCode.valid_until: Label("Valid until"),
        PromoCode.created_at: Label("Created"),
        PromoCode.created_by: Label("Created by"),
    }
    details_template = "billing_admin/promo_code_details.html"
    column_formatters = {  # noqa: RUF012
        PromoCode.percent: lambda row, _: percent(row.percent),
        PromoCode.amount: lambda row, _: money(row.amount, row.currency),
        PromoCode.currency: lambda row, _: row.currency or "—",
    }
    column_formatters_detail = column_formatters
    column_sortable_list = [PromoCode.code, PromoCode.created_at, PromoCode.valid_until]  # noqa: RUF012
    column_default_sort = [("created_at", True), ("code", False)]  # noqa: RUF012
    column_searchable_list = [PromoCode.code]  # noqa: RUF012
    column_filters = [BooleanFilter(PromoCode.is_active, title="Active")]  # noqa: RUF012
    form_create_rules = [  # noqa: RUF012
        "code",
        "count",
        "percent",
        "amount",
        "currency",
        "valid_from",
        "valid_until",
        "max_redemptions",
        "tariff_ids",
        "once_per_user",
    ]
    # Only the window and the limit: is_active has its actions, the rest is fixed.
    form_edit_rules = ["valid_from", "valid_until", "max_redemptions"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        tariffs = await self._run_query(select(Tariff).order_by(Tariff.code))
        return {
            "code": StringField(
                gettext("Code"),
                description=gettext("Empty: generated. Matched case-insensitively."),
                render_kw=control(placeholder="SPRING25"),
            ),
            "count": IntegerField(
                gettext("How many"),
                [validators.Optional()],
                description=gettext(
                    "Generate this many codes with the same terms (leave Code empty)."
                ),
                render_kw=control(placeholder="1"),
            ),
            "percent": _percent_field(gettext("Percent off"), required=False),
            "amount": AmountField(
                gettext("Amount off"),
                description=gettext("Instead of a percent."),
                render_kw=control(),
            ),
            "currency": StringField(
                gettext("Currency of the amount"),
                description=gettext("Empty: %(currency)s.")
                % {"currency": self.panel.settings.currency},
                render_kw=control(),
            ),
            "valid_from": _until_field("Valid from", "UTC; empty: from now."),
            "valid_until": _until_field("Valid until", "UTC; empty: no end."),
            "max_redemptions": IntegerField(
                gettext("Redemption limit"),
                [validators.Optional()],
                description=gettext(
                    "Empty: no limit. Never below the redemptions already reserved or redeemed."
                ),
                render_kw=control(),
            ),
            "tariff_ids": SelectMultipleField(
                gettext("Only for tariffs"),
                choices=[(str(t.id), t.code) for t in tariffs],
                description=gettext("None chosen: every tariff."),
                render_kw=control(),
            ),
            "once_per_user": BooleanField(
                gettext("Once per user"), default=True, render_kw={"class": "form-check-input"}
            ),
        }

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = validated(
            PromoCodeIn,
            {
                "code": (data["code"] or "").strip() or None,
                "count": data["count"],
                "percent": data["percent"],
                "amount": data["amount"],
                "currency": (data["currency"] or "").strip() or None,
                "valid_from": data["valid_from"],
                "valid_until": data["valid_until"],
                "max_redemptions": data["max_redemptions"],
                "tariff_ids": data["tariff_ids"] or None,
                "once_per_user": data["once_per_user"],
            },
        )
        async with self.transaction() as session:
            created = await promo_codes.create_promo_codes(
                session,
                body,
                actor=self.actor(request),
                now=self.now(),
                settings=self.panel.settings,
            )
            first = await session.get_one(PromoCode, created[0].id)
        codes = [promo.code for promo in created]
        more = len(codes) - CODES_LISTED
        listed = ", ".join(codes[:CODES_LISTED])
        if more > 0:
            listed += gettext(" and %(count)s more") % {"count": more}
        created_message = gettext("%(count)s promo code(s) created: %(codes)s")
        notify(request, created_message % {"count": len(codes), "codes": listed})
        return first

    async def delete_model(self, request: Request, pk: Any) -> None:
        async with self.transaction() as session:
            promo = await _promo(session, pk)
            await promo_codes.delete_promo_code(session, promo.code, actor=self.actor(request))

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in self.form_edit_rules}

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        async with self.transaction() as session:
            promo = await _promo(session, pk)
            # What the form shows and sends back unchanged means "keep it" (a time shown to
            # the minute or second): an ended code's end is not set anew, in the past.
            changes = {
                name: data[name]
                for name in self.form_edit_rules
                if not _same(data[name], getattr(promo, name))
            }
            await self._change(request, session, promo, changes)
        return promo

    async def _change(
        self, request: Request, session: AsyncSession, promo: PromoCode, changes: dict[str, Any]
    ) -> None:
        """The admin API's change (same checks, same audit entry); a refusal in words."""
        try:
            change = validated(PromoCodeChange, changes)
            await promo_codes.update_promo_code(
                session, promo.code, change, actor=self.actor(request), now=self.now()
            )
        except Problem as problem:
            raise Problem(problem.status, problem.code, _in_words(problem, promo)) from None

    @action(
        name="deactivate",
        label=Label("Deactivate code"),
        confirmation_message=Label(
            "Deactivate? Viewers can no longer use the code; invoices already issued keep "
            "their discount."
        ),
    )
    async def deactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=False)

    @action(name="reactivate", label=Label("Reactivate code"))
    async def reactivate(self, request: Request) -> Response:
        return await self._set_active(request, active=True)

    async def _set_active(self, request: Request, *, active: bool) -> Response:
        async def set_active(session: AsyncSession, pk: str) -> bool:
            promo = await _promo(session, pk)
            if promo.is_active == active:
                return False
            await self._change(request, session, promo, {"is_active": active})
            return True

        changes = await self.for_each_selected(request, set_active, not_an_id="not a promo code")
        if any(changes):
            done = (
                "Promo codes reactivated: %(count)s"
                if active
                else "Promo codes deactivated: %(count)s"
            )
            notify(request, gettext(done) % {"count": sum(changes)})
        return self.back_from_action(request)

    async def details_context(self, request: Request) -> dict[str, Any]:
        async with self.transaction() as session:
            promo = await _promo(session, request.path_params["pk"])
            redemptions = await promo_codes.list_redemptions(
                session, promo.code, Page(limit=REDEMPTIONS_SHOWN, offset=0)
            )
        return {
            "redemptions": redemptions,
            "redemptions_shown": REDEMPTIONS_SHOWN,
            "money": money,
            "moment": moment,
        }


async def _promo(session: AsyncSession, pk: Any) -> PromoCode:
    """The code of a panel address (its id); a malformed or unknown id is not found."""
    try:
        promo = await session.get(PromoCode, uuid.UUID(str(pk)))
    except ValueError:
        promo = None
    if promo is None:
        raise not_found("promo code", promo_codes.PROMO_CODE_NOT_FOUND)
    return promo


def _same(shown: Any, stored: Any) -> bool:
    if isinstance(shown, datetime) and isinstance(stored, datetime):
        return shown in (stored.replace(microsecond=0), stored.replace(second=0, microsecond=0))
    return bool(shown == stored)


def _in_words(problem: Problem, promo: PromoCode) -> str:
    """A refusal of the edit in the panel's language."""
    if problem.code == PROMO_CODE_LIMIT_BELOW_TAKEN.code:
        message = (
            "The limit cannot be below the %(taken)s redemptions already reserved or redeemed."
        )
    elif problem.code == PROMO_CODE_NOT_REACTIVATABLE.code:
        message = (
            "%(code)s has ended or is used up: first give it a later end or a higher limit (Edit)."
        )
    else:
        return gettext(problem.detail)
    return gettext(message) % {"code": promo.code, "taken": promo.redemptions_count}
