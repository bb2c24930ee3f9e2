"""The bot's only way into the workers: send a task by name to its queue (no task imports)."""

from __future__ import annotations

from typing import Any

from workers import push
from workers.app import app
from workers.routes import TASK_QUEUES


def enqueue(task: str, /, **kwargs: Any) -> str:
    """Send task `task` (by name) with keyword arguments to its queue (workers.routes); returns
    the task id."""
    return push.send_unsafe(app, task, kwargs, TASK_QUEUES.get(task, "default"))
