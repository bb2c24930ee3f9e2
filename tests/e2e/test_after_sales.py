"""After-sales end to end through the Telegram simulator and the Pakasir sandbox, with the bot
process and real workers: a dead key reported with a screenshot, answered, replaced, then the
rest refunded; a missed payment recovered with "re-check payment"; a forged "paid" claim not."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest

from quickcart.adapters.qr import qr_png
from quickcart.services import orders
from quickcart.services.invariants import check_invariants
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot_with, buttons, content, last_id, make_admin, press, said
from tests.support import wait_until

pytestmark = pytest.mark.slow

PRODUCT = 31
PRICE = 30000


def create_order(shop: Shop, uid: int, method: str) -> dict[str, Any]:
    """An order as the shop makes it (its outbox rows are published by the beat relay)."""
    result = orders.create_order(shop.main, orders.CreateOrder(
        user_id=uid, product_id=PRODUCT, quantity=1, payment_method=method,
        idempotency_key=f"e2e:{uuid.uuid4().hex}")).result
    assert result["status"] in ("paid", "pending"), result
    return result


def test_dead_key_reported_answered_replaced_and_refunded(shop: Shop) -> None:
    shop.add_product(PRODUCT, price=PRICE, units=3)
    admin = make_admin(shop, 9101)
    uid = shop.add_user(5101, balance=50000)
    with bot_with(shop):
        order = create_order(shop, uid, "account_balance")
        first_key = re.search(r"KEY-31-\d", content(said(shop, uid, "KEY-31-", timeout=60)))
        assert first_key is not None

        # the shopper opens the order in the history: Bantuan / Garansi, with a screenshot
        after = last_id(shop, uid)
        shop.telegram.send_text(uid, "AKUN")
        profile = said(shop, uid, str(uid), after)
        history = press(shop, uid, profile, "a:hist:0",
                        lambda m: f"sup:o:{order['order_id']}" in buttons(m))
        after = last_id(shop, uid)
        shop.telegram.press_button(uid, history["message_id"], f"sup:o:{order['order_id']}")
        said(shop, uid, order["invoice_id"], after)
        shop.telegram.send_photo(uid, qr_png("screenshot"), caption="Kunci tidak bisa dipakai")
        ticket = re.search(r"#(\d+)", content(said(shop, uid, "tiket", after)))
        assert ticket is not None

        # every admin gets the ticket with the order and its buttons; an admin replies to it
        copy = said(shop, admin, f"Tiket #{ticket.group(1)}")
        assert copy.get("photo") and "Kunci tidak bisa dipakai" in content(copy)
        assert order["invoice_id"] in content(copy)
        assert {f"sup:x:{ticket.group(1)}", f"ao:v:{order['order_id']}"} <= set(buttons(copy))
        after = last_id(shop, uid)
        shop.telegram.send_text(admin, "Maaf, kami ganti sekarang.",
                                reply_to_message_id=copy["message_id"])
        said(shop, uid, "Maaf, kami ganti sekarang.", after)
        assert shop.q("SELECT status FROM support_tickets") == "answered"

        # /order, warranty: the admin picks the unit; the shopper gets a new key
        after_admin = last_id(shop, admin)
        shop.telegram.send_command(admin, "order", order["invoice_id"])
        lookup = shop.telegram.wait_for_bot_message(
            admin, lambda m: f"ao:w:{order['order_id']}" in buttons(m),
            after_message_id=after_admin, timeout=30)
        assert "KEY" not in content(lookup)  # the lookup never shows stock content
        after_admin = last_id(shop, admin)
        shop.telegram.press_button(admin, lookup["message_id"], f"ao:w:{order['order_id']}")
        pick = shop.telegram.wait_for_bot_message(
            admin, lambda m: any(d.startswith("ao:wu:") for d in buttons(m)),
            after_message_id=after_admin, timeout=30)
        [unit_button] = [d for d in buttons(pick) if d.startswith("ao:wu:")]
        after = last_id(shop, uid)
        shop.telegram.press_button(admin, pick["message_id"], unit_button)
        shop.telegram.press_button(admin, pick["message_id"], unit_button)  # a double tap
        new_key = re.search(r"KEY-31-\d", content(said(shop, uid, "pengganti", after)))
        assert new_key is not None and new_key.group(0) != first_key.group(0)
        wait_until(lambda: shop.q("SELECT count(*) FROM warranty_claims WHERE status ="
                                  " 'replaced'") == 1, what="claim recorded", timeout=30)
        assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 2
        assert shop.q("SELECT count(*) FROM product_stocks WHERE content = :k AND is_sold",
                      k=first_key.group(0)) == 1  # the dead key stays sold: never sold again

        # later: /reff on the invoice, the refund button, then confirm (twice)
        after_admin = last_id(shop, admin)
        shop.telegram.send_command(admin, "reff", order["invoice_id"])
        estimate = shop.telegram.wait_for_bot_message(
            admin, lambda m: any(d.startswith("rf:p:") for d in buttons(m)),
            after_message_id=after_admin, timeout=30)
        # delivered today, one claim: 30000 × 30/30 × 0.6
        assert "Refund: Rp18.000" in content(estimate) and "0.6" in content(estimate)
        after_admin = last_id(shop, admin)
        shop.telegram.press_button(admin, estimate["message_id"], buttons(estimate)[0])
        proposal = shop.telegram.wait_for_bot_message(
            admin, lambda m: any(d.startswith("rf:ok:") for d in buttons(m)),
            after_message_id=after_admin, timeout=30)
        confirm = next(d for d in buttons(proposal) if d.startswith("rf:ok:"))
        balance = Decimal(shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid))
        after = last_id(shop, uid)
        shop.telegram.press_button(admin, proposal["message_id"], confirm)
        shop.telegram.press_button(admin, proposal["message_id"], confirm)  # a double tap
        said(shop, uid, "Rp18.000", after)
        after_admin = last_id(shop, admin)
        shop.telegram.send_command(admin, "refund", f"{order['invoice_id']}|999999")
        said(shop, admin, "Rp12.000", after_admin)  # refused: at most what is left
        assert Decimal(shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid)) \
            == balance + 18000
        assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'refund'") == 1

        # the shopper's history shows the refund; closing the ticket tells them
        after = last_id(shop, uid)
        shop.telegram.send_text(uid, "AKUN")
        profile = said(shop, uid, str(uid), after)
        press(shop, uid, profile, "a:hist:0",
              lambda m: "Refund ke saldo: Rp18.000" in content(m))
        after = last_id(shop, uid)
        shop.telegram.press_button(admin, copy["message_id"], f"sup:x:{ticket.group(1)}")
        said(shop, uid, "ditutup", after)

        # a shopper gets the shopper's answer for the admin commands
        after = last_id(shop, uid)
        shop.telegram.send_command(uid, "order", order["invoice_id"])
        said(shop, uid, "Perintah tidak dikenal", after)
    wait_until(lambda: check_invariants(shop.main, shop.audit).ok, what="checker clean",
               timeout=60)


def test_recheck_recovers_a_missed_payment_but_not_a_forged_one(shop: Shop) -> None:
    shop.add_product(PRODUCT, price=PRICE, units=3)
    admin = make_admin(shop, 9102)
    uid = shop.add_user(5102)
    with bot_with(shop):
        missed = create_order(shop, uid, "qris")
        wait_until(lambda: shop.q("SELECT payment_number IS NOT NULL FROM orders WHERE id = :o",
                                  o=missed["order_id"]), what="QR created", timeout=60)
        # paid at the gateway, no webhook, and the order expired at the shop meanwhile
        shop.paid_at_gateway_then_expired(missed["order_id"], missed["invoice_id"])
        forged = create_order(shop, uid, "qris")
        wait_until(lambda: shop.q("SELECT payment_number IS NOT NULL FROM orders WHERE id = :o",
                                  o=forged["order_id"]), what="QR created", timeout=60)

        # "I paid!" — but the gateway says pending: nothing changes
        after = last_id(shop, admin)
        shop.telegram.send_command(admin, "order", forged["invoice_id"])
        lookup = shop.telegram.wait_for_bot_message(
            admin, lambda m: f"ao:pc:{forged['order_id']}" in buttons(m),
            after_message_id=after, timeout=30)
        assert not any(d.startswith(("ao:rs:", "ao:w:", "ao:rc:")) for d in buttons(lookup))
        shop.telegram.press_button(admin, lookup["message_id"], f"ao:pc:{forged['order_id']}")
        said(shop, admin, "belum dibayar", after)
        assert shop.q("SELECT status FROM orders WHERE id = :o", o=forged["order_id"]) \
            == "pending"

        # the missed one: the gateway says completed, the money goes to the balance (expired)
        after = last_id(shop, admin)
        shop.telegram.send_command(admin, "order", missed["invoice_id"])
        lookup = shop.telegram.wait_for_bot_message(
            admin, lambda m: f"ao:pc:{missed['order_id']}" in buttons(m),
            after_message_id=after, timeout=30)
        shop.telegram.press_button(admin, lookup["message_id"], f"ao:pc:{missed['order_id']}")
        said(shop, admin, "saldo", after)
        payable = Decimal(missed["total_bill"]) - Decimal(missed["payment_fee"])
        assert Decimal(shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid)) \
            == payable
        assert shop.q("SELECT actor_id FROM balance_ledger WHERE reason = 'late_payment'") \
            is None  # the gateway's credit, applied by the payment path
        assert shop.q("SELECT outcome FROM order_actions WHERE order_id = :o",
                      o=missed["order_id"]) == "credited_late"


def test_calculator_formula_and_version(shop: Shop) -> None:
    shop.add_product(PRODUCT, price=PRICE, units=1)
    admin = make_admin(shop, 9103)
    uid = shop.add_user(5103, balance=PRICE)
    with bot_with(shop):
        order = create_order(shop, uid, "account_balance")
        for args, expected in (("30000|10|0", "Refund: Rp14.000"),
                               ("30000|3|0", "Refund: Rp21.600"),
                               ("30000|10|3", "Refund: Rp10.000"),
                               ("30000|40|0", "Refund: Rp0"),
                               ("30000|-1|0", "Format salah"),
                               ("oops", "Format salah")):
            after = last_id(shop, admin)
            shop.telegram.send_command(admin, "reff", args)
            said(shop, admin, expected, after)
        # a shopper: their own invoice only, and only the calculation (no refund button)
        after = last_id(shop, uid)
        shop.telegram.send_command(uid, "refund", order["invoice_id"])
        estimate = said(shop, uid, "Refund: Rp24.000", after)  # 30000 × 30/30 × 0.8
        assert buttons(estimate) == []
        for args in ("30000|10|0", f"{order['invoice_id']}|1000"):
            after = last_id(shop, uid)
            shop.telegram.send_command(uid, "reff", args)
            said(shop, uid, "/refund QC", after)
        after = last_id(shop, uid)
        shop.telegram.send_command(uid, "refund", "QC0000NOTYOURS")
        said(shop, uid, "Pesanan tidak ditemukan", after)
        assert shop.q("SELECT count(*) FROM order_refunds") == 0

        after = last_id(shop, admin)
        shop.telegram.send_command(admin, "setformula", "late|0.5")
        said(shop, admin, "0.700 → 0.5", after)
        shop.telegram.send_command(admin, "setformula", "late|2")
        said(shop, admin, "tidak valid", after)
        shop.telegram.send_command(admin, "reff", "30000|10|0")
        said(shop, admin, "Refund: Rp10.000", after)
        after = last_id(shop, admin)
        shop.telegram.send_command(admin, "version")
        version = said(shop, admin, "QuickCart", after)
        assert "Commit" in content(version) and "@" in content(version)  # a worker's name
        after = last_id(shop, uid)
        shop.telegram.send_command(uid, "setformula", "late|0.1")
        said(shop, uid, "Perintah tidak dikenal", after)
        assert shop.q("SELECT late FROM refund_formula") == Decimal("0.5")
