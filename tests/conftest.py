"""Test harness: real PostgreSQL and Redis (local servers, or embedded ones when none answer).

Each test session gets its own pair of freshly migrated databases (so parallel runs and a
developer's own data never collide) and drops them at the end. Tests that touch the database
use `db` which empties every table first.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from quickcart.db.engine import dispose_engines
from quickcart.db.migrate import migrate_all

# Every Redis key this session writes (here, and in the workers, bots and APIs it starts: they
# inherit the environment) starts with a prefix of its own, so sessions share Redis databases
# with each other and with a running shop, and each deletes exactly its own keys at the end.
# Set before anything reads the settings; a prefix from the caller's shell is overridden, so
# that cleanup can never touch a shop's `qc:` keys.
TEST_KEY_PREFIX = f"qct{os.getpid()}:"
os.environ["REDIS_KEY_PREFIX"] = TEST_KEY_PREFIX
# Key names QuickCart and kombu write, as they look without a prefix. One of these appearing
# during the session means some write skipped REDIS_KEY_PREFIX; keys of other apps sharing the
# database (and of other sessions, under their own prefixes) never look like this.
_OURS_UNPREFIXED = re.compile(
    r"^(_kombu\.|unacked(_index|_mutex)?$|(default|orders|payments|expiry|audit|notify|bulk)$"
    r"|.*celery\.pidbox$|celeryev|(queue|session|rate|stock_count|stats|pagination|delivery"
    r"|banned_notice|health|digest|quickcart):)")


def _glob(prefix: str) -> str:
    """`prefix` as a SCAN MATCH pattern matching exactly the keys that start with it."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


def delete_prefixed(url: str, prefix: str = TEST_KEY_PREFIX) -> int:
    """Delete every key under `prefix` in the Redis database at `url`; how many were."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=_glob(prefix), count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start:start + 500])
        return len(keys)
    finally:
        client.close()


def redis_keys(url: str) -> set[str]:
    """Every key of the Redis database at `url` (SCAN, never KEYS)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return set(client.scan_iter(count=1000))
    finally:
        client.close()


def assert_no_keys_left(url: str, before: set[str], prefix: str = TEST_KEY_PREFIX) -> None:
    """Delete this session's keys (under `prefix`), then fail if a QuickCart or kombu key
    without a prefix appeared since `before`: some write skipped REDIS_KEY_PREFIX."""
    delete_prefixed(url, prefix)
    left = sorted(k for k in redis_keys(url) - before if _OURS_UNPREFIXED.match(k))
    assert not left, (f"the tests left Redis keys without REDIS_KEY_PREFIX in {url}: "
                      f"{left[:20]}")


MAIN_TABLES = (
    "risk_reviews, risk_assessments, fraud_settings, admin_actions, "
    "broadcast_runners, broadcast_recipients, broadcasts, restock_watches, low_stock_alerts, "
    "voucher_redemptions, discounts, admin_groups, "
    "refund_formula, order_refunds, warranty_claims, order_actions, support_relays, "
    "support_messages, support_tickets, "
    "admin_grants, admin_pending_notices, audit_outbox, payment_events, outbox, idempotency_keys, "
    "sold_count_deltas, balance_ledger, "
    "deposits, "
    "voucher_usage_cooldown, vouchers, released_order_items, order_items, product_stocks, "
    "orders, products, users"
)


@dataclass(frozen=True)
class TestUrls:
    """URLs of this test session's own databases and Redis."""

    __test__ = False  # a fixture value, not a test class

    database_url: str
    audit_database_url: str
    redis_url: str
    server_url: str


@contextlib.contextmanager
def worker_runtime(monkeypatch: pytest.MonkeyPatch, test_urls: TestUrls,
                   **env: str) -> Iterator[None]:
    """`workers.runtime` pointed at this session's databases and Redis (and `env`), as a task
    body run in the test process sees them: cached settings and clients are rebuilt on the way
    in and, after the test's monkeypatches are undone, on the way out."""
    from quickcart.config import get_settings
    from quickcart.db.urls import service_urls
    from workers import runtime

    def rebuild() -> None:
        get_settings.cache_clear()
        service_urls.cache_clear()
        runtime._clients.clear()

    for name, value in {"DATABASE_URL": test_urls.database_url,
                        "AUDIT_DATABASE_URL": test_urls.audit_database_url,
                        "REDIS_URL": test_urls.redis_url, **env}.items():
        monkeypatch.setenv(name, value)
    rebuild()
    try:
        yield
    finally:
        monkeypatch.undo()
        rebuild()


def _base_urls() -> tuple[str, str]:
    """A PostgreSQL server URL and a Redis URL: configured, local, or embedded."""
    from quickcart.db.urls import service_urls

    urls = service_urls()
    return urls.database_url, urls.redis_url


@pytest.fixture(scope="session")
def test_urls() -> Iterator[TestUrls]:
    """Fresh main + audit databases for this session, migrated to head; dropped afterwards."""
    base_db, redis_url = _base_urls()
    keys_before = redis_keys(redis_url)
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    main_url = make_url(base_db).set(database=f"qct_{suffix}_main")
    audit_url = make_url(base_db).set(database=f"qct_{suffix}_audit")
    server = make_url(base_db).set(database="postgres")
    urls = TestUrls(
        database_url=main_url.render_as_string(hide_password=False),
        audit_database_url=audit_url.render_as_string(hide_password=False),
        redis_url=redis_url,
        server_url=server.render_as_string(hide_password=False),
    )
    migrate_all(urls.database_url, urls.audit_database_url)
    yield urls
    dispose_engines()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in (main_url.database, audit_url.database):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
    assert_no_keys_left(redis_url, keys_before)


@pytest.fixture(scope="session")
def main_engine(test_urls: TestUrls) -> Iterator[Engine]:
    """Engine on this session's main database."""
    engine = create_engine(test_urls.database_url, pool_size=10, max_overflow=60)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def audit_engine(test_urls: TestUrls) -> Iterator[Engine]:
    """Engine on this session's audit database."""
    engine = create_engine(test_urls.audit_database_url)
    yield engine
    engine.dispose()


def empty_databases(main: Engine, audit: Engine | None = None) -> None:
    """Remove every row, bypassing the append-only guards (a test-only superuser move)."""
    with main.begin() as conn:
        # A connection a test leaked would block TRUNCATE forever; fail loudly instead.
        conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {MAIN_TABLES} RESTART IDENTITY CASCADE")
    if audit is not None:
        with audit.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql("TRUNCATE audit_logs RESTART IDENTITY")


@pytest.fixture()
def db(main_engine: Engine, audit_engine: Engine) -> Engine:
    """The main database, emptied before the test."""
    empty_databases(main_engine, audit_engine)
    return main_engine


def scalar(engine: Engine, sql: str, **params: object) -> object:
    """Run one query and return its single value."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()
