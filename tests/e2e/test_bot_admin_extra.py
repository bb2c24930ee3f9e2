"""The bot's stock, balance, message and product-edit admin commands, and the QRIS photo that
turns into a receipt when paid and into a notice when it expires (bot process + shop)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text

from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import buttons, content, last_id, make_admin, said, to_payment
from tests.support import wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py


def wrong_format(shop: Shop, admin: int, command: str, args: str) -> None:
    """A malformed command answers with the syntax and an example of that command."""
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, command, args)
    answer = said(shop, admin, "Format salah", after)
    assert f"/{command}" in content(answer)
    assert "Contoh:" in content(answer)


def add_units(shop: Shop, product_id: int, *contents: str) -> None:
    """Free units straight into the database (stock that arrives while a button waits)."""
    with shop.main.begin() as conn:
        for item in contents:
            conn.execute(text("INSERT INTO product_stocks (product_id, content) VALUES (:p, :c)"),
                         {"p": product_id, "c": item})


def show_again(shop: Shop, uid: int, message: dict[str, Any]) -> None:
    """The buttons `message` had when it was sent, back on it: what a second device that
    missed the edit still shows."""
    with shop.telegram.state.cond:
        stored = shop.telegram.state.find_message(uid, message["message_id"])
        assert stored is not None
        stored.reply_markup = message["reply_markup"]


def test_admin_stock_commands(shop: Shop, bot: Any) -> None:
    shop.add_product(11, price=5000, units=4)
    admin = make_admin(shop, 9101)
    shopper = shop.add_user(5101)
    shop.telegram.send_command(shopper, "delallstock", "11")
    said(shop, shopper, "Perintah tidak dikenal")

    # /delstock
    wrong_format(shop, admin, "delstock", "not-a-uuid")
    unit = shop.q("SELECT id FROM product_stocks WHERE content = 'KEY-11-1'")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delstock", str(unit))
    said(shop, admin, f"Stok {unit} (produk 11) dihapus", after)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 3
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delstock", str(unit))
    said(shop, admin, "Stok tidak ditemukan", after)

    # /exportstock
    wrong_format(shop, admin, "exportstock", "x")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "exportstock", "11")
    document = shop.telegram.wait_for_bot_message(
        admin, lambda m: m.get("document") is not None, after_message_id=after, timeout=30)
    assert "3 baris" in content(document)
    assert document["document"]["file_name"] == "stock-11.txt"
    data = shop.telegram.file_bytes(document["document"]["file_id"]).decode()
    assert sorted(data.split()) == ["KEY-11-2", "KEY-11-3", "KEY-11-4"]  # order unspecified

    # /delallstock
    wrong_format(shop, admin, "delallstock", "11|12")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delallstock", "11")
    confirm = said(shop, admin, "Hapus 3 stok", after)  # asks first (issue 23)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 3
    (data,) = [d for d in buttons(confirm) if d.startswith("ac:dall:11:")]  # carries a token
    assert len(data.encode()) <= 64
    shop.telegram.press_button(admin, confirm["message_id"], data)
    said(shop, admin, "3 stok belum terjual produk 11 dihapus", after)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 0

    # The same confirmation pressed again (another device still shows it) after new stock
    # came: answered with what it did and the units free now; the new unit stays.
    add_units(shop, 11, "KEY-11-NEW")
    show_again(shop, admin, confirm)
    after = last_id(shop, admin)
    shop.telegram.press_button(admin, confirm["message_id"], data)
    again = said(shop, admin, "sudah dijalankan", after)
    assert "3 stok" in content(again) and "Stok bebas sekarang: 1" in content(again)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 1
    assert shop.q("SELECT count(*) FROM admin_actions WHERE actor_id = :a"
                  " AND command = 'delallstock:confirm'", a=admin) == 1

    # A confirmation older than ten minutes deletes nothing: the count now, and a fresh one.
    add_units(shop, 11, "KEY-11-NEW2")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delallstock", "11")
    old = said(shop, admin, "Hapus 2 stok", after)
    (old_data,) = [d for d in buttons(old) if d.startswith("ac:dall:11:")]
    with shop.telegram.state.cond:  # Telegram sent it eleven minutes ago
        message = shop.telegram.state.find_message(admin, old["message_id"])
        assert message is not None
        message.date -= 11 * 60
    add_units(shop, 11, "KEY-11-NEW3")
    shop.telegram.press_button(admin, old["message_id"], old_data)
    stale = said(shop, admin, "kedaluwarsa", after)
    assert stale["message_id"] == old["message_id"] and "sekarang: 3" in content(stale)
    assert not buttons(stale)
    prompt = said(shop, admin, "Hapus 3 stok", old["message_id"])  # a new prompt, sent now
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 3
    (fresh,) = [d for d in buttons(prompt) if d.startswith("ac:dall:11:")]
    assert fresh != old_data
    shop.telegram.press_button(admin, prompt["message_id"], fresh)
    said(shop, admin, "3 stok belum terjual produk 11 dihapus", after)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 11") == 0
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delallstock", "99")
    said(shop, admin, "Produk 99 tidak ditemukan", after)


def test_admin_transfer_pm_and_product_edits(shop: Shop, bot: Any) -> None:
    shop.add_product(12, price=10000, units=1)
    admin = make_admin(shop, 9102)
    uid = shop.add_user(5102, balance=1000)
    shop.telegram.send_command(uid, "transfer", f"{uid}|1000000")
    said(shop, uid, "Perintah tidak dikenal")

    # /transfer: credit only
    wrong_format(shop, admin, "transfer", f"{uid}")
    wrong_format(shop, admin, "transfer", f"{uid}|-5000")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "transfer", f"{uid}|25.000")
    said(shop, admin, f"Rp25.000 ditambahkan ke saldo pengguna {uid}. Saldo: Rp26.000", after)
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 26000
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE user_id = :u"
                  " AND reason = 'admin_credit' AND reference_type = 'admin'", u=uid) == 1

    # /pm: the text inside the catalog frame (pipes in the text survive)
    wrong_format(shop, admin, "pm", f"{uid}")
    wrong_format(shop, admin, "pm", "abc|hi")
    after_user = last_id(shop, uid)
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "pm", f"{uid}|Halo, stok <baru> | sudah masuk")
    said(shop, admin, f"Pesan dikirim ke pengguna {uid}", after)
    message = said(shop, uid, "Pesan dari admin: Halo, stok <baru> | sudah masuk", after_user)
    assert message["message_id"] > after_user
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "pm", "777|Halo")
    said(shop, admin, "Pengguna 777 tidak ditemukan", after)

    # product field edits
    edits = [("editname", "Spotify 1 Bulan", "Nama: Spotify 1 Bulan"),
             ("editcategory", "Musik", "Kategori: Musik"),
             ("editcat", "Musik", "Kategori: Musik"),  # the short name keeps working
             ("editprice", "12.500", "Harga: Rp12.500"),
             ("editdesc", "Akun premium | 30 hari", "Deskripsi: Akun premium | 30 hari")]
    for command, value, shown in edits:
        wrong_format(shop, admin, command, "12")
        after = last_id(shop, admin)
        shop.telegram.send_command(admin, command, f"12|{value}")
        said(shop, admin, shown, after)
    wrong_format(shop, admin, "editprice", "12|murah")
    row = shop.rows("SELECT name, category, customer_price, description FROM products"
                    " WHERE id = 12")[0]
    assert tuple(row) == ("Spotify 1 Bulan", "Musik", 12500, "Akun premium | 30 hari")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "editname", "99|X")
    said(shop, admin, "Produk 99 tidak ditemukan", after)


def _qris_photo(shop: Shop, uid: int, product_id: int) -> tuple[dict[str, Any], str]:
    payment = to_payment(shop, uid, product_id)
    shop.telegram.press_button(uid, payment["message_id"], "k:pq")
    photo = shop.telegram.wait_for_bot_message(
        uid, lambda m: "pay:cancel:" in str(buttons(m)) and bool(m.get("photo")), timeout=30)
    invoice = re.search(r"(QC\S+)", content(photo))
    assert invoice is not None
    wait_until(lambda: shop.q("SELECT qr_message_id FROM orders WHERE invoice_id = :i",
                              i=invoice.group(1)) == photo["message_id"],
               what="QR message recorded")
    return photo, invoice.group(1)


def _caption_of(shop: Shop, uid: int, message_id: int) -> str:
    """The photo's current caption as the chat transcript shows it (edits applied)."""
    for message in shop.telegram.transcript(uid)["messages"]:
        if message["message_id"] == message_id and message.get("photo") is not None:
            return str(message.get("caption") or "")
    return ""


def test_qris_photo_becomes_the_receipt(shop: Shop, bot: Any) -> None:
    shop.start_api()
    shop.add_product(13, price=30000, units=1)
    uid = shop.add_user(5103)
    photo, invoice = _qris_photo(shop, uid, 13)
    response = shop.pakasir.post(f"/sandbox/transactions/{invoice}/pay")
    assert response.status_code in (200, 303), response.text
    receipt = shop.telegram.wait_for_bot_message(
        uid, lambda m: m["message_id"] == photo["message_id"] and "LUNAS" in content(m),
        timeout=60)
    total = shop.q("SELECT amount_paid FROM orders WHERE invoice_id = :i", i=invoice)
    assert invoice in content(receipt)
    assert f"Total dibayar: Rp{int(total):,}".replace(",", ".") in content(receipt)
    assert buttons(receipt) == []
    caption = _caption_of(shop, uid, photo["message_id"])
    assert "LUNAS" in caption and invoice in caption
    said(shop, uid, "KEY-13-", timeout=60)


def test_expired_qris_photo_becomes_a_notice(shop: Shop, bot: Any) -> None:
    shop.add_product(14, price=20000, units=1)
    uid = shop.add_user(5104)
    photo, invoice = _qris_photo(shop, uid, 14)
    order_id = shop.q("SELECT id FROM orders WHERE invoice_id = :i", i=invoice)
    with shop.main.begin() as conn:
        conn.exec_driver_sql("UPDATE orders SET expires_at = now() - interval '1 second'"
                             f" WHERE id = {int(order_id)}")
    shop.send("quickcart.expire", kind="order", id=int(order_id))
    notice = shop.telegram.wait_for_bot_message(
        uid, lambda m: m["message_id"] == photo["message_id"]
        and "tidak diterima lagi" in content(m), timeout=60)
    # The late-payment policy, and only ⬅️ Kembali (issue 21).
    assert f"Invoice {invoice} expired" in content(notice)
    assert "saldo" in content(notice)
    assert buttons(notice) == ["m:home"]
    assert shop.q("SELECT status FROM orders WHERE id = :i", i=order_id) == "expired"
    assert "expired" in _caption_of(shop, uid, photo["message_id"])
