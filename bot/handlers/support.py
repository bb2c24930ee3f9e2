"""📩 Kirim pesan / Bantuan / Garansi: a shopper's message (text, at most one image) becomes a
support ticket; an admin's Telegram reply to a ticket (in private or in a whitelisted admin
group) goes back to the shopper, and the shopper's reply to that answer back to the admins.
Handlers only read and enqueue (workers/tasks/support.py writes)."""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.runtime import intent_key, rt, t, viewer
from quickcart.services import notifications, order_lookup, support

FLOW = "support"


async def _send(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    """A new message in the sender's chat (a prompt never replaces the screen it came from)."""
    if update.effective_chat is not None:
        await update.effective_chat.send_message(text, parse_mode="HTML", reply_markup=markup)


async def start_contact(update: Update, context: ContextTypes.DEFAULT_TYPE,
                        order_id: int | None = None) -> None:
    """Ask for the message (about `order_id` when opened from an order in the history)."""
    runtime = rt(context)
    who = viewer(context)
    invoice = await runtime.call(order_lookup.order_invoice, runtime.engine, who.user_id,
                                 order_id) if order_id is not None else None
    await sessions.start(context, who.user_id, FLOW,
                         order_id=order_id if invoice is not None else None)
    text = t(context, "support.prompt_order", invoice_id=invoice) if invoice is not None \
        else t(context, "support.prompt")
    await _send(update, text, InlineKeyboardMarkup([[
        keyboards.button(who.language, "button.cancel", "m:home")]]))


def _photo(message: Message) -> str | None:
    """The largest size of the message's image, if it has one."""
    return message.photo[-1].file_id if message.photo else None


async def submit(update: Update, context: ContextTypes.DEFAULT_TYPE, data: dict[str, Any],
                 text: str, photo_file_id: str | None = None) -> None:
    """The typed (or photographed) message of an open flow: enqueue the ticket."""
    who = viewer(context)
    await sessions.clear(context, who.user_id)
    order_id = data.get("order_id")
    await rt(context).enqueue("quickcart.support_open_ticket", user_id=who.user_id,
                              text=text[:support.MAX_TEXT], photo_file_id=photo_file_id,
                              order_id=order_id if isinstance(order_id, int) else None,
                              idempotency_key=intent_key(update.update_id))


async def text_typed(update: Update, context: ContextTypes.DEFAULT_TYPE, data: dict[str, Any],
                     text: str) -> None:
    """Typed text while the support flow is open."""
    await submit(update, context, data, text)


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An image in a private chat: the flow's one image (its caption is the text), otherwise a
    pointer to 📩 Kirim pesan (a second image of an album lands here too: one per message)."""
    message = update.effective_message
    if message is None:
        return
    who = viewer(context)
    data = await sessions.get(context, who.user_id)
    if data and data.get("flow") == FLOW:
        await submit(update, context, data, message.caption or "", _photo(message))
        return
    await _send(update, t(context, "support.photo_outside_flow"), InlineKeyboardMarkup([[
        keyboards.button(who.language, "button.support_write", "sup:new")]]))


async def on_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A private message replying to another: to a ticket copy, it is an admin's answer or
    the shopper's follow-up; to anything else, the usual text or image handling."""
    message = update.effective_message
    if message is None or message.reply_to_message is None:
        return
    runtime = rt(context)
    who = viewer(context)
    ticket_id = await runtime.call(support.ticket_of_reply, runtime.engine, who.user_id,
                                   message.reply_to_message.message_id)
    owner = await runtime.call(support.ticket_owner, runtime.engine, ticket_id) \
        if ticket_id is not None else None
    text = message.text or message.caption or ""
    key = intent_key(update.update_id)
    if ticket_id is not None and owner == who.user_id:
        await runtime.enqueue("quickcart.support_follow_up", user_id=who.user_id,
                              ticket_id=ticket_id, text=text[:support.MAX_TEXT],
                              photo_file_id=_photo(message), idempotency_key=key)
    elif ticket_id is not None and who.role == "admin":
        await runtime.enqueue("quickcart.support_admin_answer", actor_id=who.user_id,
                              chat_id=who.user_id, ticket_id=ticket_id,
                              text=text[:support.MAX_TEXT], photo_file_id=_photo(message),
                              idempotency_key=key)
    elif message.photo:
        await on_photo(update, context)
    else:
        from bot.handlers import menu  # menu routes typed text and imports this module

        await menu.on_text(update, context)


async def on_group_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A reply in a whitelisted admin group to a ticket copy there: the group's answer (runs
    before the gate, which serves private chats only)."""
    message = update.effective_message
    chat = update.effective_chat
    user = update.effective_user
    if message is None or chat is None or user is None or message.reply_to_message is None:
        return
    runtime = rt(context)
    if chat.id not in await runtime.call(notifications.admin_chat_ids, runtime.engine):
        return
    ticket_id = await runtime.call(support.ticket_of_reply, runtime.engine, chat.id,
                                   message.reply_to_message.message_id)
    if ticket_id is None:
        return
    await runtime.enqueue("quickcart.support_admin_answer", actor_id=user.id, chat_id=chat.id,
                          ticket_id=ticket_id,
                          text=(message.text or message.caption or "")[:support.MAX_TEXT],
                          photo_file_id=_photo(message), from_admin_group=True,
                          idempotency_key=intent_key(update.update_id))


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """sup:new, sup:o:<order id> (Bantuan / Garansi), sup:x:<ticket> (an admin closes)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    who = viewer(context)
    try:
        if parts[1] == "new":
            await query.answer()
            await start_contact(update, context)
        elif parts[1] == "o":
            await query.answer()
            await start_contact(update, context, int(parts[2]))
        elif parts[1] == "x" and who.role == "admin":
            # Closing is idempotent by the ticket's state: each press hears the state.
            await rt(context).enqueue(
                "quickcart.support_close", actor_id=who.user_id, ticket_id=int(parts[2]),
                idempotency_key=intent_key(update.update_id))
            await query.answer(t(context, "admin.queued"))
        else:
            await query.answer(t(context, "error.unknown_command"))
    except (IndexError, ValueError):
        await query.answer(t(context, "error.session_expired"))
