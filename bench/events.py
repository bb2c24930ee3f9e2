"""Task completions as the workers announce them (Celery task events, the stream Flower reads),
so a driver learns that an intent finished without polling the database."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from celery import Celery

from sandbox.serving import wait_until


@dataclass(frozen=True)
class Finished:
    """One task that ended: its id, 'succeeded' or 'failed', and the result's repr."""

    task_id: str
    state: str
    result: str
    at: float


class TaskWatcher:
    """A thread that subscribes to the workers' task events and queues every finished task.

    A worker sends `task-succeeded` after the task body returned, so for an intent it means the
    outcome is committed and its outbox rows were handed to the broker. Events are pub/sub (at
    most once): callers keep a slow fallback for an event that never arrives."""

    def __init__(self, app: Celery, wait_first_event: bool = True) -> None:
        self.app = app
        self.wait_first_event = wait_first_event
        self.finished: queue.Queue[Finished] = queue.Queue()
        self._seen_any = threading.Event()
        self.received: set[str] = set()  # names of the tasks workers have received
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, name="task-events", daemon=True)

    def __enter__(self) -> TaskWatcher:
        self._thread.start()
        if self.wait_first_event:
            # A task's events prove the subscription is live before anything is sent. The quiet
            # beat (workers/beat.py) sends nothing while the shop is idle, so a no-op task on
            # the default queue is sent until one is seen.
            wait_until(lambda: self._receiver is not None, what="event receiver", timeout=30,
                       interval=0.01)

            def seen() -> bool:
                if not self._seen_any.wait(1.0):
                    self.app.send_task("celery.accumulate", args=(1,), queue="default")
                return self._seen_any.is_set()

            wait_until(seen, what="first task event", timeout=30, interval=0.05)
        else:
            wait_until(lambda: self._receiver is not None, what="event receiver", timeout=30,
                       interval=0.01)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def _on_event(self, event: dict[str, Any]) -> None:
        self._seen_any.set()
        kind = event.get("type", "")
        if kind == "task-received":
            self.received.add(str(event.get("name")))
        elif kind in ("task-succeeded", "task-failed"):
            self.finished.put(Finished(str(event.get("uuid")), kind[5:],
                                       str(event.get("result", event.get("exception", ""))),
                                       time.perf_counter()))

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            while not self._receiver.should_stop:
                with contextlib.suppress(socket.timeout, TimeoutError):
                    self._receiver.capture(limit=None, timeout=1.0, wakeup=False)

    def wait_received(self, name: str, timeout: float = 60) -> None:
        """Block until a worker has received a task called `name`."""
        wait_until(lambda: name in self.received, what=f"a {name} task", timeout=timeout,
                   interval=0.05)

    def get(self, timeout: float) -> Finished | None:
        """The next finished task, or None after `timeout` seconds."""
        try:
            return self.finished.get(timeout=timeout)
        except queue.Empty:
            return None
