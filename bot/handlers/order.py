"""Buying one product: the quantity picker (then the checkout summary, bot/handlers/cart.py),
and the QR photo's buttons (Cek status always answers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers import cart as cart_handlers
from bot.handlers import catalog as catalog_handlers
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.adapters import redis_store
from quickcart.i18n import N_
from quickcart.services import account, catalog, orders

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
                        quantity: int, notice: str | None = None) -> None:
    """The quantity picker (never above free stock; a typed number is the quantity)."""
    card = await _card(context, product_id)
    if card is None:
        await _expired(update, context)
        return
    lang = viewer(context).language
    if card.stock <= 0:
        markup = InlineKeyboardMarkup([
            [keyboards.button(lang, "button.all_products", "c:all:0"),
             keyboards.button(lang, "button.cart", "k:view")]])
        await reply(update, t(context, "error.out_of_stock", product_name=card.name), markup)
        return
    text = t(context, "order.quantity", name=card.name, unit_price=str(card.price),
             quantity=quantity, subtotal=str(card.price * quantity), stock=card.stock)
    if notice:
        text = f"{notice}\n\n{text}"
    await reply(update, text, keyboards.quantity(lang, product_id))


async def _set_quantity(context: ContextTypes.DEFAULT_TYPE, product_id: int,
                        change: Callable[[int], int]) -> tuple[int, int] | None:
    """Apply `change` to the session's quantity, kept within 1..free stock; returns
    (quantity, free stock), or None when the session is stale or the product is gone."""
    card = await _card(context, product_id)
    if card is None:
        return None
    limit = max(1, min(MAX_QUANTITY, card.stock))

    def bump(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if not current or current.get("flow") != "order" \
                or current.get("product_id") != product_id:
            return current
        quantity = min(limit, max(1, change(int(current.get("quantity", 1)))))
        return {**current, "quantity": quantity}

    stored = await sessions.update(context, viewer(context).user_id, bump)
    if not stored or stored.get("flow") != "order" or stored.get("product_id") != product_id:
        return None
    return int(stored["quantity"]), card.stock


async def quantity_typed(update: Update, context: ContextTypes.DEFAULT_TYPE,
                         data: dict[str, Any], text: str) -> None:
    """A typed number while choosing a quantity is the quantity (capped by free stock);
    anything else gets the hint of what is expected."""
    product_id = int(data["product_id"])
    clean = text.strip()
    if not clean.isdigit() or len(clean) > 7 or int(clean) < 1:
        await show_quantity(update, context, product_id, int(data.get("quantity", 1)),
                            t(context, "order.quantity_hint"))
        return
    wanted = int(clean)
    done = await _set_quantity(context, product_id, lambda _q: wanted)
    if done is None:
        await _expired(update, context)
        return
    quantity, stock = done
    notice = t(context, "order.quantity_capped", available=stock) if quantity < wanted else None
    await show_quantity(update, context, product_id, quantity, notice)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """o:buy, o:q, o:qok (all carry the product id); older summary buttons (o:v, o:vs, o:pq,
    o:pb, o:pbok) answer with the current summary or the product."""
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
        # A stale button: the current state of what it was about, never a broken flow.
        current = await sessions.get(context, who.user_id)
        if current and current.get("flow") == "checkout":
            await cart_handlers.show_summary(update, context)
        else:
            await catalog_handlers.show_product(update, context, product_id)
        return
    if action == "q":
        delta = int(parts[3]) if len(parts) > 3 and parts[3].lstrip("-").isdigit() \
            and len(parts[3]) <= 4 else 0
        done = await _set_quantity(context, product_id, lambda q: q + delta)
        if done is None:
            await _expired(update, context)
            return
        notice = (t(context, "order.quantity_capped", available=done[1])
                  if delta > 0 and done[0] == data["quantity"] else None)
        await show_quantity(update, context, product_id, done[0], notice)
    elif action == "qok":
        await cart_handlers.start_checkout(update, context, "direct",
                                           [(product_id, int(data["quantity"]))])
    else:
        await show_quantity(update, context, product_id, int(data["quantity"]))


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
        state = await runtime.call(orders.payment_status, runtime.engine, who.user_id, invoice)
        await query.answer(t(context, "payment.checking"))
        if state is None:
            await reply(update, t(context, "error.session_expired"),
                        keyboards.main_menu(who.language))
            return
        if state["status"] == "pending":
            # Ask the gateway too: a payment it has but whose webhook was lost settles now.
            await runtime.enqueue("quickcart.confirm_payment", invoice_id=invoice)
        await reply(update, t(context, STATUS_KEYS[state["status"]], **state),
                    _status_buttons(who.language, state))
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


STATUS_KEYS = {"pending": N_("payment.status_pending"), "paid": N_("payment.status_paid"),
               "expired": N_("payment.status_expired"),
               "cancelled": N_("payment.status_cancelled")}


def _status_buttons(lang: str, state: dict[str, Any]) -> InlineKeyboardMarkup:
    """Next steps after "Cek status": check again / cancel while pending; history or the
    menu after."""
    if state["status"] == "pending":
        invoice = state["invoice_id"]
        return InlineKeyboardMarkup([[
            keyboards.button(lang, "button.check_status", f"pay:check:{invoice}"),
            keyboards.button(lang, "button.cancel", f"pay:cancel:{invoice}")]])
    return InlineKeyboardMarkup([[keyboards.button(lang, "button.history", "a:hist:0"),
                                  keyboards.button(lang, "button.main_menu", "m:home")]])
