"""The message catalog: both languages have every key, with the same placeholders."""

from __future__ import annotations

import string

import pytest

from quickcart.messages import LANGUAGES, MESSAGES, render


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_key_in_every_language() -> None:
    keys = {lang: set(MESSAGES[lang]) for lang in LANGUAGES}
    for lang in LANGUAGES:
        assert keys[lang] == keys["id"], (lang, keys[lang] ^ keys["id"])


@pytest.mark.parametrize("key", sorted(MESSAGES["id"]))
def test_same_placeholders(key: str) -> None:
    expected = placeholders(MESSAGES["id"][key])
    for lang in LANGUAGES:
        assert placeholders(MESSAGES[lang][key]) == expected, (lang, key)


def test_render_escapes_and_formats_money() -> None:
    text = render("catalog.line", "id", product_id=1, name="<b>A&B</b>", price="12500", stock=3)
    assert "&lt;b&gt;A&amp;B&lt;/b&gt;" in text
    assert "Rp12.500" in text


def test_unknown_key_falls_back_to_generic() -> None:
    assert render("no.such.key", "en") == MESSAGES["en"]["error.generic"]
