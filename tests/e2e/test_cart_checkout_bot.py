"""The cart and the checkout summary end to end: the bot process polling the Telegram simulator,
real Celery workers, the Pakasir sandbox. A shopper fills a cart with three products, sees the
exact bill, applies a voucher (a typo first), pays by QRIS or SALDO, and gets every unit; the
order row holds what the summary showed; `quickcart check` stays clean."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import httpx
import pytest

from quickcart.services.vouchers import generate_vouchers
from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import (
    Message,
    buttons,
    content,
    has_button,
    last_id,
    make_admin,
    open_product,
    press,
    said,
)
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py


def add_to_cart(shop: Shop, uid: int, product_id: int, extra: int = 0) -> Message:
    """Open the product; add one unit from its page, or `1 + extra` from the quantity picker."""
    page = open_product(shop, uid, product_id)
    if not extra:
        return press(shop, uid, page, f"k:add:{product_id}", has_button("k:co"))
    qty = press(shop, uid, page, f"o:buy:{product_id}", has_button(f"k:addq:{product_id}"))
    qty = press(shop, uid, qty, f"o:q:{product_id}:{extra}",
                lambda m: f"Jumlah: {1 + extra}" in content(m))
    return press(shop, uid, qty, f"k:addq:{product_id}", has_button("k:co"))


def fill_cart(shop: Shop, uid: int) -> Message:
    """Produk 31 × 2 (Rp10.000), Produk 32 × 1 (Rp25.000), Produk 33 × 2 (Rp99.000)."""
    add_to_cart(shop, uid, 31)
    add_to_cart(shop, uid, 32)
    cart = add_to_cart(shop, uid, 33, extra=1)
    cart = press(shop, uid, cart, "k:inc:31", lambda m: "Produk 31 × 2" in content(m))
    assert "Produk 32 × 1" in content(cart) and "Produk 33 × 2" in content(cart)
    assert "Rp243.000" in content(cart)  # 2×10.000 + 25.000 + 2×99.000
    return cart


def order_row(shop: Shop, invoice: str) -> tuple[int, int, int, int]:
    row = shop.rows("SELECT subtotal, voucher_discount, payment_fee, total_bill FROM orders"
                    " WHERE invoice_id = :i", i=invoice)[0]
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def delivered_keys(shop: Shop, uid: int, after: int) -> str:
    message = said(shop, uid, "Pesanan berhasil", after, timeout=90)
    return content(message)


def assert_check_clean(shop: Shop) -> None:
    done = subprocess.run([sys.executable, "-m", "quickcart.cli", "check"], cwd=ROOT,
                          env=shop.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cart_voucher_typo_exact_bill_and_qris(shop: Shop, bot: Any) -> None:
    shop.add_product(31, price=10000, units=5)
    shop.add_product(32, price=25000, units=5)
    shop.add_product(33, price=99000, units=3)
    admin = make_admin(shop, 9031)
    [code] = generate_vouchers(shop.main, admin, 5000, 1)
    uid = shop.add_user(5031)
    cart = fill_cart(shop, uid)

    summary = press(shop, uid, cart, "k:co", has_button("k:pq"))
    assert "Rp243.000" in content(summary)
    # No balance: SALDO is shown as what is missing, with a top-up button instead.
    assert "k:pb" not in buttons(summary) and "a:dep" in buttons(summary)

    # A typo first: says so, keeps the order open, offers retry / go on without one.
    prompt = press(shop, uid, summary, "k:v", lambda m: "Ketik kode voucher" in content(m))
    shop.telegram.send_text(uid, "TYP0-😀'; DROP TABLE orders;--")
    refusal = said(shop, uid, "tidak valid", prompt["message_id"])
    assert {"k:v", "k:sum"} <= set(buttons(refusal))
    prompt = press(shop, uid, refusal, "k:v", lambda m: "Ketik kode voucher" in content(m))
    shop.telegram.send_text(uid, code.lower())
    summary = said(shop, uid, "Voucher berhasil diterapkan", prompt["message_id"])
    text = content(summary)
    # 243.000 − 5.000 = 238.000; fee 0,7% (1.666) + 310 = 1.976; bill 239.976
    for amount in ("Rp243.000", "Rp5.000", "Rp238.000", "Rp1.976", "Rp239.976"):
        assert amount in text, (amount, text)
    assert "k:pq" in buttons(summary)

    # Pay by QRIS, tapped twice: one order; the processing message becomes the outcome.
    shop.telegram.press_button(uid, summary["message_id"], "k:pq")
    shop.telegram.press_button(uid, summary["message_id"], "k:pq")
    placed = shop.telegram.wait_for_bot_message(
        uid, lambda m: m["message_id"] == summary["message_id"] and "dibuat" in content(m),
        after_message_id=summary["message_id"] - 1, timeout=60)
    invoice = re.search(r"(QC\w+)", content(placed)).group(1)  # type: ignore[union-attr]
    photo = shop.telegram.wait_for_bot_message(
        uid, lambda m: f"pay:check:{invoice}" in buttons(m) and bool(m.get("photo")),
        timeout=60)
    assert "Produk 31 × 2" in content(photo) and "Rp239.976" in content(photo)
    assert order_row(shop, invoice) == (243000, 5000, 1976, 239976)
    assert shop.q("SELECT count(*) FROM orders WHERE user_id = :u", u=uid) == 1
    # The Checkout Page button: the gateway's page for this amount and invoice.
    [url] = [b["url"] for row in photo["reply_markup"]["inline_keyboard"] for b in row
             if b.get("url")]
    assert url.endswith(f"/238000?order_id={invoice}&qris_only=1") and "/pay/" in url
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and invoice in page.text

    # Cek status answers while unpaid, with the time left.
    after = last_id(shop, uid)
    shop.telegram.press_button(uid, photo["message_id"], f"pay:check:{invoice}")
    assert "menit" in content(said(shop, uid, "belum dibayar", after))

    after = last_id(shop, uid)
    response = shop.pakasir.post(f"/sandbox/transactions/{invoice}/pay")
    assert response.status_code in (200, 303), response.text
    delivery = delivered_keys(shop, uid, after)
    for product_id, units in ((31, 2), (32, 1), (33, 2)):
        assert len(re.findall(rf"KEY-{product_id}-\d", delivery)) == units, delivery
        assert f"Produk {product_id} × {units}" in delivery
    assert invoice in delivery
    assert shop.q("SELECT is_used FROM vouchers WHERE code = :c", c=code) is True
    # The paid order empties the cart.
    after = last_id(shop, uid)
    shop.telegram.send_command(uid, "start")
    welcome = said(shop, uid, "Selamat datang", after)
    press(shop, uid, welcome, "k:view", lambda m: "kosong" in content(m))
    wait_until(lambda: shop.q("SELECT delivered_at IS NOT NULL FROM orders WHERE"
                              " invoice_id = :i", i=invoice), what="delivery recorded")
    assert_check_clean(shop)


def test_cart_by_saldo_with_a_product_running_out(shop: Shop, bot: Any) -> None:
    shop.add_product(31, price=10000, units=5)
    shop.add_product(32, price=25000, units=5)
    shop.add_product(33, price=99000, units=2)
    uid = shop.add_user(5032, balance=300000)
    cart = fill_cart(shop, uid)
    # Meanwhile another shopper buys one unit of Produk 33: only 1 is left for this cart.
    rival = shop.add_user(5033, balance=100000)
    rival_summary = open_product(shop, rival, 33)
    rival_summary = press(shop, rival, rival_summary, "o:buy:33", has_button("o:qok:33"))
    rival_summary = press(shop, rival, rival_summary, "o:qok:33", has_button("k:pb"))
    press(shop, rival, rival_summary, "k:pb", lambda m: "berhasil" in content(m), timeout=60)

    summary = press(shop, uid, cart, "k:co", has_button("k:x"))
    assert "Produk 33" in content(summary) and "tersisa 1" in content(summary)
    assert "k:pb" not in buttons(summary) and "k:pq" not in buttons(summary)
    cart = press(shop, uid, summary, "k:back", has_button("k:co"))
    cart = press(shop, uid, cart, "k:dec:33", lambda m: "Produk 33 × 1" in content(m))
    summary = press(shop, uid, cart, "k:co", has_button("k:pb"))
    # 20.000 + 25.000 + 99.000 = 144.000 by SALDO: no fee, 156.000 left.
    assert "Rp144.000" in content(summary) and "Rp156.000" in content(summary)
    after = last_id(shop, uid)
    shop.telegram.press_button(uid, summary["message_id"], "k:pb")
    shop.telegram.press_button(uid, summary["message_id"], "k:pb")  # a double tap
    delivery = delivered_keys(shop, uid, after)
    for product_id, units in ((31, 2), (32, 1), (33, 1)):
        assert len(re.findall(rf"KEY-{product_id}-\d", delivery)) == units, delivery
    invoice = re.search(r"(QC\w+)", delivery).group(1)  # type: ignore[union-attr]
    assert order_row(shop, invoice) == (144000, 0, 0, 144000)
    assert shop.q("SELECT count(*) FROM orders WHERE user_id = :u", u=uid) == 1
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 156000
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                              " AND delivered_at IS NULL") == 0, what="deliveries recorded")
    assert_check_clean(shop)
