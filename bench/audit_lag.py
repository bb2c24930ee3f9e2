"""`audit-lag`: committed change -> its row in the audit DB, under the orders load."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from bench.common import Report, percentile
from bench.harness import Stack, wait_until
from bench.orders import PRICE, PRODUCT, drive, start_shop

# Lag of each newly shipped audit row, computed by the audit DB's own clock: now minus the time
# the change was captured (audit_outbox.occurred_at = clock_timestamp() in the trigger, a few
# ms before its commit, so the figure slightly overstates the lag).
_NEW_ROWS = text(
    "SELECT id, extract(epoch FROM clock_timestamp() - \"timestamp\") FROM audit_logs"
    " WHERE id > :last ORDER BY id")


def run(size: int, as_json: bool) -> Report:
    """Audit queue on its own worker (-Q audit -c 1), as the per-queue design intends."""
    return measure(size, as_json, dedicated_audit=True)


def measure(size: int, as_json: bool, dedicated_audit: bool) -> Report:
    report = Report("audit-lag")
    seconds = size
    with Stack("audit-lag", quiet=as_json) as stack:
        users = stack.add_users(10_000, 8, balance=PRICE * 100_000)
        stack.add_product(PRODUCT, PRICE, 100 * seconds + 5000)
        stack.vacuum()
        start_shop(stack, 8, dedicated_audit=dedicated_audit)
        assert stack.audit is not None and stack.main is not None
        # The seed's own audit rows (users, ledger, stock) ship first and are not measured.
        wait_until(lambda: stack.q("SELECT count(*) FROM audit_outbox") == 0,
                   what="seed audit shipped", timeout=300, interval=0.2)
        with stack.audit.connect() as conn:
            last = int(conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_logs"))
                       .scalar_one())
        lags: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            nonlocal last
            assert stack.audit is not None
            with stack.audit.connect() as conn:
                while not stop.is_set():
                    rows = conn.execute(_NEW_ROWS, {"last": last}).all()
                    conn.commit()
                    if rows:
                        last = rows[-1][0]
                        lags.extend(float(r[1]) for r in rows)
                    stop.wait(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        stack.log(f"orders load for {seconds} s at 8 in flight")
        deadline = time.monotonic() + seconds
        result = drive(stack, users, PRODUCT, concurrency=8, total=0, warmup=0,
                       until=lambda: time.monotonic() >= deadline)
        # The changes made during the load that are still on their way.
        tail_deadline = time.monotonic() + 30
        while time.monotonic() < tail_deadline and stack.q(
                "SELECT count(*) FROM audit_outbox") > 0:
            time.sleep(0.1)
        time.sleep(0.2)
        stop.set()
        watcher.join()
        left = stack.q("SELECT count(*) FROM audit_outbox")
        report.add("dedicated_audit_worker", dedicated_audit,
                   f"audit worker of its own: {dedicated_audit}")
        report.add("load_seconds", seconds, "orders load duration", "s")
        report.add("orders_per_s", result.rate, "orders/s during the load", "orders/s")
        report.add("audit_rows", len(lags), "audit rows shipped and observed")
        report.add("audit_rows_unshipped", left, "audit_outbox rows left after 30 s drain")
        report.add("lag_p50_s", percentile(lags, 50), "change -> audit DB, p50", "s")
        report.add("lag_p99_s", percentile(lags, 99), "change -> audit DB, p99", "s")
        report.add("lag_max_s", max(lags, default=0.0), "change -> audit DB, max", "s")
        report.check("target_p99_le_2s", bool(lags) and percentile(lags, 99) <= 2.0,
                     "target: p99 <= 2 s")
    return report
