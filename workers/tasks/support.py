"""Support tickets: the shopper's message to every admin chat, the admins' answers back, closing.

Writes run on the default queue (quickcart/services/support.py holds the locks and the
idempotency); the copies are sent by notify tasks after the commit, each copy at most once
(`once_key` per message and chat), and where each landed is recorded so a Telegram reply to it
finds its ticket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quickcart.adapters.rate_limit import SendClass, sending_as
from quickcart.adapters.telegram_api import (
    TelegramChatNotFound,
    TelegramForbidden,
    TelegramRetryAfter,
)
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.messages import render
from quickcart.services import notifications, support
from quickcart.services.orders import Outcome
from quickcart.services.support import Incoming
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe
from workers.tasks.aftersales import answer, refused

#: Telegram's caption limit (a photo's text); longer texts are cut with an ellipsis.
CAPTION_LIMIT = 1024


def _published(chat_id: int, once_key: str, write: Callable[[], Outcome]) -> dict[str, Any]:
    """Run a shopper's write; publish its committed side effects, or tell the refusal once."""
    try:
        outcome = write()
    except ShopError as refusal:
        return refused(chat_id, once_key, refusal)
    publish_committed_unsafe(outcome.outbox)
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.support_open_ticket")
def support_open_ticket(user_id: int, text: str, idempotency_key: str,
                        photo_file_id: str | None = None,
                        order_id: int | None = None) -> dict[str, Any]:
    """📩 Kirim pesan / Bantuan / Garansi: a new ticket (rate limit told politely)."""
    return _published(user_id, idempotency_key, lambda: support.open_ticket(
        runtime.engine(), user_id, Incoming(text, photo_file_id), idempotency_key, order_id))


@app.task(base=QuickCartTask, name="quickcart.support_follow_up")
def support_follow_up(user_id: int, ticket_id: int, text: str, idempotency_key: str,
                      photo_file_id: str | None = None) -> dict[str, Any]:
    """The shopper's Telegram reply to an admin's answer: added to the ticket, sent to admins."""
    return _published(user_id, idempotency_key, lambda: support.shopper_follow_up(
        runtime.engine(), user_id, ticket_id, Incoming(text, photo_file_id), idempotency_key))


@app.task(base=QuickCartTask, name="quickcart.support_admin_answer")
def support_admin_answer(actor_id: int, chat_id: int, ticket_id: int, text: str,
                         idempotency_key: str, photo_file_id: str | None = None,
                         from_admin_group: bool = False) -> dict[str, Any]:
    """An admin's Telegram reply to a ticket (in private or a whitelisted group)."""
    try:
        outcome = support.admin_answer(runtime.engine(), actor_id, ticket_id,
                                       Incoming(text, photo_file_id), idempotency_key,
                                       from_admin_group)
    except ShopError as refusal:
        if refusal.code == "ticket_closed":
            # The ticket's state for the admins, not the shopper's "press KIRIM PESAN" (there
            # is no such button in an admin group).
            answer(chat_id, [(N_("support.already_closed"), {"ticket": ticket_id})],
                   idempotency_key)
            return refusal.to_dict()
        return refused(chat_id, idempotency_key, refusal)
    publish_committed_unsafe(outcome.outbox)
    if outcome.result.get("status") == "answered":
        answer(chat_id, [(N_("support.answer_sent"), outcome.result)], f"{idempotency_key}:ack")
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.support_close")
def support_close(actor_id: int, ticket_id: int, idempotency_key: str) -> dict[str, Any]:
    """✅ Close: the shopper is told once; a second press hears the state."""
    try:
        outcome = support.close_ticket(runtime.engine(), actor_id, ticket_id)
    except ShopError as refusal:
        return refused(actor_id, idempotency_key, refusal)
    publish_committed_unsafe(outcome.outbox)
    key = N_("support.closed_admin") if outcome.result["changed"] \
        else N_("support.already_closed")
    answer(actor_id, [(key, {"ticket": ticket_id})], f"{idempotency_key}:done")
    return outcome.result


def _send_copy(chat_id: int, text: str, photo_file_id: str | None,
               markup: dict[str, Any] | None) -> int:
    """One copy: the image (by Telegram file id) with the text as its caption, or the text."""
    if photo_file_id:
        caption = text if len(text) <= CAPTION_LIMIT else text[:CAPTION_LIMIT - 1] + "…"
        result = runtime.messenger().call("sendPhoto", {
            "chat_id": chat_id, "photo": photo_file_id, "caption": caption,
            "parse_mode": "HTML", "reply_markup": markup})
        return int(result["message_id"])
    return runtime.messenger().send_message(chat_id, text[:4000], reply_markup=markup)


def _deliver(chat_id: int, once_key: str, ticket_id: int, text: str,
             photo_file_id: str | None, markup: dict[str, Any] | None) -> bool:
    """Send one copy at most once and remember where it landed."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, once_key, "message"):
        return False
    try:
        message_id = _send_copy(chat_id, text, photo_file_id, markup)
    except (TelegramForbidden, TelegramChatNotFound):
        return False  # blocked the bot, or an admin who never opened it: nothing to retry
    except Exception:
        notifications.unclaim(engine, once_key)
        raise
    support.record_relay(engine, chat_id, message_id, ticket_id)
    return True


def _buttons(lang: str, ticket_id: int, order_id: int | None) -> dict[str, Any]:
    row = [{"text": render("button.as_close_ticket", lang), "callback_data": f"sup:x:{ticket_id}"}]
    if order_id is not None:
        row.append({"text": render("button.as_open_ticket_order", lang),
                    "callback_data": f"ao:v:{order_id}"})
    return {"inline_keyboard": [row]}


@app.task(base=QuickCartTask, bind=True, name="quickcart.support_fan_out")
def support_fan_out(self: Any, message_id: int, outbox_id: int | None = None) -> int:
    """A shopper's message to every admin and whitelisted admin group, with the shopper, the
    order summary and the ticket's buttons; each copy once."""
    engine = runtime.engine()
    view = support.message_view(engine, message_id)
    if view is None:
        return 0
    with sending_as(SendClass.ADMIN):  # notices to admins wait behind deliveries and replies
        return _fan_out(self, engine, view, message_id)


def _fan_out(task: Any, engine: Any, view: Any, message_id: int) -> int:
    """Each admin chat's copy, in its reader's language (a retry skips the copies sent)."""
    sent = 0
    first = not support.ticket_has_earlier_messages(engine, view.ticket_id, message_id)
    key = N_("support.admin_ticket") if first else N_("support.admin_follow_up")
    for chat_id in notifications.admin_chat_ids(engine):
        lang = notifications.language_of(engine, chat_id)
        order = render("support.order_summary", lang, invoice_id=view.invoice_id,
                       products=view.products or "-", units=view.units, total=view.total_bill,
                       status=view.order_status) if view.invoice_id else "-"
        text = render(key, lang, ticket=view.ticket_id, name=view.name, user_id=view.user_id,
                      username=view.username or "-", order=order, text=view.body or "📷")
        # A group's copy has no buttons: the bot serves buttons in private chats only (its
        # gate), so there they would spin and do nothing; a reply answers in a group.
        markup = _buttons(lang, view.ticket_id, view.order_id) if chat_id > 0 else None
        try:
            sent += _deliver(chat_id, f"support:{message_id}:to:{chat_id}", view.ticket_id,
                             text, view.photo_file_id, markup)
        except TelegramRetryAfter as exc:
            raise task.retry(exc=exc, countdown=exc.retry_after) from exc
    return sent


@app.task(base=QuickCartTask, bind=True, name="quickcart.support_relay")
def support_relay(self: Any, message_id: int, outbox_id: int | None = None) -> bool:
    """An admin's answer to the shopper (once); their reply to it finds the ticket again."""
    engine = runtime.engine()
    view = support.message_view(engine, message_id)
    if view is None:
        return False
    lang = notifications.language_of(engine, view.user_id)
    text = render("support.answer", lang, ticket=view.ticket_id, text=view.body or "📷")
    try:
        return _deliver(view.user_id, f"support:{message_id}:to:{view.user_id}", view.ticket_id,
                        text, view.photo_file_id, None)
    except TelegramRetryAfter as exc:
        raise self.retry(exc=exc, countdown=exc.retry_after) from exc
