"""Panel views of the catalogue: tariffs (prices changed through the price history) and the
price history itself."""

from __future__ import annotations

import uuid
from typing import Any

from sqladmin.fields import BooleanField
from sqladmin.filters import ForeignKeyFilter
from sqladmin.pagination import Pagination
from sqlalchemy import select
from starlette.requests import Request
from wtforms import Field, StringField, TextAreaField, validators

from billing.admin.panel.base import AmountField, BillingView, control, money, validated
from billing.admin.panel.locale import Label, clipped, gettext, moment
from billing.catalog import service
from billing.catalog.schemas import TariffCreate, TariffUpdate
from billing.models import Tariff, TariffPrice

PRICE_HISTORY_SHOWN = 100


class TariffAdmin(BillingView, model=Tariff):
    """Tariffs: a new price is a row of the price history (``catalog.service``), shown on the
    tariff's page; invoices already issued keep their price."""

    name = "Tariff"
    name_plural = "Tariffs"
    icon = "fa-solid fa-tags"
    summary = "change prices (kept in the price history), names, what is on sale"
    can_create = True
    can_edit = True
    column_list = [  # noqa: RUF012
        Tariff.code,
        Tariff.name,
        Tariff.monthly_price,
        Tariff.is_active,
        Tariff.role,
        Tariff.role_exists,
        Tariff.updated_at,
    ]
    column_details_list = [  # noqa: RUF012
        Tariff.code,
        Tariff.name,
        Tariff.description,
        Tariff.monthly_price,
        Tariff.currency,
        Tariff.is_active,
        Tariff.role,
        Tariff.role_exists,
        Tariff.created_at,
        Tariff.updated_at,
        Tariff.id,
    ]
    column_labels = {  # noqa: RUF012
        Tariff.id: Label("Id"),
        Tariff.code: Label("Code"),
        Tariff.name: Label("Name"),
        Tariff.description: Label("Description"),
        Tariff.monthly_price: Label("Monthly price"),
        Tariff.currency: Label("Currency"),
        Tariff.is_active: Label("On sale"),
        Tariff.role: Label("Auth role"),
        Tariff.role_exists: Label("Role in Auth"),
        Tariff.created_at: Label("Created"),
        Tariff.updated_at: Label("Updated"),
    }
    column_formatters = {  # noqa: RUF012
        Tariff.monthly_price: lambda tariff, _: money(tariff.monthly_price, tariff.currency)
    }
    column_formatters_detail = column_formatters
    column_sortable_list = [Tariff.code, Tariff.monthly_price, Tariff.updated_at]  # noqa: RUF012
    column_default_sort = [("code", False)]  # noqa: RUF012
    column_searchable_list = [Tariff.code, Tariff.name, Tariff.role]  # noqa: RUF012
    details_template = "billing_admin/tariff_details.html"
    form_create_rules = [  # noqa: RUF012
        "code",
        "name",
        "description",
        "role",
        "monthly_price",
        "currency",
        "is_active",
    ]
    form_edit_rules = ["name", "description", "monthly_price", "is_active"]  # noqa: RUF012

    async def form_fields(self) -> dict[str, Field]:
        currency = self.panel.settings.currency
        return {
            "code": StringField(
                gettext("Code"),
                [validators.InputRequired()],
                render_kw=control(placeholder="premium"),
            ),
            "name": StringField(gettext("Name"), [validators.InputRequired()], render_kw=control()),
            "description": TextAreaField(gettext("Description"), render_kw=control(rows=3)),
            "role": StringField(
                gettext("Auth role"),
                [validators.InputRequired()],
                description=gettext("The Auth-service role this tariff grants."),
                render_kw=control(),
            ),
            "monthly_price": AmountField(
                gettext("Monthly price"),
                description=gettext(
                    "e.g. 499,00 (in the tariff's currency, %(currency)s by default). "
                    "Every change is kept in the price history."
                )
                % {"currency": currency},
                render_kw=control(placeholder=gettext("499.00")),
            ),
            "currency": StringField(gettext("Currency"), default=currency, render_kw=control()),
            "is_active": BooleanField(
                gettext("On sale"),
                description=gettext("Needs a price."),
                render_kw={"class": "form-check-input"},
            ),
        }

    async def get_form_data_for_edit(self, obj: Any) -> dict[str, Any]:
        return {
            "name": obj.name,
            "description": obj.description,
            "monthly_price": obj.monthly_price,
            "is_active": obj.is_active,
        }

    async def insert_model(self, request: Request, data: dict[str, Any]) -> Any:
        body = validated(
            TariffCreate,
            {
                **data,
                "code": (data["code"] or "").strip(),
                "role": (data["role"] or "").strip(),
                "currency": (data["currency"] or "").strip() or None,
            },
        )
        async with self.transaction() as session:
            return await service.create_tariff(
                session,
                code=body.code,
                name=body.name,
                description=body.description,
                role=body.role,
                monthly_price=body.monthly_price,
                currency=body.currency or self.panel.settings.currency,
                is_active=body.is_active,
                actor=self.actor(request),
                now=self.now(),
            )

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        # An empty price box leaves the price as it is: a price is replaced, never unset.
        changes = {name: value for name, value in data.items() if value is not None}
        body = validated(TariffUpdate, changes)
        async with self.transaction() as session:
            return await service.update_tariff(
                session,
                uuid.UUID(pk),
                name=body.name,
                description=body.description,
                monthly_price=body.monthly_price,
                is_active=body.is_active,
                actor=self.actor(request),
                now=self.now(),
            )

    async def details_context(self, request: Request) -> dict[str, Any]:
        tariff_id = uuid.UUID(request.path_params["pk"])
        async with self.transaction() as session:
            history = await service.price_history(
                session, tariff_id, limit=PRICE_HISTORY_SHOWN, offset=0
            )
        return {"price_history": history, "money": money, "moment": moment}


class TariffPriceAdmin(BillingView, model=TariffPrice):
    """The price history of every tariff, newest first (read-only: it is written by price
    changes only)."""

    name = "Price change"
    name_plural = "Price history"
    icon = "fa-solid fa-clock-rotate-left"
    summary = "every price change: who, when, from what to what"
    can_view_details = False
    can_export = True
    column_list = [  # noqa: RUF012
        TariffPrice.changed_at,
        TariffPrice.tariff_id,
        TariffPrice.previous_price,
        TariffPrice.monthly_price,
        TariffPrice.changed_by,
    ]
    column_labels = {  # noqa: RUF012
        TariffPrice.changed_at: Label("Changed at"),
        TariffPrice.tariff_id: Label("Tariff"),
        TariffPrice.previous_price: Label("From"),
        TariffPrice.monthly_price: Label("To"),
        TariffPrice.changed_by: Label("By"),
    }
    column_formatters = {  # noqa: RUF012
        # The tariff's code, read for the page's rows at once (``list``).
        TariffPrice.tariff_id: lambda row, _: getattr(row, "tariff_code", row.tariff_id),
        TariffPrice.previous_price: lambda row, _: money(row.previous_price, row.currency),
        TariffPrice.monthly_price: lambda row, _: money(row.monthly_price, row.currency),
        TariffPrice.changed_by: lambda row, _: clipped(row.changed_by),
    }
    column_default_sort = [("changed_at", True)]  # noqa: RUF012
    column_sortable_list = [TariffPrice.changed_at]  # noqa: RUF012
    column_filters = [  # noqa: RUF012
        ForeignKeyFilter(TariffPrice.tariff_id, Tariff.code, foreign_model=Tariff, title="Tariff")
    ]

    async def list(self, request: Request) -> Pagination:
        page = await super().list(request)
        ids = {row.tariff_id for row in page.rows}
        if ids:
            async with self.transaction() as session:
                found = await session.execute(
                    select(Tariff.id, Tariff.code).where(Tariff.id.in_(ids))
                )
                codes = {tariff_id: code for tariff_id, code in found}
            for row in page.rows:
                setattr(row, "tariff_code", codes.get(row.tariff_id, row.tariff_id))  # noqa: B010
        return page
