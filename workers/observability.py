"""Correlation ids across tasks and JSON logs in every worker process."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from quickcart.config import get_settings
from quickcart.logs import (
    bind_correlation_id,
    clear_context,
    configure_logging,
    current_correlation_id,
)


@setup_logging.connect
def _logging(**_: Any) -> None:
    """Workers and beat log through structlog (JSON unless LOG_JSON=false)."""
    settings = get_settings()
    configure_logging(settings.log_json, settings.log_level)


@before_task_publish.connect
def _propagate(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A task published while handling an intent carries that intent's correlation id."""
    if headers is not None and not headers.get("correlation_id"):
        cid = current_correlation_id()
        if cid:
            headers["correlation_id"] = cid


@task_prerun.connect
def _bind(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Every log line of a task names its intent, task and id."""
    request = getattr(task, "request", None)
    cid = getattr(request, "correlation_id", None) if request is not None else None
    bind_correlation_id(cid, task=getattr(task, "name", None), task_id=task_id)


@task_postrun.connect
def _unbind(**_: Any) -> None:
    clear_context()
