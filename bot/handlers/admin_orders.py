"""After-sales commands: /order (admins), /refund and /reff (shoppers for their own invoices,
admins for any, with the manual calculator and refund proposals), /setformula and /version
(admins), and the order lookup's buttons (ao:…) and refund confirmations (rf:…).

Non-admins get the unknown-command answer for the admin ones; a wrong format gets the syntax
and an example. Each intent is a worker task, which answers; a button press is keyed by its
chat, message and data, so a double tap is one intent.
"""

from __future__ import annotations

import time

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards
from bot.handlers import admin as admin_handlers
from bot.handlers.admin import Usage, _args, _queued
from bot.handlers.audit import usage
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.services import order_lookup

BOT_STARTED = time.time()


def _argument_text(update: Update) -> str:
    message = update.effective_message
    return (message.text or "").partition(" ")[2].strip() if message is not None else ""


async def _dispatch(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    """/order INV… or /order <user id>; /setformula (show) or /setformula name|value;
    /version (version, commit, uptime of the bot and the workers)."""
    actor = viewer(context).user_id
    if command == "order":
        argument = _argument_text(update)
        if order_lookup.parse_reference(argument) is None or " " in argument:
            raise Usage
        await _queued(update, context, "quickcart.admin_order_lookup", actor_id=actor,
                      reference=argument)
    elif command == "setformula":
        args = _args(update)
        if args and (len(args) != 2 or not args[0] or not args[1]):
            raise Usage
        change = {"name": args[0][:20], "value": args[1][:20]} if args else {}
        await _queued(update, context, "quickcart.admin_set_formula", actor_id=actor, **change)
    elif command == "version":
        await _queued(update, context, "quickcart.admin_version", actor_id=actor,
                      bot_started_at=BOT_STARTED)
    else:  # registered for a command this module does not parse: a wiring bug, never "queued"
        raise LookupError(f"/{command} has no parser here")
    await reply(update, t(context, "admin.queued"))


order_command = admin_handlers.command("order", _dispatch)
setformula_command = admin_handlers.command("setformula", _dispatch)
version_command = admin_handlers.command("version", _dispatch)


async def refund_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/refund or /reff: INV… (estimate), price|days|claims (admins: the formula alone),
    INV…|amount (admins: propose a refund)."""
    who = viewer(context)
    admin = who.role == "admin"
    args = _args(update)
    invoice = order_lookup.parse_reference(args[0]) if args and args[0] else None
    if invoice is not None and invoice[0] != "invoice":
        invoice = None
    if len(args) == 1 and invoice is not None:
        await _queued(update, context, "quickcart.refund_estimate", viewer_id=who.user_id,
                      invoice_id=str(invoice[1]))
    elif admin and len(args) == 3:
        await _queued(update, context, "quickcart.refund_estimate", viewer_id=who.user_id,
                      price=args[0][:20], days_used=args[1][:10], claims=args[2][:10])
    elif admin and len(args) == 2 and invoice is not None:
        await _queued(update, context, "quickcart.admin_propose_refund", actor_id=who.user_id,
                      invoice_id=str(invoice[1]), amount=args[1][:20])
    elif admin:
        await usage(update, context, "reff")
        return
    else:
        # A shopper's refusal still offers the way on: the orders it is about, or the menu.
        await reply(update, t(context, "refund.shopper_usage"), InlineKeyboardMarkup([[
            keyboards.button(who.language, "button.history", "a:hist:0"),
            keyboards.button(who.language, "button.main_menu", "m:home")]]))
        return
    await reply(update, t(context, "admin.queued"))


#: The handlers of this module's commands (/refund and /reff are shoppers' too).
COMMANDS = {"order": order_command, "refund": refund_command, "reff": refund_command,
            "setformula": setformula_command, "version": version_command}


# Button → (task, the argument its id fills): reads (answered per press), then actions.
_READ_BUTTONS = {
    "v": ("quickcart.admin_order_lookup", "order_id"),
    "w": ("quickcart.admin_warranty_units", "order_id"),
    "rc": ("quickcart.refund_estimate", "order_id"),
}
_ORDER_BUTTONS = {
    "rs": ("quickcart.admin_resend_delivery", "order_id"),
    "pc": ("quickcart.admin_recheck_payment", "order_id"),
    "wu": ("quickcart.admin_replace_unit", "order_item_id"),
}
_REFUND_BUTTONS = {"ok": "quickcart.admin_confirm_refund", "no": "quickcart.admin_cancel_refund"}


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """ao:<action>:<id> (order lookup actions), rf:p:<order>:<amount> (propose), rf:ok|no:<id>."""
    query = update.callback_query
    assert query is not None and query.data is not None
    who = viewer(context)
    if who.role != "admin":
        await query.answer(t(context, "error.unknown_command"))
        return
    parts = query.data.split(":")
    message_id = query.message.message_id if query.message is not None else 0
    # A write is keyed by the button (chat, message, data): a double tap acts once. Each press
    # is answered under its own key, so pressing again later hears the current state.
    key = f"cb:{who.user_id}:{message_id}:{query.data}"
    press = intent_key(update.update_id)
    runtime = rt(context)
    try:
        if parts[0] == "ao" and parts[1] in _READ_BUTTONS:
            task, argument = _READ_BUTTONS[parts[1]]
            actor = {"viewer_id" if task == "quickcart.refund_estimate" else "actor_id":
                     who.user_id}
            await runtime.enqueue(task, idempotency_key=press, **actor,
                                  **{argument: int(parts[2])})
        elif parts[0] == "ao" and parts[1] in _ORDER_BUTTONS:
            task, argument = _ORDER_BUTTONS[parts[1]]
            await runtime.enqueue(task, idempotency_key=key, answer_key=press,
                                  actor_id=who.user_id, **{argument: int(parts[2])})
        elif parts[0] == "rf" and parts[1] == "p":
            await runtime.enqueue("quickcart.admin_propose_refund", actor_id=who.user_id,
                                  order_id=int(parts[2]), amount=str(int(parts[3])),
                                  idempotency_key=key, answer_key=press)
        elif parts[0] == "rf" and parts[1] in _REFUND_BUTTONS:
            await runtime.enqueue(_REFUND_BUTTONS[parts[1]], actor_id=who.user_id,
                                  refund_id=int(parts[2]), idempotency_key=key,
                                  answer_key=press)
        else:
            raise ValueError(query.data)
    except (IndexError, ValueError):
        await query.answer(t(context, "error.session_expired"))
        return
    await query.answer(t(context, "admin.queued"))
