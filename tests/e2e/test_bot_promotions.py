"""Issue 23's prices and promotions through the Telegram simulator with real workers: a
category discount and a product discount (the best single one wins, never both), a reseller's
floor, and a percentage voucher with a cap, a total and per-user limit and a minimum purchase,
each typed by an admin, seen by shoppers on the product page and the bill, and audited."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import content, has_button, last_id, make_admin, press, said

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py


def ask(shop: Shop, uid: int, command: str, args: str, expect: str) -> dict[str, Any]:
    after = last_id(shop, uid)
    shop.telegram.send_command(uid, command, args)
    return said(shop, uid, expect, after)


def price_on_page(shop: Shop, uid: int, product_id: int) -> str:
    return content(base.open_product(shop, uid, product_id))


def summary_with_voucher(shop: Shop, uid: int, product_id: int, code: str,
                         expect: str) -> dict[str, Any]:
    """The summary of one unit; the voucher typed on it; the message that answers it."""
    summary = base.to_payment(shop, uid, product_id)
    prompt = press(shop, uid, summary, "k:v", lambda m: "Ketik kode voucher" in content(m))
    shop.telegram.send_text(uid, code)
    return said(shop, uid, expect, prompt["message_id"])


def test_discounts_floor_and_vouchers_end_to_end(shop: Shop, bot: Any) -> None:
    admin = make_admin(shop, 9401)
    shop.add_product(21, price=100000, units=10, reseller_price=80000)
    shop.add_product(22, price=30000, units=5)
    with shop.main.begin() as conn:
        conn.exec_driver_sql("UPDATE products SET category = 'Streaming' WHERE id = 21")
    buyers = [shop.add_user(5401 + i, balance=200000) for i in range(3)]
    reseller = shop.add_user(5404, balance=200000)
    with shop.main.begin() as conn:
        conn.exec_driver_sql(f"UPDATE users SET member_status = 'reseller' WHERE id = {reseller}")

    # Bad input changes nothing.
    for command, args in [("discat", "Streaming|0%"), ("discat", "Streaming|101%"),
                          ("discat", "|15%"), ("discfloor", "21|-1"), ("discfloor", "x|5000"),
                          ("voucher", "HEMAT10|0%/5000"), ("voucher", "HEMAT10|10%"),
                          ("voucher", "HEMAT10|10%/5000|0")]:
        answer = ask(shop, admin, command, args, "Format salah")
        assert f"/{command}" in content(answer)
    assert shop.q("SELECT count(*) FROM discounts") == 0
    assert shop.q("SELECT count(*) FROM vouchers") == 0

    # A category discount; a smaller product discount does not stack on it; a larger wins.
    ask(shop, admin, "discat", "Streaming|15%", "Diskon 15%")
    assert "Rp85.000" in price_on_page(shop, buyers[0], 21)
    ask(shop, admin, "disc", "21|10%", "Diskon 10%")
    page = price_on_page(shop, buyers[0], 21)
    assert "Rp85.000" in page and "DISKON" in page  # 15 % off, not 10 % and not 25 %
    ask(shop, admin, "disc", "21|20000", "Diskon")
    assert "Rp80.000" in price_on_page(shop, buyers[0], 21)

    # Resellers: no discount by default; with a floor, discounted down to it and no further.
    assert "Rp80.000" in price_on_page(shop, reseller, 21)
    ask(shop, admin, "discfloor", "21|70000", "tidak akan didiskon di bawah")
    assert "Rp70.000" in price_on_page(shop, reseller, 21)

    # A voucher: 10 % up to Rp5.000, 2 uses in all, 1 per shopper, from Rp50.000.
    ask(shop, admin, "voucher", "HEMAT10|10%/5000|2|1|50000|30", "HEMAT10")
    low = summary_with_voucher(shop, buyers[1], 22, "hemat10", "belanja minimal")
    assert "Rp50.000" in content(low)
    first = summary_with_voucher(shop, buyers[0], 21, "hemat10", "HEMAT10")
    assert "Rp5.000" in content(first) and "Rp75.000" in content(first)  # capped, then total
    press(shop, buyers[0], first, "k:pb", lambda m: "diproses" in content(m)
          or "berhasil" in content(m))
    said(shop, buyers[0], "KEY-21-")
    second = summary_with_voucher(shop, buyers[1], 21, "hemat10", "HEMAT10")
    press(shop, buyers[1], second, "k:pb", lambda m: "diproses" in content(m)
          or "berhasil" in content(m))
    said(shop, buyers[1], "KEY-21-")
    third = summary_with_voucher(shop, buyers[2], 21, "hemat10", "sudah digunakan")
    assert has_button("k:v")(third) or "k:" in str(third.get("reply_markup"))  # next step
    paid = shop.rows("SELECT o.user_id, o.voucher_discount, o.total_bill, i.price_per_unit"
                     " FROM orders o JOIN order_items i ON i.order_id = o.id"
                     " WHERE o.status = 'paid' ORDER BY o.user_id")
    assert [(r.user_id, r.voucher_discount, r.total_bill, r.price_per_unit) for r in paid] == \
        [(buyers[0], 5000, 75000, 80000), (buyers[1], 5000, 75000, 80000)]

    # The audit: each command as typed, the admin as actor, the voucher code masked.
    rows = shop.rows("SELECT command, arguments FROM admin_actions WHERE actor_id = :a"
                     " ORDER BY id", a=admin)
    done = {r.command for r in rows}
    assert {"discat", "disc", "discfloor", "voucher"} <= done, done
    voucher = next(r.arguments for r in rows if r.command == "voucher"
                   and "masked" in str(r.arguments.get("code")))
    assert "HEMAT10" not in str(voucher)
