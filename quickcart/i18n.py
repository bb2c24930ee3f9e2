"""Translations: gettext catalogs rendered by key, and Babel's money and date formatting.

The texts live in quickcart/locale/<language>/LC_MESSAGES/messages.po, standard gettext
catalogs that translators edit with any PO editor; quickcart/locale/messages.pot is the
template `pybabel extract` builds from the code (babel.cfg). Each text has a symbolic msgid
("order.paid"), so call sites stay short and a wording change touches only the catalogs.
How to add a text or a language: quickcart/messages.py.

The .mo files are compiled at install and build time (setup.py's build step, `make install`,
`make catalogs`, the Dockerfile) and never committed. A .mo that is missing or older than its
.po is compiled in memory from the .po when first loaded, so a catalog edit shows up at once
in tests and in a development shop, whether or not anyone ran `make catalogs` after it.
"""

from __future__ import annotations

import functools
import gettext
import html
import io
import logging
import string
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import babel.dates
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from quickcart.domain.money import format_idr

log = logging.getLogger(__name__)

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"
# Numbers and clock times are written the Indonesian way (Rp12.500, 14:05 WIB) in every
# language: the shop, its prices and its clock are Indonesian.
FORMAT_LOCALE = "id_ID"
SHOP_TIMEZONE = ZoneInfo("Asia/Jakarta")
MONEY_PARAMS = frozenset({
    "amount", "total", "balance", "needed", "min", "max", "subtotal", "voucher_discount",
    "payment_fee", "total_bill", "unit_price", "price", "revenue", "paid_total",
})


def N_(key: str) -> str:  # noqa: N802 - gettext's name for a no-op marker
    """Mark a catalog key the code keeps as data, so `pybabel extract` finds it; returns it."""
    return key


def N_plural(key: str, count_param: str) -> str:  # noqa: N802
    """Mark a key whose wording follows the number in its parameter `count_param`; returns it.

    Extracted as msgid `key` with msgid_plural `count_param`: render() reads the plural
    parameter's name back from the compiled catalog and picks the form with ngettext.
    """
    return key


@dataclass(frozen=True)
class Catalog:
    """One language's compiled catalog, as gettext reads it."""

    translations: gettext.GNUTranslations
    msgids: frozenset[str]
    plural_params: dict[str, str]  # plural msgid -> the parameter that carries its count


def _compiled(po: Path) -> bytes:
    """The .mo beside `po`, or `po` compiled in memory when that .mo is missing or stale."""
    mo = po.with_suffix(".mo")
    try:
        mo_mtime = mo.stat().st_mtime
    except FileNotFoundError:
        mo_mtime = None
    try:
        po_mtime: float | None = po.stat().st_mtime
    except FileNotFoundError:
        po_mtime = None
    if mo_mtime is not None and (po_mtime is None or mo_mtime >= po_mtime):
        return mo.read_bytes()
    if po_mtime is None:
        raise FileNotFoundError(f"no catalog at {po} or {mo}")
    log.info("compiling %s in memory (its .mo is missing or older)", po)
    with po.open("rb") as fileobj:
        catalog = read_po(fileobj)
    out = io.BytesIO()
    write_mo(out, catalog)  # leaves out fuzzy and untranslated entries, as pybabel compile
    return out.getvalue()


@functools.cache
def load_catalog(language: str, locale_dir: Path = LOCALE_DIR) -> Catalog:
    """The compiled catalog of `language` (read once per process)."""
    data = _compiled(locale_dir / language / "LC_MESSAGES" / f"{DOMAIN}.po")
    plural_params: dict[str, str] = {}
    msgids: set[str] = set()
    for message in read_mo(io.BytesIO(data)):
        if not message.id:
            continue  # the header
        if isinstance(message.id, (list, tuple)):
            msgids.add(message.id[0])
            plural_params[message.id[0]] = message.id[1]
        else:
            msgids.add(message.id)
    return Catalog(gettext.GNUTranslations(io.BytesIO(data)), frozenset(msgids), plural_params)


def _count(value: Any) -> int:
    """The number that picks a plural form; a missing or fractional one reads as 'many'."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return 0
    if not number.is_finite() or number != number.to_integral_value():
        return 0
    return int(number)


def template(key: str, language: str, params: dict[str, Any] | None = None) -> str | None:
    """The text of `key` in `language`, else in Indonesian; None when no catalog has it."""
    first = language if language in LANGUAGES else DEFAULT_LANGUAGE
    for lang in dict.fromkeys((first, DEFAULT_LANGUAGE)):
        catalog = load_catalog(lang)
        if key in catalog.plural_params:
            count = _count((params or {}).get(catalog.plural_params[key]))
            return catalog.translations.ngettext(key, key, count)
        if key in catalog.msgids:
            return catalog.translations.gettext(key)
    return None


class _Lenient(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format_param(name: str, value: Any) -> str:
    if name in MONEY_PARAMS and value is not None:
        try:
            return format_idr(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            return html.escape(str(value))
    return html.escape(str(value))


def render(key: str, language: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    """The text of `key` in `language` (falling back to Indonesian, then a generic apology).

    Parameters are HTML-escaped (messages go out with parse_mode=HTML); a missing parameter
    shows as its placeholder instead of failing, because a worse message beats none.
    """
    text = template(key, language, params)
    if text is None:
        log.error("message key %s missing from the catalog", key)
        text = template("error.generic", language) or "…"
    values = _Lenient({k: _format_param(k, v) for k, v in params.items()})
    return string.Formatter().vformat(text, (), values)


def format_time(value: datetime) -> str:
    """A clock time as shoppers read it, in Jakarta: 14:05 WIB."""
    return babel.dates.format_time(value, "HH:mm z", tzinfo=SHOP_TIMEZONE, locale=FORMAT_LOCALE)


def format_datetime(value: datetime) -> str:
    """A date and time in Jakarta: 02/01/2024 03:05 WIB."""
    return babel.dates.format_datetime(value, "dd/MM/yyyy HH:mm z", tzinfo=SHOP_TIMEZONE,
                                       locale=FORMAT_LOCALE)
