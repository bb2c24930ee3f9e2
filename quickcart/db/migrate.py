"""Bring both databases to head, creating them first when they do not exist."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quickcart.config import normalize_database_url

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("main", "audit")


def alembic_config(target: str, url: str) -> Config:
    """Alembic config for `target` ('main' or 'audit') pointed at `url`."""
    cfg = Config(str(ROOT / "alembic.ini"), ini_section=target)
    cfg.set_main_option("script_location", str(ROOT / "migrations" / target))
    cfg.attributes["url"] = normalize_database_url(url)
    return cfg


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if missing; returns True when it was created."""
    parsed = make_url(normalize_database_url(url))
    name = parsed.database
    if not name:
        raise ValueError(f"database URL has no database name: {parsed.render_as_string()}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).scalar()
            if exists:
                return False
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            return True
    finally:
        admin.dispose()


def upgrade(target: str, url: str, revision: str = "head") -> None:
    """Upgrade one database to `revision`."""
    command.upgrade(alembic_config(target, url), revision)


def downgrade(target: str, url: str, revision: str = "base") -> None:
    """Downgrade one database to `revision`."""
    command.downgrade(alembic_config(target, url), revision)


def migrate_all(main_url: str, audit_url: str) -> list[str]:
    """Create missing databases and upgrade both to head; returns the databases created."""
    created = []
    for target, url in (("main", main_url), ("audit", audit_url)):
        if ensure_database(url):
            created.append(make_url(url).database or "")
        upgrade(target, url)
    return created
