"""/start (welcome, onboarding offer), the main menu, typed text routing, unknown commands and
the global error handler."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers import account as account_handlers
from bot.handlers import audit as audit_handlers
from bot.handlers import cart as cart_handlers
from bot.handlers import catalog as catalog_handlers
from bot.handlers import order as order_handlers
from bot.handlers import support as support_handlers
from bot.handlers.catalog import reply
from bot.runtime import lang, rt, t, viewer
from quickcart.messages import render
from quickcart.services import catalog

log = logging.getLogger(__name__)


async def send_reply_keyboard(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The persistent reply keyboard (menus + in-stock product ids)."""
    runtime = rt(context)
    ids = await runtime.call(catalog.in_stock_ids, runtime.engine)
    if update.effective_chat is not None:
        await update.effective_chat.send_message(
            t(context, "menu.keyboard"), reply_markup=keyboards.reply_menu(lang(context), ids))


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start: welcome with the shop's numbers, the menus, and (first time) the profile offer."""
    runtime = rt(context)
    who = viewer(context)
    await sessions.clear(context, who.user_id)
    user = update.effective_user
    if user is not None and not (context.user_data or {}).get("new_user"):
        # A known user's /start (Telegram's "Restart" after unblocking the bot) refreshes the
        # row: broadcasts reach them again.
        await runtime.enqueue("quickcart.register_user", user_id=user.id, name=user.full_name,
                              username=user.username)
    if who.role == "admin":
        # Notices kept while Telegram did not know this admin's chat are sent now.
        await runtime.enqueue("quickcart.release_admin_notices", chat_id=who.user_id)
    users, transactions = await runtime.call(catalog.shop_counts, runtime.engine,
                                              runtime.redis)
    docs_url = runtime.settings.documentation_url
    lines = [t(context, "welcome", store_name=runtime.settings.store_name, name=who.name,
               users=users, transactions=transactions)]
    if docs_url:
        lines.append(t(context, "welcome.docs", url=docs_url))
    lines.append(t(context, "welcome.footer"))
    await reply(update, "\n".join(lines), keyboards.main_menu(who.language))
    await send_reply_keyboard(update, context)
    if context.user_data is not None and context.user_data.get("new_user"):
        markup = InlineKeyboardMarkup([[
            keyboards.button(who.language, "button.fill_profile", "a:edit"),
            keyboards.button(who.language, "button.skip", "m:home")]])
        await reply(update, t(context, "onboarding.offer"), markup)


async def on_menu_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """m:home and the pager's noop."""
    query = update.callback_query
    assert query is not None
    await query.answer()
    if query.data == "m:home":
        await sessions.clear(context, viewer(context).user_id)
        await reply(update, t(context, "menu.main"), keyboards.main_menu(lang(context)))


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Typed text: reply-keyboard menus, then the open flow's step, then a product id."""
    message = update.effective_message
    if message is None or message.text is None:
        return
    text = message.text.strip()
    who = viewer(context)
    menu = keyboards.label_key(text)
    if menu is not None:
        await sessions.clear(context, who.user_id)
        if menu == "kb.list_products":
            await catalog_handlers.show_list(update, context, "all", 0)
        elif menu == "kb.stock":
            await catalog_handlers.show_stock(update, context)
        elif menu == "kb.account":
            await account_handlers.show_profile(update, context)
        else:
            await support_handlers.start_contact(update, context)
        return
    data = await sessions.get(context, who.user_id)
    flow = data.get("flow") if data else None
    if data and flow == "checkout" and data.get("step") == "voucher":
        await cart_handlers.voucher_typed(update, context, data, text)
        return
    if data and flow == "order" and data.get("step") == "quantity" \
            and isinstance(data.get("product_id"), int):
        # While choosing a quantity a typed number is the quantity, not a product id.
        await order_handlers.quantity_typed(update, context, data, text)
        return
    if data and flow == "deposit":
        await account_handlers.deposit_typed(update, context, text)
        return
    if data and flow == support_handlers.FLOW:
        await support_handlers.text_typed(update, context, data, text)
        return
    if data and flow == "onboarding":
        await account_handlers.profile_typed(update, context, data, text)
        return
    if text.isdigit() and len(text) <= 10:
        await catalog_handlers.show_product(update, context, int(text))
        return
    if data and flow == "checkout":
        await cart_handlers.show_summary(update, context, t(context, "checkout.hint"))
        return
    # Anything else: what is expected here, never "unknown command".
    await reply(update, t(context, "menu.text_hint"), keyboards.main_menu(who.language))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Any other /command, with the main menu; a non-admin's admin command is also audited
    (a task)."""
    await audit_handlers.note_attempt(update, context)
    await reply(update, t(context, "error.unknown_command"), keyboards.main_menu(lang(context)))


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure; the user only sees the polite generic apology."""
    log.error("update %s failed", getattr(update, "update_id", "?"), exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        try:
            await update.effective_chat.send_message(render("error.generic", lang(context)))
        except Exception:  # noqa: BLE001 - the apology itself failing must not loop
            log.warning("could not send the apology for update %s", update.update_id)
