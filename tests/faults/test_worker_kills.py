"""`kill -9` of workers in the middle of tasks, again and again, across a running load.

One worker process per queue group (orders, payments, notify, bulk, system = default/expiry/
audit), so every kind of task is killed mid-flight: balance purchases, QRIS starts and
confirmations, expiries, stock imports, deliveries, audit shipping. A killed worker's messages
come back after the 12 s visibility timeout; at the end nothing is lost and nothing is applied
twice.
"""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import pytest

from tests.faults.conftest import FaultShop
from tests.faults.helpers import (
    add_admin,
    assert_clean,
    assert_delivered_once,
    import_task,
    intent,
    make_due,
    qris_pending,
    wait_all_outcomes,
    write_keys,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow

KILLS = 20
# Orders and payments carry the money; they are killed most often.
KILL_ORDER = ["orders", "payments", "notify", "orders", "system", "payments", "bulk",
              "notify", "orders", "payments"]


def test_repeated_worker_kills_lose_nothing_and_double_nothing(fshop: FaultShop,
                                                               tmp_path) -> None:
    shop = fshop
    started = time.monotonic()
    plenty = shop.add_product(1, price=10000, units=100)
    scarce = shop.add_product(2, price=10000, units=5)
    qris_product = shop.add_product(3, price=20000, units=30)
    imported = shop.add_product(4, price=5000, units=0)
    admin = add_admin(shop, 9000)
    buyers = [shop.add_user(1000 + i, balance=30000) for i in range(30)]
    scarce_buyers = [shop.add_user(2000 + i, balance=10000) for i in range(10)]
    payers = [shop.add_user(3000 + i) for i in range(6)]
    lapsers = [shop.add_user(3100 + i) for i in range(5)]
    late_qris = [shop.add_user(3200 + i) for i in range(4)]

    # Before the storm: open QRIS orders (their QR exists at the gateway).
    paid_qris = [qris_pending(shop, u, qris_product) for u in payers]
    lapsing = [qris_pending(shop, u, qris_product) for u in lapsers]
    shop.start_group_workers()

    # The load, as rounds of intents; a worker is killed hard after every round.
    balance_keys = [f"flt:bal:{u}:{n}" for u in buyers for n in range(2)]
    scarce_keys = [f"flt:scarce:{u}" for u in scarce_buyers]
    late_keys = [f"flt:lateqris:{u}" for u in late_qris]
    files = [write_keys(tmp_path / f"up{i}.txt", f"IMP{i}", 300) for i in range(3)]
    rounds: list[list[tuple]] = [[] for _ in range(KILLS)]
    slots = itertools.cycle(range(KILLS))
    for key in balance_keys:
        user = int(key.split(":")[2])
        rounds[next(slots)].append(("buy", user, plenty, key))
    for key in scarce_keys:
        rounds[next(slots)].append(("buy", int(key.split(":")[2]), scarce, key))
    for key in late_keys:
        rounds[next(slots)].append(("qris", int(key.split(":")[2]), qris_product, key))
    for order_id, invoice in paid_qris:
        rounds[next(slots)].append(("pay", invoice))
    rounds[2].append(("due", [o for o, _ in lapsing]))
    for order_id, _invoice in lapsing:
        rounds[next(slots)].append(("expire", order_id))
    for i, path in enumerate(files):
        rounds[3 + 5 * i].append(("import", f"up-{i}", path))
    # The bot retries: every intent is sent a second time, later, with the same key.
    for r in range(KILLS // 2):
        rounds[KILLS // 2 + r].extend(s for s in rounds[r] if s[0] != "due")

    import_keys = []
    for number, batch in enumerate(rounds):
        for step in batch:
            kind = step[0]
            if kind == "buy":
                intent(shop, step[1], step[2], key=step[3])
            elif kind == "qris":
                intent(shop, step[1], step[2], method="qris", key=step[3])
            elif kind == "pay":
                shop.pakasir.post(f"/sandbox/transactions/{step[1]}/mark-paid")
                shop.send("quickcart.confirm_payment", invoice_id=step[1])
            elif kind == "due":
                make_due(shop, step[1])
            elif kind == "expire":
                shop.client.send_task("quickcart.expire",
                                      kwargs={"kind": "order", "id": step[1]}, queue="expiry")
            elif kind == "import":
                import_keys.append(import_task(shop, imported, admin, step[1], step[2]))
        time.sleep(1.5)  # let the workers get into the middle of it
        shop.kill_group(KILL_ORDER[number % len(KILL_ORDER)])
    assert shop.kills == KILLS

    intents = balance_keys + scarce_keys + late_keys + sorted(set(import_keys))
    results = wait_all_outcomes(shop, intents, timeout=150, extra=shop.group_logs,
                                logs=shop.group_log_paths())

    # Nothing lost, nothing doubled: exact outcomes of every intent.
    assert all(results[k]["status"] == "paid" for k in balance_keys), \
        [results[k] for k in balance_keys if results[k]["status"] != "paid"][:3]
    scarce_status = sorted(results[k].get("status") or results[k].get("error")
                           for k in scarce_keys)
    assert scarce_status.count("paid") == 5, scarce_status
    assert sum(results[k].get("error") == "out_of_stock" for k in scarce_keys) == 5
    assert all(results[k]["status"] == "pending" for k in late_keys)
    assert all(results[f"stock-import:up-{i}"]["added"] == 300 for i in range(3))

    paid_ids = [o for o, _ in paid_qris]
    lapsed_ids = [o for o, _ in lapsing]
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE id = ANY(:o)"
                              " AND status = 'paid'", o=paid_ids) == 6,
               what="6 QRIS confirmations", timeout=90, interval=0.5)
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE id = ANY(:o)"
                              " AND status = 'expired'", o=lapsed_ids) == 5,
               what="5 expiries", timeout=90, interval=0.5)
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE status = 'pending'"
                              " AND payment_number IS NOT NULL") == 4,
               what="the 4 QRIS orders opened mid-storm have their QR", timeout=90,
               interval=0.5)

    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 60 + 5 + 6
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'expired'") == 5
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'pending'") == 4
    assert shop.q("SELECT count(*) FROM orders") == 60 + 5 + 6 + 5 + 4
    sold = dict(shop.rows("SELECT product_id, count(*) FROM product_stocks WHERE is_sold"
                          " GROUP BY product_id"))
    assert sold == {plenty: 60, scarce: 5, qris_product: 6}
    assert shop.q("SELECT count(*) FROM product_stocks WHERE product_id = :p",
                  p=imported) == 900
    # Units sold = items of paid orders.
    assert shop.q("SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id"
                  " WHERE o.status = 'paid'") == 71
    # Ledger: one purchase row per balance order, never two.
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'purchase'") == 65
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'late_payment'") == 0
    balances = dict(shop.rows("SELECT id, account_balance FROM users"))
    assert all(balances[u] == Decimal(10000) for u in buyers)
    assert sorted(balances[u] for u in scarce_buyers) == [0] * 5 + [10000] * 5
    assert sum(balances[u] for u in payers + lapsers + late_qris) == 0
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                  " AND amount_paid <> total_bill") == 0

    assert_clean(shop)
    assert_delivered_once(shop)
    print(f"{shop.kills} hard kills; scenario took {time.monotonic() - started:.0f} s")
