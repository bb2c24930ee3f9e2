"""/audit for admins, and the audit of non-admins' attempts at admin commands.

A non-admin who sends an admin command gets the answer to any unknown command (the admin
commands stay hidden); `note_attempt` queues the attempt's audit (a task: handlers never write
the database). The task alerts the admins past the hourly limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers.catalog import reply
from bot.runtime import intent_key, lang, rt, t, viewer
from quickcart import bot_commands

MAX_ENTRIES = 50


def command_name(update: Update) -> str | None:
    """The /command of the update's message (without any @bot suffix), lower-case."""
    message = update.effective_message
    text = (message.text or message.caption or "") if message is not None else ""
    if not text.startswith("/"):
        return None
    return text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else None


async def note_attempt(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Queue the audit of a non-admin's admin command (nothing for other commands)."""
    name = command_name(update)
    value = context.user_data.get("viewer") if context.user_data is not None else None
    role = getattr(value, "role", None)
    if name is None or name not in bot_commands.ADMIN_COMMANDS or role in (None, "admin"):
        return
    await rt(context).enqueue("quickcart.audit_admin_attempt", user_id=viewer(context).user_id,
                              command=name, idempotency_key=intent_key(update.update_id))


async def usage(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    """The command's syntax and an example (nothing was changed)."""
    await reply(update, t(context, "admin.usage") + "\n"
                + bot_commands.usage(command, lang(context)))


async def not_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
    """True (after answering as to any unknown command, and auditing) for a non-admin."""
    if viewer(context).role == "admin":
        return False
    from bot.handlers import menu

    await menu.unknown_command(update, context)
    return True


def parse_audit(text: str) -> tuple[str, int]:
    """`/audit subject [n]` (or `subject|n`) → (subject, n); ValueError when malformed."""
    rest = text.partition(" ")[2].replace("|", " ").split()
    if not 1 <= len(rest) <= 2:
        raise ValueError("audit takes a subject and an optional count")
    subject = rest[0]
    count = int(rest[1]) if len(rest) == 2 and rest[1].isdigit() else (10 if len(rest) == 1
                                                                         else -1)
    if not (subject.isalnum() and 1 <= count <= MAX_ENTRIES):
        raise ValueError("bad subject or count")
    return subject, count


async def parsed_command(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str,
                         parse: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
    """An admin command: non-admins answered as unknown (and audited), a malformed one gets
    its usage, else `parse(text)` names the task and its arguments, which is enqueued."""
    if await not_admin(update, context):
        return
    text = update.effective_message.text or "" if update.effective_message else ""
    try:
        task, kwargs = parse(text)
    except ValueError:
        await usage(update, context, command)
        return
    await rt(context).enqueue(task, actor_id=viewer(context).user_id,
                              idempotency_key=intent_key(update.update_id), **kwargs)
    await reply(update, t(context, "admin.queued"))


def _audit_task(text: str) -> tuple[str, dict[str, Any]]:
    subject, count = parse_audit(text)
    return "quickcart.admin_audit_query", {"subject": subject, "limit": count}


async def audit_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/audit <user id | invoice | admin id> [n]."""
    await parsed_command(update, context, "audit", _audit_task)
