"""Per-process resources of a worker: engines, Redis, gateway and Bot API clients."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from sqlalchemy import Engine

from quickcart.adapters import redis_store
from quickcart.adapters.pakasir import PakasirClient
from quickcart.adapters.rate_limit import Limits, SendLimiter
from quickcart.adapters.telegram_api import BotApi
from quickcart.config import get_settings
from quickcart.db.engine import get_engine
from quickcart.db.urls import service_urls

_lock = threading.Lock()
_clients: dict[tuple[int, str], Any] = {}
# Set in Celery pool children: there a dead pooled connection fails the task's first statement,
# and the task retries from scratch (workers.base), so the per-checkout ping (a round trip on
# every unit of work) is not needed. The webhook API and other callers keep it.
_tasks_retry_stale_connections = False


def retry_stale_connections_in_tasks() -> None:
    """Engines built after this skip the pre-ping (call only in a Celery pool child)."""
    global _tasks_retry_stale_connections
    _tasks_retry_stale_connections = True


def _per_process(name: str, factory: Any) -> Any:
    key = (os.getpid(), name)
    # Built once, read on every push and task: no lock once it exists (dict reads are atomic).
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        if key not in _clients:
            _clients[key] = factory()
        return _clients[key]


def engine() -> Engine:
    """The main database engine of this process."""
    return get_engine(service_urls().database_url, pre_ping=not _tasks_retry_stale_connections)


def audit_engine() -> Engine:
    """The audit database engine of this process."""
    return get_engine(service_urls().audit_database_url, pool_size=2,
                      pre_ping=not _tasks_retry_stale_connections)


def redis_client() -> redis.Redis:
    """Redis for the expiry set and counters."""
    return _per_process("redis", lambda: redis_store.client(service_urls().redis_url))


def broker_client() -> redis.Redis:
    """The broker's Redis, for the relay's broker mark (workers.publish): one connection of its
    own, the URL read once."""
    return _per_process("broker", _new_broker_client)


def _new_broker_client() -> redis.Redis:
    from workers.app import app

    url = str(app.conf.broker_url)
    if url.startswith("redis+socket://"):  # kombu's name for a Redis unix socket
        url = "unix://" + url.removeprefix("redis+socket://")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        # The broker mark lives in the broker's Redis (workers.publish), and celeryconfig
        # patches kombu's Redis transport: another broker is not supported.
        raise RuntimeError(f"QuickCart needs a Redis broker, not {url.split(':', 1)[0]}://")
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10,
                                single_connection_client=True)


def gateway() -> PakasirClient:
    """The Pakasir client (fails fast at first use if the project or key is missing)."""
    def build() -> PakasirClient:
        settings = get_settings()
        settings.require("payments")
        return PakasirClient(settings.pakasir_base_url, settings.pakasir_project or "",
                             settings.pakasir_api_key or "",
                             timeout=settings.pakasir_timeout_seconds)
    return _per_process("gateway", build)


def messenger() -> BotApi:
    """The Bot API client (fails fast at first use if the token is missing)."""
    def build() -> BotApi:
        settings = get_settings()
        settings.require("notify")
        # Every worker's sends share the Redis buckets (quickcart.adapters.rate_limit).
        limiter = SendLimiter(redis_client(), Limits.from_settings(), settings.redis_key_prefix)
        return BotApi(settings.telegram_api_base_url, settings.telegram_bot_token or "",
                      limiter=limiter)
    return _per_process("messenger", build)


def preload_for_fork() -> None:
    """Import what the first task would import (the database driver and dialect, the HTTP
    stack) in the worker's main process, so pool children start with it instead of each one
    spending up to a second on imports during its first task. Opens no connection."""
    import httpx  # noqa: F401
    from sqlalchemy.dialects.postgresql import psycopg  # noqa: F401 - loaded for the children

    from quickcart.services import delivery, notifications, orders, payments  # noqa: F401


def warm_up() -> None:
    """Build this process' clients before its first task (no network call): the engine, Redis
    and, when their secrets are set, the Bot API and gateway clients. Never raises: a worker
    with a missing secret still starts and fails that component's tasks politely."""
    import contextlib

    from quickcart.config import MissingSettingError

    engine()
    audit_engine()
    redis_client()
    for build in (messenger, gateway):
        with contextlib.suppress(MissingSettingError):
            build()
