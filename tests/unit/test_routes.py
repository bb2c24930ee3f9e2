"""Every task has exactly one queue, and every queue is one the workers declare."""

from __future__ import annotations

import celeryconfig
from workers.app import app
from workers.routes import TASK_QUEUES


def test_every_task_is_routed_to_a_declared_queue() -> None:
    app.loader.import_default_modules()
    tasks = {name for name in app.tasks if name.startswith("quickcart.")}
    declared = {queue.name for queue in celeryconfig.task_queues}
    assert tasks == set(TASK_QUEUES)
    assert set(TASK_QUEUES.values()) <= declared
    assert app.amqp.router.route({}, "quickcart.deliver_order")["queue"].name == "notify"
    assert app.amqp.router.route({}, "quickcart.create_order")["queue"].name == "orders"


def test_no_task_has_a_celery_rate_limit() -> None:
    """A rate-limited task waits in its worker holding a prefetch slot; once every slot holds
    one, the worker fetches nothing else. With `send_message` at 30/s a delivery queued behind
    120 "sold out" notices took 71 s instead of 0.3 s (docs/adr/0020). Telegram's own 429
    `retry_after` is the throttle (a countdown retry holds no slot)."""
    app.loader.import_default_modules()
    limited = {name: task.rate_limit for name, task in app.tasks.items()
               if name.startswith("quickcart.") and task.rate_limit}
    assert limited == {}
    assert not app.conf.task_annotations
