"""The order engine under concurrency and crashes, through real `celery worker` processes.

Every scenario ends with the invariant checker clean (audit shipped by the running beat).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quickcart.services.invariants import check_invariants
from tests.e2e.conftest import API_KEY, PROJECT, Shop
from tests.support import ROOT, wait_until

pytestmark = pytest.mark.slow


def assert_clean(shop: Shop) -> None:
    """Wait until the asynchronous tails are done (deliveries, sold_count roll-up, and last the
    audit shipping that those two also feed), then require every invariant to hold."""
    # A delivery whose worker died mid-send keeps its 60 s lease; the stuck-delivery sweep
    # runs every 30 s: up to ~90 s before it is re-sent.
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                              " AND delivered_at IS NULL") == 0,
               what="paid orders delivered", timeout=120)
    wait_until(lambda: shop.q("SELECT count(*) FROM sold_count_deltas") == 0,
               what="sold_count rolled up", timeout=30)
    wait_until(lambda: shop.q("SELECT count(*) FROM audit_outbox") == 0,
               what="audit shipped", timeout=60)
    report = check_invariants(shop.main, shop.audit, delivery_grace_seconds=0,
                              audit_grace_seconds=5)
    assert report.ok, report.format()


def delivered_contents(shop: Shop) -> list[str]:
    """Every stock key the bot sent to anyone, as the simulator recorded it."""
    keys = []
    for call in shop.telegram.calls(method="sendMessage"):
        if not call["ok"]:
            continue
        for line in str(call["params"].get("text", "")).splitlines():
            if line.startswith("KEY-"):
                keys.append(line)
    return keys


def sold_contents(shop: Shop) -> list[str]:
    """The content of every unit sold, from the database."""
    return sorted(r.content for r in shop.rows("SELECT content FROM product_stocks"
                                               " WHERE is_sold"))


def buy(shop: Shop, user_id: int, product_id: int, quantity: int = 1,
        method: str = "account_balance", voucher: str | None = None) -> str:
    key = f"test:{uuid.uuid4().hex}"
    shop.send("quickcart.create_order", user_id=user_id, product_id=product_id,
              quantity=quantity, payment_method=method, idempotency_key=key,
              voucher_code=voucher)
    return key


def test_fifty_buyers_ten_units(shop: Shop) -> None:
    product = shop.add_product(1, price=10000, units=10)
    buyers = [shop.add_user(1000 + i, balance=50000) for i in range(50)]
    keys = [buy(shop, uid, product) for uid in buyers]
    outcomes = shop.wait_intents(keys)

    assert sum(o["status"] == "paid" for o in outcomes) == 10
    assert sum(o.get("error") == "out_of_stock" for o in outcomes) == 40
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 10
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 10
    assert shop.q("SELECT count(DISTINCT stock_id) FROM order_items") == 10
    assert shop.q("SELECT sum(account_balance) FROM users") == 50 * 50000 - 10 * 10000
    wait_until(lambda: len(delivered_contents(shop)) >= 10, what="10 deliveries")
    contents = delivered_contents(shop)
    assert sorted(contents) == sorted(f"KEY-1-{i}" for i in range(1, 11)), "each key once"
    assert_clean(shop)
    assert shop.q("SELECT sold_count FROM products WHERE id = 1") == 10


def test_twenty_concurrent_balance_payments_by_one_user(shop: Shop) -> None:
    product = shop.add_product(2, price=15000, units=30)
    user = shop.add_user(2000, balance=100000)  # enough for 6 units, not 7
    keys = [buy(shop, user, product) for _ in range(20)]
    outcomes = shop.wait_intents(keys)

    assert sum(o["status"] == "paid" for o in outcomes) == 6
    assert sum(o.get("error") == "insufficient_balance" for o in outcomes) == 14
    balance = shop.q("SELECT account_balance FROM users WHERE id = :u", u=user)
    ledger = shop.q("SELECT sum(amount) FROM balance_ledger WHERE user_id = :u", u=user)
    assert balance == ledger == Decimal(100000 - 6 * 15000)
    assert shop.q("SELECT min(balance_after) FROM balance_ledger WHERE user_id = :u",
                  u=user) >= 0
    assert_clean(shop)


def test_one_voucher_ten_users(shop: Shop) -> None:
    product = shop.add_product(3, price=20000, units=20)
    admin = shop.add_user(3000)
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :a"),
                     {"a": admin})
    from quickcart.services.vouchers import generate_vouchers

    [code] = generate_vouchers(shop.main, admin, 5000, 1)
    users = [shop.add_user(3100 + i, balance=50000) for i in range(10)]
    keys = [buy(shop, uid, product, voucher=code.lower()) for uid in users]
    outcomes = shop.wait_intents(keys)

    assert sum(o["status"] == "paid" for o in outcomes) == 1
    assert sum(o.get("error") == "voucher_used" for o in outcomes) == 9
    assert shop.q("SELECT count(*) FROM vouchers WHERE is_used") == 1
    assert shop.q("SELECT sum(voucher_discount) FROM orders") == 5000
    assert shop.q("SELECT count(*) FROM voucher_usage_cooldown") == 1
    assert_clean(shop)


def _qris_order(shop: Shop, user: int, product: int) -> tuple[int, str]:
    """A pending QRIS order with its gateway transaction open (QR sent)."""
    [outcome] = shop.wait_intents([buy(shop, user, product, method="qris")])
    assert outcome["status"] == "pending", outcome
    order_id = outcome["order_id"]
    wait_until(lambda: shop.q("SELECT payment_number FROM orders WHERE id = :o", o=order_id),
               what="QR created with the gateway")
    wait_until(lambda: [c for c in shop.telegram.calls(method="sendPhoto", chat_id=user)
                        if c["ok"]], what="QR photo")
    return order_id, outcome["invoice_id"]


def test_confirmation_delivered_ten_times(shop: Shop) -> None:
    product = shop.add_product(4, price=25000, units=3)
    user = shop.add_user(4000)
    order_id, invoice = _qris_order(shop, user, product)
    fee = shop.q("SELECT payment_fee FROM orders WHERE id = :o", o=order_id)
    assert fee == Decimal(25000 * 7 / 1000) + 310  # gateway fee, stored as authoritative

    # A confirmation before the money arrived changes nothing (the webhook is only a hint).
    shop.send("quickcart.confirm_payment", invoice_id=invoice)
    wait_until(lambda: _task_done(shop, "confirm_payment", 1), what="unpaid confirmation",
               timeout=30)
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "pending"

    shop.gateway_marks_paid(invoice)
    for _ in range(10):
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="delivery")
    wait_until(lambda: _task_done(shop, "confirm_payment", 11), what="all confirmations",
               timeout=60)
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert shop.q("SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 1
    assert delivered_contents(shop) == sold_contents(shop), "the sold unit, exactly once"
    assert shop.q("SELECT count(*) FROM balance_ledger") == 0
    assert_clean(shop)


def _task_done(shop: Shop, name: str, count: int) -> bool:
    """Whether the worker log shows `count` successes of task `name`."""
    log = shop.worker.log_path.read_text(errors="replace")
    done = sum(1 for line in log.splitlines()
               if f"quickcart.{name}[" in line and "succeeded" in line)
    return done >= count


def test_worker_killed_while_confirming(shop: Shop) -> None:
    product = shop.add_product(5, price=30000, units=2)
    user = shop.add_user(5000)
    order_id, invoice = _qris_order(shop, user, product)
    shop.gateway_marks_paid(invoice)
    # The gateway answers slowly: the confirmation is mid-flight when the worker dies.
    shop.pakasir.post("/sandbox/faults/api", json={"latency_seconds": 3.0})
    shop.send("quickcart.confirm_payment", invoice_id=invoice)
    wait_until(lambda: "quickcart.confirm_payment" in shop.worker.log_path.read_text(),
               what="confirmation started")
    shop.worker.kill_hard()
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "pending"
    shop.pakasir.post("/sandbox/faults/api", json={"latency_seconds": 0})

    shop.restart_worker()
    # The unacknowledged message comes back after the visibility timeout and completes.
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="paid and delivered after restart", timeout=90)
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert shop.q("SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1
    assert delivered_contents(shop) == sold_contents(shop), "the sold unit, exactly once"
    assert_clean(shop)


def test_payment_after_expiry_is_credited(shop: Shop) -> None:
    product = shop.add_product(6, price=40000, units=1)
    user = shop.add_user(6000)
    order_id, invoice = _qris_order(shop, user, product)
    # The race: the shopper pays at the gateway, but our expiry runs before any confirmation.
    shop.paid_at_gateway_then_expired(order_id, invoice)
    assert shop.q("SELECT count(*) FROM product_stocks WHERE order_id IS NULL") == 1

    for _ in range(3):
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    wait_until(lambda: shop.q("SELECT account_balance FROM users WHERE id = :u", u=user),
               what="late payment credited")
    wait_until(lambda: _task_done(shop, "confirm_payment", 3), what="3 confirmations",
               timeout=60)
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=user) == 40000
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'late_payment'") == 1
    assert shop.q("SELECT status FROM orders WHERE id = :o", o=order_id) == "expired"
    assert_clean(shop)


def test_check_fails_on_a_corrupted_copy(shop: Shop) -> None:
    product = shop.add_product(7, price=10000, units=3)
    user = shop.add_user(7000, balance=30000)
    shop.wait_intents([buy(shop, user, product)])
    assert_clean(shop)
    env = {**shop.env, "PAKASIR_PROJECT": PROJECT, "PAKASIR_API_KEY": API_KEY}
    clean = subprocess.run([sys.executable, "-m", "quickcart.cli", "check"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    copy_name = f"qct_copy_{uuid.uuid4().hex[:8]}"
    source = make_url(shop.urls.database_url)
    admin = create_engine(shop.urls.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = :d AND pid <> pg_backend_pid()"),
                     {"d": source.database})
        conn.exec_driver_sql(f'CREATE DATABASE "{copy_name}" TEMPLATE "{source.database}"')
    shop.main.dispose()  # its pooled connections were just terminated
    copy_url = source.set(database=copy_name).render_as_string(hide_password=False)
    try:
        corrupt = create_engine(copy_url)
        with corrupt.begin() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.execute(text("UPDATE users SET account_balance = account_balance + 5000"))
            conn.execute(text("UPDATE product_stocks SET is_sold = true, order_id ="
                              " (SELECT min(id) FROM orders) WHERE NOT is_sold"))
        corrupt.dispose()
        broken = subprocess.run([sys.executable, "-m", "quickcart.cli", "check"], cwd=ROOT,
                                env={**env, "DATABASE_URL": copy_url}, capture_output=True,
                                text=True, timeout=120)
        assert broken.returncode == 1, broken.stdout
        assert "balance_equals_ledger" in broken.stdout
        assert "stock_conserved" in broken.stdout
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{copy_name}" WITH (FORCE)')
        admin.dispose()
