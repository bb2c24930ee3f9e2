"""`flash-sale`: N buyers at once for N/10 units of one product."""

from __future__ import annotations

import time

from sqlalchemy import text

from bench import cpu
from bench.common import Report, intent_key, percentile
from bench.harness import Stack, wait_until
from bench.orders import PRICE, start_shop

WARM_UP_PRODUCT = 2
WARM_UP_USERS = 90_000  # first id of the warm-up shoppers; the sale's buyers come before
LATE_PRODUCT = 3
LATE_USER = 95_000  # buys another product once the sale is decided, behind its notices


def warm_up(stack: Stack, buyers: int = 24) -> None:
    """A few ordinary purchases first, as a live shop has had before its sale starts: every
    pool child has its database connection and compiled statements, every backend its caches."""
    users = stack.add_users(WARM_UP_USERS, buyers, balance=PRICE * 10)
    stack.add_product(WARM_UP_PRODUCT, PRICE, buyers)
    stack.send_many("quickcart.create_order", [
        {"user_id": uid, "product_id": WARM_UP_PRODUCT, "quantity": 1,
         "payment_method": "account_balance", "idempotency_key": intent_key("warm")}
        for uid in users])
    wait_until(lambda: stack.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                               " AND delivered_at IS NOT NULL") == buyers,
               what="warm-up purchases delivered", timeout=120, interval=0.1)


def run(size: int, as_json: bool) -> Report:
    report = Report("flash-sale")
    units = max(1, size // 10)
    with Stack("flash-sale", quiet=as_json) as stack:
        buyers = stack.add_users(10_000, size, balance=PRICE * 10)
        stack.add_product(1, PRICE, units)
        stack.add_product(LATE_PRODUCT, PRICE, 1)
        [late_user] = stack.add_users(LATE_USER, 1, balance=PRICE * 10)
        stack.vacuum()
        start_shop(stack, 8)
        warm_up(stack)
        assert stack.main is not None
        stack.log(f"{size} buyers at once for {units} units")
        # All buyers press "buy" at once: every intent is built first, as the bot would send
        # it (building is the bot's work, in its own process), then pushed in pipelines of 50,
        # so the first reach the queue within a millisecond; latencies count from the first.
        keys = [intent_key("flash") for _ in buyers]
        queue, _ids, messages = stack.build_messages("quickcart.create_order", [
            {"user_id": uid, "product_id": 1, "quantity": 1, "payment_method": "account_balance",
             "idempotency_key": key} for uid, key in zip(buyers, keys, strict=True)])
        cpu_at_start = cpu.snapshot(stack)
        pg_at_start = cpu.postgres_by_client(stack)
        winners_cpu: dict[str, float] = {}
        winners_pg: dict[str, float] = {}
        t0 = time.time()
        for start in range(0, len(messages), 50):
            stack.push(queue, messages[start:start + 50])
        enqueue_s = time.time() - t0
        sent = dict.fromkeys(keys, t0)

        def all_recorded() -> bool:
            stack.check_alive()
            if not winners_cpu and stack.q(
                    "SELECT count(*) FROM orders WHERE delivered_at IS NOT NULL"
                    " AND user_id < :warm", warm=WARM_UP_USERS) >= units:
                # Every winner has its key: the CPU the sale took so far, by process group.
                now = cpu.snapshot(stack)
                winners_cpu.update({g: now[g] - cpu_at_start.get(g, 0.0) for g in now})
                pg_now = cpu.postgres_by_client(stack)
                winners_pg.update({g: pg_now[g] - pg_at_start.get(g, 0.0) for g in pg_now})
            n = stack.q("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'bench:flash:%'"
                        " AND result IS NOT NULL")
            return bool(n == size)

        wait_until(all_recorded, what=f"{size} intents", timeout=600, interval=0.2)
        intents_done_s = time.time() - t0
        # Another shopper buys something else now: the delivery queues behind whatever of the
        # sale's "sold out" notices the notify worker has not sent yet.
        assert stack.redis is not None
        notices_queued = int(stack.redis.llen(stack.key("notify")))
        late_key = intent_key("late")
        late_sent = time.time()
        stack.send("quickcart.create_order", user_id=late_user, product_id=LATE_PRODUCT,
                   quantity=1, payment_method="account_balance", idempotency_key=late_key)
        wait_until(lambda: stack.q("SELECT count(*) FROM orders WHERE status = 'paid'"
                                   " AND delivered_at IS NULL") == 0,
                   what="deliveries", timeout=300, interval=0.2)
        wait_until(lambda: stack.q("SELECT count(*) FROM orders WHERE user_id = :u"
                                   " AND delivered_at IS NOT NULL", u=late_user) == 1,
                   what="the late shopper's delivery", timeout=300, interval=0.05)
        with stack.main.connect() as conn:
            rows = conn.execute(text(
                "SELECT k.key, k.result->>'status' AS status, k.result->>'error' AS error,"
                " extract(epoch FROM k.created_at) AS recorded,"
                " extract(epoch FROM o.delivered_at) AS delivered,"
                " extract(epoch FROM o.paid_at) AS paid_at"
                " FROM idempotency_keys k LEFT JOIN orders o"
                " ON o.id = (k.result->>'order_id')::int"
                " WHERE k.key LIKE 'bench:flash:%'")).all()
            sold = conn.execute(text("SELECT count(*) FROM product_stocks"
                                     " WHERE is_sold AND product_id = 1")).scalar()
            twice = conn.execute(text(
                "SELECT count(*) - count(DISTINCT stock_id) FROM order_items")).scalar()
            late_delivered = conn.execute(text(
                "SELECT extract(epoch FROM o.delivered_at) FROM orders o"
                " WHERE o.user_id = :u"), {"u": late_user}).scalar_one()
        paid = [r for r in rows if r.status == "paid"]
        sold_out = [r for r in rows if r.error == "out_of_stock"]
        deliveries = [float(r.delivered) - sent[r.key] for r in paid if r.delivered]
        to_paid = [float(r.paid_at) - sent[r.key] for r in paid if r.paid_at]
        paid_to_delivered = [float(r.delivered) - float(r.paid_at) for r in paid
                             if r.delivered and r.paid_at]
        refusals = [float(r.recorded) - sent[r.key] for r in sold_out]
        delivered_keys = sum(
            1 for call in stack.telegram.calls(method="sendMessage")
            if call.get("ok") and "KEY-1-" in str(call["params"].get("text", "")))
        report.add("buyers", size, "buyers")
        report.add("units", units, "units in stock")
        report.add("enqueue_seconds", enqueue_s, "time to enqueue every intent", "s")
        report.add("all_intents_recorded_seconds", intents_done_s,
                   "first intent sent -> last outcome recorded", "s")
        report.add("sold", len(paid), "orders paid")
        report.add("units_marked_sold", sold, "units marked sold")
        report.add("oversold", int(twice or 0) + max(0, len(paid) - units),
                   "oversold (must be 0)")
        report.add("told_sold_out", len(sold_out), "intents answered out_of_stock")
        report.add("deliveries_seen_by_telegram", delivered_keys, "keys the simulator received")
        report.add("delivery_p50_s", percentile(deliveries, 50), "intent -> delivered_at p50", "s")
        report.add("delivery_p99_s", percentile(deliveries, 99), "intent -> delivered_at p99", "s")
        report.add("paid_p99_s", percentile(to_paid, 99),
                   "  of which intent -> paid (orders worker) p99", "s")
        report.add("paid_to_delivered_p99_s", percentile(paid_to_delivered, 99),
                   "  of which paid -> delivered (notify worker) p99", "s")
        report.add("late_notices_queued", notices_queued,
                   "'sold out' notices still queued when a late shopper bought")
        report.add("late_delivery_s", float(late_delivered) - late_sent,
                   "  late shopper's intent -> delivered_at", "s")
        report.add("sold_out_answer_p50_s", percentile(refusals, 50),
                   "intent -> 'sold out' recorded p50", "s")
        report.add("sold_out_answer_p99_s", percentile(refusals, 99),
                   "intent -> 'sold out' recorded p99", "s")
        # Polled every 0.2 s, so the window ends up to 0.2 s after the last key.
        cpu.add_figures(report, "cpu_ms_per_winner", "CPU per winner until the last key",
                        {g: s * 1000 / units for g, s in winners_cpu.items() if s > 0})
        cpu.add_figures(report, "pg_ms_per_winner", "  of which PostgreSQL serving",
                        {g: s * 1000 / units for g, s in winners_pg.items() if s > 0})
        report.check("target_exact", len(paid) == units and sold == units and twice == 0
                     and len(sold_out) == size - units,
                     f"target: exactly {units} sold, 0 oversold, {size - units} sold out")
        report.check("target_delivery_p99_le_1s", percentile(deliveries, 99) <= 1.0,
                     "target: p50/p99 intent -> delivery <= 1 s")
    return report
