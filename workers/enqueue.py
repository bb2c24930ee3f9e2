"""The bot's only way into the workers: send a task by name to its queue (no task imports)."""

from __future__ import annotations

from typing import Any

from workers import push
from workers.app import app

# Queue of every task the bot enqueues; anything else goes to `default`.
QUEUES: dict[str, str] = {
    "quickcart.create_order": "orders",
    "quickcart.cancel_order": "orders",
    "quickcart.confirm_payment": "payments",
    "quickcart.create_deposit": "payments",
    "quickcart.cancel_deposit": "payments",
    "quickcart.deliver_order": "notify",
    "quickcart.import_stock": "bulk",
    "quickcart.admin_import_stock": "bulk",
    "quickcart.admin_export_stock": "notify",
    "quickcart.admin_private_message": "notify",
    "quickcart.admin_recheck_payment": "payments",
    "quickcart.admin_replace_unit": "orders",
}


def enqueue(task: str, /, **kwargs: Any) -> str:
    """Send task `task` (by name) with keyword arguments; returns the task id."""
    return push.send_unsafe(app, task, kwargs, QUEUES.get(task, "default"))
