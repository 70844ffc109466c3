"""The admin panel at ``/admin`` (SQLAdmin): every change goes through the same service
functions as the admin API, so the rules and the audit log are the same."""

from __future__ import annotations

import logging

from sqladmin import ModelView
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from billing.admin.panel.accounts import AdminUserAdmin
from billing.admin.panel.base import BillingAdmin
from billing.admin.panel.catalog import TariffAdmin, TariffPriceAdmin
from billing.admin.panel.discounts import DurationDiscountAdmin, PromoCodeAdmin, UserDiscountAdmin
from billing.admin.panel.records import AuditEntryAdmin, OutboxEventAdmin
from billing.admin.panel.sales import PaymentAdmin, SubscriptionAdmin
from billing.clock import Clock
from billing.config import Settings
from billing.errors import Problem

# In the menu's order.
VIEWS: tuple[type[ModelView], ...] = (
    PaymentAdmin,
    SubscriptionAdmin,
    TariffAdmin,
    TariffPriceAdmin,
    UserDiscountAdmin,
    DurationDiscountAdmin,
    PromoCodeAdmin,
    AuditEntryAdmin,
    OutboxEventAdmin,
    AdminUserAdmin,
)
ADMIN_ONLY = frozenset({OutboxEventAdmin.identity, AdminUserAdmin.identity})


class _RefusalsAreNotErrors(logging.Filter):
    """SQLAdmin logs every exception of a form save with its stack trace; a service's
    refusal (a ``Problem``, shown to the admin on the form) is an answer, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Problem))


_SQLADMIN_LOG = logging.getLogger("sqladmin.application")
_REFUSALS = _RefusalsAreNotErrors()


def mount_admin_panel(
    app: Starlette,
    *,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock,
) -> BillingAdmin:
    panel = BillingAdmin(
        app,
        engine=engine,
        sessions=sessions,
        settings=settings,
        clock=clock,
        admin_only=ADMIN_ONLY,
    )
    if _REFUSALS not in _SQLADMIN_LOG.filters:
        _SQLADMIN_LOG.addFilter(_REFUSALS)
    for view in VIEWS:
        # SQLAdmin keeps its engine and admin on the view class: a subclass per app keeps two
        # apps in one process (tests) from sharing them.
        panel.add_view(type(view.__name__, (view,), {}))
    return panel
