"""Catalog admin commands (issue 23): products and stock, discounts, vouchers, giveaways, admin
groups, statistics, low-stock alerts and restock watches.

Every command is a `quickcart.admin_*` task carrying `actor_id` and the intent key, so the
admin-command audit (workers/tasks/admin_audit.py) records it before it runs and its outcome
after, with the admin as actor and the arguments masked. Each answers the admin's chat at most
once per intent key (`tg:<update_id>`), so a redelivered task does not repeat the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from quickcart.adapters import redis_store
from quickcart.adapters.telegram_api import TelegramRetryAfter
from quickcart.config import get_settings
from quickcart.domain import discounts as discount_rule
from quickcart.domain.errors import ShopError
from quickcart.domain.money import format_idr
from quickcart.i18n import N_, N_plural, format_datetime
from quickcart.services import (
    admin_groups,
    broadcast,
    discounts,
    notifications,
    shop_stats,
    stock_admin,
    vouchers,
)
from quickcart.services.admin import admin_work
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe
from workers.tasks.account import reply_text

log = logging.getLogger(__name__)
Parts = list[tuple[str, dict[str, Any]]]
GIVEAWAY_MAX_CODES = 100


def audited(command: str, actor_id: int, args: dict[str, Any], key: str,
            action: Callable[[], Parts], chat_id: int | None = None) -> dict[str, Any]:
    """Run the command and queue the admin's answer (once per `key`); a refusal answers its
    polite text.

    The audit rows (before and after, arguments masked) are written by the admin-command audit
    wrapper (workers/tasks/admin_audit.py) around every `quickcart.admin_*` task; `command` and
    `args` name the command for the logs."""
    try:
        parts = action()
    except ShopError as refusal:
        log.info("admin %s: /%s %s refused (%s)", actor_id, command, sorted(args), refusal.code)
        answer(chat_id or actor_id, [(f"error.{refusal.code}", refusal.params)], key)
        return refusal.to_dict()
    answer(chat_id or actor_id, parts, key)
    return {"status": "ok"}


def answer(chat_id: int, parts: Parts, once_key: str) -> None:
    """Queue an answer on the notify queue: sent there once per `once_key`, and retried when
    Telegram's limits ask it to wait, without running the command again."""
    send_answer.apply_async(kwargs={"chat_id": chat_id, "parts": parts, "once_key": once_key})


@app.task(base=QuickCartTask, bind=True, name="quickcart.send_admin_answer")
def send_answer(self: Any, chat_id: int, parts: list[list[Any]], once_key: str) -> bool:
    """An admin command's answer (catalog lines as one message), at most once per key."""
    try:
        return reply_text(chat_id, [(str(key), dict(params)) for key, params in parts],
                          once_key=once_key)
    except TelegramRetryAfter as exc:
        raise self.retry(exc=exc, countdown=exc.retry_after) from exc


def _stock_changed(product_id: int, actor_id: int, key: str, added: int = 0) -> None:
    """After a commit that changed a product's stock: drop its cached count, re-judge its
    low-stock alert, and (when units were added) queue the restock notices."""
    redis_store.invalidate_stock_counts(runtime.redis_client(), [product_id])
    publish_committed_unsafe(stock_admin.check_low_stock(runtime.engine(), [product_id]))
    if added:
        restock_notify.apply_async(kwargs={"product_id": product_id, "actor_id": actor_id,
                                           "intent_key": f"{key}:restock"})


# ------------------------------------------------------------------ products and stock

@app.task(base=QuickCartTask, name="quickcart.admin_add_product")
def add_product(actor_id: int, product_id: int | None, name: str | None, category: str | None,
                price: str, description: str | None, idempotency_key: str) -> dict[str, Any]:
    """/add id|name|category|price|desc (`-` = default: next free id, "Produk {id}",
    Uncategorized, no description); reports what it created."""
    def act() -> Parts:
        made = stock_admin.create_product(runtime.engine(), actor_id, product_id, name,
                                          category, price, description,
                                          intent_key=f"{idempotency_key}:add")
        return [(N_("admin.product_created"), {
            "product_id": made.product_id, "name": made.name, "category": made.category,
            "price": made.price, "description": made.description or "-"})]
    return audited("add", actor_id, {"product_id": product_id, "name": name,
                                     "category": category, "price": price,
                                     "description": description}, idempotency_key, act)


def _stock_report(product_id: int, added: int, duplicates: int, refused: list[int]) -> Parts:
    parts: Parts = [(N_("admin.stock_report"), {"product_id": product_id, "added": added,
                                                "duplicates": duplicates,
                                                "refused": len(refused)})]
    if refused:
        parts.append((N_("admin.stock_refused_lines"),
                      {"lines": ", ".join(str(n) for n in refused[:30])}))
    return parts


@app.task(base=QuickCartTask, name="quickcart.admin_add_stock_lines")
def add_stock_lines(actor_id: int, product_id: int, lines: list[str],
                    idempotency_key: str) -> dict[str, Any]:
    """/addstock id|line1|line2…: the units inline; reports added / duplicates / refused."""
    def act() -> Parts:
        report = stock_admin.add_stock_report(runtime.engine(), actor_id, product_id, lines)
        _stock_changed(product_id, actor_id, idempotency_key, report.added)
        return _stock_report(product_id, report.added, report.duplicates, report.refused)
    return audited("addstock", actor_id, {"product_id": product_id, "lines": lines},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_import_stock",
          time_limit=1800, soft_time_limit=1700)
def import_stock(product_id: int, actor_id: int, upload_id: str, file_id: str,
                 chat_id: int) -> dict[str, Any]:
    """/addstock with a .txt/.csv: run quickcart.import_stock (same worker, same idempotency)
    and report. A file is all or nothing: a refused line adds nothing and names the line."""
    from workers.tasks.bulk import import_stock_file

    def act() -> Parts:
        with admin_work(runtime.engine(), actor_id):
            pass  # refuses non-admins before the download
        result = import_stock_file.run(product_id, actor_id, upload_id, file_id=file_id,
                                       chat_id=chat_id)
        _stock_changed(product_id, actor_id, upload_id, int(result["added"]))
        return _stock_report(product_id, int(result["added"]),
                             int(result["duplicates_skipped"]), [])
    return audited("addstock", actor_id, {"product_id": product_id, "file_id": file_id},
                   f"{upload_id}:done", act, chat_id=chat_id)


@app.task(base=QuickCartTask, name="quickcart.admin_list_stock")
def list_stock(actor_id: int, product_id: int, page: int, idempotency_key: str) -> dict[str, Any]:
    """/liststock id [page]: unsold units with short ids, contents masked."""
    def act() -> Parts:
        lines, total = stock_admin.list_stock(runtime.engine(), actor_id, product_id, page)
        pages = max(1, -(-total // stock_admin.LIST_PAGE))
        parts: Parts = [(N_("admin.stock_list_title"), {
            "product_id": product_id, "units": total, "page": min(page, pages - 1) + 1,
            "pages": pages})]
        parts += [(N_("admin.stock_list_reserved") if line.reserved
                   else N_("admin.stock_list_line"),
                   {"short_id": line.short_id, "masked": line.masked}) for line in lines]
        if not lines:
            parts.append((N_("admin.stock_list_empty"), {}))
        return parts
    return audited("liststock", actor_id, {"product_id": product_id, "page": page},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_stock")
def delete_stock(actor_id: int, stock_id: str, idempotency_key: str,
                 product_id: int | None = None) -> dict[str, Any]:
    """/delstock id|short_id or /delstock uuid: one free unit."""
    def act() -> Parts:
        unit = stock_admin.delete_stock_unit(runtime.engine(), actor_id, stock_id, product_id)
        _stock_changed(unit.product_id, actor_id, idempotency_key)
        return [(N_("admin.stock_deleted"), {"stock_id": str(unit.stock_id),
                                             "product_id": unit.product_id})]
    return audited("delstock", actor_id, {"product_id": product_id, "stock_id": stock_id},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_delete_all_stock")
def delete_all_stock(actor_id: int, product_id: int, idempotency_key: str,
                     answer_key: str | None = None) -> dict[str, Any]:
    """/delallstock id, its [Ya, hapus] pressed: every free unit of a product, once per
    confirmation (`idempotency_key`, docs/adr/0066); each press is answered (`answer_key`), a
    repeated one with what the first did and the units free now."""
    def act() -> Parts:
        done = stock_admin.delete_all_unsold_once(runtime.engine(), actor_id, product_id,
                                                  idempotency_key)
        if done.repeated:
            return [(N_("admin.delallstock_done_before"),
                     {"product_id": product_id, "count": done.deleted, "left": done.left})]
        _stock_changed(product_id, actor_id, idempotency_key)
        return [(N_plural("admin.stock_all_deleted", "count"),
                 {"product_id": product_id, "count": done.deleted})]
    return audited("delallstock", actor_id, {"product_id": product_id},
                   f"{answer_key}:done" if answer_key else idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_export_stock")
def export_stock(actor_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """/exportstock id: a product's free units as a .txt document, sent once (audited with
    the count)."""
    engine = runtime.engine()
    try:
        lines = list(stock_admin.export_unsold(engine, product_id, actor_id=actor_id))
    except ShopError as refusal:
        answer(actor_id, [(f"error.{refusal.code}", refusal.params)], idempotency_key)
        return refusal.to_dict()
    if not notifications.claim_once(engine, idempotency_key, "export"):
        return {"status": "duplicate"}
    from quickcart.messages import render

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


@app.task(base=QuickCartTask, name="quickcart.admin_renumber_product")
def renumber_product(actor_id: int, old_id: int, new_id: int,
                     idempotency_key: str) -> dict[str, Any]:
    """/editid old|new: the product and everything referencing it move to the new id."""
    def act() -> Parts:
        moved = stock_admin.renumber_product(runtime.engine(), actor_id, old_id, new_id)
        redis_store.invalidate_stock_counts(runtime.redis_client(), [old_id, new_id])
        return [(N_("admin.product_renumbered"), {"old_id": old_id, "new_id": new_id,
                                                  "count": moved})]
    return audited("editid", actor_id, {"old_id": old_id, "new_id": new_id}, idempotency_key,
                   act)


@app.task(base=QuickCartTask, name="quickcart.admin_low_stock_threshold")
def low_stock_threshold(actor_id: int, product_id: int, threshold: int,
                        idempotency_key: str) -> dict[str, Any]:
    """/lowstock id|n: the product's low-stock alert threshold (0: no alert)."""
    def act() -> Parts:
        stock_admin.set_low_stock_threshold(runtime.engine(), actor_id, product_id, threshold)
        publish_committed_unsafe(stock_admin.check_low_stock(runtime.engine(), [product_id]))
        return [(N_("admin.low_stock_set"), {"product_id": product_id,
                                             "threshold": threshold})]
    return audited("lowstock", actor_id, {"product_id": product_id, "threshold": threshold},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.low_stock_check")
def low_stock_check(product_ids: list[int] | None = None) -> int:
    """Beat: one admin notice per product whose free stock fell to its threshold since the
    last check (idempotent: a product is alerted once per crossing)."""
    messages = stock_admin.check_low_stock(runtime.engine(), product_ids)
    publish_committed_unsafe(messages)
    return len(messages)


@app.task(base=QuickCartTask, name="quickcart.restock_watch")
def restock_watch(user_id: int, product_id: int, idempotency_key: str) -> dict[str, Any]:
    """"🔔 Kabari saya": remember the shopper's wish and confirm it (once per intent)."""
    try:
        new = stock_admin.watch_restock(runtime.engine(), user_id, product_id)
    except ShopError as refusal:
        answer(user_id, [(f"error.{refusal.code}", refusal.params)], idempotency_key)
        return refusal.to_dict()
    answer(user_id, [(N_("restock.watching"), {"product_id": product_id})], idempotency_key)
    return {"status": "ok", "new": new}


@app.task(base=QuickCartTask, name="quickcart.restock_notify")
def restock_notify(product_id: int, actor_id: int, intent_key: str) -> dict[str, Any]:
    """Stock was added: the shoppers waiting for it get one message each, through the paced
    broadcast sender (idempotent: the watches are taken with the broadcast's creation)."""
    from workers.tasks.broadcast import run_broadcast

    started = broadcast.start_restock_notice(runtime.engine(), actor_id, product_id,
                                             intent_key)
    if started is None or started.total == 0:
        return {"status": "nobody"}
    run_broadcast(started.broadcast_id)
    return {"status": "ok", "broadcast_id": started.broadcast_id, "total": started.total}


# ------------------------------------------------------------------ prices and promotions

@app.task(base=QuickCartTask, name="quickcart.admin_discount")
def set_discount(actor_id: int, target: str, value: str, ends_at: str | None,
                 idempotency_key: str, scope: str = "product") -> dict[str, Any]:
    """/disc id|10% or id|5000 [|end date], /discat category|15% [|end date]; `0` removes."""
    def act() -> Parts:
        parsed = discount_rule.parse_value(value)
        if parsed is None:
            raise ShopError("invalid_discount", value=value)
        kind, amount = parsed
        end = datetime.fromisoformat(ends_at) if ends_at else None
        engine = runtime.engine()
        if scope == "category":
            view = discounts.set_category_discount(engine, actor_id, target, kind, amount, end)
        else:
            view = discounts.set_product_discount(engine, actor_id, int(target), kind, amount,
                                                  end)
        if view.removed:
            return [(N_("admin.discount_removed"), {"target": view.target})]
        shown = f"{amount.normalize():f}%" if kind == "percent" else format_idr(amount)
        return [(N_("admin.discount_set"), {
            "target": view.target, "discount": shown,
            "until": format_datetime(end) if end else "-"})]
    command = "discat" if scope == "category" else "disc"
    return audited(command, actor_id, {"target": target, "value": value, "ends_at": ends_at},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_discount_floor")
def discount_floor(actor_id: int, product_id: int, floor: str,
                   idempotency_key: str) -> dict[str, Any]:
    """/discfloor id|amount: how low a discount may take the reseller price (0: no reseller
    discount)."""
    def act() -> Parts:
        value = discounts.set_reseller_floor(runtime.engine(), actor_id, product_id, floor)
        if value is None:
            return [(N_("admin.discount_floor_removed"), {"product_id": product_id})]
        return [(N_("admin.discount_floor_set"), {"product_id": product_id, "price": value})]
    return audited("discfloor", actor_id, {"product_id": product_id, "floor": floor},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_create_voucher")
def create_voucher(actor_id: int, code: str | None, amount: str, percent: int | None,
                   max_uses: int | None, per_user_limit: int | None, min_purchase: str,
                   valid_days: int, idempotency_key: str) -> dict[str, Any]:
    """/voucher: one code of any kind (amount or percent with cap, uses, minimum purchase);
    created once per intent (a re-run answers with the code the first run made)."""
    def act() -> Parts:
        made = vouchers.create_voucher(
            runtime.engine(), actor_id, code=code, amount=amount, percent=percent,
            max_uses=max_uses, per_user_limit=per_user_limit, min_purchase=min_purchase,
            valid_days=valid_days, intent_key=f"{idempotency_key}:voucher")
        value = f"{percent}% (maks. {format_idr(Decimal(amount))})" if percent \
            else format_idr(Decimal(amount))
        return [(N_("admin.voucher_created"), {
            "code": made, "value": value, "uses": max_uses or 1,
            "per_user": per_user_limit or max_uses or 1,
            "min": Decimal(min_purchase), "days": valid_days})]
    return audited("voucher", actor_id, {"code": code, "amount": amount, "percent": percent,
                                         "max_uses": max_uses, "per_user": per_user_limit,
                                         "min_purchase": min_purchase, "days": valid_days},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_giveaway")
def giveaway(actor_id: int, amount: str, count: int, idempotency_key: str) -> dict[str, Any]:
    """/giveaway nominal|jumlah: codes generated once per intent, shown to the admin and
    broadcast to every shopper (first come, first served); the report says how many got it."""
    from workers.tasks.broadcast import run_broadcast

    engine = runtime.engine()

    def act() -> Parts:
        if not 1 <= count <= GIVEAWAY_MAX_CODES:
            raise ShopError("voucher_count_range", max=GIVEAWAY_MAX_CODES)
        # The codes are made once per intent: a re-run gets the same codes back.
        codes = vouchers.generate_vouchers(engine, actor_id, amount, count,
                                           intent_key=f"{idempotency_key}:generate")
        started = broadcast.start(
            engine, actor_id, f"{idempotency_key}:giveaway", "giveaway",
            N_("giveaway.message"),
            {"codes": "\n".join(codes), "amount": amount, "count": len(codes),
             "minutes": get_settings().voucher_cooldown_minutes})
        run_broadcast(started.broadcast_id)
        return [(N_plural("admin.giveaway", "count"), {"count": len(codes), "amount": amount}),
                (N_("admin.code_line"), {"code": "\n".join(codes)}),
                (N_plural("admin.broadcast_started", "count"), {"count": started.total})]
    return audited("giveaway", actor_id, {"amount": amount, "count": count}, idempotency_key,
                   act)


# ------------------------------------------------------------------ groups and stats

@app.task(base=QuickCartTask, name="quickcart.admin_group")
def admin_group(actor_id: int, chat_id: int, listed: bool,
                idempotency_key: str) -> dict[str, Any]:
    """/whitelist <group id> (listed) and /rm <group id>: admin notices to that group."""
    def act() -> Parts:
        engine = runtime.engine()
        if listed:
            change = admin_groups.whitelist(engine, actor_id, chat_id)
            return [(N_("admin.group_added") if change.changed else N_("admin.group_already"),
                     {"chat_id": chat_id})]
        change = admin_groups.remove(engine, actor_id, chat_id)
        return [(N_("admin.group_removed") if change.changed else N_("admin.group_unknown"),
                 {"chat_id": chat_id})]
    return audited("whitelist" if listed else "rm", actor_id, {"chat_id": chat_id},
                   idempotency_key, act)


@app.task(base=QuickCartTask, name="quickcart.admin_stats")
def period_stats(actor_id: int, idempotency_key: str, period: str = "today") -> dict[str, Any]:
    """/stats [today|week|month|all] in the shop's timezone."""
    def act() -> Parts:
        engine = runtime.engine()
        with admin_work(engine, actor_id):
            pass  # refuses non-admins
        s = shop_stats.period_stats(engine, period)
        parts: Parts = [(N_("admin.stats_period"), {
            "period": period, "since": format_datetime(s.since) if s.since else "-",
            "revenue": s.revenue, "orders": s.orders, "units": s.units,
            "new_users": s.new_users, "qris_orders": s.qris_orders,
            "qris_total": format_idr(s.qris_revenue), "saldo_orders": s.saldo_orders,
            "saldo_total": format_idr(s.saldo_revenue), "refunds": s.refunds,
            "refunded": format_idr(s.refunded), "claims": s.warranty_claims})]
        parts.append((N_("admin.stats_top"), {}))
        parts += [(N_("admin.stats_line"), {"product_id": p.product_id, "name": p.name,
                                            "count": p.units}) for p in s.top]
        return parts
    return audited("stats", actor_id, {"period": period}, idempotency_key, act)

