"""Admin commands from the bot: each calls one admin service and answers the admin's chat.

Catalog, stock, promotions, statistics and broadcasts: workers/tasks/catalog_admin.py and
workers/tasks/broadcast.py.

Refusals (ShopError) become the catalog's polite text; every answer is sent at most once per
intent key (`tg:<update_id>`), so a redelivered task does not repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from celery.exceptions import Retry

from quickcart import bot_commands
from quickcart.adapters.telegram_api import (
    BotApi,
    TelegramError,
    TelegramRetryAfter,
    TelegramUnavailable,
)
from quickcart.config import get_settings
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.messages import LANGUAGES
from quickcart.services import admin, admin_groups, admin_rights
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe
from workers.tasks.account import reply, reply_text

Parts = list[tuple[str, dict[str, Any]]]


def _run(chat_id: int, key: str, action: Callable[[], Parts]) -> dict[str, Any]:
    try:
        parts = action()
    except ShopError as refusal:
        reply(chat_id, f"error.{refusal.code}", once_key=key, **refusal.params)
        return refusal.to_dict()
    reply_text(chat_id, parts, once_key=key)
    return {"status": "ok"}


@app.task(base=QuickCartTask, name="quickcart.admin_delete_product")
def delete_product(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/del id: soft delete."""
    def act() -> Parts:
        admin.deactivate_product(runtime.engine(), actor_id, product_id)
        return [(N_("admin.product_deleted"), {"product_id": product_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_reseller_price")
def reseller_price(actor_id: int, product_id: int, price: str,
                   idempotency_key: str) -> dict[str, Any]:
    """/priceress id|price."""
    def act() -> Parts:
        view = admin.update_product(runtime.engine(), actor_id, product_id,
                                    reseller_price=price)
        return [(N_("admin.reseller_price_set"), {"product_id": product_id,
                                              "price": str(view.reseller_price)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_set_ban")
def set_ban(actor_id: int, user_id: int, banned: bool, idempotency_key: str) -> dict[str, Any]:
    """/ban uid and /unban uid."""
    def act() -> Parts:
        admin.set_ban(runtime.engine(), actor_id, user_id, banned)
        return [(N_("admin.banned") if banned else N_("admin.unbanned"), {"user_id": user_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_set_role")
def set_role(actor_id: int, user_id: int, role: str, idempotency_key: str,
             from_role: str | None = None) -> dict[str, Any]:
    """/addreseller, /rmress, /addadmin, /rmadmin (`from_role`: the role the target must have,
    e.g. /rmadmin only demotes an admin); a changed admin's command menu follows after commit."""
    def act() -> Parts:
        change = admin_rights.set_role(runtime.engine(), actor_id, user_id, role,
                                       from_role=from_role)
        publish_committed_unsafe(change.outbox)
        return [(N_("admin.role_set"), {"user_id": user_id, "role": role})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.sync_admins")
def sync_admins(admin_ids: list[int] | None = None,
                idempotency_key: str | None = None) -> dict[str, Any]:
    """Apply ADMIN_IDS (the bot sends its own at start; None = this worker's settings): 'env'
    admins promoted and demoted, then the default menu and every admin's menu set."""
    ids = get_settings().admin_ids if admin_ids is None else [int(i) for i in admin_ids]
    result = admin_rights.sync_env_admins(runtime.engine(), ids)
    # ADMIN_GROUP_IDS seeds the whitelisted admin groups the same way (issue 23).
    admin_groups.sync_env_groups(runtime.engine(), get_settings().admin_group_ids)
    publish_committed_unsafe(result.outbox)
    refresh_bot_commands.apply_async(kwargs={}, queue="notify")
    return {"promoted": list(result.promoted), "demoted": list(result.demoted)}


# Telegram answers a chat-scoped setMyCommands for a chat it does not know (an admin who never
# opened the bot) with 400 "chat not found": that admin gets the menu at the next refresh.
_UNKNOWN_CHAT = ("chat not found", "bot was blocked", "user is deactivated")


def _chat_scope(chat_id: int) -> dict[str, Any]:
    return {"type": "chat", "chat_id": chat_id}


def _set_chat_menu(api: BotApi, chat_id: int, language: str | None) -> bool:
    """Admin commands in this chat's menu (language given), or back to the default menu."""
    try:
        if language is None:
            api.call("deleteMyCommands", {"scope": _chat_scope(chat_id)})
        else:
            api.call("setMyCommands", {"scope": _chat_scope(chat_id),
                                       "commands": bot_commands.menu(language, admin=True)})
    except (TelegramRetryAfter, TelegramUnavailable):
        raise
    except TelegramError as exc:
        if any(reason in str(exc).lower() for reason in _UNKNOWN_CHAT):
            return False
        raise
    return True


@app.task(base=QuickCartTask, bind=True, name="quickcart.refresh_bot_commands")
def refresh_bot_commands(self: Any, user_id: int | None = None,
                         outbox_id: int | None = None) -> dict[str, Any]:
    """Make Telegram's command menus match the roles now in the database: one user's chat
    (after a role change commits), or with no user the default menu (shopper commands, per
    language) and every admin's chat. Idempotent: it sets the current state, so repeats and
    out-of-order runs end the same."""
    engine = runtime.engine()
    api = runtime.messenger()
    try:
        if user_id is not None:
            language = admin_rights.chat_menu_language(engine, user_id)
            return {"user_id": user_id, "admin": language is not None,
                    "set": _set_chat_menu(api, user_id, language)}
        default = get_settings().default_language
        api.call("setMyCommands", {"commands": bot_commands.menu(default, admin=False)})
        for language in LANGUAGES:
            api.call("setMyCommands", {"commands": bot_commands.menu(language, admin=False),
                                       "language_code": language})
        admins = admin_rights.menu_admins(engine)
        done = sum(_set_chat_menu(api, admin_id, language) for admin_id, language in admins)
    except TelegramRetryAfter as exc:
        raise _retry_later(self, exc) from exc
    return {"admins": len(admins), "set": done}


def _retry_later(task: Any, exc: TelegramRetryAfter) -> Retry:
    """Telegram said slow down: come back when it allows."""
    return task.retry(exc=exc, countdown=exc.retry_after)


@app.task(base=QuickCartTask, name="quickcart.admin_adjust_balance")
def adjust_balance(actor_id: int, user_id: int, amount: str,
                   idempotency_key: str) -> dict[str, Any]:
    """/editbalance uid|±amount: a ledgered credit or debit (request id = the intent key)."""
    def act() -> Parts:
        new = admin.adjust_balance(runtime.engine(), actor_id, user_id, Decimal(amount),
                                   "editbalance", idempotency_key)
        return [(N_("admin.balance_set"), {"user_id": user_id, "balance": str(new)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_user_info")
def user_info(actor_id: int, user_id: int, idempotency_key: str) -> dict[str, Any]:
    """/info uid."""
    def act() -> Parts:
        info = admin.user_info(runtime.engine(), user_id, actor_id=actor_id)
        return [(N_("admin.info"), {
            "user_id": info["user_id"], "name": info["name"], "username": info["username"] or "-",
            "email": info["email"] or "-", "whatsapp": info["whatsapp_number"] or "-",
            "bank_id": info["bank_id"], "role": info["role"], "balance": str(info["balance"]),
            "banned": info["is_banned"], "orders": info["orders_total"],
            "paid": info["orders"]["paid"]})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_transfer")
def transfer(actor_id: int, user_id: int, amount: str, idempotency_key: str) -> dict[str, Any]:
    """/transfer uid|amount: a ledgered credit (request id = the intent key)."""
    def act() -> Parts:
        value = Decimal(amount)
        if value <= 0:
            raise ShopError("invalid_amount", amount=amount)
        new = admin.adjust_balance(runtime.engine(), actor_id, user_id, value, "transfer",
                                   idempotency_key)
        return [(N_("admin.transferred"), {"user_id": user_id, "amount": amount,
                                       "balance": str(new)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_private_message")
def private_message(actor_id: int, user_id: int, text: str,
                    idempotency_key: str) -> dict[str, Any]:
    """/pm uid|text: one catalog-framed message to one user, through the notify path."""
    from workers.tasks.notify import send_message

    def act() -> Parts:
        engine = runtime.engine()
        info = admin.user_info(engine, user_id, actor_id=actor_id)  # refuses non-admins
        send_message.apply_async(kwargs={
            "chat_id": info["user_id"], "key": N_("pm.message"), "params": {"text": text},
            "once_key": f"{idempotency_key}:to:{user_id}"}, queue="notify")
        return [(N_("admin.pm_sent"), {"user_id": user_id})]
    return _run(actor_id, idempotency_key, act)


PRODUCT_EDITS = {"name": "name", "category": "category", "price": "customer_price",
                 "description": "description"}


@app.task(base=QuickCartTask, name="quickcart.admin_edit_product")
def edit_product(actor_id: int, product_id: int, field: str, value: str,
                 idempotency_key: str) -> dict[str, Any]:
    """/editname, /editcategory, /editprice, /editdesc: one product field."""
    def act() -> Parts:
        column = PRODUCT_EDITS.get(field)
        if column is None:
            raise ShopError("unknown_field", fields=[field])
        view = admin.update_product(runtime.engine(), actor_id, product_id, **{column: value})
        return [(N_("admin.product_updated"), {
            "product_id": view.product_id, "name": view.name, "category": view.category,
            "price": str(view.customer_price), "description": view.description or "-"})]
    return _run(actor_id, idempotency_key, act)
