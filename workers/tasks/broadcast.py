"""Broadcasts (/broadcast text or photo, giveaways, restock notices): paced slices on the notify
queue at the lowest priority, resumable after a crash (quickcart/services/broadcast.py).

A slice sends up to one second's worth of messages, then queues the next slice (the same runner
token) with the pause the pace needs; a delivery queued meanwhile goes first (the notify queue's
priorities, and the rate limiter's classes, put broadcasts last). Beat's resume task restarts a
broadcast whose chain of slices is gone (its lease lapsed).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from quickcart.adapters.rate_limit import SendClass, sending_as
from quickcart.adapters.telegram_api import TelegramError
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_, N_plural
from quickcart.services import broadcast
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.tasks.account import render_parts
from workers.tasks.catalog_admin import answer

log = logging.getLogger(__name__)

#: Progress is shown to the admin at each tenth of the addressees (one message, edited).
PROGRESS_STEPS = 10
#: Kinds whose admin gets progress and a report (restock notices have no admin audience).
REPORTED = ("text", "photo", "giveaway")


def run_broadcast(broadcast_id: int, countdown: float = 0) -> None:
    """Start a new chain of slices for a broadcast (its own runner token)."""
    broadcast_slice.apply_async(kwargs={"broadcast_id": broadcast_id,
                                        "runner": uuid.uuid4().hex}, countdown=countdown)


@app.task(base=QuickCartTask, name="quickcart.admin_broadcast")
def start_broadcast(actor_id: int, text: str, idempotency_key: str,
                    photo_file_id: str | None = None,
                    reply_to: int | None = None) -> dict[str, Any]:
    """/broadcast text, or a photo with `/broadcast text` as its caption: to every non-banned
    shopper who has not blocked the bot; `reply_to` is the admin's "⏳ Diproses…" message,
    edited into the progress and the final report. Idempotent per intent (one broadcast, one
    chain); audited by the admin-command wrapper like every `quickcart.admin_*` task."""
    engine = runtime.engine()
    try:
        started = broadcast.start(engine, actor_id, idempotency_key,
                                  "photo" if photo_file_id else "text", text,
                                  photo_file_id=photo_file_id, status_message_id=reply_to)
    except ShopError as refusal:
        parts = [(f"error.{refusal.code}", refusal.params)]
        if not (reply_to and _edit(actor_id, reply_to, parts)):
            answer(actor_id, parts, idempotency_key)
        return refusal.to_dict()
    if started.created:
        # Shown before the first slice runs, so a later step never gets overwritten by it.
        message = broadcast.message_of(engine, started.broadcast_id)
        if message is not None:
            _show(engine, message, [(N_plural("admin.broadcast_started", "count"),
                                     {"count": started.total})])
        run_broadcast(started.broadcast_id)
    return {"status": "ok", "broadcast_id": started.broadcast_id, "total": started.total}


def _send(message: Any) -> broadcast.Send:
    """Each send posts once (never again after it may have reached Telegram) in the turn the
    pace just took."""
    api = runtime.messenger()

    def send(chat_id: int, text: str) -> None:
        if message.kind == "photo":
            api.call("sendPhoto", {"chat_id": chat_id, "photo": message.photo_file_id,
                                   "caption": text[:1024], "parse_mode": "HTML"},
                     once=True, paced=True)
        else:
            api.call("sendMessage", {"chat_id": chat_id, "text": text, "parse_mode": "HTML"},
                     once=True, paced=True)
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
                                    message=message, pace=runtime.messenger().take_turn)
    if done.finished is not None:
        _report(engine, message, done.finished)
        return {"status": "done", "sent": done.finished.sent}
    if not done.more:
        return {"status": "not_runner", "sent": done.sent}
    reported = _progress(engine, message, reported)
    broadcast_slice.apply_async(kwargs={"broadcast_id": broadcast_id, "runner": runner,
                                        "reported": reported},
                                countdown=done.wait_seconds or None)
    return {"status": "running", "sent": done.sent}


def _progress(engine: Any, message: Any, reported: int) -> int:
    """At each new tenth of the addressees done, edit the admin's status message to it (the
    counts so far, read once); returns the tenth last shown."""
    if message.kind not in REPORTED:
        return reported
    counts = broadcast.progress(engine, int(message.id))
    total = sum(counts.values())
    finished = total - counts.get("pending", 0) - counts.get("sending", 0)
    step = finished * PROGRESS_STEPS // total if total else 0
    if step <= reported:
        return reported
    _show(engine, message, [(N_("admin.broadcast_progress"), {
        "done": int(message.total) * step // PROGRESS_STEPS, "addressees": int(message.total),
        "percent": step * 100 // PROGRESS_STEPS,
        "sent": counts.get("sent", 0) + counts.get("unsure", 0),
        "failed": counts.get("failed", 0), "blocked": counts.get("blocked", 0)})])
    return step


def _report(engine: Any, message: Any, report: broadcast.Report) -> None:
    """The admin's final report, once per broadcast: the status message edited into it (sent
    as a new message when there is none or it cannot be edited)."""
    if report.kind not in REPORTED:
        return
    parts = [(N_("admin.broadcast_report"), {
        "addressees": report.total, "sent": report.sent, "failed": report.failed,
        "blocked": report.blocked})]
    if report.unsure:
        parts.append((N_("admin.broadcast_unsure"), {"count": report.unsure}))
    edited = (message.status_message_id is not None
              and _edit(report.created_by, int(message.status_message_id), parts))
    if not edited:
        answer(report.created_by, parts, f"broadcast:{report.broadcast_id}:report")


def _edit(chat_id: int, message_id: int, parts: list[tuple[str, dict[str, Any]]]) -> bool:
    """Edit the admin's status message; False when it cannot be (gone, or Telegram failed),
    so that the caller sends its text instead. The same text twice is no failure."""
    try:
        runtime.messenger().edit_text(chat_id, message_id, render_parts(chat_id, parts))
    except TelegramError as exc:
        if "not modified" in str(exc).lower():
            return True
        log.info("broadcast status message %s/%s not edited: %s", chat_id, message_id, exc)
        return False
    return True


def _show(engine: Any, message: Any, parts: list[tuple[str, dict[str, Any]]]) -> None:
    """Progress in one place: edit the status message, or send one and remember it (only the
    broadcast's one runner calls this, one step after another). Best effort: a step that
    cannot be shown is skipped, the next one tries again."""
    chat_id = int(message.created_by)
    if message.status_message_id is not None and _edit(chat_id, int(message.status_message_id),
                                                       parts):
        return
    try:
        sent = runtime.messenger().send_message(chat_id, render_parts(chat_id, parts))
    except TelegramError as exc:
        log.info("broadcast %s: status not shown: %s", message.id, exc)
        return
    broadcast.set_status_message(engine, int(message.id), sent)


@app.task(base=QuickCartTask, name="quickcart.broadcast_resume")
def broadcast_resume() -> int:
    """Beat: restart every broadcast whose chain of slices is gone (its runner's lease lapsed:
    a worker died and its message was lost, or the broker restarted)."""
    ids = broadcast.running(runtime.engine())
    for broadcast_id in ids:
        run_broadcast(broadcast_id)
    return len(ids)
