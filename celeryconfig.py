"""Celery settings: at-least-once delivery made safe by idempotent tasks (docs/decisions.md)."""

from __future__ import annotations

from kombu import Queue

from quickcart.config import get_settings
from quickcart.db.urls import service_urls
from workers.routes import TASK_QUEUES

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
}
task_time_limit = get_settings().celery_task_time_limit
task_soft_time_limit = max(1, task_time_limit - 30)

task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
timezone = "UTC"
enable_utc = True

# Flower sees every task and its queue.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = False  # events already tell Flower when a task starts
worker_hijack_root_logger = False

# Beat: timeliness from the Redis expiry set, certainty from sweeps over the database.
beat_schedule = {
    "relay-outbox": {"task": "quickcart.relay_outbox", "schedule": 2.0},
    "expire-due": {"task": "quickcart.expire_due", "schedule": 1.0},
    "expiry-sweep": {"task": "quickcart.expiry_sweep", "schedule": 30.0},
    "ship-audit": {"task": "quickcart.ship_audit", "schedule": 1.0},
    "rollup-sold-counts": {"task": "quickcart.rollup_sold_counts", "schedule": 5.0},
    "redeliver-stuck": {"task": "quickcart.redeliver_stuck", "schedule": 30.0},
    "purge-outbox": {"task": "quickcart.purge_outbox", "schedule": 3600.0},
    "reconcile-payments": {"task": "quickcart.reconcile_payments", "schedule": 30.0},
    "health-monitor": {"task": "quickcart.health_monitor", "schedule": 60.0},
    "admin-sales-digest": {"task": "quickcart.admin_sales_digest",
                           "schedule": float(get_settings().admin_digest_seconds)},
}
# Each periodic task goes to its own queue (the decorators name it), never to a payment worker.
task_routes = {name: {"queue": queue} for name, queue in TASK_QUEUES.items()}
