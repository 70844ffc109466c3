"""What every view of the panel shares: the app's settings, clock and sessions; the acting
admin; forms built per request; service errors shown on the form; filtered CSV export that a
spreadsheet opens safely; the security headers of every panel answer."""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel, ValidationError
from sqladmin import Admin, ModelView
from sqladmin._types import _UNSET, SimpleColumnFilter
from sqladmin.authentication import login_required
from sqladmin.flash import Flash, FlashLevel
from sqladmin.formatters import BASE_FORMATTERS
from sqladmin.helpers import Writer, secure_filename, stream_to_csv
from sqladmin.i18n import I18nConfig
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wtforms import DecimalField, Field, Form, StringField, validators
from wtforms.fields.core import UnboundField
from wtforms.widgets import TextInput

from billing.admin.panel.auth import (
    STATICS,
    AdminLogin,
    RoleAccess,
    SameOriginChanges,
    current_admin,
    route_path,
)
from billing.admin.panel.dashboard import dashboard_context
from billing.admin.panel.locale import (
    LOCALES,
    Label,
    current_locale,
    day_placeholder,
    gettext,
    install_catalogues,
    typed_moment,
    typed_time,
)
from billing.admin.panel.locale import moment as moment
from billing.admin.panel.locale import money as money
from billing.admin.panel.locale import percent as percent
from billing.admin.panel.locale import short_id as short_id
from billing.admin.service import LoginThrottled, set_admin_locale
from billing.checkout.admin_endpoints import parse_moment
from billing.clock import Clock
from billing.config import Settings
from billing.db import describe_database_error, is_database_unavailable, transaction
from billing.errors import Problem
from billing.money import MAX_AMOUNT, format_amount, parse_amount

Schema = TypeVar("Schema", bound=BaseModel)
_Changed = TypeVar("_Changed")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"  # served beside SQLAdmin's
log = logging.getLogger(__name__)

# Everything the panel loads is its own (SQLAdmin's files are served by billing), and its
# pages need no inline script or style; nobody may frame it (clickjacking). Icons of the
# stylesheets are data: URIs.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-src 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    )
)


class PanelHeaders:
    """Every panel answer may not be framed or run anything from elsewhere (CSP,
    ``X-Frame-Options``), and pages (payments, users) are not kept in the browser's cache,
    where they would outlive a logout on a shared computer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = not route_path(scope).startswith(STATICS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                if page and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class DatabaseOutage:
    """While the database is unreachable the panel says so at once (503, retry shortly),
    from the session lookup as from any page, instead of a server error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as error:
            if scope["type"] != "http" or started or not is_database_unavailable(error):
                raise
            log.warning(
                "database unavailable on %s %s: %s",
                scope["method"],
                scope["path"],
                describe_database_error(error),
            )
            page = HTMLResponse(_OUTAGE_PAGE, status_code=503, headers={"Retry-After": "5"})
            await page(scope, receive, send)


_OUTAGE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Unavailable</title></head>
<body><h1>503 Service Unavailable</h1>
<p>The database is unreachable; try again shortly.</p></body></html>
"""


class BillingAdmin(Admin):
    """SQLAdmin mounted at ``base_url`` with what the service functions need: the app's
    settings, clock and sessions. Lists read through a session factory of their own on the
    same engine, because SQLAdmin reconfigures the one it is given (no autoflush)."""

    def __init__(
        self,
        app: Starlette,
        *,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
        admin_only: frozenset[str],
        base_url: str = "/admin",
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions = sessions
        install_catalogues()
        super().__init__(
            app,
            session_maker=async_sessionmaker(engine, expire_on_commit=False),
            base_url=base_url,
            title=Label("Billing admin"),
            templates_dir=str(TEMPLATES),
            # Outermost first; the login's sessions come after these.
            middlewares=[
                Middleware(PanelHeaders),
                Middleware(DatabaseOutage),
                Middleware(SameOriginChanges, public_url=settings.public_url),
            ],
            authentication_backend=AdminLogin(
                sessions,
                clock,
                path=base_url,
                https_only=settings.public_url.startswith("https://"),
                default_locale=settings.admin_locale,
                trusted_proxies=settings.trusted_proxies or (),
            ),
            authorization_backend=RoleAccess(admin_only),
            # The language is the account's (set on authentication), else the setting's;
            # no cookie or browser header decides it.
            i18n_config=I18nConfig(
                default_locale=settings.admin_locale,
                language_cookie_name=None,
                language_header_name=None,
            ),
        )
        routes = self.admin.router.routes
        for index, route in enumerate(routes):
            if isinstance(route, Mount) and route.name == "statics":
                # Chart.js and the panel's own files, then SQLAdmin's: all served by billing.
                statics = StaticFiles(directory=STATIC, packages=["sqladmin"])
                routes[index] = Mount("/statics", app=statics, name="statics")
        routes.insert(
            0, Route("/language", endpoint=self.language, name="language", methods=["POST"])
        )

    async def login(self, request: Request) -> Response:
        """SQLAdmin's login page; a refused login keeps the username typed, and 429 while
        logins are throttled."""
        if request.method != "POST":
            return await super().login(request)
        typed = (await request.form()).get("username")
        username = typed if isinstance(typed, str) else ""
        try:
            opened = await self.authentication_backend.login(request)  # type: ignore[union-attr]
        except LoginThrottled as throttled:
            seconds = max(1, math.ceil(throttled.retry_after.total_seconds()))
            error = gettext("Too many failed logins: try again in %(minutes)s min.") % {
                "minutes": math.ceil(seconds / 60)
            }
            page = await self._login_page(request, error, username, 429)
            page.headers["Retry-After"] = str(seconds)
            return page
        if isinstance(opened, Response):
            return opened
        return await self._login_page(
            request, gettext("Wrong username or password."), username, 400
        )

    async def _login_page(
        self, request: Request, error: str, username: str, status_code: int
    ) -> Response:
        context = {"error": error, "username": username}
        return await self.templates.TemplateResponse(
            request, "sqladmin/login.html", context, status_code=status_code
        )

    def add_view(self, view: Any) -> None:
        # Every view's name (menu, titles, buttons) in the request's language.
        view.name = Label(view.name)
        view.name_plural = Label(view.name_plural)
        super().add_view(view)

    @login_required
    async def index(self, request: Request) -> Response:
        """The dashboard: the period's figures and charts (``?days=7`` or ``?from=&to=``)."""
        context = await dashboard_context(
            request, sessions=self.sessions, settings=self.settings, clock=self.clock
        )
        return await self.templates.TemplateResponse(
            request, "billing_admin/index.html", {"admin_user": current_admin(request), **context}
        )

    @login_required
    async def language(self, request: Request) -> Response:
        """The signed-in account's language for the panel (kept on the account)."""
        form = await request.form()
        chosen = form.get("locale")
        if isinstance(chosen, str) and chosen in LOCALES:
            async with transaction(self.sessions) as session:
                await set_admin_locale(session, current_admin(request).id, chosen)
        back = request.headers.get("referer") or str(request.url_for("admin:index"))
        return RedirectResponse(back, status_code=303)


def validated(schema: type[Schema], data: dict[str, Any]) -> Schema:
    """A form's values checked by the admin API's own request schema, so the panel accepts
    exactly what the API does; a refusal reads like the API's ``detail``."""
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        detail = f"{where}: {message}" if where else message
        raise Problem(422, "validation_error", detail) from None


def typed_amount(text: str) -> int:
    """Roubles as people type them: ``499``, ``499.00``, ``499,00`` (the Russian decimal
    comma), ``1 422,15`` (spaces between thousands), an optional ``₽``; kept as minor units.
    Both a comma and a point (``1,422.15``) is ambiguous, so refused."""
    compact = "".join(text.replace("₽", "").split())
    if "," in compact and "." in compact:
        raise ValueError(compact)
    return parse_amount(compact.replace(",", "."))


class AmountField(StringField):
    """Money as people type it (``typed_amount``), kept as minor units (``49900``); shown in
    the panel's language (``499,00`` in Russian)."""

    data: int | None  # type: ignore[assignment]

    def process_formdata(self, valuelist: builtins.list[Any]) -> None:
        text = str(valuelist[0]).strip() if valuelist else ""
        if not text:
            self.data = None
            return
        try:
            amount = typed_amount(text)
        except ValueError:
            self.data = None
            raise ValueError(gettext("an amount like 499.00 or 499,00")) from None
        if amount > MAX_AMOUNT:
            raise ValueError(gettext("at most %(amount)s") % {"amount": money(MAX_AMOUNT, None)})
        self.data = amount

    def _value(self) -> str:
        if self.raw_data and self.errors:
            return str(self.raw_data[0])  # what was typed stays, beside its error
        if isinstance(self.data, int):
            typed = format_amount(self.data)
            return typed.replace(".", ",") if current_locale() == "ru" else typed
        return str(self.data or "")


class PercentField(DecimalField):
    """A percent as people type it: ``12.5``, ``12,5`` (the Russian decimal comma), an
    optional ``%``; shown in the panel's language (``12,5`` in Russian). A text box: a
    number box takes the browser's decimal mark, not the panel's."""

    widget = TextInput()

    def process_formdata(self, valuelist: builtins.list[Any]) -> None:
        if valuelist:
            typed = "".join(str(valuelist[0]).replace("%", "").split()).replace(",", ".")
            valuelist = [typed]
        super().process_formdata(valuelist)

    def _value(self) -> str:
        if self.raw_data or not isinstance(self.data, Decimal):
            return str(super()._value())  # type: ignore[misc]
        shown = format(self.data.normalize(), "f")
        return shown.replace(".", ",") if current_locale() == "ru" else shown


def notify(request: Request, message: str, level: FlashLevel = FlashLevel.success) -> None:
    """A message on the next page (SQLAdmin's toast)."""
    Flash.flash(request, message, level)  # kept in the server-side session until shown


def spreadsheet_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text: one it would run as a formula (starting with
    ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'`` (OWASP's
    rule against CSV injection). No value is an empty cell."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def translated(field: Any) -> Any:
    """A form field's label and description in the request's language (a view may give
    them in English; the catalogue has them)."""
    if not isinstance(field, UnboundField):
        return field
    args, kwargs = list(field.args), dict(field.kwargs)
    if args and isinstance(args[0], str) and args[0]:
        args[0] = gettext(args[0])
    elif isinstance(kwargs.get("label"), str) and kwargs["label"]:
        kwargs["label"] = gettext(kwargs["label"])
    if isinstance(kwargs.get("description"), str) and kwargs["description"]:
        kwargs["description"] = gettext(kwargs["description"])
    return UnboundField(field.field_class, *args, name=field.name, **kwargs)


def control(**render_kw: Any) -> dict[str, Any]:
    return {"class": "form-control", **render_kw}


class Labels(dict[str, Label]):
    """A view's column labels, each in the request's language; a column without one is
    named by its attribute (``code``), translated as well."""

    def get(self, name: str, default: Any = None) -> Label:
        found = super().get(name)
        return found if found is not None else Label(name if default is None else default)


class BillingView(ModelView):
    """A read-only list by default; views that change things set ``can_*`` and route every
    change through the service functions the admin API calls (never SQLAdmin's own writes,
    which would skip the rules and the audit log)."""

    summary = ""  # one line on the panel's first page
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    can_export = False
    export_types = ["csv"]  # noqa: RUF012 - SQLAdmin's own class-level option
    export_max_rows = 100_000
    page_size = 25
    list_template = "billing_admin/list.html"
    column_type_formatters = {**BASE_FORMATTERS, datetime: moment}  # noqa: RUF012
    # Column name → the CSV cell of a row (money columns: ``money_for_export``).
    export_formatters: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self) -> None:
        super().__init__()
        self._column_labels = Labels(
            {name: Label(label) for name, label in self._column_labels.items()}
        )

    def search_placeholder(self) -> str:
        return ", ".join(
            gettext(str(self._column_labels.get(name, name))) for name in self._search_fields
        )

    @property
    def panel(self) -> BillingAdmin:
        admin = self._admin_ref
        assert isinstance(admin, BillingAdmin)
        return admin

    def actor(self, request: Request) -> str:
        """Who the audit log names: the admin account's username."""
        return current_admin(request).username

    def now(self) -> datetime:
        return self.panel.clock.now()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with transaction(self.panel.sessions) as session:
            yield session

    async def for_each_selected(
        self,
        request: Request,
        change: Callable[[AsyncSession, str], Awaitable[_Changed]],
        *,
        not_an_id: str,
    ) -> list[_Changed]:
        """An action's change applied to each row it was given (``?pks=``), each in its own
        transaction so one refusal keeps none of the others from happening; answers what the
        changes returned, and shows the refusals (``ValueError``: not an id of this list;
        ``Problem``: the service's reason)."""
        changed: list[_Changed] = []
        refused = []
        for pk in filter(None, request.query_params.get("pks", "").split(",")):
            try:
                async with self.transaction() as session:
                    changed.append(await change(session, pk))
            except ValueError:
                refused.append(f"{pk}: {gettext(not_an_id)}")
            except Problem as problem:
                refused.append(f"{pk}: {gettext(problem.detail)}")
        if refused:
            notify(request, "; ".join(refused), FlashLevel.error)
        return changed

    def back_from_action(self, request: Request) -> RedirectResponse:
        """Where an action returns: the page it was started from (a row's page or the
        list), else the list."""
        listed = str(request.url_for("admin:list", identity=self.identity))
        came_from = request.headers.get("referer", "")
        own = came_from.startswith(str(request.url_for("admin:index")))  # never elsewhere
        return RedirectResponse(came_from if own else listed, status_code=302)

    # Forms --------------------------------------------------------------------------------

    async def form_fields(self) -> dict[str, Field]:
        """Every field this view's forms may have, built per request (choices come from the
        database); the create and edit rules pick which ones a form shows."""
        return {}

    async def scaffold_form(self, rules: builtins.list[str] | None = None) -> type[Form]:
        fields = await self.form_fields()
        chosen: dict[str, Any] = {name: translated(fields[name]) for name in (rules or fields)}
        # WTForms' own messages ("This field is required.") in the request's language.
        chosen["Meta"] = type("Meta", (), {"locales": [current_locale()]})
        return type(f"{self.identity.title()}Form", (Form,), chosen)

    # Rows ---------------------------------------------------------------------------------

    def _stmt_by_identifier(self, identifier: str) -> Select[Any]:
        # A malformed id in the address is a page that does not exist, not a server error.
        try:
            return super()._stmt_by_identifier(identifier)
        except (ValueError, TypeError):
            raise HTTPException(status_code=404) from None

    async def get_model_objects(
        self, request: Request, limit: int | None = 0
    ) -> builtins.list[Any]:
        """What the export writes: the rows the list shows (its filters, search and order),
        not the whole table."""
        stmt = self.list_query(request)
        for filter_ in self.get_filters():
            value = request.query_params.get(filter_.parameter_name)
            if value and not getattr(filter_, "has_operator", False):
                simple = cast(SimpleColumnFilter, filter_)
                stmt = await simple.get_filtered_query(stmt, value, self.model)
        stmt = self.sort_query(stmt, request)
        if search := request.query_params.get("search"):
            stmt = self.search_query(stmt, search)
        if limit:
            stmt = stmt.limit(limit)
        rows: builtins.list[Any] = await self._run_query(stmt)
        return rows

    async def export_value(self, row: Any, name: str) -> Any:
        """A CSV cell: money in roubles with a point (``1422.15``), times in UTC as
        ``2025-05-01 12:00:00``, nothing for no value."""
        formatter = self.export_formatters.get(name)
        if formatter is not None:
            return formatter(row)
        value = await self.get_prop_value(row, name)
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return value

    async def export_data(
        self, data: builtins.list[Any], export_type: str = "csv", request: Request | None = None
    ) -> StreamingResponse:
        """SQLAdmin's CSV, every cell through ``spreadsheet_cell``: an attacker's promo code,
        description or token subject cannot become a formula in the admin's spreadsheet."""
        if export_type != "csv":
            return await super().export_data(data, export_type, request)
        columns = self.get_export_columns()
        header = [gettext(str(self._column_labels.get(name, name))) for name in columns]

        async def rows(writer: Writer) -> AsyncGenerator[Any, None]:
            yield writer.writerow(header)
            for row in data:
                cells = [spreadsheet_cell(await self.export_value(row, name)) for name in columns]
                yield writer.writerow(cells)

        filename = secure_filename(self.get_export_name(export_type="csv"))
        return StreamingResponse(
            content=stream_to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment;filename={filename}"},
        )


class InputFilter:
    """A sidebar filter with one input box (SQLAdmin's own filters only offer links)."""

    has_operator = False
    default_value: Any = _UNSET  # no value, no filtering
    template = "billing_admin/input_filter.html"

    def __init__(
        self,
        parameter_name: str,
        title: str,
        apply: Callable[[Select[Any], str], Select[Any]],
        placeholder: str = "",
    ) -> None:
        self.parameter_name = parameter_name
        self.title = title
        self.apply = apply
        self.placeholder = placeholder

    def hint(self) -> str:
        """The box's placeholder, in the request's language."""
        return gettext(self.placeholder) if self.placeholder else ""

    async def lookups(
        self, request: Request, model: Any, run_query: Callable[[Select[Any]], Any]
    ) -> builtins.list[tuple[str, str]]:
        return []

    async def get_filtered_query(self, query: Select[Any], value: Any, model: Any) -> Select[Any]:
        try:
            return self.apply(query, str(value).strip())
        except Problem as problem:
            raise HTTPException(status_code=400, detail=problem.detail) from None


class DayFilter(InputFilter):
    """A date box in the language's format (``ДД.ММ.ГГГГ`` or ``YYYY-MM-DD``, both read):
    a text box, since the browser's own date box shows its own language's format."""

    def hint(self) -> str:
        return day_placeholder()


def moment_filter(parameter_name: str, title: str, where: Callable[[datetime], Any]) -> InputFilter:
    """A date box: ``where(moment)`` is the condition for the date's midnight (UTC)."""

    def apply(query: Select[Any], value: str) -> Select[Any]:
        try:
            typed = typed_moment(value)
        except ValueError:
            detail = gettext("%(title)s: a date like %(example)s") % {
                "title": gettext(title),
                "example": day_placeholder(),
            }
            raise Problem(422, "validation_error", detail) from None
        at = parse_moment(parameter_name, typed.isoformat())  # within the API's years
        assert at is not None
        return query.where(where(at))

    return DayFilter(parameter_name, title, apply)


class MomentField(StringField):
    """A date and time in UTC as the language writes it (``01.12.2026 09:30``, or
    ``2026-12-01 09:30``; either is read), a plain text box: the browser's and flatpickr's
    pickers show their own language's format, not the panel's."""

    data: datetime | None  # type: ignore[assignment]

    def process_formdata(self, valuelist: builtins.list[Any]) -> None:
        text = str(valuelist[0]).strip() if valuelist else ""
        self.data = None
        if text:
            try:
                self.data = typed_moment(text)
            except ValueError:
                example = day_placeholder(with_time=True)
                raise ValueError(
                    gettext("a date like %(example)s") % {"example": example}
                ) from None

    def _value(self) -> str:
        if self.raw_data and self.errors:
            return str(self.raw_data[0])  # what was typed stays, beside its error
        return typed_time(self.data) if isinstance(self.data, datetime) else ""


def moment_field(label: str, description: str = "", required: bool = False) -> MomentField:
    check = validators.InputRequired() if required else validators.Optional()
    return MomentField(
        label,
        [check],
        description=description,
        render_kw=control(placeholder=day_placeholder(with_time=True), autocomplete="off"),
    )
