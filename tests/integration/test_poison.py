"""Poison messages: a task whose message keeps coming back (its worker dies each time) is
parked after MAX_DELIVERIES, and a first delivery costs no Redis round trip at all."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from quickcart.adapters.redis_store import prefixed
from tests.conftest import TestUrls, worker_runtime
from workers import runtime
from workers.app import app
from workers.base import DEAD_LETTER_KEY, MAX_DELIVERIES, QuickCartTask

RUNS: list[str] = []


@app.task(base=QuickCartTask, name="tests.poison_probe")
def poison_probe(tag: str) -> str:
    """Records that it ran."""
    RUNS.append(tag)
    return tag


@pytest.fixture()
def task_redis(monkeypatch: pytest.MonkeyPatch, test_urls: TestUrls) -> Iterator[redis.Redis]:
    """runtime.redis_client() pointed at this session's Redis; probe keys removed after."""
    with worker_runtime(monkeypatch, test_urls):
        RUNS.clear()
        yield runtime.redis_client()


def _deliver(task_id: str, redelivered: bool) -> Any:
    """Run the probe as a worker would run one delivery of message `task_id`."""
    poison_probe.push_request(id=task_id, called_directly=False, retries=0,
                              delivery_info={"redelivered": redelivered})
    try:
        return poison_probe(tag=task_id)
    finally:
        poison_probe.pop_request()


def test_kombu_marks_a_requeued_message_as_redelivered(test_urls: TestUrls) -> None:
    """What the counter relies on, on real Redis: a message rejected back to its queue (what
    the worker does when a pool child dies mid-task) comes back flagged; a first one is not."""
    name = f"test-poison-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
    with Connection(test_urls.redis_url) as conn:
        bound = queue(conn.channel())
        bound.declare()
        try:
            conn.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=name,
                                    declare=[queue])
            first = bound.get(no_ack=False)
            assert first is not None
            assert not first.delivery_info.get("redelivered")
            first.reject(requeue=True)
            again = bound.get(no_ack=False)
            assert again is not None
            assert again.delivery_info.get("redelivered") is True
            again.ack()
        finally:
            bound.delete()


def test_first_deliveries_are_not_counted(task_redis: redis.Redis) -> None:
    task_id = f"probe-{uuid.uuid4().hex}"
    assert _deliver(task_id, redelivered=False) == task_id
    assert task_redis.get(prefixed(f"delivery:{task_id}")) is None
    assert [task_id] == RUNS


def test_a_message_that_keeps_coming_back_is_parked(task_redis: redis.Redis) -> None:
    task_id = f"probe-{uuid.uuid4().hex}"
    try:
        assert _deliver(task_id, redelivered=False) == task_id  # delivery 1
        for _ in range(MAX_DELIVERIES - 1):  # deliveries 2..MAX still run
            assert _deliver(task_id, redelivered=True) == task_id
        parked = _deliver(task_id, redelivered=True)  # delivery MAX + 1
        assert parked == {"status": "poison", "deliveries": MAX_DELIVERIES + 1}
        assert [task_id] * MAX_DELIVERIES == RUNS
        assert f"tests.poison_probe:{task_id}" in task_redis.lrange(
            prefixed(DEAD_LETTER_KEY), 0, -1)
    finally:
        task_redis.lrem(prefixed(DEAD_LETTER_KEY), 0, f"tests.poison_probe:{task_id}")
        task_redis.delete(prefixed(f"delivery:{task_id}"))
