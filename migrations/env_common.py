"""Shared Alembic runner for the `main` and `audit` environments."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool


def target_url(target: str) -> str:
    """The URL to migrate: `-x url=...`, a URL handed over by `quickcart migrate`, or settings."""
    config = context.config
    url = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    if url:
        return str(url)
    from quickcart.db.urls import service_urls

    urls = service_urls()
    return urls.database_url if target == "main" else urls.audit_database_url


def run(target: str) -> None:
    """Run migrations online (or emit SQL offline) for one database."""
    url = target_url(target)
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
