"""Issue 23 through the Telegram simulator with real workers: the catalog admin commands one
after the other as an admin types them (and their bad input), the shopper's view of a discount
and of "🔔 Kabari saya", broadcasts (text and photo) with their report, and a giveaway."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import buttons, content, last_id, make_admin, press, said
from tests.support import wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def ask(shop: Shop, uid: int, command: str, args: str, expect: str) -> dict[str, Any]:
    """Send `/command args` and wait for the answer containing `expect`."""
    after = last_id(shop, uid)
    shop.telegram.send_command(uid, command, args)
    return said(shop, uid, expect, after)


def bad(shop: Shop, uid: int, command: str, args: str) -> None:
    """Bad input: the command's syntax with an example, nothing else."""
    answer = ask(shop, uid, command, args, "Format salah")
    assert f"/{command}" in content(answer) and "Contoh:" in content(answer)


def test_catalog_admin_commands_end_to_end(shop: Shop, bot: Any) -> None:
    admin = make_admin(shop, 9301)
    shopper = shop.add_user(5301, balance=100000)
    ask(shop, shopper, "liststock", "1", "Perintah tidak dikenal")  # hidden from shoppers

    # /add with defaults, and bad input that changes nothing
    for command, args in [("add", "1|x|y|-5"), ("add", "x|Netflix|S|5000"), ("add", "1|x"),
                          ("disc", "1|0%"), ("disc", "1|150%"), ("disc", "1|-5000"),
                          ("editid", "1"), ("lowstock", "1|x"), ("stats", "year"),
                          ("whitelist", "123"), ("giveaway", "500|3"), ("giveaway", "5000|101"),
                          ("liststock", "abc"), ("delstock", "1|zz")]:
        bad(shop, admin, command, args)
    assert shop.q("SELECT count(*) FROM products") == 0
    made = ask(shop, admin, "add", "-|-|-|25.000|-", "Produk dibuat")
    assert "ID: 1" in content(made) and "Uncategorized" in content(made)

    # inline stock with its report; the listing masks contents and shows short ids
    report = ask(shop, admin, "addstock", "1|akun1:pass1|akun2:pass2|akun1:pass1|akun3:pass3",
                 "ditambahkan")
    assert "3 ditambahkan, 1 duplikat dilewati, 0 ditolak" in content(report)
    listing = ask(shop, admin, "liststock", "1", "belum terjual")
    assert "pass" not in content(listing) and "••••••••ass1" in content(listing)
    short = re.findall(r"\b([0-9a-f]{8})\b", content(listing))
    assert len(short) == 3
    ask(shop, admin, "delstock", f"1|{short[0]}", "dihapus")
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 1") == 2

    # /delallstock asks first
    confirm = ask(shop, admin, "delallstock", "1", "Hapus 2 stok")
    assert any(d.startswith("ac:dall:1:") for d in buttons(confirm))
    press(shop, admin, confirm, "ac:no", lambda m: "Dibatalkan" in content(m))
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 1") == 2

    # /editid: the product and its units move
    ask(shop, admin, "editid", "1|7", "sekarang ID 7")
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 7") == 2
    ask(shop, admin, "editid", "1|8", "tidak ditemukan")

    # a discount: the shopper sees the old price struck through and pays the new one
    ask(shop, admin, "disc", "7|20%", "Diskon 20%")
    page = base.open_product(shop, shopper, 7)
    assert "DISKON" in content(page) and "Rp20.000" in content(page)
    strike = [e for e in page.get("entities", []) if e.get("type") == "strikethrough"]
    assert strike, page
    ask(shop, admin, "lowstock", "7|3", "tersisa 3")
    stats = ask(shop, admin, "stats", "week", "Statistik")
    assert "Pendapatan" in content(stats)

    # /whitelist and /rm: admin groups live in the database
    ask(shop, admin, "whitelist", "-100123456789", "menerima notifikasi")
    assert shop.q("SELECT source FROM admin_groups WHERE id = -100123456789") == "command"
    ask(shop, admin, "rm", "-100123456789", "dihapus dari notifikasi")
    assert shop.q("SELECT count(*) FROM admin_groups") == 0

    # out of stock: "🔔 Kabari saya", then one message when stock comes
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "delallstock", "7")
    confirm = said(shop, admin, "Hapus 2 stok", after)
    (confirm_data,) = [d for d in buttons(confirm) if d.startswith("ac:dall:7:")]
    press(shop, admin, confirm, confirm_data, lambda m: "diproses" in content(m).lower()
          or "dihapus" in content(m))
    wait_until(lambda: shop.q("SELECT count(*) FROM product_stocks WHERE product_id = 7") == 0,
               what="units deleted")
    empty = _product_page(shop, shopper, 7)
    assert "n:watch:7" in buttons(empty)
    press(shop, shopper, empty, "n:watch:7", lambda m: True)
    said(shop, shopper, "Kami kabari")
    ask(shop, admin, "addstock", "7|akun9:pass9", "1 ditambahkan")
    said(shop, shopper, "tersedia lagi")

    # the audit: every command under the name the admin typed (the confirmation under its
    # button), the admin as actor, stock contents masked
    rows = shop.rows("SELECT command, arguments FROM admin_actions WHERE actor_id = :a"
                     " ORDER BY id", a=admin)
    commands = [r.command for r in rows]
    assert {"add", "addstock", "liststock", "delstock", "editid", "disc", "lowstock", "stats",
            "whitelist", "rm", "delallstock:confirm"} <= set(commands), commands
    assert not any(c.startswith(("discount", "list_stock", "renumber", "group", "add_stock"))
                   for c in commands), commands
    disc = next(r.arguments for r in rows if r.command == "disc")
    assert disc["target"] == "7" and disc["scope"] == "product" and disc["value"] == "20%"
    inline = [r.arguments for r in rows if r.command == "addstock"]
    assert [a["lines"] for a in inline] == ["[masked, 4]", "[masked, 1]"], inline
    arguments = " ".join(str(r.arguments) for r in rows)
    assert "pass1" not in arguments and "akun9" not in arguments
    assert shop.q("SELECT count(*) FROM admin_actions WHERE command = 'disc'"
                  " AND actor_id <> :a", a=admin) == 0


def _product_page(shop: Shop, uid: int, product_id: int) -> dict[str, Any]:
    """The product page of an out-of-stock product (it has no buy button)."""
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, str(product_id))
    return shop.telegram.wait_for_bot_message(
        uid, lambda m: f"n:watch:{product_id}" in buttons(m), after_message_id=after,
        timeout=30)


def test_broadcasts_and_giveaway_reach_shoppers_once(shop: Shop, bot: Any) -> None:
    admin = make_admin(shop, 9302)
    shoppers = [shop.add_user(5310 + i) for i in range(4)]
    banned = shop.add_user(5320)
    with shop.main.begin() as conn:
        conn.exec_driver_sql(f"UPDATE users SET is_banned = true WHERE id = {banned}")
    shop.telegram.block(shoppers[3])
    ask(shop, shoppers[0], "broadcast", "hack", "Perintah tidak dikenal")
    bad(shop, admin, "broadcast", "")

    after, since = last_id(shop, admin), shop.telegram.last_call_seq()
    shop.telegram.send_command(admin, "broadcast", "Promo hari ini! <b>50%</b>")
    report = said(shop, admin, "Siaran selesai", after)
    assert "4 terkirim, 0 gagal, 1 memblokir bot" in content(report)  # 3 shoppers + the admin
    # One status message, "⏳ Diproses…" edited into the start, then into the report.
    status = [m for m in shop.telegram.bot_messages(admin)
              if m["message_id"] > after and "Promo hari ini" not in content(m)]
    assert [m["message_id"] for m in status] == [report["message_id"]]
    edits = [c["params"]["text"] for c in shop.telegram.calls(
        method="editMessageText", chat_id=admin, since=since) if c["ok"]]
    assert any("Siaran dimulai" in e for e in edits) and "Siaran selesai" in edits[-1]
    for uid in shoppers[:3]:
        said(shop, uid, "Promo hari ini! <b>50%</b>")
    assert shop.q("SELECT count(*) FROM users WHERE blocked_bot_at IS NOT NULL") == 1
    assert not [m for m in shop.telegram.bot_messages(banned) if "Promo" in content(m)]

    # a photo with the caption; the blocked shopper is skipped this time
    after = last_id(shop, admin)
    shop.telegram.send_photo(admin, PNG, caption="/broadcast Foto promo")
    report = said(shop, admin, "Siaran selesai", after)
    assert "4 terkirim, 0 gagal, 0 memblokir bot (dari 4)" in content(report)
    photo = said(shop, shoppers[1], "Foto promo")
    assert photo.get("photo")

    # a giveaway: the codes to the admin and to every shopper
    ask(shop, admin, "giveaway", "10000|3", "Siaran dimulai")
    message = said(shop, shoppers[2], "GIVEAWAY VOUCHER")
    codes = [line.strip() for line in content(message).splitlines()
             if re.fullmatch(r"[A-Z0-9]{8}", line.strip())]
    assert len(codes) == 3 and "cooldown 5 menit" in content(message)
    assert shop.q("SELECT count(*) FROM vouchers WHERE code = ANY(:c)", c=codes) == 3
    said(shop, admin, "Siaran selesai")
    for uid in shoppers[:3]:
        texts = [content(m) for m in shop.telegram.bot_messages(uid)]
        assert sum("Promo hari ini" in t for t in texts) == 1
        assert sum("GIVEAWAY" in t for t in texts) == 1
