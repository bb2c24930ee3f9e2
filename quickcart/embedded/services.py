"""Where QuickCart's services are: configured URLs, else local default ports, else embedded ones.

Also the manual ``start|stop|status`` command behind ``python -m quickcart.embedded`` and
``quickcart services``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from quickcart.config import Settings
from quickcart.embedded.postgres import EmbeddedPostgres, pg_url
from quickcart.embedded.process import LOOPBACK, port_answers
from quickcart.embedded.redis import EmbeddedRedis


@dataclass(frozen=True)
class ServiceUrls:
    """Where QuickCart's database, audit database and Redis are, and which ones are embedded."""

    database_url: str
    audit_database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


def _with_database(url: str, database: str) -> str:
    """`url` with its database (path) replaced; everything else is kept byte for byte."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def resolve_service_urls(settings: Settings, *, start: bool = True) -> ServiceUrls:
    """Configured URLs if set, else answering local default ports, else embedded servers."""
    data_dir = Path(settings.data_dir)
    embedded_pg = False
    if settings.database_url:
        database_url = settings.database_url
    elif port_answers(settings.local_pg_host, settings.local_pg_port):
        database_url = pg_url(settings.local_pg_host, settings.local_pg_port,
                              settings.main_db_name)
    else:
        embedded_pg = True
        pg = EmbeddedPostgres(data_dir)
        if start:
            pg.start()
            wanted = [settings.main_db_name]
            if not settings.audit_database_url:
                wanted.append(settings.audit_db_name)
            pg.ensure_databases(*wanted)
        database_url = pg.url(settings.main_db_name)
    audit_url = settings.audit_database_url or _with_database(database_url, settings.audit_db_name)

    embedded_rd = False
    if settings.redis_url:
        redis_url = settings.redis_url
    elif port_answers(LOOPBACK, settings.local_redis_port):
        redis_url = f"redis://{LOOPBACK}:{settings.local_redis_port}/0"
    else:
        embedded_rd = True
        rd = EmbeddedRedis(data_dir)
        redis_url = rd.start() if start else rd.url()

    return ServiceUrls(
        database_url=database_url,
        audit_database_url=audit_url,
        redis_url=redis_url,
        embedded_postgres=embedded_pg,
        embedded_redis=embedded_rd,
    )


def stop_embedded(data_dir: Path) -> list[str]:
    """Stop the embedded servers running for `data_dir`; return the names of those stopped."""
    stopped = []
    for server in (EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)):
        if server.stop():
            stopped.append(server.name)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """`python -m quickcart.embedded start|stop|status [--data-dir DIR]` for manual use."""
    parser = argparse.ArgumentParser(prog="python -m quickcart.embedded")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings() if args.data_dir is None else Settings(data_dir=args.data_dir)
    data_dir = Path(settings.data_dir)
    if args.action == "start":
        urls = resolve_service_urls(settings)
        print(json.dumps(urls.__dict__, indent=2))
    elif args.action == "stop":
        print("stopped:", ", ".join(stop_embedded(data_dir)) or "nothing")
    else:
        for server in (EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)):
            state = "running" if server.is_running() else "stopped"
            print(f"{server.name}: {state} ({server.url()})")
    return 0
