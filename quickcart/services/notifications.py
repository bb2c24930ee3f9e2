"""Messages to shoppers and admins: render from the catalog in the reader's language, then send.

These run in the notify worker, after the commit that queued them. Each message is sent at most
once per outbox id: the key is claimed (and committed) before the send and released again if the
send fails, so a retry or a duplicate publish does not repeat a message that went out.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from sqlalchemy import Engine

from quickcart.adapters.telegram_api import (
    TelegramChatNotFound,
    TelegramError,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramUnavailable,
)
from quickcart.config import get_settings
from quickcart.db import idempotency, outbox
from quickcart.db.sql import run_alone, sql
from quickcart.db.uow import unit_of_work
from quickcart.i18n import format_time  # Jakarta clock times, for the workers too
from quickcart.messages import render
from quickcart.services import admin_inbox, delivery, topics
from quickcart.services.effects import Effects


class Messenger(Protocol):
    """The chat API (quickcart.adapters.telegram_api.BotApi implements it)."""

    def send_message(self, chat_id: int, text: str,
                     reply_markup: dict[str, Any] | None = None) -> int:
        """Send a text message."""

    def send_photo(self, chat_id: int, png: bytes, caption: str,
                   reply_markup: dict[str, Any] | None = None) -> int:
        """Send a photo."""

    def send_document(self, chat_id: int, filename: str, data: bytes, caption: str) -> int:
        """Send a file."""

    def edit_text(self, chat_id: int, message_id: int, text: str,
                  reply_markup: dict[str, Any] | None = None) -> None:
        """Replace a text message."""


def language_of(engine: Engine, user_id: int) -> str:
    """The user's language (Indonesian unless they chose English)."""
    lang = run_alone(engine, "SELECT language FROM users WHERE id = :u", {"u": user_id}).scalar()
    return str(lang or get_settings().default_language)


def claim_once(engine: Engine, key: str, scope: str) -> bool:
    """Claim and commit `key`; False when it was claimed before (the message already went)."""
    # One round trip, committed by itself: the key is claimed before the send it guards.
    return run_alone(engine, "INSERT INTO idempotency_keys (key, scope) VALUES (:k, :s)"
                     " ON CONFLICT (key) DO NOTHING RETURNING key",
                     {"k": key, "s": scope}).first() is not None


def unclaim(engine: Engine, key: str) -> None:
    """Forget a claim whose send failed, so the retry can send."""
    with engine.begin() as conn:
        conn.execute(sql("DELETE FROM idempotency_keys WHERE key = :k"), {"k": key})


def send_catalog_message(engine: Engine, messenger: Messenger, chat_id: int, key: str,
                         params: dict[str, Any], once_key: str | None = None) -> bool:
    """Send catalog message `key` to one chat; at most once per `once_key`."""
    if once_key and not claim_once(engine, once_key, "message"):
        return False
    # `_edit`: the message ("⏳ … sedang diproses") this one replaces; `_buttons`: the next
    # steps offered, rows of [label key, callback data or "url:…"] (see buttons_markup).
    params = dict(params)
    edit_id, rows = params.pop("_edit", None), params.pop("_buttons", None)
    try:
        lang = language_of(engine, chat_id)
        text, markup = render(key, lang, **params), buttons_markup(rows, lang)
        if edit_id is not None and _edited(messenger, chat_id, int(edit_id), text, markup):
            return True
        messenger.send_message(chat_id, text, **({"reply_markup": markup} if markup else {}))
    except TelegramChatNotFound:
        # An admin who has not opened the bot yet: the notice waits for their first contact
        # (the once key stays claimed: the kept copy is the message now).
        if admin_inbox.keep_notice(engine, chat_id, key, params, once_key):
            return False
        if once_key:
            unclaim(engine, once_key)
        raise
    except Exception:
        if once_key:
            unclaim(engine, once_key)
        raise
    return True


def buttons_markup(rows: Any, lang: str) -> dict[str, Any] | None:
    """Inline keyboard from rows of [label key, callback data] ("url:…" makes a link)."""
    if not rows:
        return None
    keyboard = []
    for row in rows:
        buttons = []
        for label, data in row:
            button: dict[str, Any] = {"text": render(label, lang)}
            if str(data).startswith("url:"):
                button["url"] = str(data)[4:]
            else:
                button["callback_data"] = str(data)
            buttons.append(button)
        keyboard.append(buttons)
    return {"inline_keyboard": keyboard}


def _edited(messenger: Messenger, chat_id: int, message_id: int, text: str,
            markup: dict[str, Any] | None) -> bool:
    """Edit `message_id` into `text`; False when it cannot be edited (gone, too old: the
    caller sends a new message instead). Telegram's own retry-later and outages propagate."""
    try:
        messenger.edit_text(chat_id, message_id, text, reply_markup=markup)
    except TelegramError as exc:
        if isinstance(exc, (TelegramRetryAfter, TelegramUnavailable, TelegramForbidden)):
            raise
        return "not modified" in str(exc).lower()
    return True


# Messages a consumer marks sent with the once key `outbox:{id}` (the admin fan-out claims it
# in the transaction that writes its copies); nothing else re-sends them after the broker
# lost them.
# Deliveries, QR creation, expiries and payments have sweeps of their own.
REQUEUED_AFTER_BROKER_LOSS = tuple(topic for topic, _queue in (
    topics.SEND_MESSAGE, topics.SEND_NOTICE, topics.SEND_BULK_MESSAGE, topics.SEND_PAYMENT_QR,
    topics.UPDATE_PAYMENT_QR, topics.NOTIFY_ADMINS))


def requeue_unsent_messages(engine: Engine, within_hours: int = 24) -> int:
    """After the broker lost its queues: mark every published message of the
    `REQUEUED_AFTER_BROKER_LOSS` topics whose consumer never claimed its once key
    (`outbox:{id}`) unpublished again, for the relay to send.

    Locks those outbox rows (one UPDATE). Safe to run twice and against a healthy broker: a
    copy that was still queued and the re-sent one share the once key, so one is sent. A
    consumer that found nothing to do (a QR already gone) claims nothing and is asked again,
    harmlessly. Rows older than `within_hours` are left alone (the purge of published rows is
    not far off)."""
    with engine.begin() as conn:
        result = conn.execute(sql(
            "UPDATE outbox SET published_at = NULL, leased_until = NULL"
            " WHERE topic = ANY(:topics) AND published_at IS NOT NULL"
            " AND created_at > now() - make_interval(hours => :h)"
            " AND NOT EXISTS (SELECT 1 FROM idempotency_keys k"
            " WHERE k.key = 'outbox:' || outbox.id)"),
            {"topics": list(REQUEUED_AFTER_BROKER_LOSS), "h": within_hours})
    return int(result.rowcount or 0)


def fan_out_to_admins(engine: Engine, key: str, params: dict[str, Any],
                      outbox_id: int | None = None) -> list[outbox.OutboxMessage]:
    """Queue one `send_notice` outbox row per admin chat, in one transaction that also claims
    the notice's once key `outbox:{outbox_id}`; returns the rows to publish after commit.

    Locks nothing but that key. Idempotent: a second run finds the key claimed and queues
    nothing, and each copy is a message of its own (sent at most once, re-queued after a
    broker loss like any catalog message)."""
    chats = admin_chat_ids(engine)
    with unit_of_work(engine) as uow:
        if outbox_id is not None and idempotency.claim(
                uow.session, f"outbox:{outbox_id}", "admins") is not None:
            return []  # fanned out before
        effects = Effects(uow.session)
        for chat_id in chats:
            effects.notice(chat_id, key, params)
        uow.commit()
    return effects.messages


def admin_chat_ids(engine: Engine) -> list[int]:
    """Admins in the database, bootstrap admins from settings, and the whitelisted admin groups
    (admin_groups, which ADMIN_GROUP_IDS seeds; read here too until the first sync)."""
    settings = get_settings()
    with engine.connect() as conn:
        ids = set(conn.execute(sql(
            "SELECT id FROM users WHERE member_status = 'admin' AND NOT is_banned")).scalars())
        groups = set(conn.execute(sql("SELECT id FROM admin_groups")).scalars())
    return sorted(ids | set(settings.admin_ids)) + sorted(groups | set(settings.admin_group_ids))


def payment_qr_view(engine: Engine, kind: str, row_id: int) -> dict[str, Any] | None:
    """What the QR photo shows for a pending order/deposit, or None when it is no longer due."""
    if kind == "order":
        statement = ("SELECT o.*, (SELECT p.name FROM order_items i JOIN products p"
               " ON p.id = i.product_id WHERE i.order_id = o.id LIMIT 1) AS product_name,"
               " (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) AS quantity,"
               # Each product and its quantity, one line each (a cart's order has several).
               " (SELECT string_agg(x.name || ' × ' || x.n, E'\\n' ORDER BY x.product_id)"
               " FROM (SELECT i.product_id, p.name, count(*) AS n FROM order_items i"
               " JOIN products p ON p.id = i.product_id WHERE i.order_id = o.id"
               " GROUP BY i.product_id, p.name) x) AS items"
               " FROM orders o WHERE o.id = :i")
    else:
        statement = "SELECT * FROM deposits WHERE id = :i"
    with engine.connect() as conn:
        row = conn.execute(sql(statement), {"i": row_id}).first()
    if row is None or row.status != "pending" or not row.payment_number:
        return None
    view = dict(row._mapping)
    view["expires_at"] = format_time(row.expires_at)
    return view


def checkout_page_url(view: dict[str, Any]) -> str | None:
    """Pakasir's payment page for a pending row (`/pay/{project}/{amount}?order_id=…&
    qris_only=1` on PAKASIR_BASE_URL, the amount sent to the gateway as a plain integer), or
    None without a configured project."""
    settings = get_settings()
    if not settings.pakasir_project:
        return None
    amount = int(view["total_bill"] - view["payment_fee"])
    return (f"{settings.pakasir_base_url.rstrip('/')}/pay/{quote(settings.pakasir_project)}"
            f"/{amount}?order_id={quote(str(view['invoice_id']))}&qris_only=1")


def record_qr_message(engine: Engine, kind: str, row_id: int, message_id: int) -> None:
    """Remember the QR photo, so paid/expired can edit it into a receipt or a notice."""
    table = "orders" if kind == "order" else "deposits"
    with engine.begin() as conn:
        conn.execute(sql(f"UPDATE {table} SET qr_message_id = :m WHERE id = :i"),
                     {"m": message_id, "i": row_id})


class SentNotRecorded(Exception):
    """The content reached the buyer but recording it failed: retry only the record."""


def deliver_order(engine: Engine, messenger: Messenger, order_id: int, resend: bool = False,
                  requester_id: int | None = None, owner: str | None = None,
                  already_sent: bool = False) -> bool:
    """Send a paid order's content to its buyer; True when something was sent.

    Claims the delivery (a committed lease owned by `owner`), sends with no lock held, then
    records it. A failed send gives the lease back and re-raises for the task's retry; a failed
    record raises SentNotRecorded, and the retry (`already_sent`) records without sending again.
    """
    if already_sent:
        delivery.complete_delivery(engine, order_id, owner)
        return True
    payload = delivery.claim_delivery(engine, order_id, resend, requester_id, owner)
    if payload is None:
        return False
    lang = payload.language or language_of(engine, payload.chat_id)  # the claim read it
    names = payload.summary() or ", ".join(payload.product_names)
    try:
        if payload.as_document:
            caption = render("order.delivery_document", lang, invoice_id=payload.invoice_id,
                             product_names=names)
            messenger.send_document(payload.chat_id, f"{payload.invoice_id}.txt",
                                    payload.document_text().encode("utf-8"), caption)
        else:
            messenger.send_message(payload.chat_id, render(
                "order.delivery", lang, invoice_id=payload.invoice_id, product_names=names,
                contents=payload.sectioned_text()))
    except Exception:
        delivery.release_delivery(engine, order_id, owner)
        raise
    try:
        delivery.complete_delivery(engine, order_id, owner)
    except Exception as exc:
        raise SentNotRecorded(order_id) from exc
    return True
