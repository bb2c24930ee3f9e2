"""Admin commands (pipe-separated arguments). Non-admins get the unknown-command hint; a wrong
format gets the syntax and an example. Each command enqueues one worker task, which answers.
The catalog, stock, promotion and broadcast commands: bot/handlers/admin_catalog.py and
bot/handlers/admin_broadcast.py."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers import audit as audit_handlers
from bot.handlers.catalog import reply
from bot.runtime import intent_key, lang, rt, t, viewer
from quickcart import bot_commands

# command → (the role it sets, the role the target must have first: /rmadmin demotes admins
# only, /rmress resellers only; None = any).
ROLE_COMMANDS: dict[str, tuple[str, str | None]] = {
    "addreseller": ("reseller", None), "rmress": ("customer", "reseller"),
    "addadmin": ("admin", None), "rmadmin": ("customer", "admin")}
# /editname, /editcat, /editprice, /editdesc → the product field they change.
EDIT_COMMANDS = {"editname": "name", "editcat": "category", "editprice": "price",
                 "editdesc": "description"}


class Usage(Exception):
    """The arguments do not match the command's syntax."""


def _args(update: Update) -> list[str]:
    """The text after the command, split on `|` and trimmed."""
    text = (update.effective_message.text or "") if update.effective_message else ""
    _, _, rest = text.partition(" ")
    rest = rest.strip()
    return [part.strip() for part in rest.split("|")] if rest else []


def _int(value: str) -> int:
    if not value.lstrip("-").isdigit():
        raise Usage
    return int(value)


def _text_after_first_pipe(update: Update) -> tuple[str, str]:
    """`/cmd head|rest`: the rest keeps any further pipes (free text)."""
    text = (update.effective_message.text or "") if update.effective_message else ""
    head, sep, rest = text.partition(" ")[2].partition("|")
    if not sep or not head.strip() or not rest.strip():
        raise Usage
    return head.strip(), rest.strip()


def _amount(value: str) -> str:
    clean = value.replace(".", "").replace(",", "").replace(" ", "")
    if not clean.lstrip("+-").isdigit():
        raise Usage
    return clean


async def _usage(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    await reply(update, t(context, "admin.usage") + "\n"
                + bot_commands.usage(command, lang(context)))


async def _queued(update: Update, context: ContextTypes.DEFAULT_TYPE, task: str,
                  **kwargs: object) -> None:
    await rt(context).enqueue(task, idempotency_key=intent_key(update.update_id), **kwargs)


async def _dispatch(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    who = viewer(context)
    args = _args(update)
    actor = who.user_id
    if command == "del":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_delete_product", actor_id=actor,
                      product_id=_int(args[0]))
    elif command == "priceress":
        if len(args) != 2:
            raise Usage
        await _queued(update, context, "quickcart.admin_reseller_price", actor_id=actor,
                      product_id=_int(args[0]), price=_amount(args[1]))
    elif command in ("ban", "unban"):
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_set_ban", actor_id=actor,
                      user_id=_int(args[0]), banned=command == "ban")
    elif command in ROLE_COMMANDS:
        if len(args) != 1:
            raise Usage
        role, from_role = ROLE_COMMANDS[command]
        await _queued(update, context, "quickcart.admin_set_role", actor_id=actor,
                      user_id=_int(args[0]), role=role, from_role=from_role)
    elif command == "editbalance":
        if len(args) != 2:
            raise Usage
        await _queued(update, context, "quickcart.admin_adjust_balance", actor_id=actor,
                      user_id=_int(args[0]), amount=_amount(args[1]))
    elif command == "info":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_user_info", actor_id=actor,
                      user_id=_int(args[0]))
    elif command == "exportstock":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_export_stock", actor_id=actor,
                      product_id=_int(args[0]))
    elif command == "transfer":
        if len(args) != 2:
            raise Usage
        amount = _amount(args[1])
        if amount.startswith("-") or not amount.lstrip("+").strip("0"):
            raise Usage
        await _queued(update, context, "quickcart.admin_transfer", actor_id=actor,
                      user_id=_int(args[0]), amount=amount.lstrip("+"))
    elif command == "pm":
        head, rest = _text_after_first_pipe(update)
        await _queued(update, context, "quickcart.admin_private_message", actor_id=actor,
                      user_id=_int(head), text=rest[:3500])
    elif command in EDIT_COMMANDS:
        head, rest = _text_after_first_pipe(update)
        field = EDIT_COMMANDS[command]
        value = _amount(rest) if field == "price" else rest
        await _queued(update, context, "quickcart.admin_edit_product", actor_id=actor,
                      product_id=_int(head), field=field, value=value)
    await reply(update, t(context, "admin.queued"))


Dispatch = Callable[[Update, ContextTypes.DEFAULT_TYPE, str], Coroutine[Any, Any, None]]


def command(name: str, dispatch: Dispatch | None = None
            ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
    """The handler of admin command `name` (parsed by `dispatch`, this module's by default)."""
    parse = dispatch or _dispatch

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Gate on the admin role, parse, enqueue."""
        if viewer(context).role != "admin":
            await audit_handlers.note_attempt(update, context)  # audited, answered as unknown
            await reply(update, t(context, "error.unknown_command"))
            return
        try:
            await parse(update, context, name)
        except Usage:
            await _usage(update, context, name)
    handle.__name__ = f"admin_{name}"
    return handle


# The command menu and /help list the same commands (quickcart/bot_commands.py).
COMMANDS = bot_commands.ADMIN_COMMANDS


# A stock file after /addstock: bot/handlers/admin_catalog.py on_document.
