"""Celery settings: at-least-once delivery made safe by idempotent tasks (docs/decisions.md)."""

from __future__ import annotations

from typing import Any

import redis
from kombu import Queue
from kombu.transport import redis as kombu_redis

from quickcart.config import get_settings
from quickcart.db.urls import service_urls
from workers.routes import TASK_QUEUES, priority_of


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, made safe to close after its connection was collected.

    When the broker connection drops, the worker's consumer runs `Connection.collect()` (which
    detaches the transport: `transport.client = None`) and then `Connection.close()`. If the
    first close of the consumer channel was cut short by the dead broker (a BRPOP in flight, or
    the remote-control channel failing first), the second close tries to restore the channel's
    unacknowledged messages, needs a new Redis pool, and kombu dereferences the detached
    `transport.client`: an AttributeError, which is not a connection error, so it escapes
    Celery's `ignore_errors` and the whole worker stops ("Unrecoverable error") instead of
    reconnecting. A detached channel cannot reach Redis, so say so with the connection error
    every caller already treats as recoverable. Nothing is lost by not restoring then: those
    tasks are still running in the pool, and their entries in Redis' unacked set (when Redis
    survived) come back after the visibility timeout.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("broker connection already closed (transport detached)")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


# The broker transport for redis:// URLs (kept under kombu's own "redis" name, so URLs, logs
# and Flower's broker view are unchanged).
kombu_redis.Transport.Channel = _RedisChannel

broker_url = get_settings().broker_url or service_urls().redis_url
# Results are never read (the database is the source of truth; intents record their outcome
# under their idempotency key), so none are stored: one Redis write fewer per task.
task_ignore_result = True

task_queues = tuple(
    Queue(name) for name in ("default", "orders", "payments", "expiry", "audit", "notify", "bulk")
)
task_default_queue = "default"

# A message is acknowledged only after its task finished; a killed worker's message comes back.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
# Longer than any task's hard time limit, so a running task is never handed out twice.
broker_transport_options = {
    "visibility_timeout": get_settings().celery_visibility_timeout,
    # Look for a dead consumer's messages every `interval` seconds (kombu's default is ~100 s).
    "unacked_restore_interval": get_settings().celery_restore_interval,
    "unacked_restore_throttle": 1,
    # Every key kombu writes (queues, unacked, bindings, pidbox and event channels) starts with
    # REDIS_KEY_PREFIX, like the shop's own keys (the bench driver's bench.prebuilt reads it).
    "global_keyprefix": get_settings().redis_key_prefix,
}
task_time_limit = get_settings().celery_task_time_limit
# The soft limit gives a task up to 30 s (a fifth of a short test limit) to clean up first.
task_soft_time_limit = max(1, task_time_limit - min(30, task_time_limit // 5))

task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
timezone = "UTC"
enable_utc = True

# Flower sees every task from the moment a worker receives it, and each queue's backlog on its
# broker page. No `task-sent` event: it doubled the event traffic and was a quarter of a
# publish's CPU, to show what the backlog already shows (docs/decisions.md).
worker_send_task_events = True
task_send_sent_event = False
task_track_started = False  # events already tell Flower when a task starts
worker_hijack_root_logger = False

# Beat: timeliness from the Redis expiry set, certainty from sweeps over the database. Beat
# sends an entry's task only when a cheap check finds work for it (workers/beat.py): an idle
# shop sends, logs and shows in Flower almost nothing, at the same schedule's latency.
beat_scheduler = "workers.beat:HousekeepingScheduler"
beat_schedule = {
    "relay-outbox": {"task": "quickcart.relay_outbox", "schedule": 2.0},
    "expire-due": {"task": "quickcart.expire_due", "schedule": 1.0},
    "expiry-sweep": {"task": "quickcart.expiry_sweep", "schedule": 30.0},
    "ship-audit": {"task": "quickcart.ship_audit", "schedule": 1.0},
    "rollup-sold-counts": {"task": "quickcart.rollup_sold_counts", "schedule": 5.0},
    "redeliver-stuck": {"task": "quickcart.redeliver_stuck", "schedule": 30.0},
    "resend-lost-intents": {"task": "quickcart.resend_lost_intents", "schedule": 15.0},
    "purge-outbox": {"task": "quickcart.purge_outbox", "schedule": 3600.0},
    "reconcile-payments": {"task": "quickcart.reconcile_payments", "schedule": 30.0},
    "health-monitor": {"task": "quickcart.health_monitor", "schedule": 60.0},
    # Low-stock alerts (once per crossing) and broadcasts whose chain of slices died.
    "low-stock-check": {"task": "quickcart.low_stock_check", "schedule": 30.0},
    "broadcast-resume": {"task": "quickcart.broadcast_resume", "schedule": 15.0},
    "review-reminders": {"task": "quickcart.review_reminders", "schedule": 60.0},
    "admin-sales-digest": {"task": "quickcart.admin_sales_digest",
                           "schedule": float(get_settings().admin_digest_seconds)},
}
# Each periodic task goes to its own queue (the decorators name it), never to a payment worker.
# Notify tasks carry their class as message priority (workers.routes.NOTIFY_PRIORITIES): kombu
# keeps a Redis list per priority step, and a worker pops the higher class first.
task_routes = {name: {"queue": queue, "priority": priority_of(name, queue)}
               for name, queue in TASK_QUEUES.items()}
