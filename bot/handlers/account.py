"""AKUN: profile, paginated history with re-send, deposit, profile edits, language, export,
erasure, and KIRIM PESAN to the admins."""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardMarkup, Update
from telegram.ext import ContextTypes

from bot import keyboards, sessions
from bot.handlers.catalog import reply
from bot.runtime import intent_key, rt, t, viewer
from quickcart.i18n import N_, format_datetime
from quickcart.messages import render
from quickcart.services import account

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


async def show_history(update: Update, context: ContextTypes.DEFAULT_TYPE, page: int) -> None:
    """One page of orders, with a re-send button for each delivered one."""
    runtime = rt(context)
    who = viewer(context)
    lines, total = await runtime.call(account.history, runtime.engine, who.user_id, page)
    if not lines:
        await reply(update, t(context, "account.history_empty"))
        return
    pages = max(1, -(-total // account.HISTORY_PAGE))
    text = [t(context, "account.history", page=page + 1, pages=pages), ""]
    text += [t(context, "account.history_line", invoice_id=h.invoice_id, status=h.status,
               total=str(h.total), date=format_datetime(h.created_at)) for h in lines]
    rows = [[keyboards.button(who.language, "button.resend", f"a:rs:{h.order_id}",
                              invoice_id=h.invoice_id)] for h in lines if h.status == "paid"]
    rows.append(keyboards.pager(who.language, "a:hist", page, pages))
    await reply(update, "\n".join(text), InlineKeyboardMarkup(rows))


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
    if not digits.isdigit():
        await reply(update, t(context, "error.invalid_amount"))
        return
    await sessions.clear(context, who.user_id)
    await rt(context).enqueue("quickcart.create_deposit", user_id=who.user_id, amount=digits,
                              idempotency_key=intent_key(update.update_id))
    await reply(update, t(context, "account.deposit_processing"))


async def contact_typed(update: Update, context: ContextTypes.DEFAULT_TYPE, value: str) -> None:
    """KIRIM PESAN: forward the typed text to the admins."""
    who = viewer(context)
    await sessions.clear(context, who.user_id)
    await rt(context).enqueue("quickcart.contact_admins", user_id=who.user_id, name=who.name,
                              text=value[:3000], idempotency_key=intent_key(update.update_id))


async def start_contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """KIRIM PESAN: ask for the text."""
    await sessions.start(context, viewer(context).user_id, "contact")
    await reply(update, t(context, "contact.prompt"))


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
    """a:hist:<p>, a:rs:<order>, a:dep, a:edit, a:skip:<field>, a:langs, a:lang:<c>, a:erase."""
    query = update.callback_query
    assert query is not None and query.data is not None
    parts = query.data.split(":")
    who = viewer(context)
    runtime = rt(context)
    if parts[1:2] != ["rs"]:
        await query.answer()
    try:
        action = parts[1]
        if action == "hist":
            await show_history(update, context, int(parts[2]))
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


