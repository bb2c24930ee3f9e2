"""The broker channel (celeryconfig._RedisChannel) on real Redis: a client whose pool kombu
replaced (after a connection error) is rebuilt, and a client passed in is used as is. (The
per-channel client cache is gone with the engine tricks, ADR 0062.)"""

from __future__ import annotations

import redis
from kombu import Connection

from quickcart.db.sql import sql
from tests.conftest import TestUrls


def test_a_replaced_pool_gets_a_new_client(test_urls: TestUrls) -> None:
    with Connection(test_urls.redis_url) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as before:
            assert before.ping()
        channel._disconnect_pools()  # what kombu does after a connection error
        with channel.conn_or_acquire() as after:
            assert after is not before
            assert after.connection_pool is channel.pool
            assert after.ping()


def test_a_client_passed_in_is_used_as_is(test_urls: TestUrls) -> None:
    given = redis.Redis.from_url(test_urls.redis_url)
    try:
        with Connection(test_urls.redis_url) as conn, \
                conn.default_channel.conn_or_acquire(given) as used:
            assert used is given
    finally:
        given.close()


def test_textual_sql_is_built_once_per_statement() -> None:
    assert sql("SELECT 1 WHERE :a = :a") is sql("SELECT 1 WHERE :a = :a")
    assert sql("SELECT 1 WHERE :a = :a") is not sql("SELECT 2 WHERE :a = :a")
    assert set(sql("SELECT :x, :y").compile().params) == {"x", "y"}
