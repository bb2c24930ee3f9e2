"""QRIS payments end to end: Pakasir sandbox → webhook API process → payments worker → delivery."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import text

from tests.e2e.conftest import PROJECT, Shop
from tests.e2e.test_order_engine import assert_clean, buy, delivered_contents, sold_contents
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture()
def api(shop: Shop) -> str:
    """The webhook API of the running shop (sandbox webhooks point at it)."""
    return shop.start_api()


def qris_order(shop: Shop, user: int, product: int) -> tuple[int, str, int]:
    """A pending QRIS order whose QR went out; returns (order id, invoice, payable amount)."""
    [outcome] = shop.wait_intents([buy(shop, user, product, method="qris")])
    assert outcome["status"] == "pending", outcome
    order_id = outcome["order_id"]
    wait_until(lambda: shop.q("SELECT payment_number FROM orders WHERE id = :o", o=order_id),
               what="gateway transaction")
    payable = int(shop.q("SELECT total_bill - payment_fee FROM orders WHERE id = :o",
                         o=order_id))
    return order_id, outcome["invoice_id"], payable


def pay(shop: Shop, invoice: str) -> None:
    """The shopper pays (the sandbox's "Bayar" button: completes and sends the webhook)."""
    response = shop.pakasir.post(f"/sandbox/transactions/{invoice}/pay")
    assert response.status_code in (200, 303), response.text


def completed_webhook(invoice: str, amount: int) -> dict[str, object]:
    """The body Pakasir posts when a QRIS transaction completes."""
    return {"amount": amount, "order_id": invoice, "project": PROJECT, "status": "completed",
            "payment_method": "qris", "completed_at": "2026-11-25T08:00:00+07:00"}


def webhooks_settled(shop: Shop) -> bool:
    return shop.pakasir.get("/sandbox/webhooks").json()["in_flight"] == 0


def test_pay_then_paid_and_delivered(shop: Shop, api: str) -> None:
    product = shop.add_product(11, price=50000, units=2)
    user = shop.add_user(11000)
    order_id, invoice, _ = qris_order(shop, user, product)
    photo = wait_until(lambda: [c for c in shop.telegram.calls(method="sendPhoto", chat_id=user)
                                if c["ok"]], what="QR photo")
    assert invoice in photo[0]["params"]["caption"]
    pay(shop, invoice)
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="paid and delivered")
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert shop.q("SELECT payment_number FROM orders WHERE id = :o", o=order_id) is None
    assert delivered_contents(shop) == sold_contents(shop)
    metrics = httpx.get(api + "/metrics", timeout=10).text
    assert 'quickcart_orders{status="paid"} 1.0' in metrics
    assert 'quickcart_payment_confirmations{outcome="paid"} 1.0' in metrics
    assert 'quickcart_delivery_seconds{quantile="0.99"}' in metrics
    # A process-wide counter: earlier tests sharing this API process may have counted too.
    queued = re.search(r'quickcart_webhooks_total\{outcome="queued"\} ([0-9.]+)', metrics)
    assert queued is not None and float(queued.group(1)) >= 1
    assert_clean(shop)


def test_same_webhook_ten_times_has_one_effect(shop: Shop, api: str) -> None:
    product = shop.add_product(12, price=30000, units=3)
    user = shop.add_user(12000)
    order_id, invoice, _ = qris_order(shop, user, product)
    shop.pakasir.post("/sandbox/faults/webhook/duplicate", json={"copies": 10, "count": 1})
    pay(shop, invoice)
    wait_until(lambda: webhooks_settled(shop), what="10 webhooks sent")
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="delivery")
    assert shop.q("SELECT count(*) FROM payment_events") == 1, "inbox deduplicates"
    assert shop.q("SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 1
    assert len(delivered_contents(shop)) == 1
    assert_clean(shop)


def test_forged_webhook_pays_nothing(shop: Shop, api: str) -> None:
    product = shop.add_product(13, price=20000, units=1)
    user = shop.add_user(13000)
    order_id, invoice, payable = qris_order(shop, user, product)
    forged = completed_webhook(invoice, payable)
    response = httpx.post(api + "/webhooks/pakasir", json=forged, timeout=10)
    assert response.status_code == 200  # a hint, accepted for checking
    wait_until(lambda: shop.q("SELECT outcome FROM payment_events") == "not_paid",
               what="gateway re-check")
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "pending"
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 0
    assert shop.q("SELECT count(*) FROM balance_ledger") == 0


def test_bad_webhooks_are_refused_and_change_nothing(shop: Shop, api: str) -> None:
    product = shop.add_product(14, price=20000, units=1)
    user = shop.add_user(14000)
    _order_id, invoice, payable = qris_order(shop, user, product)
    good = completed_webhook(invoice, payable)
    cases = [
        ({**good, "order_id": "QC000000UNKNOWN"}, 404),
        ({**good, "project": "someone-else"}, 400),
        ({**good, "amount": payable + 1}, 400),
        ({**good, "amount": "lots"}, 422),
        ({"hello": "world"}, 422),
        ([1, 2, 3], 422),
    ]
    for body, expected in cases:
        response = httpx.post(api + "/webhooks/pakasir", json=body, timeout=10)
        assert response.status_code == expected, (body, response.text)
    response = httpx.post(api + "/webhooks/pakasir", content=b"{not json", timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert shop.q("SELECT count(*) FROM payment_events") == 0
    assert shop.q("SELECT count(*) FROM outbox WHERE topic = 'quickcart.confirm_payment'") == 0
    refusals = shop.q("SELECT count(*) FROM audit_outbox WHERE action = 'webhook_rejected'")
    with shop.audit.connect() as conn:
        audited = conn.execute(text(
            "SELECT count(*) FROM audit_logs WHERE action = 'webhook_rejected'")).scalar()
    assert (refusals or 0) + (audited or 0) == 7, "each refusal audited"


def test_dropped_webhook_is_reconciled(shop: Shop, api: str) -> None:
    product = shop.add_product(15, price=25000, units=1)
    user = shop.add_user(15000)
    order_id, invoice, _ = qris_order(shop, user, product)
    shop.pakasir.post("/sandbox/faults/webhook/drop", json={"count": 1})
    pay(shop, invoice)
    wait_until(lambda: webhooks_settled(shop), what="webhook dropped")
    # No notification ever arrives; the reconciliation beat asks the gateway.
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="reconciled, paid and delivered", timeout=90)
    assert shop.q("SELECT count(*) FROM payment_events") == 0
    assert_clean(shop)


def test_paid_after_expiry_through_webhook_credits_balance(shop: Shop, api: str) -> None:
    product = shop.add_product(16, price=45000, units=1)
    user = shop.add_user(16000)
    order_id, invoice, payable = qris_order(shop, user, product)
    # Paid at the gateway, its webhook lost (it arrives late, below); then the order expires.
    shop.paid_at_gateway_then_expired(order_id, invoice)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = :p"
                  " AND order_id IS NULL", p=product) == 1
    late = completed_webhook(invoice, payable)
    for _ in range(3):
        httpx.post(api + "/webhooks/pakasir", json=late, timeout=10)
    wait_until(lambda: shop.q("SELECT account_balance FROM users WHERE id = :u", u=user),
               what="late payment credited", timeout=60)
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=user) == payable
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'late_payment'") == 1
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "expired"
    assert_clean(shop)


def test_gateway_down_leaves_nothing_stuck(shop: Shop, api: str) -> None:
    product = shop.add_product(17, price=15000, units=1)
    user = shop.add_user(17000)
    with shop.gateway_down():
        [outcome] = shop.wait_intents([buy(shop, user, product, method="qris")])
        order_id = outcome["order_id"]
        wait_until(lambda: shop.q("SELECT status FROM orders WHERE id = :o", o=order_id)
                   == "cancelled", what="order cancelled", timeout=60)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE order_id IS NULL") == 1
    wait_until(lambda: [c for c in shop.telegram.calls(method="sendMessage", chat_id=user)
                        if c["ok"] and "tidak tersedia" in c["params"]["text"]],
               what="polite 'payments unavailable' message")
    assert_clean(shop)


def test_deposit_paid_credits_once(shop: Shop, api: str) -> None:
    user = shop.add_user(18000)
    key = f"test:{uuid.uuid4().hex}"
    shop.send("quickcart.create_deposit", user_id=user, amount="50000", idempotency_key=key)
    [outcome] = shop.wait_intents([key])
    invoice = outcome["invoice_id"]
    wait_until(lambda: shop.q("SELECT payment_number FROM deposits WHERE invoice_id = :i",
                              i=invoice), what="deposit QR")
    shop.pakasir.post("/sandbox/faults/webhook/duplicate", json={"copies": 3, "count": 1})
    pay(shop, invoice)
    wait_until(lambda: shop.q("SELECT status FROM deposits WHERE invoice_id = :i", i=invoice)
               == "paid", what="deposit paid")
    wait_until(lambda: webhooks_settled(shop), what="duplicates sent")
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=user) == 50000
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'deposit'") == 1
    assert_clean(shop)
