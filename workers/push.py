"""Task messages pushed straight onto their queue's Redis list: the very message `send_task`
puts there (Celery's own builder, kombu's envelope), without what `send_task` adds per publish
on top of it: the `task-sent` event, the queue declare, kombu's producer and its retry wrapper.
Those were most of an intent's publishing CPU (docs/decisions.md, "Task messages are pushed").

Not transaction-safe (a broker call cannot join a database transaction), hence `_unsafe`."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from kombu.utils import json as kombu_json

from quickcart.logs import current_correlation_id


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
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return task_id, json.dumps(envelope)


def push_unsafe(client: redis.Redis, queued: Sequence[tuple[str, str]],
                delete: Sequence[str] = ()) -> None:
    """LPUSH each built (queue, message) in order, and DEL the `delete` keys (caches a commit
    made stale), in one round trip. Workers BRPOP the other end, as for kombu's own publish."""
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
    push_unsafe(client, [(queue, message)])
    return task_id
