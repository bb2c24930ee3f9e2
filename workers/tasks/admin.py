"""Admin commands from the bot: each calls one admin service and answers the admin's chat.

Refusals (ShopError) become the catalog's polite text; every answer is sent at most once per
intent key (`tg:<update_id>`), so a redelivered task does not repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from quickcart.adapters import redis_store
from quickcart.domain.errors import ShopError
from quickcart.messages import render
from quickcart.services import account, admin, notifications, stats, vouchers
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
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
        return [("admin.product_added", {"product_id": view.product_id, "name": view.name,
                                         "price": str(view.customer_price)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_product")
def delete_product(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/del id: soft delete."""
    def act() -> Parts:
        admin.deactivate_product(runtime.engine(), actor_id, product_id)
        return [("admin.product_deleted", {"product_id": product_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_reseller_price")
def reseller_price(actor_id: int, product_id: int, price: str,
                   idempotency_key: str) -> dict[str, Any]:
    """/priceress id|price."""
    def act() -> Parts:
        view = admin.update_product(runtime.engine(), actor_id, product_id,
                                    reseller_price=price)
        return [("admin.reseller_price_set", {"product_id": product_id,
                                              "price": str(view.reseller_price)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_set_ban")
def set_ban(actor_id: int, user_id: int, banned: bool, idempotency_key: str) -> dict[str, Any]:
    """/ban uid and /unban uid."""
    def act() -> Parts:
        admin.set_ban(runtime.engine(), actor_id, user_id, banned)
        return [("admin.banned" if banned else "admin.unbanned", {"user_id": user_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_set_role")
def set_role(actor_id: int, user_id: int, role: str, idempotency_key: str) -> dict[str, Any]:
    """/addreseller, /rmress, /addadmin, /rmadmin."""
    def act() -> Parts:
        admin.set_role(runtime.engine(), actor_id, user_id, role)
        return [("admin.role_set", {"user_id": user_id, "role": role})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_adjust_balance")
def adjust_balance(actor_id: int, user_id: int, amount: str,
                   idempotency_key: str) -> dict[str, Any]:
    """/editbalance uid|±amount: a ledgered credit or debit (request id = the intent key)."""
    def act() -> Parts:
        new = admin.adjust_balance(runtime.engine(), actor_id, user_id, Decimal(amount),
                                   "editbalance", idempotency_key)
        return [("admin.balance_set", {"user_id": user_id, "balance": str(new)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_giveaway")
def giveaway(actor_id: int, amount: str, count: int, idempotency_key: str) -> dict[str, Any]:
    """/giveaway amount|count: voucher codes, generated at most once per intent."""
    engine = runtime.engine()
    if not notifications.claim_once(engine, f"{idempotency_key}:generate", "giveaway"):
        return {"status": "duplicate"}

    def act() -> Parts:
        codes = vouchers.generate_vouchers(engine, actor_id, amount, count)
        return [("admin.giveaway", {"count": len(codes), "amount": amount}),
                ("admin.code_line", {"code": "\n".join(codes)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_stats")
def shop_stats(actor_id: int, idempotency_key: str) -> dict[str, Any]:
    """/stats."""
    def act() -> Parts:
        engine = runtime.engine()
        admin.user_info(engine, actor_id, actor_id=actor_id)  # refuses non-admins
        s = stats.shop_stats(engine)
        parts: Parts = [("admin.stats", {"users": s.total_users, "paid": s.paid_transactions,
                                         "revenue": str(s.revenue_today),
                                         "active": s.active_orders})]
        parts.append(("admin.stats_top", {}))
        parts += [("admin.stats_line", {"product_id": p.product_id, "name": p.name,
                                        "count": p.units_sold}) for p in s.top_products]
        parts.append(("admin.stats_stock", {}))
        parts += [("admin.stats_line", {"product_id": p.product_id, "name": p.name,
                                        "count": p.units_left}) for p in s.stock_left]
        return parts
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_user_info")
def user_info(actor_id: int, user_id: int, idempotency_key: str) -> dict[str, Any]:
    """/info uid."""
    def act() -> Parts:
        info = admin.user_info(runtime.engine(), user_id, actor_id=actor_id)
        return [("admin.info", {
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
        return [("admin.stock_imported", {
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
                "chat_id": user_id, "key": "broadcast.message", "params": {"text": text},
                "once_key": f"{idempotency_key}:to:{user_id}"}, queue="notify")
        return [("admin.broadcast_queued", {"count": len(users)})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_stock")
def delete_stock(actor_id: int, stock_id: str, idempotency_key: str) -> dict[str, Any]:
    """/delstock stock_uuid: one free unit."""
    def act() -> Parts:
        unit = admin.delete_stock_unit(runtime.engine(), actor_id, stock_id)
        redis_store.invalidate_stock_counts(runtime.redis_client(), [unit.product_id])
        return [("admin.stock_deleted", {"stock_id": str(unit.stock_id),
                                         "product_id": unit.product_id})]
    return _run(actor_id, idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_all_stock")
def delete_all_stock(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/delallstock id: every free unit of a product."""
    def act() -> Parts:
        count = admin.delete_all_unsold(runtime.engine(), actor_id, product_id)
        redis_store.invalidate_stock_counts(runtime.redis_client(), [product_id])
        return [("admin.stock_all_deleted", {"product_id": product_id, "count": count})]
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
    caption = render("admin.stock_exported", notifications.language_of(engine, actor_id),
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
        return [("admin.transferred", {"user_id": user_id, "amount": amount,
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
            "chat_id": info["user_id"], "key": "pm.message", "params": {"text": text},
            "once_key": f"{idempotency_key}:to:{user_id}"}, queue="notify")
        return [("admin.pm_sent", {"user_id": user_id})]
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
        return [("admin.product_updated", {
            "product_id": view.product_id, "name": view.name, "category": view.category,
            "price": str(view.customer_price), "description": view.description or "-"})]
    return _run(actor_id, idempotency_key, act)
