"""The gate (TypeHandler, group -1): registration on first contact, bans, rate limits."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.runtime import rt
from quickcart.adapters import redis_store
from quickcart.messages import render
from quickcart.services import account

log = logging.getLogger(__name__)

USER_LIMIT = 10  # commands and messages per minute
ADMIN_LIMIT = 100
CALLBACK_LIMIT = 60  # button presses per minute (a quantity picker takes several)
REGISTER_WAIT_SECONDS = 20.0


async def _registered(update: Update, context: ContextTypes.DEFAULT_TYPE) -> account.Viewer | None:
    """Register the sender through a task, then wait until the row is readable."""
    user = update.effective_user
    assert user is not None
    runtime = rt(context)
    await runtime.enqueue("quickcart.register_user", user_id=user.id, name=user.full_name,
                          username=user.username)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REGISTER_WAIT_SECONDS
    while loop.time() < deadline:
        found = await runtime.call(account.viewer, runtime.engine, user.id)
        if found is not None:
            context.user_data["new_user"] = True  # type: ignore[index]
            return found
        await asyncio.sleep(0.2)
    return None


async def _tell(update: Update, text: str) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(text, show_alert=False)
    elif update.effective_chat is not None:
        await update.effective_chat.send_message(text)


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stop banned and too-fast users; make sure the sender is registered."""
    user = update.effective_user
    if user is None or user.is_bot or update.effective_chat is None \
            or update.effective_chat.type != "private":
        raise ApplicationHandlerStop
    runtime = rt(context)
    if context.user_data is not None:
        context.user_data.pop("new_user", None)
    found = await runtime.call(account.viewer, runtime.engine, user.id)
    if found is None:
        found = await _registered(update, context)
        if found is None:
            await _tell(update, render("error.generic"))
            raise ApplicationHandlerStop
    if found.is_banned:
        first = await runtime.call(redis_store.once, runtime.redis,
                                   redis_store.prefixed(f"banned_notice:{user.id}"),
                                   24 * 3600)
        if first:
            await _tell(update, render("error.user_banned", found.language))
        elif update.callback_query is not None:
            await update.callback_query.answer()
        raise ApplicationHandlerStop
    action = "cb" if update.callback_query is not None else "cmd"
    limit = ADMIN_LIMIT if found.role == "admin" else (
        CALLBACK_LIMIT if action == "cb" else USER_LIMIT)
    count = await runtime.call(redis_store.rate_hit, runtime.redis, user.id, action)
    if count > limit:
        if count == limit + 1 or update.callback_query is not None:
            await _tell(update, render("error.rate_limited", found.language))
        raise ApplicationHandlerStop
    if context.user_data is not None:
        context.user_data["viewer"] = found
