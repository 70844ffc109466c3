"""Panel views of discounts: personal, by duration, promo codes (one or many at once)."""

from __future__ import annotations

import uuid
from typing import Any

from sqladmin.fields import BooleanField, UuidField
from sqladmin.filters import BooleanFilter
from sqlalchemy import select
from starlette.requests import Request
from wtforms import (
    DecimalField,
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
    control,
    moment_field,
    money,
    notify,
    percent,
    validated,
)
from billing.admin.panel.locale import Label, clipped, gettext, short_id
from billing.errors import not_found
from billing.models import DurationDiscount, PromoCode, Tariff, UserDiscount
from billing.pricing import promo_codes, service
from billing.pricing.schemas import DurationDiscountIn, PromoCodeIn, UserDiscountIn

CODES_LISTED = 20  # in the message after a bulk generation; the list and its export have all


def _percent_field(label: str, required: bool = True, **kwargs: Any) -> Field:
    check = validators.InputRequired() if required else validators.Optional()
    return DecimalField(label, [check], places=None, render_kw=control(placeholder="10"), **kwargs)


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
    """Promo codes: one (given or generated) or ``count`` generated at once; deleting a used
    code deactivates it (``pricing.promo_codes``). Codes are not edited: their terms are what
    viewers were promised."""

    name = "Promo code"
    name_plural = "Promo codes"
    icon = "fa-solid fa-ticket"
    summary = "create one or many at once, delete, export"
    can_create = True
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
        PromoCode.redemptions_count: "used",
        PromoCode.max_redemptions: "limit",
        PromoCode.is_active: "active",
        PromoCode.once_per_user: "once per user",
        PromoCode.valid_from: "valid from",
        PromoCode.valid_until: "valid until",
        PromoCode.created_at: "created",
    }
    column_formatters = {  # noqa: RUF012
        PromoCode.percent: lambda row, _: percent(row.percent),
        PromoCode.amount: lambda row, _: money(row.amount, row.currency),
    }
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

    async def form_fields(self) -> dict[str, Field]:
        tariffs = await self._run_query(select(Tariff).order_by(Tariff.code))
        return {
            "code": StringField(
                "Code",
                description="Empty: generated. Matched case-insensitively.",
                render_kw=control(placeholder="SPRING25"),
            ),
            "count": IntegerField(
                "How many",
                [validators.Optional()],
                description="Generate this many codes with the same terms (leave Code empty).",
                render_kw=control(placeholder="1"),
            ),
            "percent": _percent_field("Percent off", required=False),
            "amount": AmountField(
                "Amount off", description="Instead of a percent.", render_kw=control()
            ),
            "currency": StringField(
                "Currency of the amount",
                description=f"Empty: {self.panel.settings.currency}.",
                render_kw=control(),
            ),
            "valid_from": _until_field("Valid from", "UTC; empty: from now."),
            "valid_until": _until_field("Valid until", "UTC; empty: no end."),
            "max_redemptions": IntegerField(
                "Redemption limit",
                [validators.Optional()],
                description="Empty: no limit.",
                render_kw=control(),
            ),
            "tariff_ids": SelectMultipleField(
                "Only for tariffs",
                choices=[(str(t.id), t.code) for t in tariffs],
                description="None chosen: every tariff.",
                render_kw=control(),
            ),
            "once_per_user": BooleanField(
                "Once per user", default=True, render_kw={"class": "form-check-input"}
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
        more = f" and {len(codes) - CODES_LISTED} more" if len(codes) > CODES_LISTED else ""
        notify(
            request, f"{len(codes)} promo code(s) created: {', '.join(codes[:CODES_LISTED])}{more}"
        )
        return first

    async def delete_model(self, request: Request, pk: Any) -> None:
        async with self.transaction() as session:
            promo = await session.get(PromoCode, uuid.UUID(str(pk)))
            if promo is None:
                raise not_found("promo code", promo_codes.PROMO_CODE_NOT_FOUND)
            await promo_codes.delete_promo_code(session, promo.code, actor=self.actor(request))
