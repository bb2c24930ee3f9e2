"""Broadcasts (/broadcast text or photo, giveaways, restock notices): paced slices on the notify
queue at the lowest priority, resumable after a crash (quickcart/services/broadcast.py).

A slice sends up to one second's worth of messages, then queues the next slice (the same runner
token) with the pause the pace needs; a delivery queued meanwhile goes first (the notify queue's
priorities, and the rate limiter's classes, put broadcasts last). Beat's resume task restarts a
broadcast whose chain of slices is gone (its lease lapsed).
"""

from __future__ import annotations

import uuid
from typing import Any

from quickcart.adapters.rate_limit import SendClass, sending_as
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_, N_plural
from quickcart.services import broadcast
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.tasks.catalog_admin import answer

#: Progress is reported to the admin at each tenth of the addressees.
PROGRESS_STEPS = 10
#: Kinds whose admin gets progress and a report (restock notices have no admin audience).
REPORTED = ("text", "photo", "giveaway")


def run_broadcast(broadcast_id: int, countdown: float = 0) -> None:
    """Start a new chain of slices for a broadcast (its own runner token)."""
    broadcast_slice.apply_async(kwargs={"broadcast_id": broadcast_id,
                                        "runner": uuid.uuid4().hex}, countdown=countdown)


@app.task(base=QuickCartTask, name="quickcart.admin_broadcast")
def start_broadcast(actor_id: int, text: str, idempotency_key: str,
                    photo_file_id: str | None = None) -> dict[str, Any]:
    """/broadcast text, or a photo with `/broadcast text` as its caption: to every non-banned
    shopper who has not blocked the bot. Idempotent per intent (one broadcast, one chain);
    audited by the admin-command wrapper like every `quickcart.admin_*` task."""
    engine = runtime.engine()
    try:
        started = broadcast.start(engine, actor_id, idempotency_key,
                                  "photo" if photo_file_id else "text", text,
                                  photo_file_id=photo_file_id)
    except ShopError as refusal:
        answer(actor_id, [(f"error.{refusal.code}", refusal.params)], idempotency_key)
        return refusal.to_dict()
    if started.created:
        run_broadcast(started.broadcast_id)
    answer(actor_id, [(N_plural("admin.broadcast_started", "count"), {"count": started.total})],
           idempotency_key)
    return {"status": "ok", "broadcast_id": started.broadcast_id, "total": started.total}


def _send(message: Any) -> broadcast.Send:
    api = runtime.messenger()

    def send(chat_id: int, text: str) -> None:
        if message.kind == "photo":
            api.call("sendPhoto", {"chat_id": chat_id, "photo": message.photo_file_id,
                                   "caption": text[:1024], "parse_mode": "HTML"})
        else:
            api.send_message(chat_id, text)
    return send


@app.task(base=QuickCartTask, name="quickcart.broadcast_slice")
def broadcast_slice(broadcast_id: int, runner: str, reported: int = 0) -> dict[str, Any]:
    """One slice of a broadcast as runner `runner`; queues the next slice, or reports the end
    to the admin once. Redelivered after a crash, it resumes without re-sending anyone."""
    engine = runtime.engine()
    message = broadcast.message_of(engine, broadcast_id)
    if message is None:
        return {"status": "unknown"}
    with sending_as(SendClass.BULK):
        done = broadcast.send_slice(engine, broadcast_id, runner, _send(message),
                                    message=message)
    if done.finished is not None:
        _report(done.finished)
        return {"status": "done", "sent": done.finished.sent}
    if not done.more:
        return {"status": "not_runner", "sent": done.sent}
    step = _progress_step(engine, broadcast_id, message.kind)
    if step is not None and step > reported:
        _progress(message, step)
        reported = step
    broadcast_slice.apply_async(kwargs={"broadcast_id": broadcast_id, "runner": runner,
                                        "reported": reported},
                                countdown=done.wait_seconds or None)
    return {"status": "running", "sent": done.sent}


def _progress_step(engine: Any, broadcast_id: int, kind: str) -> int | None:
    if kind not in REPORTED:
        return None
    counts = broadcast.progress(engine, broadcast_id)
    total = sum(counts.values())
    finished = total - counts.get("pending", 0) - counts.get("sending", 0)
    return finished * PROGRESS_STEPS // total if total else None


def _progress(message: Any, step: int) -> None:
    answer(int(message.created_by), [(N_("admin.broadcast_progress"), {
        "done": int(message.total) * step // PROGRESS_STEPS, "addressees": int(message.total),
        "percent": step * 100 // PROGRESS_STEPS})], f"broadcast:{message.id}:progress:{step}")


def _report(report: broadcast.Report) -> None:
    """The admin's final report (once per broadcast)."""
    if report.kind not in REPORTED:
        return
    parts = [(N_("admin.broadcast_report"), {
        "addressees": report.total, "sent": report.sent, "failed": report.failed,
        "blocked": report.blocked})]
    if report.unsure:
        parts.append((N_("admin.broadcast_unsure"), {"count": report.unsure}))
    answer(report.created_by, parts, f"broadcast:{report.broadcast_id}:report")


@app.task(base=QuickCartTask, name="quickcart.broadcast_resume")
def broadcast_resume() -> int:
    """Beat: restart every broadcast whose chain of slices is gone (its runner's lease lapsed:
    a worker died and its message was lost, or the broker restarted)."""
    ids = broadcast.running(runtime.engine())
    for broadcast_id in ids:
        run_broadcast(broadcast_id)
    return len(ids)
