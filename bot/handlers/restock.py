""""🔔 Kabari saya": a shopper asks to hear when an out-of-stock product is back (n:watch:<id>)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.runtime import intent_key, rt, viewer


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """n:watch:<product id>: the worker records the wish and confirms it."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    parts = query.data.split(":")
    if len(parts) != 3 or not parts[2].isdigit() or not 0 < int(parts[2]) <= 2_147_483_647:
        return
    await rt(context).enqueue("quickcart.restock_watch", user_id=viewer(context).user_id,
                              product_id=int(parts[2]),
                              idempotency_key=intent_key(update.update_id))
