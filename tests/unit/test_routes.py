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
