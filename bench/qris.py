"""`qris`: QRIS orders paid at the Pakasir sandbox, webhooks through the webhook API process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import text

from bench.common import Report, intent_key, percentile, raw_baseline
from bench.harness import Stack, wait_until
from bench.orders import PRICE, start_shop


def run(size: int, as_json: bool) -> Report:
    report = Report("qris")
    with Stack("qris", pakasir=True, quiet=as_json) as stack:
        buyers = stack.add_users(10_000, size, balance=0)
        base_users = stack.add_users(50_000, 64, balance=PRICE * (size + 100))
        stack.add_product(1, PRICE, 2 * size + 100)
        stack.vacuum()
        start_shop(stack, 8)
        stack.start_api()
        assert stack.main is not None and stack.pakasir is not None

        stack.log(f"opening {size} QRIS orders")
        for uid in buyers:
            stack.send("quickcart.create_order", user_id=uid, product_id=1, quantity=1,
                       payment_method="qris", idempotency_key=intent_key("qris"))

        def all_have_qr() -> bool:
            stack.check_alive()
            return bool(stack.q("SELECT count(*) FROM orders WHERE status = 'pending'"
                                " AND payment_number IS NOT NULL") == size)

        wait_until(all_have_qr, what=f"{size} QR codes", timeout=600, interval=0.3)
        # Let the QR photos and admin messages drain so the pay phase is measured alone.
        wait_until(lambda: stack.q("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
                   what="outbox drained", timeout=120, interval=0.3)
        time.sleep(3)

        stack.log(f"raw-SQL baseline: {size} orders on 8 connections")
        base = raw_baseline(stack.main, base_users, 1, PRICE, orders=size)
        report.add("baseline_orders_per_s", base,
                   "baseline: raw-SQL balance purchase, 8 conns", "orders/s")

        with stack.main.connect() as conn:
            invoices = list(conn.execute(text(
                "SELECT invoice_id FROM orders WHERE status = 'pending'")).scalars())
        stack.log(f"paying {len(invoices)} invoices at the sandbox")

        def pay(invoice: str) -> int:
            with httpx.Client(base_url=stack.pakasir_app.url if stack.pakasir_app else "",
                              timeout=30) as client:
                return client.post(f"/sandbox/transactions/{invoice}/pay").status_code

        t0 = time.time()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(pay, invoices))
        pay_s = time.time() - t0

        def delivered() -> bool:
            stack.check_alive()
            return bool(stack.q("SELECT count(*) FROM orders WHERE payment_method = 'qris'"
                                " AND delivered_at IS NOT NULL") == len(invoices))

        wait_until(delivered, what="QRIS deliveries", timeout=600, interval=0.2)
        with stack.main.connect() as conn:
            rows = conn.execute(text(
                "SELECT extract(epoch FROM min(e.received_at)) AS first_hook,"
                " extract(epoch FROM o.paid_at) AS paid,"
                " extract(epoch FROM o.delivered_at - min(e.received_at)) AS latency"
                " FROM orders o JOIN payment_events e ON e.invoice_id = o.invoice_id"
                " WHERE o.payment_method = 'qris' GROUP BY o.id")).all()
            events = conn.execute(text("SELECT count(*) FROM payment_events")).scalar()
        first = min(float(r.first_hook) for r in rows)
        last_paid = max(float(r.paid) for r in rows)
        latencies = [float(r.latency) for r in rows]
        rate = len(rows) / (last_paid - first) if last_paid > first else 0.0
        report.add("orders_paid", len(rows), "QRIS orders paid")
        report.add("pay_http_errors", sum(c >= 400 for c in codes), "sandbox pay errors")
        report.add("payment_events", events, "webhooks recorded by the API")
        report.add("pay_clicks_seconds", pay_s, "time to click 'Bayar' on every invoice", "s")
        report.add("confirmations_per_s", rate,
                   "confirmations/s (first webhook -> last paid_at)", "/s")
        report.add("ratio_vs_baseline", rate / base if base else 0.0,
                   "confirmations/s / raw-SQL baseline", "x")
        report.add("webhook_to_delivery_p50_s", percentile(latencies, 50),
                   "webhook received -> delivered_at p50", "s")
        report.add("webhook_to_delivery_p99_s", percentile(latencies, 99),
                   "webhook received -> delivered_at p99", "s")
    return report
