"""Admin commands from the bot: each calls one admin service and answers the admin's chat.

Refusals (ShopError) become the catalog's polite text; every answer is sent at most once per
intent key (`tg:<update_id>`), so a redelivered task does not repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from celery.exceptions import Retry

from quickcart import bot_commands
from quickcart.adapters import redis_store
from quickcart.adapters.telegram_api import (
    BotApi,
    TelegramError,
    TelegramRetryAfter,
    TelegramUnavailable,
)
from quickcart.config import get_settings
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_, N_plural
from quickcart.messages import LANGUAGES, render
from quickcart.services import account, admin, admin_rights, notifications, stats, vouchers
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


@app.task(base=QuickCartTask, name="quickcart.admin_add_product")
def add_product(actor_id: int, product_id: int, name: str, category: str, price: str,
                description: str, idempotency_key: str) -> dict[str, Any]:
    """/add id|name|category|price|desc."""
    def act() -> Parts:
        view = admin.create_product(runtime.engine(), actor_id, product_id, name, category,
                                    price, description)
        return [(N_("admin.product_added"), {"product_id": view.product_id, "name": view.name,
                                         "price": str(view.customer_price)})]
    return _run(actor_id, idempotency_key, act)


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


@app.task(base=QuickCartTask, name="quickcart.admin_giveaway")
def giveaway(actor_id: int, amount: str, count: int, idempotency_key: str) -> dict[str, Any]:
    """/giveaway amount|count: voucher codes, generated at most once per intent."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, f"{idempotency_key}:generate", "giveaway"):
        return {"status": "duplicate"}

    def act() -> Parts:
        codes = vouchers.generate_vouchers(engine, actor_id, amount, count)
        return [(N_plural("admin.giveaway", "count"), {"count": len(codes), "amount": amount}),
                (N_("admin.code_line"), {"code": "\n".join(codes)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_stats")
def shop_stats(actor_id: int, idempotency_key: str) -> dict[str, Any]:
    """/stats."""
    def act() -> Parts:
        engine = runtime.engine()
        admin.user_info(engine, actor_id, actor_id=actor_id)  # refuses non-admins
        s = stats.shop_stats(engine)
        parts: Parts = [(N_("admin.stats"), {"users": s.total_users, "paid": s.paid_transactions,
                                         "revenue": str(s.revenue_today),
                                         "active": s.active_orders})]
        parts.append((N_("admin.stats_top"), {}))
        parts += [(N_("admin.stats_line"), {"product_id": p.product_id, "name": p.name,
                                        "count": p.units_sold}) for p in s.top_products]
        parts.append((N_("admin.stats_stock"), {}))
        parts += [(N_("admin.stats_line"), {"product_id": p.product_id, "name": p.name,
                                        "count": p.units_left}) for p in s.stock_left]
        return parts
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


@app.task(base=QuickCartTask, name="quickcart.admin_import_stock",
          time_limit=1800, soft_time_limit=1700)
def import_stock(product_id: int, actor_id: int, upload_id: str, file_id: str,
                 chat_id: int) -> dict[str, Any]:
    """/addstock: run quickcart.import_stock (same worker, same idempotency) and report."""
    from workers.tasks.bulk import import_stock_file

    def act() -> Parts:
        admin.user_info(runtime.engine(), actor_id, actor_id=actor_id)  # refuses non-admins
        result = import_stock_file.run(product_id, actor_id, upload_id, file_id=file_id,
                                       chat_id=chat_id)
        return [(N_("admin.stock_imported"), {
            "product_id": product_id, "added": result["added"],
            "duplicates": result["duplicates_skipped"], "blank": result["blank_skipped"]})]
    return _run(chat_id, f"{upload_id}:done", act)


@app.task(base=QuickCartTask, name="quickcart.admin_broadcast")
def broadcast(actor_id: int, text: str, idempotency_key: str) -> dict[str, Any]:
    """/broadcast: one message to every active user, each copy at most once."""
    from workers.tasks.notify import send_message

    def act() -> Parts:
        engine = runtime.engine()
        admin.user_info(engine, actor_id, actor_id=actor_id)  # refuses non-admins
        users = account.active_user_ids(engine)
        for user_id in users:
            send_message.apply_async(kwargs={
                "chat_id": user_id, "key": N_("broadcast.message"), "params": {"text": text},
                "once_key": f"{idempotency_key}:to:{user_id}"}, queue="notify")
        return [(N_plural("admin.broadcast_queued", "count"), {"count": len(users)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_stock")
def delete_stock(actor_id: int, stock_id: str, idempotency_key: str) -> dict[str, Any]:
    """/delstock stock_uuid: one free unit."""
    def act() -> Parts:
        unit = admin.delete_stock_unit(runtime.engine(), actor_id, stock_id)
        redis_store.invalidate_stock_counts(runtime.redis_client(), [unit.product_id])
        return [(N_("admin.stock_deleted"), {"stock_id": str(unit.stock_id),
                                         "product_id": unit.product_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_all_stock")
def delete_all_stock(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/delallstock id: every free unit of a product."""
    def act() -> Parts:
        count = admin.delete_all_unsold(runtime.engine(), actor_id, product_id)
        redis_store.invalidate_stock_counts(runtime.redis_client(), [product_id])
        return [(N_plural("admin.stock_all_deleted", "count"),
                 {"product_id": product_id, "count": count})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_export_stock")
def export_stock(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/exportstock id: a product's free units as a .txt document, sent once."""
    engine = runtime.engine()
    try:
        lines = list(admin.export_unsold(engine, product_id, actor_id=actor_id))
    except ShopError as refusal:
        reply(actor_id, f"error.{refusal.code}", once_key=idempotency_key, **refusal.params)
        return refusal.to_dict()
    if not notifications.claim_once(engine, idempotency_key, "export"):
        return {"status": "duplicate"}
    caption = render(N_plural("admin.stock_exported", "count"),
                     notifications.language_of(engine, actor_id),
                     product_id=product_id, count=len(lines))
    data = ("\n".join(lines) + "\n" if lines else "").encode("utf-8") or b"\n"
    try:
        runtime.messenger().send_document(actor_id, f"stock-{product_id}.txt", data, caption)
    except Exception:
        notifications.unclaim(engine, idempotency_key)
        raise
    return {"status": "ok", "count": len(lines)}


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
    """/editname, /editcat, /editprice, /editdesc: one product field."""
    def act() -> Parts:
        column = PRODUCT_EDITS.get(field)
        if column is None:
            raise ShopError("unknown_field", fields=[field])
        view = admin.update_product(runtime.engine(), actor_id, product_id, **{column: value})
        return [(N_("admin.product_updated"), {
            "product_id": view.product_id, "name": view.name, "category": view.category,
            "price": str(view.customer_price), "description": view.description or "-"})]
    return _run(actor_id, idempotency_key, act)
