"""Both Alembic environments go to head, down to base and up again on fresh databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from quickcart.db import migrate
from tests.conftest import TestUrls


@pytest.fixture()
def scratch_urls(test_urls: TestUrls) -> Iterator[tuple[str, str]]:
    """A throw-away pair of database URLs (created by the code under test), dropped after."""
    tag = uuid.uuid4().hex[:8]
    base = make_url(test_urls.database_url)
    main = base.set(database=f"qct_mig_{tag}_main").render_as_string(hide_password=False)
    audit = base.set(database=f"qct_mig_{tag}_audit").render_as_string(hide_password=False)
    yield main, audit
    admin = create_engine(test_urls.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for url in (main, audit):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_migrate_creates_databases_then_down_and_up(scratch_urls: tuple[str, str]) -> None:
    main, audit = scratch_urls
    created = migrate.migrate_all(main, audit)
    assert len(created) == 2
    assert {"users", "orders", "product_stocks", "balance_ledger", "outbox"} <= _tables(main)
    assert _tables(audit) == {"audit_logs"}
    assert migrate.migrate_all(main, audit) == [], "a second migrate is a no-op"

    migrate.downgrade("main", main, "base")
    migrate.downgrade("audit", audit, "base")
    assert _tables(main) == set()
    assert _tables(audit) == set()

    migrate.upgrade("main", main)
    migrate.upgrade("audit", audit)
    assert "order_items" in _tables(main) and _tables(audit) == {"audit_logs"}


def test_plain_alembic_cli_works(scratch_urls: tuple[str, str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    main, _audit = scratch_urls
    migrate.ensure_database(main)
    for args in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
        subprocess.run(
            [sys.executable, "-m", "alembic", "-n", "main", "-x", f"url={main}", *args],
            cwd=root, check=True, capture_output=True, timeout=120,
        )
    assert "users" in _tables(main)
