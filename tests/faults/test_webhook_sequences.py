"""Gateway notifications through the webhook API process, out of order and in mixed sequences.

Complements tests/e2e/test_payments_api.py (single duplicates, forged, bad bodies, one late
payment): here expiry and payment race each other in both orders, many notifications of several
invoices arrive interleaved from threads, and forged, wrong and real ones are mixed.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PROJECT
from tests.faults.conftest import FaultShop
from tests.faults.helpers import (
    assert_clean,
    assert_delivered_once,
    make_due,
    qris_pending,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture()
def api(fshop: FaultShop) -> str:
    return fshop.start_api()


def _settled(shop: FaultShop) -> bool:
    return shop.pakasir.get("/sandbox/webhooks").json()["in_flight"] == 0


def _pay_silently(shop: FaultShop, invoice: str) -> dict[str, Any]:
    """The shopper pays; the gateway's webhook is lost. Returns the body it would have sent."""
    shop.pakasir.post("/sandbox/faults/webhook/drop", json={"count": 1})
    response = shop.pakasir.post(f"/sandbox/transactions/{invoice}/pay")
    assert response.status_code in (200, 303), response.text
    [body] = [d["body"] for d in shop.pakasir.get("/sandbox/webhooks").json()["deliveries"]
              if d["order_id"] == invoice and d["outcome"] == "dropped"]
    return body


def _post_many(api: str, bodies: list[Any]) -> list[int]:
    """POST every body concurrently (8 at a time), in the given order of submission."""
    with ThreadPoolExecutor(8) as pool, httpx.Client(timeout=20) as client:
        return list(pool.map(lambda b: client.post(api + "/webhooks/pakasir", json=b)
                             .status_code, bodies))


def _expire_task(shop: FaultShop, kind: str, row_id: int) -> None:
    shop.client.send_task("quickcart.expire", kwargs={"kind": kind, "id": row_id},
                          queue="expiry")


def _events_done(shop: FaultShop, count: int) -> bool:
    return shop.q("SELECT count(*) FROM payment_events WHERE processed_at IS NOT NULL") == count


def test_paid_after_expired_with_duplicates_and_expiries_interleaved(fshop: FaultShop,
                                                                      api: str) -> None:
    shop = fshop
    product = shop.add_product(21, price=35000, units=1)
    user = shop.add_user(21000)
    order_id, invoice = qris_pending(shop, user, product)
    body = _pay_silently(shop, invoice)
    # Our expiry wins the race: the order expires (its unit goes back on sale) ...
    make_due(shop, [order_id])
    _expire_task(shop, "order", order_id)
    wait_until(lambda: shop.q("SELECT status FROM orders WHERE id = :o", o=order_id)
               == "expired", what="expired", timeout=60)
    # ... then the paid notification arrives ten times, mixed with more expiries, direct
    # confirmations and a reconciliation pass.
    for _ in range(3):
        _expire_task(shop, "order", order_id)
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    codes = _post_many(api, [body] * 10)
    assert codes == [200] * 10
    wait_until(lambda: _events_done(shop, 1), what="the event processed", timeout=60)
    wait_until(lambda: _settled(shop) and shop.q(
        "SELECT count(*) FROM balance_ledger WHERE reason = 'late_payment'") == 1,
        what="late payment credited", timeout=60)

    payable = body["amount"]
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "expired"
    assert shop.q("SELECT count(*) FROM payment_events") == 1
    assert shop.q("SELECT outcome FROM payment_events") in ("credited_late", "already_credited")
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=user) == payable
    assert shop.q("SELECT count(*) FROM product_stocks WHERE order_id IS NULL AND NOT is_sold"
                  ) == 1, "the unit is back on sale, not sold"
    assert shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id) is None
    assert_clean(shop)
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'late_payment'") == 1


def test_expiry_after_paid_changes_nothing(fshop: FaultShop, api: str) -> None:
    shop = fshop
    product = shop.add_product(22, price=25000, units=2)
    user = shop.add_user(22000)
    order_id, invoice = qris_pending(shop, user, product)
    body = _pay_silently(shop, invoice)
    assert _post_many(api, [body]) == [200]
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="paid and delivered", timeout=60)
    # Out of order: the expiry (timer, sweep), a user cancel, the gateway's own clock running
    # out, and replays of the paid notification all come after the payment.
    shop.pakasir.post("/sandbox/clock/advance", json={"seconds": 3600})
    for _ in range(3):
        _expire_task(shop, "order", order_id)
        shop.send("quickcart.cancel_order", user_id=user, order_id=order_id)
    shop.client.send_task("quickcart.expiry_sweep", queue="expiry")
    shop.client.send_task("quickcart.reconcile_payments", queue="payments")
    assert _post_many(api, [body] * 10) == [200] * 10
    wait_until(lambda: _events_done(shop, 1), what="the event processed", timeout=60)
    wait_until(lambda: shop.q("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
               what="outbox drained", timeout=30)

    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert shop.q("SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 1
    assert shop.q("SELECT count(*) FROM payment_events") == 1
    assert shop.q("SELECT count(*) FROM balance_ledger") == 0
    assert_clean(shop)
    assert_delivered_once(shop)


def test_mixed_sequences_over_many_invoices(fshop: FaultShop, api: str) -> None:
    shop = fshop
    product = shop.add_product(23, price=20000, units=10)
    payers = [shop.add_user(23000 + i) for i in range(5)]
    canceller = shop.add_user(23100)
    orders = [qris_pending(shop, u, product) for u in payers]
    cancelled_id, cancelled_invoice = qris_pending(shop, canceller, product)
    payable = int(shop.q("SELECT total_bill - payment_fee FROM orders WHERE id = :o",
                         o=orders[0][0]))

    def notice(invoice: str, **over: Any) -> dict[str, Any]:
        return {"amount": payable, "order_id": invoice, "project": PROJECT,
                "status": "completed", "payment_method": "qris",
                "completed_at": "2026-11-25T08:00:00+07:00", **over}

    # The shopper cancels one order; its forged "paid" notification must credit nothing.
    shop.send("quickcart.cancel_order", user_id=canceller, order_id=cancelled_id)
    wait_until(lambda: shop.q("SELECT status FROM orders WHERE id = :o", o=cancelled_id)
               == "cancelled", what="cancelled", timeout=60)

    # Round 1, before anybody paid: forged notifications (accepted as hints, gateway says
    # unpaid), wrong amounts, unknown invoices, other projects, all interleaved.
    forged = [notice(inv) for _o, inv in orders] + [notice(cancelled_invoice)]
    bad = ([notice(inv, amount=payable + 1000) for _o, inv in orders]
           + [notice(inv.replace("QC", "QX")) for _o, inv in orders]
           + [notice(inv, project="other") for _o, inv in orders])
    batch = forged * 2 + bad
    random.Random(7).shuffle(batch)
    codes = dict(zip(map(id, batch), _post_many(api, batch), strict=True))
    assert all(codes[id(b)] == 200 for b in forged)
    assert sorted(codes[id(b)] for b in bad) == [400] * 10 + [404] * 5
    wait_until(lambda: _events_done(shop, 6), what="6 forged hints re-checked", timeout=60)
    assert shop.q("SELECT count(*) FROM payment_events WHERE outcome = 'not_paid'") == 6
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 0

    # Round 2: everybody pays (webhooks lost), then the real notifications arrive ten times
    # each, interleaved across invoices with the forged ones replayed.
    real = [_pay_silently(shop, inv) for _o, inv in orders]
    batch = real * 10 + forged
    random.Random(11).shuffle(batch)
    assert _post_many(api, batch) == [200] * len(batch)
    wait_until(lambda: _events_done(shop, 11), what="11 events processed", timeout=90)
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                              " AND delivered_at IS NOT NULL") == 5,
               what="5 paid and delivered", timeout=60)

    assert shop.q("SELECT count(*) FROM payment_events") == 11, "one event per distinct notice"
    outcomes = dict(shop.rows("SELECT outcome, count(*) FROM payment_events GROUP BY outcome"))
    assert outcomes.get("not_paid") == 6
    assert outcomes.get("paid", 0) + outcomes.get("already_paid", 0) == 5, outcomes
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=cancelled_id) == "cancelled"
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 5
    assert shop.q("SELECT count(*) FROM balance_ledger") == 0
    assert shop.q("SELECT sum(account_balance) FROM users") == 0
    assert_clean(shop)
    assert_delivered_once(shop)


def test_deposit_paid_after_expiry_and_in_time(fshop: FaultShop, api: str) -> None:
    shop = fshop
    late, on_time = shop.add_user(24000), shop.add_user(24001)
    invoices = {}
    for user in (late, on_time):
        key = f"flt:dep:{user}"
        shop.send("quickcart.create_deposit", user_id=user, amount="40000", idempotency_key=key)
        [outcome] = shop.wait_intents([key])
        invoices[user] = (outcome["deposit_id"], outcome["invoice_id"])
        wait_until(lambda inv=outcome["invoice_id"]: shop.q(
            "SELECT payment_number FROM deposits WHERE invoice_id = :i", i=inv),
            what="deposit QR", timeout=60)
    bodies = {u: _pay_silently(shop, inv) for u, (_d, inv) in invoices.items()}
    # The late one expires on our side before its notification comes.
    dep_id = invoices[late][0]
    with shop.main.begin() as conn:
        conn.exec_driver_sql("UPDATE deposits SET expires_at = now() - interval '1 second'"
                             f" WHERE id = {int(dep_id)}")
    _expire_task(shop, "deposit", dep_id)
    wait_until(lambda: shop.q("SELECT status FROM deposits WHERE id = :d", d=dep_id)
               == "expired", what="deposit expired", timeout=60)
    batch = [bodies[late]] * 10 + [bodies[on_time]] * 10
    random.Random(3).shuffle(batch)
    assert _post_many(api, batch) == [200] * 20
    for _ in range(2):
        _expire_task(shop, "deposit", dep_id)
        _expire_task(shop, "deposit", invoices[on_time][0])
    wait_until(lambda: _events_done(shop, 2), what="2 events processed", timeout=60)
    wait_until(lambda: shop.q("SELECT count(*) FROM balance_ledger") == 2,
               what="two credits", timeout=60)

    assert shop.q("SELECT status FROM deposits WHERE id = :d", d=dep_id) == "expired"
    assert shop.q("SELECT status FROM deposits WHERE id = :d", d=invoices[on_time][0]) == "paid"
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=late) == 40000
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=on_time) == 40000
    assert dict(shop.rows("SELECT reason, count(*) FROM balance_ledger GROUP BY reason")) == {
        "late_payment": 1, "deposit": 1}
    assert shop.q("SELECT count(*) FROM payment_events") == 2
    assert_clean(shop)
