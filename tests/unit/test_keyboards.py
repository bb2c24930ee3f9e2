"""The list pager: [KEMBALI] [SELANJUTNYA n/N] as the requirements draw it, in each language."""

from __future__ import annotations

import pytest

from bot import keyboards


def row(lang: str, page: int, pages: int) -> list[tuple[str, str | None]]:
    return [(b.text, b.callback_data if isinstance(b.callback_data, str) else None)
            for b in keyboards.pager(lang, "c:all", page, pages)]


def test_first_middle_and_last_page() -> None:
    # Page 1 of 3: no KEMBALI (the list's own ⬅️ Kembali leads back to its menu).
    assert row("id", 0, 3) == [("SELANJUTNYA 1/3", "c:all:1")]
    assert row("id", 1, 3) == [("KEMBALI", "c:all:0"), ("SELANJUTNYA 2/3", "c:all:2")]
    # The last page still shows where it is, with no button that claims to go further.
    assert row("id", 2, 3) == [("KEMBALI", "c:all:1"), ("3/3", "noop")]
    assert row("id", 0, 1) == [("1/1", "noop")]
    assert row("id", 0, 0) == [("1/1", "noop")]  # an empty list is one page


@pytest.mark.parametrize(("lang", "back", "next_"), [("id", "KEMBALI", "SELANJUTNYA 2/4"),
                                                     ("en", "BACK", "NEXT 2/4")])
def test_labels_come_from_the_catalog(lang: str, back: str, next_: str) -> None:
    assert [text for text, _ in row(lang, 1, 4)] == [back, next_]
    assert not any(mark in text for text, _ in row(lang, 1, 4) for mark in "◀▶")
