"""/help: shoppers get their commands; admins also get every admin command with its syntax and
an example (texts in the message catalog, the list in quickcart/bot_commands.py)."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers.catalog import reply
from bot.runtime import lang, viewer
from quickcart import bot_commands


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer /help for the sender's role, in their language (several messages if long)."""
    admin = viewer(context).role == "admin"
    for text in bot_commands.help_messages(lang(context), admin=admin):
        await reply(update, text)
