"""Catalog admin commands (issue 23): /add with defaults, /addstock (inline or a file),
/liststock, /delstock, /delallstock (confirmed by a button), /editid, /lowstock, /disc, /discat,
/discfloor, /voucher, /giveaway, /whitelist, /rm, /stats.

Handlers parse and enqueue (workers/tasks/catalog_admin.py answers); bad input gets the
command's syntax with an example and changes nothing; a non-admin gets the unknown-command
answer and the attempt is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, time, timedelta
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers import admin as admin_handlers
from bot.handlers import audit as audit_handlers
from bot.handlers.admin import Fixed, Usage, _amount, _args, _int, _queued, queue_fixed
from bot.handlers.audit import usage
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.domain.discounts import parse_value
from quickcart.services import stock_admin
from quickcart.services.shop_stats import PERIODS

SHOP_TZ = ZoneInfo("Asia/Jakarta")
STOCK_SUFFIXES = (".txt", ".csv")
GIVEAWAY_MIN, GIVEAWAY_MAX = 1000, 1_000_000
GIVEAWAY_MAX_CODES = 100
#: How long a /delallstock confirmation may be acted on (docs/adr/0066).
DELALLSTOCK_VALID = timedelta(minutes=10)
#: /stats periods in Indonesian too.
PERIOD_ALIASES = {"hari": "today", "hariini": "today", "minggu": "week", "bulan": "month",
                  "semua": "all"}

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def _text(update: Update) -> str:
    """The whole text after the command (newlines kept)."""
    message = update.effective_message
    text = (message.text or message.caption or "") if message is not None else ""
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def _default(value: str) -> str | None:
    """`-` (or nothing) means "use the default"."""
    return None if value.strip() in ("", "-") else value.strip()


def _positive_amount(value: str) -> str:
    amount = _amount(value)
    if amount.startswith(("-", "+")) or not amount.strip("0"):
        raise Usage
    return amount


def _product_id(value: str) -> int:
    number = _int(value)
    if not 0 < number <= stock_admin.MAX_PRODUCT_ID:
        raise Usage
    return number


def _threshold(value: str) -> int:
    """A low-stock threshold: 0 (off) up to a million."""
    if not value.isdigit() or int(value) > 1_000_000:
        raise Usage
    return int(value)


def _floor(value: str) -> str:
    """A discount floor: an amount without a sign."""
    floor = _amount(value)
    if floor.startswith(("-", "+")):
        raise Usage
    return floor


def _giveaway_amount(value: str) -> str:
    amount = _positive_amount(value)
    if not GIVEAWAY_MIN <= int(amount) <= GIVEAWAY_MAX:
        raise Usage
    return amount


def _giveaway_count(value: str) -> int:
    count = _int(value)
    if not 1 <= count <= GIVEAWAY_MAX_CODES:
        raise Usage
    return count


def _group_chat(value: str) -> int:
    """A group's chat id (negative)."""
    chat_id = _int(value)
    if chat_id >= 0:
        raise Usage
    return chat_id


def _end_date(value: str) -> str:
    """An end date (YYYY-MM-DD, DD-MM-YYYY or DD/MM/YYYY): the discount runs through that day
    in Jakarta; returned as the ISO instant it ends. Past dates are bad input."""
    raw = value.strip()
    for pattern in ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y"):
        try:
            day = datetime.strptime(raw, pattern).date()
            break
        except ValueError:
            continue
    else:
        raise Usage
    ends = datetime.combine(day + timedelta(days=1), time(0), SHOP_TZ)
    if ends <= datetime.now(SHOP_TZ) or day > date(9999, 12, 30):
        raise Usage
    return ends.isoformat()


async def _add(update: Update, context: ContextTypes.DEFAULT_TYPE, actor: int,
               args: list[str]) -> None:
    if len(args) < 4:
        raise Usage
    product_id = _default(args[0])
    await _queued(update, context, "quickcart.admin_add_product", actor_id=actor,
                  product_id=None if product_id is None else _product_id(product_id),
                  name=_default(args[1]), category=_default(args[2]),
                  price=_positive_amount(args[3]),
                  description=_default("|".join(args[4:])))


async def _addstock(update: Update, context: ContextTypes.DEFAULT_TYPE, actor: int) -> bool:
    """Inline units (`id|unit|unit…` or `id|unit` then one unit per line); or, with only an
    id, the prompt for a file. Returns False when it answered by itself."""
    rest = _text(update)
    # The id ends at the first `|` or line break (`/addstock 101` then a unit per line).
    cut = min((i for i in (rest.find("|"), rest.find("\n")) if i >= 0), default=-1)
    head, sep, body = (rest, "", "") if cut < 0 else (rest[:cut], rest[cut], rest[cut + 1:])
    product_id = _product_id(head.strip())
    if not sep:
        runtime = rt(context)
        if not await runtime.call(stock_admin.product_exists, runtime.engine, product_id):
            # Said at once: the admin must not upload a file only to hear it then.
            await reply(update, t(context, "error.product_not_found", product_id=product_id))
            return False
        await sessions.start(context, actor, "addstock", product_id=product_id)
        await reply(update, t(context, "admin.addstock_prompt", product_id=product_id))
        return False
    lines = body.splitlines() if "\n" in body.strip() else body.split("|")
    if not any(line.strip() for line in lines):
        raise Usage
    await _queued(update, context, "quickcart.admin_add_stock_lines", actor_id=actor,
                  product_id=product_id, lines=lines[:10_000])
    return True


async def _delallstock(update: Update, context: ContextTypes.DEFAULT_TYPE,
                       args: list[str]) -> None:
    """Ask first: how many free units would go, with [Ya, hapus] [Batal]."""
    if len(args) != 1:
        raise Usage
    product_id = _product_id(args[0])
    runtime = rt(context)
    if not await runtime.call(stock_admin.product_exists, runtime.engine, product_id):
        await reply(update, t(context, "error.product_not_found", product_id=product_id))
        return
    count = await runtime.call(stock_admin.count_deletable, runtime.engine, product_id)
    await reply(update, t(context, "admin.delallstock_confirm", product_id=product_id,
                          count=count),
                _confirmation(viewer(context).language, product_id, update.update_id))


def _confirmation(lang: str, product_id: int, token: int) -> InlineKeyboardMarkup:
    """[Ya, hapus] [Batal]: the confirm button carries the token of the /delallstock (its
    update id) that asked, so one confirmation deletes once (`ac:dall:<id>:<token>`, at most
    8 + 10 + 1 + 20 = 39 bytes of Telegram's 64)."""
    return InlineKeyboardMarkup([[
        keyboards.button(lang, "button.confirm_delete", f"ac:dall:{product_id}:{token}"),
        keyboards.button(lang, "button.cancel", "ac:no")]])


def _fresh(sent_at: datetime | None) -> bool:
    """Whether a confirmation Telegram sent at `sent_at` may still be acted on (docs/adr/0066:
    a press after DELALLSTOCK_VALID deletes nothing and shows the count now). A message
    Telegram no longer shows (date 0) is stale."""
    if sent_at is None or sent_at.timestamp() <= 0:
        return False
    return datetime.now(UTC) - sent_at <= DELALLSTOCK_VALID


def _voucher_args(args: list[str]) -> dict[str, Any]:
    """/voucher code|discount|uses|per user|min purchase|days (`-` = default)."""
    if not 2 <= len(args) <= 6:
        raise Usage
    fields = args + ["-"] * (6 - len(args))
    code = _default(fields[0])
    if code is not None and not (code.isalnum() and code.isascii() and 4 <= len(code) <= 20):
        raise Usage
    value = fields[1].replace(" ", "")
    percent: int | None = None
    if "%" in value:  # 10%/50000: ten percent, at most Rp50.000
        share, _, cap = value.partition("%")
        cap = cap.lstrip("/")
        if not share.isdigit() or not 1 <= int(share) <= 100 or not cap:
            raise Usage
        percent, amount = int(share), _positive_amount(cap)
    else:
        amount = _positive_amount(value)
    uses = _default(fields[2])
    per_user = _default(fields[3])
    minimum = _default(fields[4])
    days = _default(fields[5])
    max_uses = None if uses is None else _int(uses)
    per_user_limit = None if per_user is None else _int(per_user)
    for limit in (max_uses, per_user_limit):
        if limit is not None and limit < 1:
            raise Usage
    if max_uses == 1 and per_user_limit in (None, 1):
        max_uses = per_user_limit = None  # one use in all: the classic single-use code
    elif max_uses is not None and per_user_limit is None:
        per_user_limit = 1
    valid_days = 30 if days is None else _int(days)
    if not 1 <= valid_days <= 3650:
        raise Usage
    return {"code": code, "amount": amount, "percent": percent, "max_uses": max_uses,
            "per_user_limit": per_user_limit,
            "min_purchase": "0" if minimum is None else _amount(minimum).lstrip("+"),
            "valid_days": valid_days}


_FIXED: dict[str, Fixed] = {
    "editid": ("quickcart.admin_renumber_product",
               (("old_id", _product_id), ("new_id", _product_id)), {}),
    "lowstock": ("quickcart.admin_low_stock_threshold",
                 (("product_id", _product_id), ("threshold", _threshold)), {}),
    "discfloor": ("quickcart.admin_discount_floor",
                  (("product_id", _product_id), ("floor", _floor)), {}),
    "giveaway": ("quickcart.admin_giveaway",
                 (("amount", _giveaway_amount), ("count", _giveaway_count)), {}),
    "whitelist": ("quickcart.admin_group", (("chat_id", _group_chat),), {"listed": True}),
    "rm": ("quickcart.admin_group", (("chat_id", _group_chat),), {"listed": False}),
}


async def _dispatch(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str) -> None:
    actor = viewer(context).user_id
    args = _args(update)
    if command in _FIXED:
        await queue_fixed(update, context, _FIXED[command])
    elif command == "add":
        await _add(update, context, actor, args)
    elif command == "addstock":
        if not await _addstock(update, context, actor):
            return
    elif command == "liststock":
        parts = args[0].split() if len(args) == 1 else args
        if not 1 <= len(parts) <= 2:
            raise Usage
        page = _int(parts[1]) if len(parts) == 2 else 1
        if page < 1:
            raise Usage
        await _queued(update, context, "quickcart.admin_list_stock", actor_id=actor,
                      product_id=_product_id(parts[0]), page=page - 1)
    elif command == "delstock":
        if len(args) == 1 and len(args[0]) == 36:
            await _queued(update, context, "quickcart.admin_delete_stock", actor_id=actor,
                          stock_id=args[0].lower())
        elif len(args) == 2 and (len(args[1]) == stock_admin.SHORT_ID or len(args[1]) == 36):
            await _queued(update, context, "quickcart.admin_delete_stock", actor_id=actor,
                          product_id=_product_id(args[0]), stock_id=args[1].lower())
        else:
            raise Usage
    elif command == "delallstock":
        await _delallstock(update, context, args)
        return
    elif command in ("disc", "discat"):
        if len(args) not in (2, 3) or parse_value(args[1]) is None:
            raise Usage
        target = str(_product_id(args[0])) if command == "disc" else args[0]
        if not target or len(target) > 255:
            raise Usage
        await _queued(update, context, "quickcart.admin_discount", actor_id=actor,
                      target=target, value=args[1], scope="product" if command == "disc"
                      else "category", ends_at=_end_date(args[2]) if len(args) == 3 else None)
    elif command == "voucher":
        await _queued(update, context, "quickcart.admin_create_voucher", actor_id=actor,
                      **_voucher_args(args))
    elif command == "stats":
        word = (args[0].lower().replace(" ", "") if args else "today")
        period = PERIOD_ALIASES.get(word, word)
        if len(args) > 1 or period not in PERIODS:
            raise Usage
        await _queued(update, context, "quickcart.admin_stats", actor_id=actor, period=period)
    else:  # registered for a command this module does not parse: a wiring bug, never "queued"
        raise LookupError(f"/{command} has no parser here")
    await reply(update, t(context, "admin.queued"))


COMMANDS = ("add", "addstock", "liststock", "delstock", "delallstock", "editid", "lowstock",
            "disc", "discat", "discfloor", "voucher", "giveaway", "whitelist", "rm", "stats")


def command(name: str) -> Handler:
    """The handler of catalog admin command `name` (admin gate, usage on bad input)."""
    return admin_handlers.command(name, _dispatch)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """ac:dall:<id>:<token> (the /delallstock confirmation: once per token, only while fresh)
    and ac:no."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    who = viewer(context)
    if who.role != "admin":
        await reply(update, t(context, "error.unknown_command"))
        return
    parts = query.data.split(":")
    if len(parts) in (3, 4) and parts[1] == "dall" and all(p.isdigit() for p in parts[2:]):
        product_id = int(parts[2])
        sent_at = query.message.date if query.message is not None else None
        if len(parts) == 3 or not _fresh(sent_at):
            # Too old (or a button from before confirmations had tokens): never a delete of
            # what is there now; the old prompt says so and loses its buttons, and a new one
            # (a new message: an edit keeps the old date) asks again with the count now.
            runtime = rt(context)
            count = await runtime.call(stock_admin.count_deletable, runtime.engine, product_id)
            await reply(update, t(context, "admin.delallstock_stale", product_id=product_id,
                                  count=count,
                                  minutes=int(DELALLSTOCK_VALID.total_seconds() // 60)))
            if update.effective_chat is not None:
                await update.effective_chat.send_message(
                    t(context, "admin.delallstock_confirm", product_id=product_id, count=count),
                    parse_mode="HTML",
                    reply_markup=_confirmation(who.language, product_id, update.update_id))
            return
        # Keyed by the confirmation's token: pressing it again deletes nothing (the worker
        # answers each press, under its own key, with what the first press did).
        await rt(context).enqueue("quickcart.admin_delete_all_stock", actor_id=who.user_id,
                                  product_id=product_id,
                                  idempotency_key=f"dall:{who.user_id}:{parts[3]}",
                                  answer_key=intent_key(update.update_id))
        await reply(update, t(context, "admin.queued"))
        return
    await reply(update, t(context, "admin.cancelled"))


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A stock file after /addstock (or with `/addstock id` as its caption)."""
    message = update.effective_message
    if message is None or message.document is None:
        return
    if await audit_handlers.not_admin(update, context):  # a captioned /addstock is audited
        return
    who = viewer(context)
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
        await usage(update, context, "addstock")
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
