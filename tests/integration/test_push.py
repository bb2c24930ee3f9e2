"""The bench driver's prebuilt messages (bench.prebuilt) on real Redis, and the outbox's publish on
real PostgreSQL: a prebuilt message is byte for byte what `send_task` stores (so every worker
reads it alike), cache keys go in the same round trip, and rows are marked published only after
their publish succeeded."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from bench import prebuilt as push
from quickcart.adapters.redis_store import prefixed
from quickcart.db import outbox
from quickcart.db.sql import run_alone
from quickcart.logs import bind_correlation_id, clear_context
from sandbox.serving import wait_until
from tests.conftest import TEST_KEY_PREFIX, TestUrls
from workers.app import app


@pytest.fixture()
def broker(test_urls: TestUrls) -> Iterator[tuple[redis.Redis, str]]:
    """The test Redis and a queue name no worker consumes; its list (and the binding
    `send_task` declares) removed after."""
    client = redis.Redis.from_url(test_urls.redis_url)
    queue = f"push-{uuid.uuid4().hex[:8]}"
    yield client, queue
    client.delete(push.queue_key(app, queue), prefixed(f"_kombu.binding.{queue}"))
    client.close()


def _stored(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The queue's messages, oldest first (LPUSH in, BRPOP out)."""
    return [json.loads(raw)
            for raw in reversed(client.lrange(push.queue_key(app, queue), 0, -1))]


@pytest.mark.parametrize("registered", [False, True], ids=["bot", "worker"])
def test_pushed_message_is_what_send_task_stores(broker: tuple[redis.Redis, str],
                                                 registered: bool) -> None:
    """In the bot no task is registered; in a worker every one is, and lends its time limits."""
    client, queue = broker
    if registered:
        import workers.tasks.orders  # noqa: F401 - defines quickcart.create_order

        assert "quickcart.create_order" in app.tasks  # finalized: registered, as in a worker
    kwargs = {"user_id": 7, "product_id": 1, "quantity": 2, "payment_method": "qris",
              "idempotency_key": "k-1", "voucher_code": None}
    bind_correlation_id("cid-push")
    try:
        with app.connection_for_write(url=_url(client)) as conn:
            app.send_task("quickcart.create_order", kwargs=kwargs, queue=queue,
                          task_id="task-1", connection=conn)
        push.send_unsafe(app, client, "quickcart.create_order", kwargs, queue, task_id="task-1")
    finally:
        clear_context()
    # Both under REDIS_KEY_PREFIX, on the one list the workers read: kombu's own publish and
    # the push agree on where a queue lives.
    assert push.queue_key(app, queue) == TEST_KEY_PREFIX + queue
    assert client.exists(queue) == 0
    sent, pushed = _stored(client, queue)
    assert sent["properties"].pop("delivery_tag") != pushed["properties"].pop("delivery_tag")
    assert base64.b64decode(sent.pop("body")) == base64.b64decode(pushed.pop("body"))
    assert sent == pushed
    assert pushed["headers"]["correlation_id"] == "cid-push"
    if registered:
        assert pushed["headers"]["timelimit"] == [app.conf.task_time_limit,
                                                  app.conf.task_soft_time_limit]
    assert pushed["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def test_push_drops_cache_keys_in_the_same_call(broker: tuple[redis.Redis, str]) -> None:
    client, queue = broker
    stale = [prefixed(f"{queue}:stock"), prefixed(f"{queue}:stats")]
    client.mset(dict.fromkeys(stale, "5"))
    messages = [push.build(app, "celery.accumulate", {"n": i}, queue) for i in range(3)]
    push.push_unsafe(client, [(push.queue_key(app, queue), message) for _, message in messages],
                     delete=stale)
    assert client.exists(*stale) == 0
    assert [m["headers"]["id"] for m in _stored(client, queue)] == [i for i, _ in messages]


def _rows(db: Engine, n: int) -> list[outbox.OutboxMessage]:
    from sqlalchemy.orm import Session

    with Session(db) as session:
        rows = outbox.add_many(session, [("quickcart.send_message", "notify", {"i": i})
                                         for i in range(n)])
        session.commit()
    return rows


def _published(db: Engine, rows: Sequence[outbox.OutboxMessage]) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM outbox WHERE id = ANY(:i) AND published_at IS NOT NULL"),
            {"i": [r.id for r in rows]}).scalar_one())


def test_rows_are_marked_only_after_their_publish(db: Engine) -> None:
    rows = _rows(db, 3)
    seen: list[list[int]] = []

    def failing(messages: Sequence[outbox.OutboxMessage]) -> None:
        raise redis.ConnectionError("broker down")

    with pytest.raises(redis.ConnectionError):
        outbox.publish_now(db, failing, rows)
    assert _published(db, rows) == 0  # all stay the relay's

    assert outbox.publish_now(db, lambda ms: seen.append([m.id for m in ms]), rows) == 3
    assert seen == [[r.id for r in rows]]  # one batch, one round trip
    # Marked shortly after, by the process's marking thread, with no flush asked for.
    wait_until(lambda: _published(db, rows) == 3, what="the rows marked", timeout=5)


def test_a_flush_marks_what_is_queued_and_a_failed_mark_leaves_rows_to_the_relay(
        db: Engine) -> None:
    rows = _rows(db, 2)
    broken = create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    outbox.MARKS.add(broken, [rows[0].id])  # this mark cannot reach its database
    outbox.MARKS.add(db, [rows[1].id])
    outbox.MARKS.flush()  # what a stopping worker does; the failed mark does not raise
    assert _published(db, rows[1:]) == 1
    assert _published(db, rows[:1]) == 0
    assert [m.id for m in outbox.lease(db, [rows[0].id])] == [rows[0].id]  # the relay's


def test_run_alone_leaves_the_pooled_connection_transactional(db: Engine) -> None:
    """After the one-round-trip statement, the next unit of work on that connection still
    rolls back what it does not commit."""
    rows = _rows(db, 1)
    one = create_engine(db.url, pool_size=1, max_overflow=0)  # every call gets the same one
    try:
        outbox.mark_published(one, [rows[0].id])
        assert _published(db, rows) == 1
        assert run_alone(one, "SELECT current_setting('synchronous_commit')").scalar() == "on"
        with one.connect() as conn:
            conn.execute(text("UPDATE outbox SET published_at = NULL WHERE id = :i"),
                         {"i": rows[0].id})
            conn.rollback()
        assert _published(db, rows) == 1
    finally:
        one.dispose()


def test_a_broker_other_than_redis_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are pushed in kombu's Redis layout: another broker would never see them."""
    import os

    from workers import runtime

    key = (os.getpid(), "broker")
    saved = runtime._clients.pop(key, None)
    monkeypatch.setattr(app.conf, "broker_url", "amqp://guest:guest@127.0.0.1:5672//")
    try:
        with pytest.raises(RuntimeError, match="needs a Redis broker, not amqp://"):
            runtime.broker_client()
    finally:
        runtime._clients.pop(key, None)
        if saved is not None:
            runtime._clients[key] = saved
