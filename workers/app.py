"""The Celery application: settings from celeryconfig, tasks from workers.tasks.*."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from workers import result_repr
from workers.graceful import defer_sigterm_in_pool_child  # noqa: F401 - a pool child's SIGTERM

TASK_MODULES = [
    "workers.tasks.orders",
    "workers.tasks.payments",
    "workers.tasks.expiry",
    "workers.tasks.notify",
    "workers.tasks.audit",
    "workers.tasks.bulk",
    "workers.tasks.maintenance",
    "workers.tasks.intents",
    "workers.tasks.account",
    "workers.tasks.admin",
    "workers.tasks.catalog_admin",
    "workers.tasks.broadcast",
    "workers.tasks.support",
    "workers.tasks.aftersales",
    "workers.tasks.admin_audit",
    "workers.tasks.fraud",
]

app = Celery("quickcart", include=TASK_MODULES)
app.config_from_object("celeryconfig")

from workers import observability  # noqa: E402,F401 - connects the logging/correlation signals

# Task results are flat dicts: their event text by the builtin repr (workers/result_repr.py).
result_repr.install()


@worker_process_init.connect
def _fresh_pools(**_: object) -> None:
    """A forked pool child must not share its parent's database connections."""
    from quickcart.db.engine import dispose_engines
    from workers import runtime

    dispose_engines()
    runtime.retry_stale_connections_in_tasks()
    runtime.warm_up()


@worker_init.connect
def _preload(**_: object) -> None:
    """Imports shared by every pool child through the fork (see runtime.preload_for_fork)."""
    from workers import runtime

    runtime.preload_for_fork()


@worker_process_shutdown.connect
def _mark_published(**_: object) -> None:
    """A pool child that stops marks what it published (else the relay would send it again)."""
    from quickcart.db import outbox

    outbox.MARKS.flush()
