"""Inline and reply keyboards; every label comes from the message catalog."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyKeyboardMarkup

from quickcart.messages import LANGUAGES, render

MENU_LABELS = ("kb.list_products", "kb.stock", "kb.account", "kb.contact")


def label_key(text: str) -> str | None:
    """The reply-keyboard key whose label (in any language) is `text`."""
    clean = text.strip().upper()
    for key in MENU_LABELS:
        if any(render(key, lang).upper() == clean for lang in LANGUAGES):
            return key
    return None


def button(lang: str, key: str, data: str, **params: object) -> InlineKeyboardButton:
    """One inline button with a catalog label."""
    return InlineKeyboardButton(render(key, lang, **params), callback_data=data)


def main_menu(lang: str) -> InlineKeyboardMarkup:
    """Kategori / Terlaris / Semua Produk."""
    return InlineKeyboardMarkup([
        [button(lang, "button.categories", "c:cats"),
         button(lang, "button.best_sellers", "c:best:0")],
        [button(lang, "button.all_products", "c:all:0"), button(lang, "button.cart", "k:view")],
    ])


def reply_menu(lang: str, product_ids: list[int]) -> ReplyKeyboardMarkup:
    """The persistent keyboard: the four menus and shortcuts to in-stock products."""
    rows = [[render("kb.list_products", lang), render("kb.stock", lang)],
            [render("kb.account", lang), render("kb.contact", lang)]]
    ids = [str(i) for i in product_ids[:24]]
    rows += [ids[i:i + 8] for i in range(0, len(ids), 8)]
    return ReplyKeyboardMarkup(rows, resize_keyboard=True, is_persistent=True,
                               input_field_placeholder=render("kb.placeholder", lang))


def pager(lang: str, prefix: str, page: int, pages: int) -> list[InlineKeyboardButton]:
    """[KEMBALI] [SELANJUTNYA n/N] (callback `prefix:<page>`, n = this page, 1-based).

    KEMBALI is the previous page; page 1 has none (each list has its own ⬅️ Kembali to the
    menu it came from, so there is one way back, not two). The last page (and a list of one
    page) shows the plain `N/N` indicator instead of SELANJUTNYA, so no button claims to go
    somewhere it does not. The screen behind every page button is recomputed when pressed, so
    a stale one shows the list as it is now."""
    total = max(pages, 1)
    row = []
    if page > 0:
        row.append(button(lang, "button.prev", f"{prefix}:{page - 1}"))
    if page + 1 < total:
        row.append(button(lang, "button.next", f"{prefix}:{page + 1}", page=page + 1,
                          pages=total))
    else:
        row.append(button(lang, "button.page", "noop", page=page + 1, pages=total))
    return row


def quantity(lang: str, product_id: int) -> InlineKeyboardMarkup:
    """[-] [+] [+2] [+5] [+10], add to cart, go to payment (the summary), back, cancel."""
    deltas = [("−", -1), ("+", 1), ("+2", 2), ("+5", 5), ("+10", 10)]
    return InlineKeyboardMarkup([
        [InlineKeyboardButton(text, callback_data=f"o:q:{product_id}:{d}") for text, d in deltas],
        [button(lang, "button.add_to_cart", f"k:addq:{product_id}")],
        [button(lang, "button.to_payment", f"o:qok:{product_id}")],
        [button(lang, "button.back", f"c:p:{product_id}"),
         button(lang, "button.cancel", "m:home")],
    ])


def account(lang: str) -> InlineKeyboardMarkup:
    """History, deposit, profile edit, language."""
    return InlineKeyboardMarkup([
        [button(lang, "button.history", "a:hist:0"), button(lang, "button.deposit", "a:dep")],
        [button(lang, "button.edit_profile", "a:edit"),
         button(lang, "button.language", "a:langs")],
    ])


def languages() -> InlineKeyboardMarkup:
    """Bahasa Indonesia / English: each language named in its own catalog."""
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(render("language.name", code), callback_data=f"a:lang:{code}")
        for code in LANGUAGES]])


def skip(lang: str, data: str) -> InlineKeyboardMarkup:
    """A single Skip button."""
    return InlineKeyboardMarkup([[button(lang, "button.skip", data)]])
