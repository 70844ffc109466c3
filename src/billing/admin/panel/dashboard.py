"""The panel's first page: the dashboard, from the same function as ``GET /admin/stats``.

The figures are in the page twice: as tables (readable without scripts, and what the browser
test compares with the API) and as a JSON data block that ``statics/dashboard.js`` draws
with Chart.js — the panel's CSP runs no inline script, and a data block is not one."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

from starlette.requests import Request

from billing.admin.panel.locale import (
    day,
    day_placeholder,
    gettext,
    money,
    typed_day,
    typed_moment,
)
from billing.admin.stats import MAX_DAYS, dashboard_stats, stats_period
from billing.clock import Clock
from billing.config import Settings
from billing.db import transaction
from billing.errors import Problem

PRESETS = (7, 30, 90)


def _typed(request: Request, name: str) -> str | None:
    """A date box of the period as an ISO date (typed as the language writes dates)."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    try:
        return typed_moment(text).date().isoformat()
    except ValueError:
        example = day_placeholder()
        raise Problem(
            422, "validation_error", gettext("a date like %(example)s") % {"example": example}
        ) from None


def _period_asked(request: Request, today: Any) -> tuple[str | None, str | None, int | None]:
    """``?days=7`` (a preset, ending today) or ``?from=&to=`` (custom)."""
    preset = request.query_params.get("days")
    if preset and preset.isdigit() and int(preset) in PRESETS:
        days = int(preset)
        return str(today - timedelta(days=days - 1)), str(today), days
    return _typed(request, "from"), _typed(request, "to"), None


async def dashboard_context(
    request: Request, *, sessions: Any, settings: Settings, clock: Clock
) -> dict[str, Any]:
    now = clock.now()
    today = now.astimezone(UTC).date()
    error = None
    try:
        start, end, preset = _period_asked(request, today)
    except Problem as problem:
        error, start, end, preset = problem.detail, None, None, None
    try:
        first, last = stats_period(start, end, today)
    except Problem:  # both dates are read: the period is reversed or too long
        if start is not None and end is not None and start > end:
            error = gettext("The period starts after it ends.")
        else:
            error = gettext("At most %(days)s days at once.") % {"days": MAX_DAYS}
        start = end = preset = None
        first, last = stats_period(None, None, today)
    async with transaction(sessions) as session:
        stats = await dashboard_stats(session, first, last, currency=settings.currency, now=now)
    if preset is None and start is None and end is None:
        preset = (last - first).days + 1
    totals = {
        name: sum(getattr(row, name) for row in stats.days)
        for name in ("payments", "gross", "refunds", "refunded", "net")
    }
    attempted = stats.renewals.attempted
    renewal_rate = None if not attempted else f"{stats.renewals.succeeded * 100 // attempted} %"
    chart_data = {
        "labels": [day(row.date) for row in stats.days],
        # Minor units: the script divides by 100 for the axis, nothing is summed there.
        "gross": [row.gross for row in stats.days],
        "refunded": [row.refunded for row in stats.days],
        "net": [row.net for row in stats.days],
        "payments": [row.payments for row in stats.days],
        "refunds": [row.refunds for row in stats.days],
        "tariffs": [row.code for row in stats.active_subscriptions],
        "active": [row.count for row in stats.active_subscriptions],
        "names": {
            "gross": gettext("Paid"),
            "refunded": gettext("Refunded"),
            "net": gettext("Net"),
            "payments": gettext("Payments"),
            "refunds": gettext("Refunds"),
            "active": gettext("Active subscriptions"),
        },
        "currency": "₽" if stats.currency == "RUB" else stats.currency,
    }
    return {
        "stats": stats,
        "totals": totals,
        "renewal_rate": renewal_rate,
        "presets": PRESETS,
        "preset": preset,
        "period_error": error,
        "chart_data": chart_data,  # |tojson in the page: escaped for a <script> block
        "money": money,
        "day": day,
        "typed_day": typed_day,
        "day_placeholder": day_placeholder,
    }
