"""The bot's enqueue sends every task to the queue the routing table names (workers.routes):
a copy of the table in workers/enqueue.py once sent /broadcast, the data export and the release
of kept admin notices to `default` instead of `notify`."""

from __future__ import annotations

from typing import Any

import pytest

from workers import enqueue
from workers.routes import TASK_QUEUES


@pytest.mark.parametrize("task", ["quickcart.admin_broadcast", "quickcart.export_user",
                                  "quickcart.release_admin_notices", "quickcart.create_order"])
def test_enqueue_uses_the_routed_queue(monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    sent: list[tuple[str, str]] = []

    def capture(_app: Any, name: str, _kwargs: dict[str, Any], queue: str) -> str:
        sent.append((name, queue))
        return "id"

    monkeypatch.setattr(enqueue.push, "send_unsafe", capture)
    enqueue.enqueue(task, chat_id=1)
    assert sent == [(task, TASK_QUEUES[task])]
    assert TASK_QUEUES["quickcart.admin_broadcast"] == "notify"


def test_an_unrouted_task_goes_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(enqueue.push, "send_unsafe",
                        lambda _app, _name, _kwargs, queue: sent.append(queue) or "id")
    enqueue.enqueue("quickcart.no_such_task")
    assert sent == ["default"]
