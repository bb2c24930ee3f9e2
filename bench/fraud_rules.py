"""`fraud-rules`: the anti-fraud rules' cost per order with N paid orders in the table.

A scratch database gets N paid orders (generate_series, triggers off while loading) spread over
20,000 users and 30 days. Then, in one process on one connection each:
- rules alone: the rules' statement and evaluation under the buyer's row lock (what
  fraud.screen adds to a purchase that passes), for random buyers;
- the create-order transaction (a balance purchase, quickcart.services.orders) with the rules
  switched off (the baseline) and on, in alternating blocks, so both see the same load.
Prints the figures, the ratio against the baseline, the plan's index use, and PASS when the
rules cost under 2 ms per order.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from decimal import Decimal

from sqlalchemy import text

from bench.common import Report, percentile
from bench.harness import Stack

USERS = 20_000
BUYERS = 400
BLOCK = 100
BUDGET_MS = 2.0

_LOAD = [
    "SET session_replication_role = replica",
    "INSERT INTO users (id, name, bank_id, account_balance, created_at)"
    " SELECT g, 'user ' || g, (100000 + g)::text, CASE WHEN g <= :buyers THEN 1000000 ELSE 0 END,"
    " now() - interval '90 days' FROM generate_series(1, :users) g",
    "INSERT INTO balance_ledger (user_id, amount, balance_after, reason, reference_type,"
    " reference_id) SELECT g, 1000000, 1000000, 'deposit', 'bench', 'seed-' || g"
    " FROM generate_series(1, :buyers) g",
    "INSERT INTO products (id, name, customer_price) VALUES (1, 'bench', 5000)",
    "INSERT INTO product_stocks (product_id, content)"
    " SELECT 1, 'KEY-' || g FROM generate_series(1, :units) g",
    # N paid orders, one a minute per user on average, over the last 30 days.
    "INSERT INTO orders (id, invoice_id, user_id, subtotal, voucher_discount, payment_fee,"
    " total_bill, payment_method, status, paid_at, amount_paid, expires_at, created_at,"
    " delivered_at, delivery_count)"
    " SELECT g, 'BN' || g, 1 + (g::bigint * 7919) % :users, 5000, 0, 0, 5000,"
    " CASE WHEN g % 3 = 0 THEN 'qris' ELSE 'account_balance' END, 'paid',"
    " now() - make_interval(mins => ((g::bigint * 31) % 43200)::int), 5000, now(),"
    " now() - interval '31 days', now(), 1 FROM generate_series(1, :n) g",
    "SELECT setval('orders_id_seq', :n)",
    "SET session_replication_role = origin",
]


def _load(stack: Stack, n: int) -> float:
    assert stack.main is not None
    started = time.perf_counter()
    with stack.main.begin() as conn:
        for statement in _LOAD:
            conn.execute(text(statement), {"n": n, "users": USERS, "buyers": BUYERS,
                                           "units": 4 * BUYERS + 10})
    with stack.main.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE orders, deposits, users, product_stocks")
    return time.perf_counter() - started


def _rules_alone(stack: Stack, samples: int) -> list[float]:
    from quickcart.db import locks
    from quickcart.services import fraud

    assert stack.main is not None
    timings = []
    rng = random.Random(24)
    with stack.main.connect() as conn:
        for _ in range(samples):
            user = rng.randint(1, USERS)
            with conn.begin() as tx:
                locks.lock_user(conn, user)
                t0 = time.perf_counter()
                facts, settings = fraud.read_facts(conn, user, Decimal(5000), external=True)
                fraud.evaluate(facts, settings)
                timings.append((time.perf_counter() - t0) * 1000)
                tx.rollback()
    return timings


def _switch(stack: Stack, on: bool) -> None:
    stack.exec("INSERT INTO fraud_settings (name, value) VALUES ('enabled', :v)"
               " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", v="1" if on else "0")


def _purchases(stack: Stack, buyers: list[int]) -> list[float]:
    from quickcart.services import orders

    assert stack.main is not None
    timings = []
    for user in buyers:
        t0 = time.perf_counter()
        outcome = orders.create_order(stack.main, orders.CreateOrder(
            user_id=user, product_id=1, quantity=1, payment_method="account_balance",
            idempotency_key=f"bench:{uuid.uuid4().hex}"))
        timings.append((time.perf_counter() - t0) * 1000)
        if outcome.result.get("status") != "paid":
            raise RuntimeError(f"purchase refused: {outcome.result}")
    return timings


def _plan(stack: Stack) -> str:
    from datetime import UTC, datetime, timedelta

    from quickcart.services import fraud

    assert stack.main is not None
    now = datetime.now(UTC)
    with stack.main.connect() as conn:
        rows = conn.execute(text("EXPLAIN " + fraud._FACTS), {
            "u": 7, "own_order": 0, "own_deposit": 0, "v_from": now - timedelta(hours=1),
            "s_from": now - timedelta(hours=1), "a_from": now - timedelta(hours=24),
            "small": Decimal(10000)}).scalars().all()
    return "\n".join(rows)


def run(size: int, as_json: bool) -> Report:
    """Measure the rules' cost per order with `size` paid orders in the table."""
    report = Report("fraud-rules")
    with Stack("fraud-rules", telegram=False, quiet=as_json) as stack:
        stack.log(f"loading {size:,} paid orders")
        report.add("load_seconds", _load(stack, size), f"loaded {size:,} paid orders in", "s")
        report.add("orders_in_table", int(stack.q("SELECT count(*) FROM orders")))
        plan = _plan(stack)
        seq_scans = [line.strip() for line in plan.splitlines()
                     if "Seq Scan on orders" in line]
        report.check("no_full_scan", not seq_scans, "rules' plan has no full scan of orders")
        report.add("index_scans", plan.count("idx_orders_user_paid"))
        alone = _rules_alone(stack, 2000)
        report.add("rules_alone_mean_ms", statistics.fmean(alone),
                   "rules alone (statement + evaluation), mean", "ms")
        report.add("rules_alone_p95_ms", percentile(alone, 95), "rules alone, p95", "ms")
        buyers = list(range(1, BUYERS + 1))
        random.Random(7).shuffle(buyers)
        off: list[float] = []
        on: list[float] = []
        for block in range(0, BUYERS, BLOCK):
            chunk = buyers[block:block + BLOCK]
            half = len(chunk) // 2
            _switch(stack, False)
            off += _purchases(stack, chunk[:half])
            _switch(stack, True)
            on += _purchases(stack, chunk[half:])
        base, with_rules = statistics.fmean(off), statistics.fmean(on)
        report.add("create_order_baseline_ms", base,
                   "create-order transaction, rules off (baseline), mean", "ms")
        report.add("create_order_with_rules_ms", with_rules,
                   "create-order transaction, rules on, mean", "ms")
        report.add("rules_cost_per_order_ms", with_rules - base,
                   "rules' cost per order (on - off)", "ms")
        report.add("ratio_vs_baseline", with_rules / base if base else 0.0,
                   "create-order with rules / baseline", "x")
        cost = max(statistics.fmean(alone), with_rules - base)
        report.check("under_budget", cost < BUDGET_MS,
                     f"rules cost per order under {BUDGET_MS:g} ms at {size:,} orders")
        report.note("rules alone = what fraud.screen adds to a purchase that passes (no write);"
                    " a flagged purchase also writes one risk_assessments row")
    return report
