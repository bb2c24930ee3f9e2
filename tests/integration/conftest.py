"""Fixtures shared by the integration tests: Redis keys of their own, the Telegram simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from sandbox.telegram import TelegramSimulator
from tests.conftest import TestUrls


@pytest.fixture
def r(test_urls: TestUrls) -> Iterator[redis.Redis]:
    """A client of the test Redis (text replies)."""
    client = redis.Redis.from_url(test_urls.redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(r: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own: its keys start absent and are removed after it."""
    name = f"qct-{uuid.uuid4().hex[:8]}:"
    yield name
    keys = list(r.scan_iter(f"{name}*"))
    if keys:
        r.delete(*keys)


@pytest.fixture
def sim() -> Iterator[TelegramSimulator]:
    """A Telegram simulator of this test's own, stopped after it."""
    with TelegramSimulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: TelegramSimulator) -> Iterator[httpx.Client]:
    """An HTTP client of the simulator (its Bot API and control API)."""
    with httpx.Client(base_url=sim.base_url, timeout=15.0) as c:
        yield c
