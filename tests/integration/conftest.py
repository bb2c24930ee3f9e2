"""Fixtures shared by the integration tests that use Redis keys of their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

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
