"""Rendering catalog messages: escaping, money, fallbacks, plural forms, dates; the .mo loader."""

from __future__ import annotations

import gettext
import io
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import write_po
from hypothesis import given, settings
from hypothesis import strategies as st

from quickcart.domain.money import format_idr
from quickcart.i18n import _compiled, format_datetime, format_time, load_catalog
from quickcart.messages import LANGUAGES, render


def test_every_language_has_the_indonesian_keys() -> None:
    source = load_catalog("id").msgids
    for lang in LANGUAGES:
        assert load_catalog(lang).msgids == source, (lang, load_catalog(lang).msgids ^ source)


def test_render_escapes_and_formats_money() -> None:
    text = render("catalog.line", "id", product_id=1, name="<b>A&B</b>", price="12500", stock=3)
    assert "&lt;b&gt;A&amp;B&lt;/b&gt;" in text
    assert "Rp12.500" in text


def test_a_money_parameter_that_is_no_amount_is_shown_escaped() -> None:
    assert "&lt;?&gt;" in render("catalog.line", "en", product_id=1, name="A", price="<?>",
                                 stock=3)


def test_unknown_key_falls_back_to_generic() -> None:
    assert render("no.such.key", "en") == render("error.generic", "en")
    assert render("error.generic", "en") != render("error.generic", "id")


def test_unknown_language_reads_indonesian() -> None:
    assert render("menu.main", "fr") == render("menu.main", "id")


def test_a_missing_parameter_shows_its_placeholder() -> None:
    assert "{invoice_id}" in render("order.cancelled", "en")


def test_plural_forms_follow_the_count() -> None:
    one = render("admin.broadcast_started", "en", count=1)
    many = render("admin.broadcast_started", "en", count=3)
    assert "1 user." in one and "3 users." in many
    # Indonesian has a single form
    assert render("admin.broadcast_started", "id", count=1).replace("1", "3") \
        == render("admin.broadcast_started", "id", count=3)
    # a count that is missing or not a whole number reads as "many"
    assert "users" in render("admin.broadcast_started", "en")
    assert "2.5 minutes" in render("error.voucher_cooldown", "en", minutes="2.5")


def _old_format_idr(amount: Decimal) -> str:
    """quickcart/domain/money.py's hand-written formatter before Babel, as the reference."""
    whole = int(amount.to_integral_value())
    sign = "-" if whole < 0 else ""
    return f"{sign}Rp{abs(whole):,}".replace(",", ".")


@settings(database=None)  # a pure function: no failure database to keep
@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**18, max_value=10**18,
                   places=2) | st.integers(-10**40, 10**40).map(Decimal))
def test_rupiah_formatting_is_unchanged(amount: Decimal) -> None:
    assert format_idr(amount) == _old_format_idr(amount)


def test_rupiah_examples() -> None:
    assert format_idr(Decimal("12345")) == "Rp12.345"
    assert format_idr(Decimal("12500.00")) == "Rp12.500"
    assert format_idr(Decimal("-2500")) == "-Rp2.500"
    assert format_idr(Decimal("-0.4")) == "Rp0"


def test_times_are_jakarta_time() -> None:
    evening_utc = datetime(2024, 1, 1, 20, 5, tzinfo=UTC)
    assert format_time(evening_utc) == "03:05 WIB"
    assert format_datetime(evening_utc) == "02/01/2024 03:05 WIB"  # already the 2nd there


def _write_catalog(po: Path, text: str) -> None:
    catalog = Catalog(locale="en")
    catalog.add("a.key", text)
    buf = io.BytesIO()
    write_po(buf, catalog)
    po.parent.mkdir(parents=True, exist_ok=True)
    po.write_bytes(buf.getvalue())


def _text(mo: bytes) -> str:
    return gettext.GNUTranslations(io.BytesIO(mo)).gettext("a.key")


def test_a_stale_or_missing_mo_is_compiled_from_the_po(tmp_path: Path) -> None:
    po = tmp_path / "en" / "LC_MESSAGES" / "messages.po"
    _write_catalog(po, "new")
    assert _text(_compiled(po)) == "new"  # no .mo yet
    old = Catalog(locale="en")
    old.add("a.key", "old")
    with po.with_suffix(".mo").open("wb") as fileobj:
        write_mo(fileobj, old)
    os.utime(po, (1_000_000, 1_000_000))
    assert _text(_compiled(po)) == "old"  # the .mo is newer: used as it is
    os.utime(po, (2**31 - 1, 2**31 - 1))
    assert _text(_compiled(po)) == "new"  # the .po was edited since
