"""Task messages published through Celery's own API: `send_task` with the task's queue and
priority (workers.routes), several in one producer (one broker connection, one round trip per
message). Not transaction-safe (a broker call cannot join a database transaction), hence
`_unsafe`: callers publish only what is committed, and the relay re-publishes what a crash left.

Until issue 25 this module built kombu's Redis messages by hand and LPUSHed them (and
celeryconfig cached kombu's Redis client per channel), for the retired "app ≥ 0.5 × raw SQL"
ratio. Measured in one interleaved run of `orders` (bench/RESULTS.md), both together saved about
a tenth of the CPU per order: less than the 20 % that would have justified depending on kombu's
private Redis layout. The bench driver keeps that builder (bench/prebuilt.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery

from workers.routes import priority_of


@dataclass(frozen=True)
class TaskMessage:
    """One task to publish: name, keyword arguments, queue, and optional id and headers."""

    task: str
    kwargs: dict[str, Any]
    queue: str
    task_id: str | None = None
    headers: dict[str, Any] | None = None


def publish_unsafe(app: Celery, messages: Sequence[TaskMessage]) -> list[str]:
    """Publish `messages` in order through one producer; returns their task ids. A task
    published while a task runs names it as its parent (Celery does); the current correlation
    id rides along (workers.observability's publish signal)."""
    ids: list[str] = []
    if not messages:
        return ids
    with app.producer_or_acquire() as producer:
        for m in messages:
            result = app.send_task(m.task, kwargs=m.kwargs, queue=m.queue, task_id=m.task_id,
                                   headers=m.headers, priority=priority_of(m.task, m.queue),
                                   producer=producer)
            ids.append(str(result.id))
    return ids


def send_unsafe(app: Celery, task: str, kwargs: dict[str, Any], queue: str, *,
                task_id: str | None = None, headers: dict[str, Any] | None = None) -> str:
    """Publish one task message; returns its task id."""
    return publish_unsafe(app, [TaskMessage(task, kwargs, queue, task_id, headers)])[0]
