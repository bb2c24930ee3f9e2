"""Browsing: categories, best sellers, all products (paginated), product pages, /stock."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot import keyboards
from bot.runtime import rt, t, viewer
from quickcart.adapters import redis_store
from quickcart.domain.money import format_idr
from quickcart.i18n import N_
from quickcart.services import catalog


async def reply(update: Update, text: str,
                markup: InlineKeyboardMarkup | None = None) -> int | None:
    """Edit the pressed message in place, or send a new one for a typed message; returns the
    id of the message that now shows `text` (None without a chat)."""
    query = update.callback_query
    message = query.message if query is not None else None
    if query is not None and message is not None and getattr(message, "text", None):
        try:
            await query.edit_message_text(text, parse_mode="HTML", reply_markup=markup)
            return int(message.message_id)
        except BadRequest as exc:
            if "not modified" in str(exc).lower():
                return int(message.message_id)  # the same screen pressed twice
            # too old to edit, deleted...: answer with a new message instead
    if update.effective_chat is None:
        return None
    sent = await update.effective_chat.send_message(text, parse_mode="HTML",
                                                    reply_markup=markup)
    return int(sent.message_id)


def _priced(context: ContextTypes.DEFAULT_TYPE, card: catalog.ProductCard, key: str,
            discounted_key: str, **params: object) -> str:
    """A product text with its price; a discounted one shows the old price struck through."""
    if card.original_price is not None:
        return t(context, discounted_key, name=card.name, product_id=card.product_id,
                 price=str(card.price), old_price=format_idr(card.original_price), **params)
    return t(context, key, name=card.name, product_id=card.product_id, price=str(card.price),
             **params)


async def show_categories(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the categories as buttons."""
    runtime = rt(context)
    lang = viewer(context).language
    names = await runtime.call(catalog.categories, runtime.engine)
    if not names:
        await reply(update, t(context, "catalog.empty"), keyboards.main_menu(lang))
        return
    rows = [[InlineKeyboardButton(name[:60], callback_data=f"c:cat:{i}:0")]
            for i, name in enumerate(names)]
    rows.append([keyboards.button(lang, "button.back", "m:home")])
    await reply(update, t(context, "catalog.categories"), InlineKeyboardMarkup(rows))


async def show_list(update: Update, context: ContextTypes.DEFAULT_TYPE, kind: str, page: int,
                    category_index: int | None = None) -> None:
    """One page of products (kind: all, best, or cat with a category index)."""
    runtime = rt(context)
    who = viewer(context)
    category = None
    if kind == "cat":
        names = await runtime.call(catalog.categories, runtime.engine)
        if category_index is None or not 0 <= category_index < len(names):
            await show_categories(update, context)
            return
        category = names[category_index]
    # pagination:{user}:{list}: the list is computed when the user opens it (page 0, or the
    # stored one expired) and the prev/next buttons page through the stored ids.
    list_context = f"cat:{category_index}" if kind == "cat" else kind
    state = None
    if page > 0:
        state = await runtime.call(redis_store.pagination_load, runtime.redis, who.user_id,
                                   list_context, page)
    if state is None:
        ids = await runtime.call(catalog.list_product_ids, runtime.engine,
                                 category=category, best=kind == "best")
        state = await runtime.call(redis_store.pagination_store, runtime.redis, who.user_id,
                                   list_context, ids, catalog.PAGE_SIZE, page)
    page, pages = int(state["page"]), int(state["total_pages"])
    cards = await runtime.call(catalog.cards, runtime.engine,
                               redis_store.page_items(state), who.role)
    if not cards:
        await reply(update, t(context, "catalog.empty"), keyboards.main_menu(who.language))
        return
    title_key = {"all": N_("catalog.all_products"), "best": N_("catalog.best_sellers"),
                 "cat": N_("catalog.category")}[kind]
    lines = [t(context, title_key, category=category or "", page=page + 1, pages=pages), ""]
    lines += [_priced(context, c, N_("catalog.line"), N_("catalog.line_discounted"),
                      stock=c.stock) for c in cards]
    rows = [[InlineKeyboardButton(f"{c.product_id}. {c.name}"[:60],
                                  callback_data=f"c:p:{c.product_id}")] for c in cards]
    prefix = f"c:cat:{category_index}" if kind == "cat" else f"c:{kind}"
    rows.append(keyboards.pager(who.language, prefix, page, pages))
    back = [keyboards.button(who.language, "button.back", "m:home")]
    if kind == "best":
        back.append(keyboards.button(who.language, "button.top_buyers", "c:top"))
    rows.append(back)
    await reply(update, "\n".join(lines), InlineKeyboardMarkup(rows))


async def show_product(update: Update, context: ContextTypes.DEFAULT_TYPE,
                       product_id: int) -> None:
    """The product page: name, price for the viewer's role, stock, sold, description."""
    runtime = rt(context)
    who = viewer(context)
    card = await runtime.call(catalog.product, runtime.engine, product_id, who.role,
                              runtime.redis)
    if card is None:
        await reply(update, t(context, "error.product_not_found", product_id=product_id),
                    keyboards.main_menu(who.language))
        return
    text = _priced(context, card, N_("catalog.product"), N_("catalog.product_discounted"),
                   stock=card.stock, sold=card.sold, description=card.description or "")
    rows = []
    if card.stock > 0:
        rows.append([keyboards.button(who.language, "button.buy", f"o:buy:{card.product_id}"),
                     keyboards.button(who.language, "button.add_to_cart",
                                      f"k:add:{card.product_id}")])
    else:
        # Out of stock: "🔔 Kabari saya" (bot/handlers/restock.py) tells them when it is back.
        rows.append([keyboards.button(who.language, "button.notify_me",
                                      f"n:watch:{card.product_id}"),
                     keyboards.button(who.language, "button.all_products", "c:all:0")])
    rows.append([keyboards.button(who.language, "button.cart", "k:view"),
                 keyboards.button(who.language, "button.back", "m:home")])
    await reply(update, text, InlineKeyboardMarkup(rows))


async def show_top_buyers(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Top 10 shoppers by amount paid this month, names masked, with their orders."""
    runtime = rt(context)
    lang = viewer(context).language
    board = await runtime.call(catalog.top_buyers, runtime.engine)
    lines = [t(context, "catalog.top_buyers_title"), ""]
    lines += [t(context, "catalog.top_buyer_line", rank=n, name=b.masked_name,
                orders=b.orders, total=b.total) for n, b in enumerate(board, 1)]
    if not board:
        lines.append(t(context, "catalog.top_buyers_empty"))
    await reply(update, "\n".join(lines), InlineKeyboardMarkup([[
        keyboards.button(lang, "button.back", "c:best:0")]]))


async def show_stock(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stock and STOK: free units per active product."""
    runtime = rt(context)
    rows = await runtime.call(catalog.stock_overview, runtime.engine)
    if not rows:
        await reply(update, t(context, "catalog.empty"))
        return
    lines = [t(context, "catalog.stock_title")]
    lines += [t(context, "catalog.stock_line", product_id=i, name=n, stock=s) for i, n, s in rows]
    await reply(update, "\n".join(lines))


async def stock_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stock."""
    await show_stock(update, context)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """c:cats, c:all:<p>, c:best:<p>, c:cat:<i>:<p>, c:p:<id>, c:top."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    parts = query.data.split(":")
    try:
        if parts[1] == "cats":
            await show_categories(update, context)
        elif parts[1] in ("all", "best"):
            await show_list(update, context, parts[1], int(parts[2]))
        elif parts[1] == "cat":
            await show_list(update, context, "cat", int(parts[3]), int(parts[2]))
        elif parts[1] == "p":
            await show_product(update, context, int(parts[2]))
        elif parts[1] == "top":
            await show_top_buyers(update, context)
    except (IndexError, ValueError):
        await reply(update, t(context, "error.session_expired"),
                    keyboards.main_menu(viewer(context).language))
