"""The benchmark driver's stand-in for many bots pressing "buy" at once: task messages built
exactly as kombu's Redis transport stores a `send_task` message, pushed in pipelines, so a
thousand intents reach their queue within a millisecond (bench/flash_sale.py) and building them
does not compete with the shop it measures.

Bench-only. Until issue 25 the shop itself published this way (workers/push.py), for the retired
"app ≥ 0.5 × raw SQL" ratio; it depends on kombu's private Redis layout (the envelope, the
priority lists' `\x06\x16` separator), which a benchmark driver may, and the shop no longer
does (the shop publishes through Celery's `send_task`: workers/push.py)."""

from __future__ import annotations

import base64
import functools
import json
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from kombu.utils import json as kombu_json

from quickcart.logs import current_correlation_id
from workers.routes import priority_of


def build(app: Celery, task: str, kwargs: dict[str, Any], queue: str, *,
          task_id: str | None = None, headers: dict[str, Any] | None = None) -> tuple[str, str]:
    """(task id, serialized message) for `task` on `queue`, exactly as kombu's Redis transport
    stores a `send_task` message: a task published while a task runs names it as its parent,
    and carries the current correlation id (what observability's publish signal adds)."""
    task_id = task_id or str(uuid.uuid4())
    root_id, parent_id = task_id, None
    parent = app.current_worker_task
    if parent is not None:
        root_id = parent.request.root_id or parent.request.id
        parent_id = parent.request.id
    # As `send_task`: a task registered in this process (a worker's) lends the message its
    # time limits; elsewhere (the bot) the message carries none and the worker applies its own.
    registered = app._tasks.get(task)
    limits = registered._get_exec_options() if registered is not None else {}
    # Flower shows the arguments' repr; Celery's `saferepr` (made for arbitrary objects) was a
    # fifth of building a message, and these arguments are small JSON values.
    built = app.amqp.as_task_v2(task_id, task, kwargs=kwargs, root_id=root_id,
                                parent_id=parent_id, ignore_result=None,
                                reply_to=app.thread_oid, argsrepr="()",
                                kwargsrepr=repr(kwargs)[:app.amqp.kwargsrepr_maxsize],
                                time_limit=limits.get("time_limit"),
                                soft_time_limit=limits.get("soft_time_limit"))
    message_headers = {**built.headers, **(headers or {})}
    if not message_headers.get("correlation_id"):
        correlation_id = current_correlation_id()
        if correlation_id:
            message_headers["correlation_id"] = correlation_id
    # kombu's JSON, as Celery's serializer (Decimal, datetime and UUID arguments travel alike).
    body = kombu_json.dumps(built.body).encode()
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": message_headers,
        "properties": {
            **built.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": priority_of(task, queue),
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return task_id, json.dumps(envelope)


def queue_key(app: Celery, queue: str) -> str:
    """The Redis list holding `queue`'s messages: kombu puts its `global_keyprefix` transport
    option (REDIS_KEY_PREFIX, set in celeryconfig) before every key it touches."""
    return _key_prefix(app) + queue


# kombu's Redis transport keeps priority N (a step of 0, 3, 6, 9) of a queue in the list
# `queue + "\x06\x16" + N` (priority 0 in the queue's own list), and its BRPOP reads the steps
# in order: a worker pops a queue's priority-0 messages first.
_PRIORITY_SEP = "\x06\x16"


def list_key(app: Celery, queue: str, task: str) -> str:
    """The Redis list `task`'s messages on `queue` go to: the queue's (`queue_key`), or its
    list for the task's priority (workers.routes.NOTIFY_PRIORITIES)."""
    priority = priority_of(task, queue)
    return queue_key(app, queue) + (f"{_PRIORITY_SEP}{priority}" if priority else "")


@functools.lru_cache(maxsize=8)
def _key_prefix(app: Celery) -> str:
    # Read once per app: Celery's settings view costs more than the rest of a push.
    options = app.conf.broker_transport_options or {}
    return str(options.get("global_keyprefix", ""))


def push_unsafe(client: redis.Redis, queued: Sequence[tuple[str, str]],
                delete: Sequence[str] = ()) -> None:
    """LPUSH each built (queue list, message) in order, and DEL the `delete` keys (caches a
    commit made stale), in one round trip. Workers BRPOP the other end, as for kombu's own
    publish. Each list is a `list_key` (or `queue_key`), never a bare queue name."""
    if len(queued) == 1 and not delete:
        client.lpush(*queued[0])
        return
    pipe = client.pipeline(transaction=False)
    for queue, message in queued:
        pipe.lpush(queue, message)
    if delete:
        pipe.delete(*delete)
    pipe.execute()


def send_unsafe(app: Celery, client: redis.Redis, task: str, kwargs: dict[str, Any],
                queue: str, *, task_id: str | None = None,
                headers: dict[str, Any] | None = None) -> str:
    """Build and push one task message; returns its task id."""
    task_id, message = build(app, task, kwargs, queue, task_id=task_id, headers=headers)
    push_unsafe(client, [(list_key(app, queue, task), message)])
    return task_id
