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
from markupsafe import escape
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


def percent(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return f"{format_decimal(value.normalize(), locale=current_locale())}\u00a0%"
