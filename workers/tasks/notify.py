"""Notify queue: every message to Telegram, after the commit that decided it."""

from __future__ import annotations

import uuid
from typing import Any

from celery.exceptions import Retry
from sqlalchemy import text

from quickcart.adapters.qr import qr_png
from quickcart.adapters.rate_limit import SendClass, sending_as, sent_as
from quickcart.adapters.telegram_api import (
    TelegramError,
    TelegramForbidden,
    TelegramRetryAfter,
)
from quickcart.messages import render
from quickcart.services import admin_inbox, notifications
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe


def _retry_later(task: Any, exc: TelegramRetryAfter) -> BaseException:
    """Telegram (a 429) or our own send limits (SendLater) said slow down: come back exactly
    when it allows. A flood wait is no failure, so it keeps the retry count as it was: a
    broadcast copy may wait out a whole flash sale's deliveries without using up the retries
    meant for Telegram being down (workers.base). What `Task.retry` does, less the count."""
    if task.request.called_directly:
        return exc
    again = task.signature_from_request(task.request, countdown=exc.retry_after,
                                        retries=task.request.retries)
    again.apply_async()
    return Retry(exc=exc, when=exc.retry_after, sig=again)


# No Celery `rate_limit` on any task (tests/unit/test_routes.py): a rate-limited message
# waits in its worker holding a prefetch slot, and once every slot holds one the worker fetches
# nothing else, so a burst of "sold out" notices stalled the buyers' deliveries queued behind
# it (docs/decisions.md). The shared send limiter (quickcart.adapters.rate_limit, in BotApi)
# paces every send across workers, a higher class first; a longer wait, like Telegram's 429
# `retry_after`, goes back to the queue with a countdown (a countdown retry holds no slot).
def _send_catalog(task: Any, send_class: SendClass, chat_id: int, key: str,
                  params: dict[str, Any], outbox_id: int | None, once_key: str | None) -> bool:
    once = once_key or (f"outbox:{outbox_id}" if outbox_id else None)
    try:
        with sending_as(send_class):
            return notifications.send_catalog_message(
                runtime.engine(), runtime.messenger(), chat_id, key, params, once_key=once)
    except TelegramRetryAfter as exc:  # Telegram's 429, or our own limits' longer wait
        raise _retry_later(task, exc) from exc
    except TelegramForbidden:
        return False  # the user blocked the bot: nothing to retry


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_message")
def send_message(self: Any, chat_id: int, key: str, params: dict[str, Any],
                 outbox_id: int | None = None, once_key: str | None = None) -> bool:
    """One catalog message answering a shopper's action, at most once per outbox id (or
    `once_key`)."""
    return _send_catalog(self, SendClass.REPLY, chat_id, key, params, outbox_id, once_key)


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_notice")
def send_notice(self: Any, chat_id: int, key: str, params: dict[str, Any],
                outbox_id: int | None = None, once_key: str | None = None) -> bool:
    """One admin's copy of a notice (after replies, before broadcasts), at most once per
    outbox id (or `once_key`)."""
    return _send_catalog(self, SendClass.ADMIN, chat_id, key, params, outbox_id, once_key)


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_bulk_message")
def send_bulk_message(self: Any, chat_id: int, key: str, params: dict[str, Any],
                      outbox_id: int | None = None, once_key: str | None = None) -> bool:
    """One copy of a broadcast or restock notice: the lowest class, never ahead of a delivery,
    payment, reply or admin notice; at most once per outbox id (or `once_key`)."""
    return _send_catalog(self, SendClass.BULK, chat_id, key, params, outbox_id, once_key)


@app.task(base=QuickCartTask, name="quickcart.notify_admins")
def notify_admins(key: str, params: dict[str, Any], outbox_id: int | None = None) -> int:
    """Fan one catalog message out to every admin as outbox rows (at most once per outbox id:
    the service claims it with the copies), then publish the copies."""
    copies = notifications.fan_out_to_admins(runtime.engine(), key, params, outbox_id)
    publish_committed_unsafe(copies)
    return len(copies)


@app.task(base=QuickCartTask, name="quickcart.release_admin_notices")
def release_admin_notices(chat_id: int) -> int:
    """An admin opened the bot: send the notices kept while Telegram did not know their chat
    (idempotent: the kept rows are deleted with the outbox rows that replace them)."""
    messages = admin_inbox.release_notices(runtime.engine(), chat_id)
    publish_committed_unsafe(messages)
    return len(messages)


@app.task(base=QuickCartTask, bind=True, name="quickcart.deliver_order")
@sent_as(SendClass.DELIVERY)
def deliver_order(self: Any, order_id: int, resend: bool = False,
                  requester_id: int | None = None, outbox_id: int | None = None,
                  sent_by: str | None = None) -> bool:
    """Hand a paid order's content to its buyer under a lease owned by this execution, so a
    duplicate (even a redelivery of this very message while it still runs) sends nothing."""
    owner = sent_by or f"{self.request.id}:{uuid.uuid4().hex[:12]}"
    try:
        return notifications.deliver_order(runtime.engine(), runtime.messenger(), order_id,
                                           resend, requester_id, owner=owner,
                                           already_sent=sent_by is not None)
    except TelegramRetryAfter as exc:
        raise _retry_later(self, exc) from exc
    except notifications.SentNotRecorded as exc:
        # The buyer has the content: the retry only records it under the same lease owner
        # (never a second send).
        raise self.retry(kwargs={**self.request.kwargs, "sent_by": owner}, exc=exc,
                         countdown=1 + self.request.retries) from exc


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_payment_qr")
@sent_as(SendClass.DELIVERY)
def send_payment_qr(self: Any, kind: str, id: int, outbox_id: int | None = None) -> bool:
    """The QRIS photo with its breakdown and expiry, while the row is still pending."""
    engine = runtime.engine()
    view = notifications.payment_qr_view(engine, kind, id)
    if view is None:
        return False
    once = f"outbox:{outbox_id}" if outbox_id else f"qr:{kind}:{id}"
    if not notifications.claim_once(engine, once, "qr"):
        return False
    lang = notifications.language_of(engine, view["user_id"])
    caption = render(f"{kind}.awaiting_payment", lang, **view)
    try:
        message_id = runtime.messenger().send_photo(
            view["user_id"], qr_png(view["payment_number"]), caption,
            reply_markup=_payment_buttons(kind, view["invoice_id"], lang,
                                          notifications.checkout_page_url(view)))
    except TelegramRetryAfter as exc:
        notifications.unclaim(engine, once)
        raise _retry_later(self, exc) from exc
    except Exception:
        notifications.unclaim(engine, once)
        raise
    notifications.record_qr_message(engine, kind, id, message_id)
    return True


QR_STATES = ("paid", "expired", "cancelled")
# A 400 meaning the edit is moot: already edited, or the photo is gone.
HARMLESS_EDIT_ERRORS = ("message is not modified", "message to edit not found",
                        "there is no caption in the message to edit")


@app.task(base=QuickCartTask, bind=True, name="quickcart.update_payment_qr")
@sent_as(SendClass.DELIVERY)
def update_payment_qr(self: Any, kind: str, id: int, state: str,
                      outbox_id: int | None = None) -> bool:
    """Paid/expired/cancelled: edit the QRIS photo's caption into a receipt or a notice and
    drop its buttons; at most once per outbox id (or per row and state)."""
    if kind not in ("order", "deposit") or state not in QR_STATES:
        return False
    engine = runtime.engine()
    table = "orders" if kind == "order" else "deposits"
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT * FROM {table} WHERE id = :i"), {"i": id}).first()
    if row is None or row.qr_message_id is None:
        return False
    once = f"outbox:{outbox_id}" if outbox_id else f"qr-edit:{kind}:{id}:{state}"
    if not notifications.claim_once(engine, once, "qr"):
        return False
    lang = notifications.language_of(engine, row.user_id)
    paid = row.amount_paid if row.amount_paid is not None else row.total_bill
    caption = render(f"{kind}.qr_{state}", lang, invoice_id=row.invoice_id, total=paid,
                     paid_at=notifications.format_time(row.paid_at) if row.paid_at else "-")
    try:
        # Expired or cancelled: only ⬅️ Kembali (to the main menu), never a dead end.
        back = [] if state == "paid" else [[{"text": render("button.back", lang),
                                             "callback_data": "m:home"}]]
        runtime.messenger().edit_caption(row.user_id, int(row.qr_message_id), caption,
                                         reply_markup={"inline_keyboard": back})
    except TelegramRetryAfter as exc:
        notifications.unclaim(engine, once)
        raise _retry_later(self, exc) from exc
    except TelegramForbidden:
        return False  # the user blocked the bot
    except TelegramError as exc:  # a moot edit ends here; any other (an outage too) retries
        if any(reason in str(exc) for reason in HARMLESS_EDIT_ERRORS):
            return False
        notifications.unclaim(engine, once)
        raise
    except Exception:
        notifications.unclaim(engine, once)
        raise
    return True


def _payment_buttons(kind: str, invoice_id: str, lang: str,
                     checkout_url: str | None = None) -> dict[str, Any]:
    rows: list[list[dict[str, Any]]] = []
    if checkout_url:
        rows.append([{"text": render("button.checkout_page", lang), "url": checkout_url}])
    rows.append([
        {"text": render("button.check_status", lang),
         "callback_data": f"pay:check:{invoice_id}"},
        {"text": render("button.cancel", lang), "callback_data": f"pay:cancel:{invoice_id}"},
    ])
    return {"inline_keyboard": rows}
