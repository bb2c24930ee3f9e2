"""Textual SQL built once per distinct statement."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import TextClause, text


@lru_cache(maxsize=2048)
def sql(statement: str) -> TextClause:
    """`text(statement)`, parsed once: building a TextClause scans the string for bind names on
    every call (about 0.1 ms), which the hot paths (a purchase runs a dozen statements) repeat
    for the same few strings. TextClause is immutable, so one object serves every thread."""
    return text(statement)
