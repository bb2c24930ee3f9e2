"""The Celery application: settings from celeryconfig, tasks from workers.tasks.*."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

TASK_MODULES = [
    "workers.tasks.orders",
    "workers.tasks.payments",
    "workers.tasks.expiry",
    "workers.tasks.notify",
    "workers.tasks.audit",
    "workers.tasks.bulk",
    "workers.tasks.maintenance",
    "workers.tasks.account",
    "workers.tasks.admin",
]

app = Celery("quickcart", include=TASK_MODULES)
app.config_from_object("celeryconfig")

from workers import observability  # noqa: E402,F401 - connects the logging/correlation signals


@worker_process_init.connect
def _fresh_pools(**_: object) -> None:
    """A forked pool child must not share its parent's database connections."""
    from quickcart.db.engine import dispose_engines

    dispose_engines()
