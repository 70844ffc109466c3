"""The panel in Russian and English: gettext catalogues (Babel) and the formats of money,
times and dates per language.

SQLAdmin 0.32 translates its own templates with Babel catalogues (``sqladmin.i18n``); the
panel's own strings live in ``admin/locale/<lang>/LC_MESSAGES/billing_admin.po`` and are
merged into SQLAdmin's catalogue of the same language at start-up, so one ``_()`` (templates)
or ``gettext`` (Python) translates both. The ``.po`` files are read as they are (compiled in
memory), so there is no build step and no binary file to keep in step.

The language of a request is the account's (``admin_users.locale``), else
``BILLING_ADMIN_LOCALE``; it is set when the request is authenticated (``set_locale``)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations
from markupsafe import Markup, escape
from sqladmin import i18n

LOCALES = ("ru", "en")
CATALOGUES = Path(__file__).resolve().parent.parent / "locale"
_SYMBOLS = {"RUB": "₽"}

gettext = i18n.gettext
current_locale = i18n.get_locale


class Label(str):
    """A column label: SQLAdmin keeps labels as dictionary keys (so a lazy translation, which
    is unhashable, cannot be one); Jinja renders this one in the request's language."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(escape(gettext(str.__str__(self))))


def set_locale(locale: str | None, default: str) -> None:
    i18n.set_locale(locale if locale in LOCALES else default)


@cache
def install_catalogues() -> None:
    """Our messages over SQLAdmin's, per language (once per process)."""
    for locale in LOCALES:
        path = CATALOGUES / locale / "LC_MESSAGES" / "billing_admin.po"
        if not path.exists():
            continue
        with path.open("rb") as po:
            catalogue = read_po(po, locale=locale)
        compiled = io.BytesIO()
        write_mo(compiled, catalogue)
        compiled.seek(0)
        ours = Translations(compiled, domain="admin")
        theirs = i18n.translations.get(locale)
        if isinstance(theirs, Translations):
            theirs.merge(ours)
        else:
            i18n.translations[locale] = ours


def money(amount: int | None, currency: str | None = "RUB") -> str:
    """``142215`` → ``1 422,15 ₽`` (ru) or ``1,422.15 ₽`` (en); None → ``—``."""
    if amount is None:
        return "—"
    value = format_decimal(
        Decimal(amount) / 100, format="#,##0.00", locale=current_locale(), decimal_quantization=True
    )
    symbol = _SYMBOLS.get(currency or "", currency or "")
    return f"{value}\u00a0{symbol}".strip()


def money_for_export(amount: int | None) -> str:
    """``142215`` → ``1422.15``: what a spreadsheet reads as a number in any language."""
    if amount is None:
        return ""
    units, cents = divmod(amount, 100)
    return f"{units}.{cents:02d}"


def moment(value: datetime | None) -> str:
    """A time in the panel: UTC to the second, the language's date order."""
    if value is None:
        return "—"
    at = value.astimezone(UTC)
    pattern = "%d.%m.%Y %H:%M:%S" if current_locale() == "ru" else "%Y-%m-%d %H:%M:%S"
    return f"{at.strftime(pattern)} UTC"


def day(value: date) -> str:
    return value.strftime("%d.%m.%Y" if current_locale() == "ru" else "%Y-%m-%d")


# How a date (and a time) is typed in each language; both are read in either language, since
# neither can be mistaken for the other.
_TYPED_DAY = {"ru": "%d.%m.%Y", "en": "%Y-%m-%d"}
_DAY_PLACEHOLDER = {"ru": "ДД.ММ.ГГГГ", "en": "YYYY-MM-DD"}
_TIME_FORMATS = ("", " %H:%M", " %H:%M:%S")


def day_placeholder(with_time: bool = False) -> str:
    """``ДД.ММ.ГГГГ`` (ru) or ``YYYY-MM-DD`` (en), ``ЧЧ:ММ`` / ``HH:MM`` after it for a time."""
    locale = current_locale()
    shown = _DAY_PLACEHOLDER.get(locale, _DAY_PLACEHOLDER["en"])
    if with_time:
        shown += " ЧЧ:ММ" if locale == "ru" else " HH:MM"
    return shown


def typed_moment(text: str) -> datetime:
    """A date, or a date and time, as typed in the panel (``01.12.2026``, ``01.12.2026 9:30``,
    ``2026-12-01 09:30:15``; a ``T`` between them is fine), in UTC. Raises ``ValueError``."""
    compact = " ".join(text.replace("T", " ").split()).removesuffix(" UTC")
    for day_format in _TYPED_DAY.values():
        for time_format in _TIME_FORMATS:
            try:
                return datetime.strptime(compact, day_format + time_format).replace(tzinfo=UTC)
            except ValueError:
                continue
    raise ValueError(text)


def typed_day(value: date) -> str:
    """A date as the panel's date boxes show it (and read it back)."""
    return value.strftime(_TYPED_DAY.get(current_locale(), _TYPED_DAY["en"]))


def typed_time(value: datetime) -> str:
    """A time as the panel's time boxes show it, UTC to the second (read back unchanged)."""
    at = value.astimezone(UTC)
    return f"{typed_day(at)} {at:%H:%M:%S}"


def short_id(value: object) -> Markup:
    """A UUID in a list: its first 8 characters, the whole id in the tooltip (and in the
    detail page)."""
    if value is None:
        return Markup("—")
    text = str(value)
    return Markup('<span class="short-id" title="{}">{}</span>').format(text, text[:8])


def dotted(name: str) -> Markup:
    """A dotted name (``subscription.renewal_failed``) that wraps after its dots only."""
    return Markup(".<wbr>").join(Markup.escape(part) for part in name.split("."))


SHORT_TEXT = 24  # fits a column without breaking


def clipped(text: str | None, limit: int = 60) -> Markup:
    """A long text in a list, broken anywhere to fit (an e-mail, an error): its start, the
    whole text in the tooltip (and the detail page)."""
    if not text:
        return Markup("—")
    if len(text) <= SHORT_TEXT:
        return Markup.escape(text)
    if len(text) <= limit:
        return Markup('<span class="anywhere">{}</span>').format(text)
    return Markup('<span class="clipped" title="{}">{}…</span>').format(text, text[: limit - 1])


def percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{format_decimal(value.normalize(), locale=current_locale())}\u00a0%"
