"""Admin commands about users, money and product fields (pipe-separated arguments), and the
admin gate and argument parsing every admin command module shares. Non-admins get the
unknown-command hint; a wrong format gets the syntax and an example. Each command enqueues one
worker task, which answers. The other admin commands: bot/handlers/admin_catalog.py,
admin_broadcast.py, admin_orders.py, review.py and audit.py (bot/app.py registers them all)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot.handlers import audit as audit_handlers
from bot.handlers.audit import usage
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart import bot_commands

# command → (the role it sets, the role the target must have first: /rmadmin demotes admins
# only, /rmress resellers only; None = any).
ROLE_COMMANDS: dict[str, tuple[str, str | None]] = {
    "addreseller": ("reseller", None), "rmress": ("customer", "reseller"),
    "addadmin": ("admin", None), "rmadmin": ("customer", "admin")}
# /editname, /editcategory, /editprice, /editdesc → the product field they change.
EDIT_COMMANDS = {"editname": "name", "editcategory": "category", "editprice": "price",
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
    """Rupiah digits (thousands separators dropped) with at most one leading sign."""
    clean = value.replace(".", "").replace(",", "").replace(" ", "")
    digits = clean[1:] if clean[:1] in ("+", "-") else clean
    if not digits.isdigit():
        raise Usage
    return clean


def _credit(value: str) -> str:
    """A positive amount (`+` allowed and dropped): what /transfer moves."""
    amount = _amount(value).lstrip("+")
    if amount.startswith("-") or not amount.strip("0"):
        raise Usage
    return amount


async def _queued(update: Update, context: ContextTypes.DEFAULT_TYPE, task: str,
                  **kwargs: object) -> None:
    await rt(context).enqueue(task, idempotency_key=intent_key(update.update_id), **kwargs)


#: A command of fixed arguments: its task, each `|` argument's name and parser in order, and
#: the arguments the command itself fixes.
Fixed = tuple[str, tuple[tuple[str, Callable[[str], object]], ...], dict[str, object]]

_USER: tuple[tuple[str, Callable[[str], object]], ...] = (("user_id", _int),)
_FIXED: dict[str, Fixed] = {
    "del": ("quickcart.admin_delete_product", (("product_id", _int),), {}),
    "priceress": ("quickcart.admin_reseller_price",
                  (("product_id", _int), ("price", _amount)), {}),
    "ban": ("quickcart.admin_set_ban", _USER, {"banned": True}),
    "unban": ("quickcart.admin_set_ban", _USER, {"banned": False}),
    **{name: ("quickcart.admin_set_role", _USER, {"role": role, "from_role": from_role})
       for name, (role, from_role) in ROLE_COMMANDS.items()},
    "editbalance": ("quickcart.admin_adjust_balance", (*_USER, ("amount", _amount)), {}),
    "info": ("quickcart.admin_user_info", _USER, {}),
    "exportstock": ("quickcart.admin_export_stock", (("product_id", _int),), {}),
    "transfer": ("quickcart.admin_transfer", (*_USER, ("amount", _credit)), {}),
}


async def queue_fixed(update: Update, context: ContextTypes.DEFAULT_TYPE, spec: Fixed) -> None:
    """Parse the command's `|` arguments by `spec` (Usage when their number or any value is
    wrong) and enqueue its task for the sender."""
    task, parsers, fixed = spec
    args = _args(update)
    if len(args) != len(parsers):
        raise Usage
    parsed = {name: parse(value) for (name, parse), value in zip(parsers, args, strict=True)}
    await _queued(update, context, task, actor_id=viewer(context).user_id, **fixed, **parsed)


async def _dispatch(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    actor = viewer(context).user_id
    if command in _FIXED:
        await queue_fixed(update, context, _FIXED[command])
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
    else:  # registered for a command this module does not parse: a wiring bug, never "queued"
        raise LookupError(f"/{command} has no parser here")
    await reply(update, t(context, "admin.queued"))


#: The commands this module parses (bot/app.py registers the other modules' own).
OWN_COMMANDS = (*_FIXED, "pm", *EDIT_COMMANDS)

Dispatch = Callable[[Update, ContextTypes.DEFAULT_TYPE, str], Coroutine[Any, Any, None]]


def command(name: str, dispatch: Dispatch | None = None
            ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
    """The handler of admin command `name` (parsed by `dispatch`, this module's by default)."""
    parse = dispatch or _dispatch

    async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Gate on the admin role, parse, enqueue."""
        if await audit_handlers.not_admin(update, context):  # audited, answered as unknown
            return
        try:
            await parse(update, context, name)
        except Usage:
            await usage(update, context, name)
    handle.__name__ = f"admin_{name}"
    return handle


# The command menu and /help list the same commands (quickcart/bot_commands.py).
COMMANDS = bot_commands.ADMIN_COMMANDS
