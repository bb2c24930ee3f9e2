"""The bot's only way into the workers: send a task by name to its queue (no task imports)."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis

from quickcart.adapters import intent_journal
from workers import push, runtime
from workers.app import app
from workers.routes import TASK_QUEUES

log = logging.getLogger(__name__)


def enqueue(task: str, /, **kwargs: Any) -> str:
    """Send task `task` (by name) with keyword arguments to its queue (workers.routes); returns
    the task id. A shopper's money intent is journaled first (quickcart.adapters.intent_journal)
    so that beat sends it again if the broker loses it; a send that fails takes it back out,
    since the shopper is then told to try again."""
    key = intent_journal.journaled_key(task, kwargs)
    if key is not None:
        try:
            intent_journal.record(runtime.redis_client(), key, task, kwargs, time.time())
        except redis.RedisError:
            # The send below needs the same Redis: it fails too and the shopper is told.
            log.warning("intent %s not journaled", key, exc_info=True)
    try:
        return push.send_unsafe(app, task, kwargs, TASK_QUEUES.get(task, "default"))
    except Exception:
        if key is not None:
            with contextlib.suppress(redis.RedisError):
                intent_journal.forget(runtime.redis_client(), key)
        raise
