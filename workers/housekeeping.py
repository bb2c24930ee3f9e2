"""Housekeeping tasks (beat's) log at DEBUG unless a run did something.

Celery logs "Task … received" and "Task … succeeded in …: result" at INFO for every task. For
a beat tick that found nothing to do those two lines are noise that buries the lines that
matter, so they are demoted to DEBUG here: "received" always (a run that does work still gets
its "succeeded" line), "succeeded" when the result says the run did nothing (`did_nothing`).
Failures, retries and everything a task logs itself keep their level.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from celery.signals import task_success

from workers.app import app

_names: frozenset[str] | None = None
# Ids of housekeeping runs that did nothing, between their task_success signal and the
# "succeeded" line logged right after it (same thread); each id is consumed by that line.
_idle_runs: set[str] = set()


def housekeeping_tasks() -> frozenset[str]:
    """The tasks beat sends (every beat entry is housekeeping)."""
    global _names
    if _names is None:
        schedule = app.conf.beat_schedule or {}
        _names = frozenset(str(e["task"]) for e in schedule.values())
    return _names


def _idle_value(value: Any) -> bool:
    if value is None or value is True:  # nothing, or a health check that passed
        return True
    return isinstance(value, int) and not isinstance(value, bool) and value == 0


def did_nothing(result: Any) -> bool:
    """Whether a housekeeping result reports no work: None, 0, or a mapping whose values are
    all 0, None or passing checks (True). A failing check (False) or any count counts."""
    if isinstance(result, Mapping):
        return all(_idle_value(v) for v in result.values())
    return _idle_value(result) and result is not True


@task_success.connect
def _note_idle_run(sender: Any = None, result: Any = None, **_: Any) -> None:
    """Remember an idle housekeeping run, so its "succeeded" line is demoted."""
    name = getattr(sender, "name", None)
    if name not in housekeeping_tasks() or not did_nothing(result):
        return
    if not logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO):
        return  # no "succeeded" line will come to consume the id
    task_id = getattr(getattr(sender, "request", None), "id", None)
    if task_id:
        if len(_idle_runs) > 1000:  # a line that never came (an unexpected handler): no leak
            _idle_runs.clear()
        _idle_runs.add(str(task_id))


class _DemoteIdleTaskLines(logging.Filter):
    """On celery's task loggers: housekeeping "received" lines, and "succeeded" lines of idle
    runs, become DEBUG records (dropped unless DEBUG is enabled)."""

    def __init__(self, logger: logging.Logger, succeeded: bool) -> None:
        super().__init__()
        self.logger = logger
        self.succeeded = succeeded

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if record.levelno != logging.INFO or not isinstance(data, Mapping):
            return True
        if data.get("name") not in housekeeping_tasks():
            return True
        if self.succeeded:
            task_id = str(data.get("id"))
            if task_id not in _idle_runs:
                return True
            _idle_runs.discard(task_id)
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.logger.isEnabledFor(logging.DEBUG)


def install() -> None:
    """Attach the filters to the loggers that write the task lines (idempotent)."""
    for name, succeeded in (("celery.worker.strategy", False), ("celery.app.trace", True)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DemoteIdleTaskLines) for f in logger.filters):
            logger.addFilter(_DemoteIdleTaskLines(logger, succeeded))
