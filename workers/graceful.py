"""A prefork pool child finishes the task in hand when SIGTERM reaches it, then ends.

`systemctl stop`, `docker stop` and Ctrl-C in a terminal signal every process of a worker, the
pool children too. Celery's main process then shuts down warm (it waits for the tasks in hand),
but a child resets SIGTERM to its default action and dies at once, cutting its task mid-way: a
broadcast send in flight is then in doubt and never repeated (docs/adr/0065). Here a child that
gets SIGTERM while it runs a task finishes it, hands its result to the main process, and ends
once idle. `kill -9` still ends it at once; that case is the sender's to survive.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_init

#: After its task, a child that was asked to stop waits this long (its result reaching the
#: main process) before it ends, unless it is busy again by then.
IDLE_GRACE_SECONDS = 0.2

_state: dict[str, Any] = {"child": False, "busy": False, "stop": False, "previous": None}


def _end_now(signum: int, frame: FrameType | None) -> None:
    """End as the pool would have: its own SIGTERM handler (which lets finally-blocks run), or
    the default action."""
    previous = _state["previous"]
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _state["busy"]:
        _state["stop"] = True  # ended by task_postrun's timer once the task is done
        return
    _end_now(signum, frame)


def _signal_if_idle() -> None:
    # From the timer's thread: the signal is handled in the main thread, by _on_sigterm.
    if not _state["busy"]:
        os.kill(os.getpid(), signal.SIGTERM)


@worker_process_init.connect
def defer_sigterm_in_pool_child(**_: Any) -> None:
    """Mark this process a prefork pool child (no lock, no task: a flag). The handler itself is
    installed when a task starts: billiard resets the child's signals after this runs."""
    _state["child"] = True


@task_prerun.connect
def _task_started(**_: Any) -> None:
    if not _state["child"]:
        return
    _state["busy"] = True
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _state["previous"] = current
        signal.signal(signal.SIGTERM, _on_sigterm)


@task_postrun.connect
def _task_done(**_: Any) -> None:
    if not _state["child"]:
        return
    _state["busy"] = False
    if _state["stop"]:
        _state["stop"] = False
        timer = threading.Timer(IDLE_GRACE_SECONDS, _signal_if_idle)
        timer.daemon = True
        timer.start()
