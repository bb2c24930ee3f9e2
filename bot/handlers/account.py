"""AKUN: profile, paginated history with re-send and help, deposit, profile edits, language,
export, erasure. (KIRIM PESAN is a support ticket: bot/handlers/support.py.)"""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.i18n import N_, format_datetime
from quickcart.messages import render
from quickcart.services import account, order_lookup

ONBOARDING = ("name", "whatsapp_number", "email")
PROMPTS = {"name": N_("onboarding.name"), "whatsapp_number": N_("onboarding.whatsapp"),
           "email": N_("onboarding.email")}


async def show_profile(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The profile screen with history / deposit / edit / language buttons."""
    runtime = rt(context)
    who = viewer(context)
    data = await runtime.call(account.profile, runtime.engine, who.user_id)
    if data is None:
        await reply(update, t(context, "error.user_not_registered"))
        return
    await reply(update, t(context, "account.profile", **data), keyboards.account(who.language))


# Catalog words for the order statuses and ledger reasons the history shows (an unknown one
# shows as stored rather than failing).
ORDER_STATUSES = {"pending": N_("order.status.pending"), "paid": N_("order.status.paid"),
                  "expired": N_("order.status.expired"),
                  "cancelled": N_("order.status.cancelled")}
LEDGER_REASONS = {"deposit": N_("history.reason.deposit"),
                  "purchase": N_("history.reason.purchase"),
                  "refund": N_("history.reason.refund"),
                  "admin_credit": N_("history.reason.admin_credit"),
                  "admin_debit": N_("history.reason.admin_debit"),
                  "late_payment": N_("history.reason.late_payment")}


def _word(context: ContextTypes.DEFAULT_TYPE, keys: dict[str, str], value: str) -> str:
    return t(context, keys[value]) if value in keys else value


async def show_history(update: Update, context: ContextTypes.DEFAULT_TYPE, page: int) -> None:
    """One page of orders and balance movements, newest first: each order opens its details;
    a paid one also offers its delivery again and Bantuan / Garansi."""
    runtime = rt(context)
    who = viewer(context)
    lines, total = await runtime.call(account.history, runtime.engine, who.user_id, page)
    pages = max(1, -(-total // account.HISTORY_PAGE))
    if not lines and total and page > 0:  # a stale page past the end: show the last one
        await show_history(update, context, pages - 1)
        return
    if not lines:
        await reply(update, t(context, "account.history_empty"), InlineKeyboardMarkup(
            [[keyboards.button(who.language, "button.back", "m:home")]]))
        return
    orders = [h for h in lines if h.kind == "order" and h.order_id is not None]
    refunded = await runtime.call(order_lookup.refunded_totals, runtime.engine,
                                  [h.order_id for h in orders])
    text = [t(context, "account.history", page=page + 1, pages=pages), ""]
    rows = []
    for h in lines:
        date = format_datetime(h.created_at)
        if h.order_id is None:  # a balance movement
            text.append(t(context, "account.history_movement",
                          reason=_word(context, LEDGER_REASONS, h.word),
                          sign="+" if h.amount > 0 else "−", amount=abs(h.amount), date=date,
                          ref=f" ({h.invoice_id})" if h.invoice_id else "",
                          balance=h.balance_after))
            continue
        text.append(t(context, "account.history_line", invoice_id=h.invoice_id,
                      status=_word(context, ORDER_STATUSES, h.word), total=h.amount, date=date))
        if h.order_id in refunded:  # refunds go to the balance; the order shows them
            text.append(t(context, "support.history_refunded", amount=refunded[h.order_id]))
        rows.append([keyboards.button(who.language, "button.order_detail",
                                      f"a:o:{h.order_id}:{page}", invoice_id=h.invoice_id)])
        if h.word == "paid":  # open its delivery again, or ask for help / warranty about it
            rows.append(_after_sales_row(who.language, h.order_id, str(h.invoice_id)))
    rows.append([keyboards.button(who.language, "button.back", "a:prof")])  # to the profile
    rows.append(keyboards.pager(who.language, "a:hist", page, pages))
    await reply(update, "\n".join(text), InlineKeyboardMarkup(rows))


def _after_sales_row(lang: str, order_id: int, invoice_id: str) -> list[Any]:
    return [keyboards.button(lang, "button.resend", f"a:rs:{order_id}", invoice_id=invoice_id),
            keyboards.button(lang, "button.support_help", f"sup:o:{order_id}")]


async def show_order(update: Update, context: ContextTypes.DEFAULT_TYPE, order_id: int,
                     page: int) -> None:
    """One of the shopper's orders from the history: lines, amounts, status; a paid one offers
    its delivery again and Bantuan / Garansi; ⬅️ Kembali returns to that history page."""
    runtime = rt(context)
    who = viewer(context)
    back = [keyboards.button(who.language, "button.back", f"a:hist:{page}")]
    detail = await runtime.call(account.order_detail, runtime.engine, who.user_id, order_id)
    if detail is None:  # unknown, or someone else's order
        await reply(update, t(context, "error.order_not_found"), InlineKeyboardMarkup([back]))
        return
    items = [t(context, "account.order_detail_line", name=d.product_name, quantity=d.quantity,
               price=d.unit_price, total=d.total) for d in detail.lines]
    text = t(context, "account.order_detail", invoice_id=detail.invoice_id,
             status=_word(context, ORDER_STATUSES, detail.status),
             date=format_datetime(detail.created_at), method=detail.payment_method,
             lines="\n".join(items), subtotal=detail.subtotal,
             voucher_discount=detail.voucher_discount, payment_fee=detail.payment_fee,
             total_bill=detail.total_bill)
    rows = [_after_sales_row(who.language, detail.order_id, detail.invoice_id)] \
        if detail.status == "paid" else []
    await reply(update, text, InlineKeyboardMarkup([*rows, back]))


async def ask_next_profile_field(update: Update, context: ContextTypes.DEFAULT_TYPE,
                                 after: str | None) -> None:
    """Onboarding: prompt the field after `after`, or finish."""
    who = viewer(context)
    index = 0 if after is None else ONBOARDING.index(after) + 1
    if index >= len(ONBOARDING):
        await sessions.clear(context, who.user_id)
        await reply(update, t(context, "onboarding.done"))
        return
    field = ONBOARDING[index]
    await sessions.start(context, who.user_id, "onboarding", field=field)
    await reply(update, t(context, PROMPTS[field]), keyboards.skip(who.language, f"a:skip:{field}"))


async def profile_typed(update: Update, context: ContextTypes.DEFAULT_TYPE,
                        data: dict[str, Any], value: str) -> None:
    """A typed onboarding answer: enqueue the write, move on."""
    field = str(data.get("field"))
    if field not in ONBOARDING:
        await sessions.clear(context, viewer(context).user_id)
        return
    await rt(context).enqueue("quickcart.update_profile", user_id=viewer(context).user_id,
                              field=field, value=value[:255],
                              idempotency_key=intent_key(update.update_id))
    await ask_next_profile_field(update, context, field)


async def deposit_typed(update: Update, context: ContextTypes.DEFAULT_TYPE, value: str) -> None:
    """A typed deposit amount: enqueue create_deposit (the worker validates the range)."""
    who = viewer(context)
    digits = value.strip().replace(".", "").replace(",", "").removeprefix("Rp").strip()
    if not digits.isdigit():  # the flow stays open: type again, or leave
        await reply(update, t(context, "error.invalid_amount"), InlineKeyboardMarkup([[
            keyboards.button(who.language, "button.cancel", "m:home")]]))
        return
    await sessions.clear(context, who.user_id)
    await rt(context).enqueue("quickcart.create_deposit", user_id=who.user_id, amount=digits,
                              idempotency_key=intent_key(update.update_id))
    await reply(update, t(context, "account.deposit_processing"))


async def set_language(update: Update, context: ContextTypes.DEFAULT_TYPE, code: str) -> None:
    """Enqueue the language change and confirm in the new language."""
    who = viewer(context)
    await rt(context).enqueue("quickcart.set_language", user_id=who.user_id, language=code,
                              idempotency_key=intent_key(update.update_id))
    await reply(update, render("account.language_set", code))


async def lang_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/lang [id|en]: switch directly, or offer both."""
    args = [a.lower() for a in (context.args or [])]
    if args and args[0] in ("id", "en"):
        await set_language(update, context, args[0])
    else:
        await reply(update, t(context, "account.choose_language"), keyboards.languages())


async def export_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/export: the user's data as JSON, sent by a worker."""
    await rt(context).enqueue("quickcart.export_user", user_id=viewer(context).user_id,
                              idempotency_key=intent_key(update.update_id))
    await reply(update, t(context, "account.export_queued"))


async def delete_me_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/delete_me: ask for confirmation first."""
    who = viewer(context)
    markup = InlineKeyboardMarkup([[
        keyboards.button(who.language, "button.yes_delete", "a:erase"),
        keyboards.button(who.language, "button.back", "m:home")]])
    await reply(update, t(context, "account.delete_confirm"), markup)


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """AKUN buttons: a:prof, a:hist, a:o (order), a:rs, a:dep, a:edit, a:skip, a:langs, a:lang,
    a:erase."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    who = viewer(context)
    runtime = rt(context)
    if parts[1:2] != ["rs"]:
        await query.answer()
    try:
        action = parts[1]
        if action == "prof":
            await show_profile(update, context)
        elif action == "hist":
            await show_history(update, context, int(parts[2]))
        elif action == "o":
            await show_order(update, context, int(parts[2]), int(parts[3]))
        elif action == "rs":
            await runtime.enqueue("quickcart.deliver_order", order_id=int(parts[2]), resend=True,
                                  requester_id=who.user_id)
            await query.answer(t(context, "account.resend_queued"))
        elif action == "dep":
            await sessions.start(context, who.user_id, "deposit")
            await reply(update, t(context, "account.deposit_prompt"))
        elif action == "edit":
            await ask_next_profile_field(update, context, None)
        elif action == "skip":
            data = await sessions.get(context, who.user_id)
            if not data or data.get("flow") != "onboarding" or data.get("field") != parts[2]:
                await sessions.clear(context, who.user_id)
                await reply(update, t(context, "error.session_expired"),
                            keyboards.main_menu(who.language))
                return
            await ask_next_profile_field(update, context, parts[2])
        elif action == "langs":
            await reply(update, t(context, "account.choose_language"), keyboards.languages())
        elif action == "lang" and parts[2] in ("id", "en"):
            await set_language(update, context, parts[2])
        elif action == "erase":
            await runtime.enqueue("quickcart.erase_user", user_id=who.user_id,
                                  idempotency_key=intent_key(update.update_id))
            await reply(update, t(context, "account.delete_queued"))
    except (IndexError, ValueError):
        await reply(update, t(context, "error.session_expired"), keyboards.main_menu(who.language))


