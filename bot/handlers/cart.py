"""The cart (🛒 Keranjang) and the checkout summary: the full bill before paying.

Callbacks (`k:`): add:<id> (one unit from the product page), addq:<id> (the quantity picker's
amount), view, inc:<id>, dec:<id>, rm:<id>, clr, co (checkout the cart), sum (the summary
again), v (type a voucher), vx (drop it), pq / pb (pay by QRIS / SALDO), back, x (cancel),
po / pc (show / cancel the pending order).

The checkout session (`flow: checkout`) holds the lines being bought (the cart's, or the one
product of "Beli sekarang"), the voucher checked on the summary, the totals shown, and its
step: summary → placing (a second tap on pay finds it placing and places nothing). The order
is created with the total shown as its expected total, so the order row equals the summary.
"""

from __future__ import annotations

import contextlib
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.domain.errors import ShopError
from quickcart.domain.money import format_idr
from quickcart.i18n import N_
from quickcart.services import cart, orders

# Shown per line in the cart screen; the cart holds at most orders.MAX_LINES lines.
MAX_QUANTITY = orders.MAX_QUANTITY


# ---------------------------------------------------------------- the cart screen

async def show_cart(update: Update, context: ContextTypes.DEFAULT_TYPE,
                    notice: str | None = None) -> None:
    """The cart: a line per product (qty, unit price for this shopper, line total), −/+/🗑
    per line, checkout, empty; an empty cart points to the catalog."""
    runtime = rt(context)
    who = viewer(context)
    items = await runtime.call(cart.lines, runtime.engine, runtime.redis, who.user_id)
    head = [notice, ""] if notice else []
    if not items:
        markup = InlineKeyboardMarkup([
            [keyboards.button(who.language, "button.all_products", "c:all:0")],
            [keyboards.button(who.language, "button.back", "m:home")]])
        await reply(update, "\n".join([*head, t(context, "cart.empty")]), markup)
        return
    found = await runtime.call(cart.quote, runtime.engine, who.user_id, who.role,
                               list(items.items()))
    text = [*head, t(context, "cart.title")]
    rows: list[list[InlineKeyboardButton]] = []
    for n, line in enumerate(found.lines, 1):
        text.append(_line_text(context, n, line))
        if line.short:
            text.append(t(context, "cart.line_short", available=line.available))
        rows.append([
            InlineKeyboardButton("➖", callback_data=f"k:dec:{line.product_id}"),
            InlineKeyboardButton(f"{line.name[:18]} ×{line.quantity}",
                                 callback_data=f"c:p:{line.product_id}"),
            InlineKeyboardButton("➕", callback_data=f"k:inc:{line.product_id}"),
            InlineKeyboardButton("🗑", callback_data=f"k:rm:{line.product_id}")])
    for product_id in found.missing:
        text.append(t(context, "cart.line_gone", product_id=product_id))
        rows.append([InlineKeyboardButton("🗑", callback_data=f"k:rm:{product_id}")])
    text += ["", t(context, "cart.subtotal", subtotal=found.qris.subtotal)]
    rows.append([keyboards.button(who.language, "button.checkout", "k:co")])
    rows.append([keyboards.button(who.language, "button.all_products", "c:all:0"),
                 keyboards.button(who.language, "button.empty_cart", "k:clr")])
    rows.append([keyboards.button(who.language, "button.back", "m:home")])
    await reply(update, "\n".join(text), InlineKeyboardMarkup(rows))


def _line_text(context: ContextTypes.DEFAULT_TYPE, n: int, line: cart.QuoteLine) -> str:
    return t(context, "cart.line", n=n, name=line.name, quantity=line.quantity,
             unit_price=line.unit_price, line_total=format_idr(line.total))


async def add_to_cart(update: Update, context: ContextTypes.DEFAULT_TYPE, product_id: int,
                      quantity: int) -> None:
    """Add units (capped by free stock) and show the cart with what happened."""
    runtime = rt(context)
    who = viewer(context)
    done = await runtime.call(cart.add, runtime.engine, runtime.redis, who.user_id,
                              product_id, quantity)
    if done.status in ("unavailable", "out_of_stock", "cart_full"):
        key = {"unavailable": N_("cart.unavailable"), "out_of_stock": N_("cart.out_of_stock"),
               "cart_full": N_("cart.full")}[done.status]
        markup = InlineKeyboardMarkup([
            [keyboards.button(who.language, "button.cart", "k:view"),
             keyboards.button(who.language, "button.all_products", "c:all:0")]])
        await reply(update, t(context, key, product_id=product_id, max=orders.MAX_LINES),
                    markup)
        return
    key = N_("cart.capped") if done.status == "capped" else N_("cart.added")
    await show_cart(update, context, t(context, key, quantity=done.quantity,
                                       available=done.available))


async def _change(update: Update, context: ContextTypes.DEFAULT_TYPE, product_id: int,
                  delta: int | None) -> None:
    """−/+ one unit (capped by free stock), or remove the line (`delta` None)."""
    runtime = rt(context)
    who = viewer(context)
    items = await runtime.call(cart.lines, runtime.engine, runtime.redis, who.user_id)
    if delta is None or product_id not in items:
        await runtime.call(cart.set_quantity, runtime.redis, who.user_id, product_id, 0)
        await show_cart(update, context)
        return
    if delta > 0:
        await add_to_cart(update, context, product_id, delta)
        return
    await runtime.call(cart.set_quantity, runtime.redis, who.user_id, product_id,
                       items[product_id] + delta)
    await show_cart(update, context)


# ---------------------------------------------------------------- checkout and summary

async def start_checkout(update: Update, context: ContextTypes.DEFAULT_TYPE, source: str,
                         items: list[tuple[int, int]]) -> None:
    """Begin a checkout of `items` (from the cart, or one product bought directly)."""
    who = viewer(context)
    if not items:
        await show_cart(update, context)
        return
    await sessions.start(context, who.user_id, "checkout", source=source,
                         lines=[[p, q] for p, q in items], voucher=None, voucher_data=None,
                         step="summary")
    await show_summary(update, context)


async def _checkout(context: ContextTypes.DEFAULT_TYPE) -> dict[str, Any] | None:
    data = await sessions.get(context, viewer(context).user_id)
    if not data or data.get("flow") != "checkout" or not isinstance(data.get("lines"), list):
        return None
    return data


def _items(data: dict[str, Any]) -> list[tuple[int, int]]:
    return [(int(p), int(q)) for p, q in data["lines"]]


async def show_summary(update: Update, context: ContextTypes.DEFAULT_TYPE,
                       notice: str | None = None) -> None:
    """Each line, subtotal, voucher discount; QRIS fee and total bill; SALDO total and the
    balance after. Pay buttons only when every line is in stock and nothing is pending."""
    runtime = rt(context)
    who = viewer(context)
    data = await sessions.update(context, who.user_id, lambda cur: {**cur, "step": "summary"}
                                 if cur and cur.get("flow") == "checkout" else cur)
    if not data or data.get("flow") != "checkout":
        await show_cart(update, context)
        return
    found = await runtime.call(cart.quote, runtime.engine, who.user_id, who.role,
                               _items(data), data.get("voucher_data"))
    lang = who.language
    text = [notice, ""] if notice else []
    text.append(t(context, "checkout.title"))
    text += [_line_text(context, n, line) for n, line in enumerate(found.lines, 1)]
    qris, saldo = found.qris, found.balance_bill
    text += ["", t(context, "checkout.subtotal", subtotal=qris.subtotal)]
    if data.get("voucher") and found.voucher_problem is not None:
        # The cart changed under the voucher's minimum purchase: say so, it takes nothing off.
        text.append(t(context, f"error.{found.voucher_problem.code}",
                      **found.voucher_problem.params))
    elif data.get("voucher"):
        text.append(t(context, "checkout.discount", code=data["voucher"],
                      voucher_discount=qris.voucher_discount))
        text.append(t(context, "checkout.after_discount", total=qris.payable))
    text += ["", t(context, "checkout.qris", total=qris.payable, payment_fee=qris.payment_fee,
                   total_bill=qris.total)]
    text.append(t(context, "checkout.saldo", total=saldo.total, balance=found.balance,
                  balance_after=format_idr(found.balance_after)))
    problems = [line for line in found.lines if line.short]
    rows: list[list[InlineKeyboardButton]] = []
    if found.missing or problems or not found.lines:
        text.append("")
        text += [t(context, "checkout.line_short", name=line.name, quantity=line.quantity,
                   available=line.available) for line in problems]
        text += [t(context, "cart.line_gone", product_id=p) for p in found.missing]
    elif found.pending_invoice:
        text += ["", t(context, "checkout.pending", invoice_id=found.pending_invoice)]
        rows.append([keyboards.button(lang, "button.show_order", "k:po"),
                     keyboards.button(lang, "button.cancel_and_new", "k:pc")])
    else:
        pay = [keyboards.button(lang, "button.pay_qris", "k:pq")]
        if found.balance_short > 0:
            pay.append(keyboards.button(lang, "button.saldo_short", "a:dep",
                                        amount=found.balance_short))
        else:
            pay.append(keyboards.button(lang, "button.pay_balance", "k:pb"))
        rows.append(pay)
        if data.get("voucher"):
            rows.append([keyboards.button(lang, "button.remove_voucher", "k:vx")])
        else:
            rows.append([keyboards.button(lang, "button.use_voucher", "k:v")])
    rows.append([keyboards.button(lang, "button.back", "k:back"),
                 keyboards.button(lang, "button.cancel", "k:x")])
    # The totals shown are what the order must cost (its expected total).
    await sessions.update(context, who.user_id, lambda cur: {
        **cur, "qris_total": str(qris.total), "balance_total": str(saldo.total)}
        if cur and cur.get("flow") == "checkout" else cur)
    await reply(update, "\n".join(text), InlineKeyboardMarkup(rows))


async def voucher_typed(update: Update, context: ContextTypes.DEFAULT_TYPE,
                        data: dict[str, Any], code: str) -> None:
    """A code typed on the summary: checked at once; success refreshes the summary, a refusal
    says which (unknown/used, expired, cooldown) and keeps the order open."""
    runtime = rt(context)
    who = viewer(context)
    try:
        voucher = await runtime.call(cart.check_voucher, runtime.engine, who.user_id,
                                     code[:64])
        found = await runtime.call(cart.quote, runtime.engine, who.user_id, who.role,
                                   _items(data), voucher)
        if found.voucher_problem is not None:
            raise found.voucher_problem  # e.g. under the voucher's minimum purchase
    except ShopError as refusal:
        await sessions.update(context, who.user_id, lambda cur: {**cur, "step": "summary"}
                              if cur and cur.get("flow") == "checkout" else cur)
        markup = InlineKeyboardMarkup([
            [keyboards.button(who.language, "button.retry_voucher", "k:v")],
            [keyboards.button(who.language, "button.without_voucher", "k:sum")]])
        await reply(update, t(context, f"error.{refusal.code}", **refusal.params), markup)
        return
    stored = await sessions.update(context, who.user_id, lambda cur: {
        **cur, "voucher": voucher["code"], "voucher_data": voucher, "step": "summary"}
        if cur and cur.get("flow") == "checkout" else cur)
    if not stored or stored.get("flow") != "checkout":
        await show_cart(update, context)
        return
    await show_summary(update, context, t(context, "checkout.voucher_applied",
                                          amount=found.qris.voucher_discount))


async def _place(update: Update, context: ContextTypes.DEFAULT_TYPE, method: str) -> None:
    """Take the summary (atomically: a double tap places one order), turn it into
    "⏳ … sedang diproses" and enqueue; the worker edits that message into the outcome."""
    query = update.callback_query
    who = viewer(context)
    taken: dict[str, Any] = {}

    def take(current: dict[str, Any] | None) -> dict[str, Any] | None:
        taken.clear()
        if current and current.get("flow") == "checkout" and current.get("step") == "summary":
            taken.update(current)
            return {**current, "step": "placing"}
        return current

    now = await sessions.update(context, who.user_id, take)
    if not taken:
        if now and now.get("flow") == "checkout" and now.get("step") == "placing":
            if query is not None:
                await query.answer(t(context, "order.processing"))
            return
        await show_cart(update, context)
        return
    message_id = await reply(update, t(context, "order.processing"))
    items = _items(taken)
    expected = taken.get("qris_total" if method == "qris" else "balance_total")
    await rt(context).enqueue(
        "quickcart.create_order", user_id=who.user_id, product_id=items[0][0],
        quantity=items[0][1], payment_method=method,
        idempotency_key=intent_key(update.update_id), voucher_code=taken.get("voucher"),
        lines=[list(i) for i in items], expected_total=expected, reply_to=message_id,
        from_cart=taken.get("source") == "cart")


async def _back(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """⬅️ Kembali from the summary: to the cart, or to the product's quantity (nothing lost)."""
    data = await _checkout(context)
    if data and data.get("source") == "direct" and data["lines"]:
        from bot.handlers import order as order_handlers

        product_id, quantity = _items(data)[0]
        await sessions.start(context, viewer(context).user_id, "order", product_id=product_id,
                             quantity=quantity, step="quantity")
        await order_handlers.show_quantity(update, context, product_id, quantity)
        return
    await show_cart(update, context)


async def _show_pending(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The pending order: invoice, total, time left, and its buttons."""
    runtime = rt(context)
    who = viewer(context)
    state = await runtime.call(orders.pending_order_view, runtime.engine, who.user_id)
    if state is None:
        await show_summary(update, context)
        return
    markup = InlineKeyboardMarkup([
        [keyboards.button(who.language, "button.check_status",
                          f"pay:check:{state['invoice_id']}"),
         keyboards.button(who.language, "button.cancel", f"pay:cancel:{state['invoice_id']}")],
        [keyboards.button(who.language, "button.back_to_summary", "k:sum")]])
    await reply(update, t(context, "order.pending_view", **state), markup)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every `k:` button; a stale one answers with the current cart or summary."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    action = parts[1] if len(parts) > 1 else ""
    product_id = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() \
        and len(parts[2]) <= 10 else None
    if action in ("pq", "pb"):
        await _place(update, context, "qris" if action == "pq" else "account_balance")
        if query is not None:
            await _answer(query)
        return
    await _answer(query)
    runtime = rt(context)
    who = viewer(context)
    if action == "add" and product_id is not None:
        await add_to_cart(update, context, product_id, 1)
    elif action == "addq" and product_id is not None:
        data = await sessions.get(context, who.user_id)
        quantity = data.get("quantity") if data and data.get("flow") == "order" \
            and data.get("product_id") == product_id else 1
        await sessions.clear(context, who.user_id)
        await add_to_cart(update, context, product_id,
                          quantity if isinstance(quantity, int) else 1)
    elif action in ("inc", "dec") and product_id is not None:
        await _change(update, context, product_id, 1 if action == "inc" else -1)
    elif action == "rm" and product_id is not None:
        await _change(update, context, product_id, None)
    elif action == "clr":
        await runtime.call(cart.clear, runtime.redis, who.user_id)
        await show_cart(update, context)
    elif action == "co":
        items = await runtime.call(cart.lines, runtime.engine, runtime.redis, who.user_id)
        await start_checkout(update, context, "cart", list(items.items()))
    elif action == "sum":
        await show_summary(update, context)
    elif action == "v":
        stored = await sessions.update(context, who.user_id, lambda cur: {
            **cur, "step": "voucher"} if cur and cur.get("flow") == "checkout" else cur)
        if not stored or stored.get("flow") != "checkout":
            await show_cart(update, context)
            return
        await reply(update, t(context, "checkout.voucher_prompt"), InlineKeyboardMarkup([[
            keyboards.button(who.language, "button.back_to_summary", "k:sum")]]))
    elif action == "vx":
        await sessions.update(context, who.user_id, lambda cur: {
            **cur, "voucher": None, "voucher_data": None}
            if cur and cur.get("flow") == "checkout" else cur)
        await show_summary(update, context)
    elif action == "back":
        await _back(update, context)
    elif action == "x":
        await sessions.clear(context, who.user_id)
        await reply(update, t(context, "checkout.cancelled"), keyboards.main_menu(who.language))
    elif action == "po":
        await _show_pending(update, context)
    elif action == "pc":
        await runtime.enqueue("quickcart.cancel_order", user_id=who.user_id,
                              idempotency_key=intent_key(update.update_id))
        await reply(update, t(context, "checkout.pending_cancelling"), InlineKeyboardMarkup([[
            keyboards.button(who.language, "button.continue", "k:sum")]]))
    else:
        await show_cart(update, context)


async def _answer(query: Any) -> None:
    # Already answered (a placing double tap) or too old: nothing to acknowledge.
    with contextlib.suppress(BadRequest):
        await query.answer()
