"""Admin commands (pipe-separated arguments). Non-admins get the unknown-command hint; a wrong
format gets the syntax and an example. Each command enqueues one worker task, which answers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from pathlib import PurePosixPath
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot import sessions
from bot.handlers.catalog import reply
from bot.runtime import intent_key, lang, rt, t, viewer
from quickcart import bot_commands
from quickcart.services import admin as admin_service

# command → (the role it sets, the role the target must have first: /rmadmin demotes admins
# only, /rmress resellers only; None = any).
ROLE_COMMANDS: dict[str, tuple[str, str | None]] = {
    "addreseller": ("reseller", None), "rmress": ("customer", "reseller"),
    "addadmin": ("admin", None), "rmadmin": ("customer", "admin")}
STOCK_SUFFIXES = (".txt", ".csv")
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


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Usage from None


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
    if command == "add":
        if len(args) < 4 or not args[1]:
            raise Usage
        await _queued(update, context, "quickcart.admin_add_product", actor_id=actor,
                      product_id=_int(args[0]), name=args[1], category=args[2],
                      price=_amount(args[3]), description="|".join(args[4:]))
    elif command == "del":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_delete_product", actor_id=actor,
                      product_id=_int(args[0]))
    elif command == "priceress":
        if len(args) != 2:
            raise Usage
        await _queued(update, context, "quickcart.admin_reseller_price", actor_id=actor,
                      product_id=_int(args[0]), price=_amount(args[1]))
    elif command == "addstock":
        if len(args) != 1:
            raise Usage
        product_id = _int(args[0])
        runtime = rt(context)
        if not await runtime.call(admin_service.product_exists, runtime.engine, product_id):
            # Said at once: the admin must not upload a file only to hear it then.
            await reply(update, t(context, "error.product_not_found", product_id=product_id))
            return
        await sessions.start(context, actor, "addstock", product_id=product_id)
        await reply(update, t(context, "admin.addstock_prompt", product_id=product_id))
        return
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
    elif command == "giveaway":
        if len(args) != 2:
            raise Usage
        await _queued(update, context, "quickcart.admin_giveaway", actor_id=actor,
                      amount=_amount(args[0]), count=_int(args[1]))
    elif command == "stats":
        await _queued(update, context, "quickcart.admin_stats", actor_id=actor)
    elif command == "info":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_user_info", actor_id=actor,
                      user_id=_int(args[0]))
    elif command == "broadcast":
        text = (update.effective_message.text or "").partition(" ")[2].strip() \
            if update.effective_message else ""
        if not text:
            raise Usage
        await _queued(update, context, "quickcart.admin_broadcast", actor_id=actor,
                      text=text[:3500])
    elif command == "delstock":
        if len(args) != 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_delete_stock", actor_id=actor,
                      stock_id=_uuid(args[0]))
    elif command in ("delallstock", "exportstock"):
        if len(args) != 1:
            raise Usage
        task = "quickcart.admin_delete_all_stock" if command == "delallstock" \
            else "quickcart.admin_export_stock"
        await _queued(update, context, task, actor_id=actor, product_id=_int(args[0]))
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


def command(name: str) -> Callable[[Update, ContextTypes.DEFAULT_TYPE],
                                   Coroutine[Any, Any, None]]:
    """The handler of admin command `name`."""
    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Gate on the admin role, parse, enqueue."""
        if viewer(context).role != "admin":
            await reply(update, t(context, "error.unknown_command"))
            return
        try:
            await _dispatch(update, context, name)
        except Usage:
            await _usage(update, context, name)
    handle.__name__ = f"admin_{name}"
    return handle


# The command menu and /help list the same commands (quickcart/bot_commands.py).
COMMANDS = bot_commands.ADMIN_COMMANDS


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A stock file after /addstock (or with `/addstock id` as its caption)."""
    message = update.effective_message
    if message is None or message.document is None:
        return
    who = viewer(context)
    if who.role != "admin":
        await reply(update, t(context, "error.unknown_command"))
        return
    product_id: int | None = None
    caption = (message.caption or "").strip()
    if caption.startswith("/addstock"):
        rest = caption.partition(" ")[2].strip()
        product_id = int(rest) if rest.isdigit() else None
    else:
        data = await sessions.get(context, who.user_id)
        if data and data.get("flow") == "addstock" and isinstance(data.get("product_id"), int):
            product_id = int(data["product_id"])
    if product_id is None:
        await _usage(update, context, "addstock")
        return
    name = (message.document.file_name or "").lower()
    if PurePosixPath(name).suffix not in STOCK_SUFFIXES:
        await reply(update, t(context, "admin.addstock_bad_file"))
        return
    await sessions.clear(context, who.user_id)
    await rt(context).enqueue("quickcart.admin_import_stock", product_id=product_id,
                              actor_id=who.user_id, upload_id=intent_key(update.update_id),
                              file_id=message.document.file_id, chat_id=who.user_id)
    await reply(update, t(context, "admin.queued"))
