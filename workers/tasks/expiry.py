"""Expiry queue: unpaid orders and deposits expire on time (Redis set) and surely (DB sweep)."""

from __future__ import annotations

import time
from typing import Any

from quickcart.adapters import redis_store
from quickcart.services import orders, payments
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe


@app.task(base=QuickCartTask, name="quickcart.schedule_expiry")
def schedule_expiry(kind: str, id: int, at: float, outbox_id: int | None = None) -> None:
    """Add a committed pending row to the Redis expiry set (re-adding is harmless)."""
    redis_store.schedule_expiry(runtime.redis_client(), kind, id, at)


@app.task(base=QuickCartTask, name="quickcart.expire")
def expire(kind: str, id: int) -> dict[str, Any]:
    """Expire one row if it is still pending and due (idempotent by state)."""
    if kind == "order":
        outcome = orders.expire_order(runtime.engine(), id)
    else:
        outcome = payments.expire_deposit(runtime.engine(), id)
    publish_committed_unsafe(outcome.outbox)
    if kind == "order" and outcome.result.get("changed"):
        from workers.tasks.orders import invalidate_order_caches

        invalidate_order_caches(id, outcome.result.get("invoice_id"))
    if outcome.result.get("status") != "pending":
        redis_store.forget_expiry(runtime.redis_client(), kind, id)
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.expire_due")
def expire_due() -> int:
    """Timely path (every second): expire what the Redis set says is due."""
    due = redis_store.due_expiries(runtime.redis_client(), time.time())
    for kind, row_id in due:
        expire.run(kind, row_id)
    return len(due)


@app.task(base=QuickCartTask, name="quickcart.expiry_sweep")
def expiry_sweep() -> int:
    """Certain path (every 30 s): expire every pending row past expires_at the set missed."""
    engine = runtime.engine()
    due = [("order", i) for i in orders.due_orders(engine)]
    due += [("deposit", i) for i in payments.due_deposits(engine)]
    for kind, row_id in due:
        expire.run(kind, row_id)
    return len(due)
