"""`quickcart migrate` yields every table, column, type, default and index of the seed schema.

The expected structure is parsed from docs/06-data-schema.md (the data contract, copied from
the seed), so the test follows the contract rather than a hand-made copy of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

SEED = Path(__file__).resolve().parents[2] / "docs" / "06-data-schema.md"

TYPE_MAP = {
    "BIGINT": ("bigint", None),
    "BIGSERIAL": ("bigint", "nextval"),
    "SERIAL": ("integer", "nextval"),
    "INT": ("integer", None),
    "TEXT": ("text", None),
    "BOOLEAN": ("boolean", None),
    "TIMESTAMPTZ": ("timestamp with time zone", None),
    "UUID": ("uuid", None),
    "JSONB": ("jsonb", None),
    "INET": ("inet", None),
}


def _pg_type(seed_type: str) -> tuple[str, str | None]:
    seed_type = seed_type.strip()
    if m := re.fullmatch(r"VARCHAR\((\d+)\)", seed_type):
        return f"character varying({m.group(1)})", None
    if m := re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", seed_type):
        return f"numeric({m.group(1)},{m.group(2)})", None
    return TYPE_MAP[seed_type]


def parse_seed() -> tuple[dict[str, list[tuple[str, str, str]]], list[tuple[str, str, str]]]:
    """Tables as {name: [(column, type, constraints)]} and indexes as [(name, table, cols)]."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    indexes: list[tuple[str, str, str]] = []
    current = None
    for line in SEED.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^### (\w+)", line):
            current = m.group(1)
            tables[current] = []
        elif current and line.startswith("| ") and not line.startswith("| Column"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) >= 3 and not set(cells[0]) <= {"-"}:
                tables[current].append((cells[0], cells[1], cells[2]))
        elif current and (m := re.match(r"^- `(idx_\w+)` ON (.+)$", line)):
            indexes.append((m.group(1), current, m.group(2)))
    return {t: cols for t, cols in tables.items() if cols}, indexes


SEED_TABLES, SEED_INDEXES = parse_seed()


def test_seed_parsed_completely() -> None:
    assert set(SEED_TABLES) == {
        "users", "products", "product_stocks", "orders", "order_items", "vouchers",
        "voucher_usage_cooldown", "audit_logs",
    }
    assert len(SEED_INDEXES) == 25


def _engine_for(table: str, main: Engine, audit: Engine) -> Engine:
    return audit if table == "audit_logs" else main


@pytest.mark.parametrize("table", sorted(SEED_TABLES))
def test_columns_match_seed(table: str, main_engine: Engine, audit_engine: Engine) -> None:
    engine = _engine_for(table, main_engine, audit_engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                " pg_get_expr(d.adbin, d.adrelid)"
                " FROM pg_attribute a LEFT JOIN pg_attrdef d"
                "   ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0"
                " AND NOT a.attisdropped"
            ),
            {"t": table},
        ).all()
    live = {r[0]: (r[1], r[2], r[3]) for r in rows}
    for column, seed_type, constraints in SEED_TABLES[table]:
        assert column in live, f"{table}.{column} missing"
        pg_type, pg_default, not_null, = live[column][0], live[column][2], live[column][1]
        want_type, want_default_kind = _pg_type(seed_type)
        assert pg_type == want_type, f"{table}.{column}: {pg_type} != {want_type}"
        if "NOT NULL" in constraints or "PRIMARY KEY" in constraints:
            assert not_null, f"{table}.{column} must be NOT NULL"
        if "NULLABLE" in constraints:
            assert not not_null, f"{table}.{column} must be nullable"
        if want_default_kind:
            assert pg_default and want_default_kind in pg_default
        if m := re.search(r"DEFAULT (\S+)", constraints):
            want = m.group(1).lower().strip("'")
            assert pg_default is not None, f"{table}.{column} has no default"
            normalised = pg_default.lower()
            assert want.rstrip("()") in normalised or (
                want == "0.00" and normalised.startswith("0")
            ), f"{table}.{column}: default {pg_default} != {want}"


@pytest.mark.parametrize("name,table,columns", SEED_INDEXES)
def test_indexes_match_seed(
    name: str, table: str, columns: str, main_engine: Engine, audit_engine: Engine
) -> None:
    engine = _engine_for(table, main_engine, audit_engine)
    with engine.connect() as conn:
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :n AND tablename = :t"),
            {"n": name, "t": table},
        ).scalar()
    assert definition is not None, f"index {name} on {table} missing"
    key, _, where = columns.partition(" WHERE ")
    for col in (c.strip() for c in key.split(",")):
        parts = col.split()
        assert parts[0] in definition
        if len(parts) > 1:
            assert " ".join(parts) in definition.replace('"', "")
    if where:
        assert "WHERE" in definition


def test_unique_and_foreign_keys(main_engine: Engine) -> None:
    with main_engine.connect() as conn:
        uniques = set(conn.execute(text(
            "SELECT conrelid::regclass::text || '.' || a.attname FROM pg_constraint c"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.contype = 'u' AND array_length(c.conkey, 1) = 1")).scalars())
        fks = set(conn.execute(text(
            "SELECT conrelid::regclass::text || '.' || a.attname || '->'"
            " || confrelid::regclass::text"
            " FROM pg_constraint c JOIN pg_attribute a"
            "   ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1")).scalars())
    for table, cols in SEED_TABLES.items():
        for column, _type, constraints in cols:
            if "UNIQUE" in constraints:
                assert f"{table}.{column}" in uniques, f"{table}.{column} must be UNIQUE"
            if m := re.search(r"FK (\w+)\.id", constraints):
                assert f"{table}.{column}->{m.group(1)}" in fks, f"{table}.{column} FK missing"
