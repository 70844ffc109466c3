"""Panel views of what users bought: their payments (filter, export) and their tariffs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqladmin import action
from sqladmin.fields import SelectField, UuidField
from sqladmin.filters import ForeignKeyFilter, StaticValuesFilter
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from wtforms import Field, validators

from billing.admin.panel.base import (
    BillingView,
    InputFilter,
    control,
    moment,
    moment_field,
    moment_filter,
    money,
    notify,
    percent,
    short_id,
)
from billing.admin.panel.locale import Label, gettext, money_for_export
from billing.errors import Problem, not_found
from billing.models import (
    Invoice,
    Payment,
    PaymentStatus,
    Refund,
    Subscription,
    SubscriptionStatus,
    Tariff,
)
from billing.subscriptions.admin import change_tariff, method_title, turn_off_renewal
from billing.subscriptions.endpoints import subscription_out

_DISCOUNTS = {
    "none": "No discount",
    "personal": "Personal discount",
    "duration": "Duration discount",
    "promo": "Promo code",
}
_REFUND_REASONS = {
    "requested": "asked by the viewer",
    "provider": "made at the provider",
    "invoice_expired": "paid after the invoice expired",
}


def discount_label(source: str) -> str:
    """A discount's source (``pricing.rules.DiscountSource``) as the panel names it."""
    return gettext(_DISCOUNTS.get(source, source))


def refund_reason(reason: str) -> str:
    return gettext(_REFUND_REASONS.get(reason, reason))


RENEWS_AT = "renews_at"
METHOD_TITLE = "payment_method_title"


def yes_or_no(value: bool) -> str:
    return gettext("yes") if value else gettext("no")


def _user_filter(column: Any) -> InputFilter:
    def apply(query: Select[Any], value: str) -> Select[Any]:
        try:
            user_id = uuid.UUID(value)
        except ValueError:
            detail = gettext("%(title)s: not a UUID") % {"title": gettext("User")}
            raise Problem(422, "validation_error", detail) from None
        return query.where(column == user_id)

    return InputFilter("user_id", "User", apply, placeholder="user UUID")


class PaymentAdmin(BillingView, model=Payment):
    """Users' payments: read-only, filtered by status, date and user, exported as CSV."""

    name = "Payment"
    name_plural = "Payments"
    icon = "fa-solid fa-credit-card"
    summary = "users' payments: filter by status, date and user; export CSV"
    can_export = True
    # What a person needs first; the rest is on the payment's page.
    column_list = [  # noqa: RUF012
        Payment.created_at,
        Payment.status,
        Payment.amount,
        Payment.provider,
        Payment.paid_at,
        Payment.user_id,
    ]
    details_template = "billing_admin/payment_details.html"
    # Money in roubles with a point (1422.15): what a spreadsheet reads as a number.
    column_export_list = [  # noqa: RUF012
        Payment.id,
        Payment.user_id,
        Payment.invoice_id,
        Payment.status,
        Payment.amount,
        Payment.currency,
        Payment.provider,
        Payment.provider_payment_id,
        Payment.created_at,
        Payment.paid_at,
        Payment.refunded_at,
    ]
    column_labels = {  # noqa: RUF012
        Payment.id: Label("Payment"),
        Payment.created_at: Label("Created"),
        Payment.user_id: Label("User"),
        Payment.invoice_id: Label("Invoice"),
        Payment.status: Label("Status"),
        Payment.amount: Label("Amount"),
        Payment.currency: Label("Currency"),
        Payment.provider: Label("Provider"),
        Payment.provider_payment_id: Label("Provider's payment id"),
        Payment.paid_at: Label("Paid at"),
        Payment.refunded_at: Label("Refunded at"),
    }
    column_formatters = {  # noqa: RUF012
        Payment.amount: lambda payment, _: money(payment.amount, payment.currency),
        Payment.status: lambda payment, _: gettext(payment.status),
        Payment.user_id: lambda payment, _: short_id(payment.user_id),
    }
    export_formatters = {"amount": lambda payment: money_for_export(payment.amount)}  # noqa: RUF012

    async def details_context(self, request: Request) -> dict[str, Any]:
        payment_id = uuid.UUID(request.path_params["pk"])
        async with self.transaction() as session:
            payment = await session.get_one(Payment, payment_id)
            invoice = await session.get_one(Invoice, payment.invoice_id)
            tariff = await session.get(Tariff, invoice.tariff_id)
            of_payment = select(Refund).where(Refund.payment_id == payment_id)
            refunds = (await session.scalars(of_payment.order_by(Refund.created_at))).all()
        return {
            "payment": payment,
            "invoice": invoice,
            "tariff": tariff,
            "refunds": refunds,
            "money": money,
            "moment": moment,
            "percent": percent,
            "discount_label": discount_label,
            "refund_reason": refund_reason,
        }

    column_sortable_list = [  # noqa: RUF012
        Payment.created_at,
        Payment.paid_at,
        Payment.amount,
        Payment.status,
    ]
    column_default_sort = [("created_at", True)]  # noqa: RUF012
    column_searchable_list = [Payment.id, Payment.user_id, Payment.invoice_id]  # noqa: RUF012
    column_filters = [  # noqa: RUF012
        StaticValuesFilter(
            Payment.status, [(s.value, s.value) for s in PaymentStatus], title="Status"
        ),
        moment_filter("from", "Created on or after", lambda at: Payment.created_at >= at),
        moment_filter("to", "Created before", lambda at: Payment.created_at < at),
        _user_filter(Payment.user_id),
    ]


class SubscriptionAdmin(BillingView, model=Subscription):
    """Users' subscriptions; creating or editing one changes a user's tariff (the admin
    API's ``PUT /users/{user_id}/subscription``); auto-renewal can be turned off for the
    viewer (the admin API's ``POST /subscriptions/{id}/cancel-renewal``)."""

    name = "Subscription"
    name_plural = "Subscriptions"
    icon = "fa-solid fa-user-clock"
    summary = "users' tariffs: change a user's tariff and period end"
    can_create = True
    can_edit = True
    column_list = [  # noqa: RUF012
        Subscription.user_id,
        Subscription.role,
        Subscription.status,
        Subscription.current_period_end,
        Subscription.auto_renew,
        RENEWS_AT,
        Subscription.updated_at,
    ]
    # RENEWS_AT and METHOD_TITLE are no columns: get_list_value and get_detail_value make them.
    column_details_list = [  # noqa: RUF012
        Subscription.id,
        Subscription.user_id,
        Subscription.tariff_id,
        Subscription.role,
        Subscription.status,
        Subscription.current_period_end,
        Subscription.auto_renew,
        METHOD_TITLE,
        Subscription.payment_method_id,
        RENEWS_AT,
        Subscription.renewal_months,
        Subscription.created_at,
        Subscription.updated_at,
    ]
    column_labels = {  # noqa: RUF012
        Subscription.id: Label("Subscription"),
        Subscription.user_id: Label("User"),
        Subscription.tariff_id: Label("Tariff"),
        Subscription.role: Label("Role"),
        Subscription.status: Label("Status"),
        Subscription.current_period_end: Label("Period end"),
        Subscription.created_at: Label("Created"),
        Subscription.updated_at: Label("Updated"),
        Subscription.auto_renew: Label("Auto-renewal"),
        METHOD_TITLE: Label("Payment method"),
        Subscription.payment_method_id: Label("Payment method id"),
        RENEWS_AT: Label("Next charge"),
        Subscription.renewal_months: Label("Months per renewal"),
    }
    column_formatters = {  # noqa: RUF012
        Subscription.user_id: lambda row, _: short_id(row.user_id),
        Subscription.status: lambda row, _: gettext(row.status),
        Subscription.auto_renew: lambda row, _: yes_or_no(row.auto_renew),
    }
    column_formatters_detail = {  # noqa: RUF012
        Subscription.status: lambda row, _: gettext(row.status),
        Subscription.auto_renew: lambda row, _: yes_or_no(row.auto_renew),
    }
    column_sortable_list = [  # noqa: RUF012
        Subscription.current_period_end,
        Subscription.updated_at,
        Subscription.status,
    ]
    column_default_sort = [("updated_at", True)]  # noqa: RUF012
    column_searchable_list = [Subscription.user_id]  # noqa: RUF012
    column_filters = [  # noqa: RUF012
        StaticValuesFilter(
            Subscription.status,
            [(s.value, s.value) for s in SubscriptionStatus],
            title="Status",
        ),
        ForeignKeyFilter(Subscription.tariff_id, Tariff.code, foreign_model=Tariff, title="Tariff"),
        _user_filter(Subscription.user_id),
    ]
    form_create_rules = ["user_id", "tariff_id", "current_period_end"]  # noqa: RUF012
    form_edit_rules = ["tariff_id", "current_period_end"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        tariffs = await self._run_query(select(Tariff).order_by(Tariff.code))
        choices = [
            (
                str(t.id),
                t.code if t.is_active else gettext("%(code)s (not on sale)") % {"code": t.code},
            )
            for t in tariffs
        ]
        return {
            "user_id": UuidField(
                "User id", [validators.InputRequired()], render_kw=control(placeholder="UUID")
            ),
            "tariff_id": SelectField(
                "Tariff",
                [validators.InputRequired()],
                choices=choices,
                description="The user's live subscription moves to this tariff; the old role "
                "is revoked and the new one granted.",
                render_kw=control(),
            ),
            "current_period_end": moment_field(
                "Period end",
                description="UTC. Empty: keep the period end of the live subscription "
                "(required for a user with none).",
            ),
        }

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        return {
            "tariff_id": str(obj.tariff_id),
            "current_period_end": obj.current_period_end,
        }

    def _renews_at(self, subscription: Subscription) -> datetime | None:
        # What the viewer's and the admin API's ``renews_at`` says, from the same function.
        return subscription_out(subscription, self.panel.settings).renews_at

    async def get_list_value(
        self, obj: Any, prop: str, request: Request | None = None
    ) -> tuple[Any, Any]:
        if prop == RENEWS_AT:
            renews_at = self._renews_at(obj)
            return renews_at, moment(renews_at)
        return await super().get_list_value(obj, prop, request)

    async def get_detail_value(
        self, obj: Any, prop: str, request: Request | None = None
    ) -> tuple[Any, Any]:
        if prop == RENEWS_AT:
            renews_at = self._renews_at(obj)
            return renews_at, moment(renews_at)
        if prop == METHOD_TITLE:
            async with self.transaction() as session:
                title = await method_title(session, obj)
            return title, title or "—"
        return await super().get_detail_value(obj, prop, request)

    @action(
        name="turn-off-renewal",
        label=Label("Turn off auto-renewal"),
        confirmation_message=Label(
            "Turn off auto-renewal? The viewer is not charged again; access stays until the "
            "period ends."
        ),
    )
    async def turn_off_auto_renewal(self, request: Request) -> Response:
        """The viewer's auto-renewal off, as their own ``cancel`` does (audited)."""

        async def turn_off(session: AsyncSession, pk: str) -> None:
            await turn_off_renewal(session, uuid.UUID(pk), actor=self.actor(request))

        done = await self.for_each_selected(request, turn_off, not_an_id="not a subscription id")
        if done:
            notify(request, gettext("Auto-renewal is off: %(count)s") % {"count": len(done)})
        return self.back_from_action(request)

    async def _change(
        self, request: Request, user_id: uuid.UUID, data: dict[str, Any], kept: datetime | None
    ) -> Subscription:
        period_end: datetime | None = data.get("current_period_end")
        # The edit form shows the period end in whole seconds; sent back unchanged, it means
        # "keep it", not "set it" (which a past period end, in grace, could not be).
        if kept is not None and period_end == kept.replace(microsecond=0):
            period_end = None
        async with self.transaction() as session:
            return await change_tariff(
                session,
                user_id=user_id,
                tariff_id=uuid.UUID(data["tariff_id"]),
                current_period_end=period_end,
                actor=self.actor(request),
                now=self.now(),
            )

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        return await self._change(request, data["user_id"], data, kept=None)

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        async with self.transaction() as session:
            subscription = await session.get(Subscription, uuid.UUID(pk))
        if subscription is None:
            raise not_found("subscription")
        return await self._change(
            request, subscription.user_id, data, kept=subscription.current_period_end
        )
