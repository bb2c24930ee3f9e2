"""Ordering: quantity, summary, voucher, payment method, and the QR photo's buttons."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.adapters import redis_store
from quickcart.services import account, catalog

MAX_QUANTITY = 1000
PAY_CHECKS_PER_MINUTE = 5


async def _expired(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A stale or corrupt session: back to the main menu."""
    await sessions.clear(context, viewer(context).user_id)
    await reply(update, t(context, "error.session_expired"),
                keyboards.main_menu(viewer(context).language))


async def _order_session(context: ContextTypes.DEFAULT_TYPE,
                         product_id: int) -> dict[str, Any] | None:
    """The live order session for `product_id`, or None when stale."""
    data = await sessions.get(context, viewer(context).user_id)
    if not data or data.get("flow") != "order" or data.get("product_id") != product_id \
            or not isinstance(data.get("quantity"), int):
        return None
    return data


async def _card(context: ContextTypes.DEFAULT_TYPE, product_id: int) -> catalog.ProductCard | None:
    runtime = rt(context)
    return await runtime.call(catalog.product, runtime.engine, product_id, viewer(context).role)


async def show_quantity(update: Update, context: ContextTypes.DEFAULT_TYPE, product_id: int,
                        quantity: int) -> None:
    """The quantity picker."""
    card = await _card(context, product_id)
    if card is None:
        await _expired(update, context)
        return
    text = t(context, "order.quantity", name=card.name, unit_price=str(card.price),
             quantity=quantity, subtotal=str(card.price * quantity), stock=card.stock)
    await reply(update, text, keyboards.quantity(viewer(context).language, product_id))


async def show_summary(update: Update, context: ContextTypes.DEFAULT_TYPE,
                       data: dict[str, Any], then: str) -> None:
    """Unit price, quantity, subtotal, voucher; then the voucher question or payment methods."""
    product_id = int(data["product_id"])
    card = await _card(context, product_id)
    if card is None:
        await _expired(update, context)
        return
    quantity = int(data["quantity"])
    lang = viewer(context).language
    lines = [t(context, "order.summary", name=card.name, unit_price=str(card.price),
               quantity=quantity, subtotal=str(card.price * quantity),
               voucher=data.get("voucher") or t(context, "order.no_voucher")), ""]
    if then == "voucher":
        lines.append(t(context, "order.ask_voucher"))
        markup = keyboards.voucher_question(lang, product_id)
    else:
        lines.append(t(context, "order.choose_payment"))
        markup = keyboards.payment_methods(lang, product_id)
    await reply(update, "\n".join(lines), markup)


async def voucher_typed(update: Update, context: ContextTypes.DEFAULT_TYPE,
                        data: dict[str, Any], code: str) -> None:
    """A typed voucher code: remembered; the worker validates it with the order."""
    code = code.strip().upper()[:32]

    def put(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if not current or current.get("flow") != "order":
            return current
        return {**current, "voucher": code, "step": "payment"}

    stored = await sessions.update(context, viewer(context).user_id, put)
    if not stored or stored.get("flow") != "order":
        await _expired(update, context)
        return
    await show_summary(update, context, stored, then="payment")


async def _place(update: Update, context: ContextTypes.DEFAULT_TYPE, product_id: int,
                 method: str) -> None:
    """Take the order session (atomically, so a double tap places one order) and enqueue."""
    who = viewer(context)
    taken: dict[str, Any] = {}

    def take(current: dict[str, Any] | None) -> dict[str, Any] | None:
        taken.clear()
        if current and current.get("flow") == "order" \
                and current.get("product_id") == product_id:
            taken.update(current)
            return None
        return current

    await sessions.update(context, who.user_id, take)
    if not isinstance(taken.get("quantity"), int):
        await _expired(update, context)
        return
    await rt(context).enqueue(
        "quickcart.create_order", user_id=who.user_id, product_id=product_id,
        quantity=int(taken["quantity"]), payment_method=method,
        idempotency_key=intent_key(update.update_id), voucher_code=taken.get("voucher"))
    await reply(update, t(context, "order.processing"))


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """o:buy, o:q, o:qok, o:v, o:vs, o:pq, o:pb, o:pbok (all carry the product id)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    parts = query.data.split(":")
    try:
        action, product_id = parts[1], int(parts[2])
    except (IndexError, ValueError):
        await _expired(update, context)
        return
    who = viewer(context)
    if action == "buy":
        await sessions.start(context, who.user_id, "order", product_id=product_id, quantity=1,
                             step="quantity")
        await show_quantity(update, context, product_id, 1)
        return
    data = await _order_session(context, product_id)
    if data is None:
        await _expired(update, context)
        return
    if action == "q":
        delta = int(parts[3]) if len(parts) > 3 and parts[3].lstrip("-").isdigit() else 0

        def bump(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if not current or current.get("product_id") != product_id:
                return current
            quantity = min(MAX_QUANTITY, max(1, int(current.get("quantity", 1)) + delta))
            return {**current, "quantity": quantity}

        stored = await sessions.update(context, who.user_id, bump)
        if not stored or stored.get("product_id") != product_id:
            await _expired(update, context)
            return
        if stored["quantity"] != data["quantity"]:
            await show_quantity(update, context, product_id, int(stored["quantity"]))
    elif action == "qok":
        await show_summary(update, context, data, then="voucher")
    elif action == "v":
        await sessions.update(context, who.user_id,
                              lambda cur: {**cur, "step": "voucher"} if cur else cur)
        await reply(update, t(context, "order.voucher_prompt"))
    elif action == "vs":
        await show_summary(update, context, {**data, "voucher": None}, then="payment")
        await sessions.update(context, who.user_id,
                              lambda cur: {**cur, "voucher": None, "step": "payment"}
                              if cur else cur)
    elif action == "pq":
        await _place(update, context, product_id, "qris")
    elif action == "pb":
        card = await _card(context, product_id)
        runtime = rt(context)
        balance = await runtime.call(account.balance, runtime.engine, who.user_id)
        price = card.price if card else Decimal(0)
        await reply(update, t(context, "order.confirm_balance",
                              subtotal=str(price * int(data["quantity"])), balance=str(balance)),
                    keyboards.confirm_balance(who.language, product_id))
    elif action == "pbok":
        await _place(update, context, product_id, "account_balance")


async def on_payment_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """pay:check:<invoice> (at most 5/min) and pay:cancel:<invoice> on the QR photo."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":", 2)
    if len(parts) != 3 or not parts[2]:
        await query.answer()
        return
    action, invoice = parts[1], parts[2]
    runtime = rt(context)
    who = viewer(context)
    if action == "check":
        count = await runtime.call(redis_store.rate_hit, runtime.redis, who.user_id, "paycheck")
        if count > PAY_CHECKS_PER_MINUTE:
            await query.answer(t(context, "payment.too_many_checks"))
            return
        await runtime.enqueue("quickcart.confirm_payment", invoice_id=invoice)
        await query.answer(t(context, "payment.checking"))
    elif action == "cancel":
        if invoice.startswith("DP"):
            await runtime.enqueue("quickcart.cancel_deposit", user_id=who.user_id,
                                  invoice_id=invoice, idempotency_key=intent_key(update.update_id))
        else:
            order_id = await runtime.call(account.own_order_id, runtime.engine, who.user_id,
                                          invoice)
            if order_id is not None:
                await runtime.enqueue("quickcart.cancel_order", user_id=who.user_id,
                                      order_id=order_id,
                                      idempotency_key=intent_key(update.update_id))
        await query.answer(t(context, "payment.cancelling"))
    else:
        await query.answer()
