"""Anti-fraud through the simulators with real workers: a new account's Rp600.000 QRIS purchase
is held for review, an admin approves it from /review and the key arrives exactly once; a
non-admin's admin command is answered as unknown and audited; /audit shows each step with its
actor; `quickcart check` and `quickcart audit verify` are clean."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from quickcart.services.audit_verify import verify_audit_chain
from quickcart.services.invariants import check_invariants
from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import (
    buttons,
    content,
    last_id,
    make_admin,
    press,
    qris_invoice,
    said,
    to_payment,
)
from tests.e2e.test_payments_api import pay
from tests.support import wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py


def test_new_account_purchase_is_held_approved_and_delivered_once(shop: Shop,
                                                                   bot: Any) -> None:
    shop.start_api()
    shop.add_product(24, price=600_000, units=2)
    admin = make_admin(shop, 9240)
    uid = shop.add_user(5240)  # registered just now: a new account

    photo, invoice = qris_invoice(shop, uid, to_payment(shop, uid, 24))
    pay(shop, invoice)
    shop.telegram.press_button(uid, photo["message_id"], f"pay:check:{invoice}")
    said(shop, uid, "peninjauan keamanan", timeout=60)
    order_id = shop.q("SELECT id FROM orders WHERE invoice_id = :i", i=invoice)
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    review_id = shop.q("SELECT id FROM risk_reviews WHERE order_id = :o AND status = 'open'",
                       o=order_id)
    assert review_id is not None
    said(shop, admin, f"Peninjauan #{review_id}")  # the admins were told, once

    # A shopper trying an admin command gets the unknown-command answer; it is audited.
    after = last_id(shop, uid)
    shop.telegram.send_command(uid, "review")
    said(shop, uid, "Perintah tidak dikenal", after)

    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "review", "x|maybe")
    assert "/review" in content(said(shop, admin, "Format salah", after))
    assert shop.q("SELECT status FROM risk_reviews WHERE id = :r", r=review_id) == "open"

    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "review")
    item = shop.telegram.wait_for_bot_message(
        admin, lambda m: f"rv:a:{review_id}" in buttons(m), after_message_id=after, timeout=30)
    assert "new_account" in content(item) and invoice in content(item)
    assert shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id) is None
    after = last_id(shop, admin)
    shop.telegram.press_button(admin, item["message_id"], f"rv:a:{review_id}")
    said(shop, admin, "approved", after)
    said(shop, uid, "KEY-24-", timeout=60)
    wait_until(lambda: shop.q("SELECT delivery_count FROM orders WHERE id = :o",
                              o=order_id) == 1, timeout=30, what="the delivery recorded")
    # A stale button: the state, no second delivery.
    after = last_id(shop, admin)
    shop.telegram.press_button(admin, item["message_id"], f"rv:r:{review_id}")
    said(shop, admin, "sudah diputuskan", after)
    keys = [m for m in shop.telegram.bot_messages(uid) if "KEY-24-" in content(m)]
    assert len(keys) == 1
    assert shop.q("SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1

    # The audit trail, from the audit DB: each step with its actor.
    wait_until(lambda: shop.q("SELECT count(*) FROM audit_outbox") == 0, timeout=60,
               what="the audit shipped")
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "audit", f"{invoice} 30")
    trail = content(said(shop, admin, "review_approved", after))
    # The sandbox sends no webhook here: the payment was confirmed by the status check.
    assert f"admin {admin} · review_decision/{invoice} · <b>review_approved" in trail or \
        f"admin {admin} · review_decision/{invoice} · review_approved" in trail, trail
    assert 'status="paid"' in trail and f"user {uid} · orders/" in trail, trail
    with shop.audit.connect() as conn:
        attempts = conn.execute(text("SELECT count(*) FROM audit_logs WHERE actor_id = :u"
                                     " AND action = 'unauthorized_attempt'"),
                                {"u": uid}).scalar()
    assert attempts == 1

    def commands() -> list[str]:
        return [r[0] for r in shop.rows("SELECT command FROM admin_actions WHERE actor_id = :a"
                                        " AND outcome = 'done' ORDER BY id", a=admin)]
    wait_until(lambda: commands() == ["review", "review", "review", "audit"], timeout=30,
               what="every admin command audited as done")

    wait_until(lambda: shop.q("SELECT count(*) FROM audit_outbox") == 0, timeout=60,
               what="the audit shipped")
    report = check_invariants(shop.main, shop.audit)
    assert report.ok, report.format()
    assert verify_audit_chain(shop.audit).ok


def test_structuring_is_blocked_before_payment_and_a_rejected_hold_is_refunded(
        shop: Shop, bot: Any) -> None:
    shop.add_product(25, price=5000, units=3)
    shop.add_product(26, price=600_000, units=1)
    admin = make_admin(shop, 9250)
    small = shop.add_user(5250, balance=20_000)
    for i in range(9):  # nine small top-ups paid in the last hour
        with shop.main.begin() as conn:
            conn.execute(text("INSERT INTO deposits (invoice_id, user_id, amount, payment_fee,"
                              " total_bill, expires_at) VALUES (:i, :u, 9000, 0, 9000,"
                              " now() + interval '10 minutes')"), {"i": f"DPE{i}", "u": small})
            conn.execute(text("UPDATE deposits SET status = 'paid', paid_at = now()"
                              " WHERE invoice_id = :i"), {"i": f"DPE{i}"})
    payment = to_payment(shop, small, 25)
    refused = press(shop, small, payment, "k:pb",
                    lambda m: "tidak dapat diproses" in content(m))
    assert "m:home" in buttons(refused)  # a refusal offers the next step
    assert shop.q("SELECT count(*) FROM orders WHERE user_id = :u", u=small) == 0
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=small) == 20_000

    # A new account paying Rp600.000 from its balance: born paid, held; rejected with a reason.
    buyer = shop.add_user(5251, balance=700_000)
    payment = to_payment(shop, buyer, 26)
    shop.telegram.press_button(buyer, payment["message_id"], "k:pb")
    said(shop, buyer, "peninjauan keamanan", timeout=60)
    review_id = shop.q("SELECT r.id FROM risk_reviews r JOIN orders o ON o.id = r.order_id"
                       " WHERE o.user_id = :u", u=buyer)
    assert review_id is not None
    after = last_id(shop, buyer)
    shop.telegram.send_command(admin, "review", f"{review_id}|refund|Data tidak cocok")
    told = content(said(shop, buyer, "dikembalikan ke saldo", after, timeout=60))
    assert "Data tidak cocok" in told and "Rp600.000" in told
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=buyer) == 700_000
    assert not [m for m in shop.telegram.bot_messages(buyer) if "KEY-26-" in content(m)]
    wait_until(lambda: shop.q("SELECT count(*) FROM audit_outbox") == 0, timeout=60,
               what="the audit shipped")
    report = check_invariants(shop.main, shop.audit, delivery_grace_seconds=0)
    assert report.ok, report.format()
