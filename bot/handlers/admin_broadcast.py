"""/broadcast: a text, or a photo whose caption starts with `/broadcast`, to every shopper
(workers/tasks/broadcast.py sends it, paced and resumable, and reports to the admin)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers import audit as audit_handlers
from bot.handlers.audit import usage
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer

MAX_TEXT = 3500
MAX_CAPTION = 1000  # Telegram's caption limit is 1024 characters, the frame takes a few


def _body(text: str) -> str:
    """What follows `/broadcast` (any @bot suffix dropped), newlines kept."""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


async def broadcast_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/broadcast <text>."""
    message = update.effective_message
    if await audit_handlers.not_admin(update, context):  # audited, answered as unknown
        return
    body = _body(message.text or "") if message is not None else ""
    if not body or len(body) > MAX_TEXT:
        await usage(update, context, "broadcast")
        return
    status = await reply(update, t(context, "admin.queued"))  # edited into the report
    await rt(context).enqueue("quickcart.admin_broadcast", actor_id=viewer(context).user_id,
                              text=body, idempotency_key=intent_key(update.update_id),
                              reply_to=status)


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo captioned `/broadcast <text>`: the photo with that caption to every shopper."""
    message = update.effective_message
    if message is None or not message.photo:
        return
    if await audit_handlers.not_admin(update, context):  # audited, answered as unknown
        return
    body = _body(message.caption or "")
    if not body or len(body) > MAX_CAPTION:
        await usage(update, context, "broadcast")
        return
    status = await reply(update, t(context, "admin.queued"))  # edited into the report
    await rt(context).enqueue("quickcart.admin_broadcast", actor_id=viewer(context).user_id,
                              text=body, photo_file_id=message.photo[-1].file_id,
                              idempotency_key=intent_key(update.update_id), reply_to=status)
