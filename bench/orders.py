"""`orders`: balance purchases end to end through Celery vs the same transaction in raw SQL."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from bench.common import Report, intent_key, percentile, raw_baseline
from bench.harness import Stack

PRICE = 1000
PRODUCT = 1
ORDERS_QUEUES = "orders,payments"
SIDE_QUEUES = "default,expiry,audit,notify"

_DONE_SQL = text(
    "SELECT key, result->>'status' AS status, (result->>'order_id')::int AS order_id"
    " FROM idempotency_keys WHERE key = ANY(:k) AND result IS NOT NULL")
_PUBLISHED_SQL = text(
    "SELECT (payload->>'order_id')::int FROM outbox WHERE id > :floor"
    " AND topic = 'quickcart.deliver_order' AND published_at IS NOT NULL"
    " AND (payload->>'order_id')::int = ANY(:o)")
_MAX_OUTBOX_SQL = text("SELECT coalesce(max(id), 0) FROM outbox")


@dataclass
class DriveResult:
    """What a closed-loop drive measured (after warm-up)."""

    completed: int
    seconds: float
    latencies: list[float]
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def drive(stack: Stack, users: list[int], product_id: int, *, concurrency: int, total: int,
          warmup: int, until: Callable[[], bool] | None = None,
          poll_interval: float = 0.005) -> DriveResult:
    """Closed loop: `concurrency` shoppers each keep one balance intent in flight.

    An intent is complete when its result is recorded and (for a paid order) its
    deliver_order outbox row is published to the notify queue. Stops after `warmup + total`
    completions (or when `until()` says so, if given)."""
    assert stack.main is not None
    free = deque(users[:concurrency])
    inflight: dict[str, tuple[int, float, int]] = {}
    waiting_publish: dict[int, tuple[str, int, float, int]] = {}
    floor = 0
    done = sent = 0
    t_start = 0.0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    goal = warmup + total
    last_check = time.monotonic()
    with stack.main.connect() as conn:
        floor = int(conn.execute(_MAX_OUTBOX_SQL).scalar_one())
        while (done < goal) if until is None else not until():
            while free and (until is not None or sent < goal):
                uid = free.popleft()
                key = intent_key("order")
                stack.send("quickcart.create_order", user_id=uid, product_id=product_id,
                           quantity=1, payment_method="account_balance", idempotency_key=key)
                inflight[key] = (uid, time.perf_counter(), floor)
                sent += 1
            time.sleep(poll_interval)
            finished: list[tuple[str, int, float, str]] = []
            if inflight:
                for key, status, order_id in conn.execute(
                        _DONE_SQL, {"k": list(inflight)}).all():
                    uid, t0, fl = inflight.pop(key)
                    if status == "paid":
                        waiting_publish[order_id] = (key, uid, t0, fl)
                    else:
                        finished.append((key, uid, t0, status or "?"))
            if waiting_publish:
                low = min(v[3] for v in waiting_publish.values())
                for (order_id,) in conn.execute(
                        _PUBLISHED_SQL, {"floor": low, "o": list(waiting_publish)}).all():
                    key, uid, t0, _ = waiting_publish.pop(order_id)
                    finished.append((key, uid, t0, "paid"))
            floor = int(conn.execute(_MAX_OUTBOX_SQL).scalar_one())
            conn.commit()
            now = time.perf_counter()
            for _key, uid, t0, status in finished:
                done += 1
                free.append(uid)
                if done == warmup:
                    t_start = now
                if done > warmup:
                    latencies.append(now - t0)
                    statuses[status] = statuses.get(status, 0) + 1
            if warmup == 0 and not t_start:
                t_start = now
            if time.monotonic() - last_check > 2:
                stack.check_alive()
                last_check = time.monotonic()
        t_end = time.perf_counter()
        # Let the shoppers still in flight finish, so the next run starts clean.
        deadline = time.monotonic() + 60
        while (inflight or waiting_publish) and time.monotonic() < deadline:
            time.sleep(0.05)
            if inflight:
                for key, status, order_id in conn.execute(
                        _DONE_SQL, {"k": list(inflight)}).all():
                    inflight.pop(key)
                    if status == "paid":
                        waiting_publish[order_id] = (key, 0, 0.0, 0)
            if waiting_publish:
                for (order_id,) in conn.execute(
                        _PUBLISHED_SQL, {"floor": 0, "o": list(waiting_publish)}).all():
                    waiting_publish.pop(order_id)
            conn.commit()
    measured = len(latencies)
    return DriveResult(measured, t_end - t_start if t_start else 0.0, latencies, statuses)


def start_shop(stack: Stack, concurrency: int = 8, dedicated_audit: bool = False) -> None:
    """Workers as a small deployment would run them: one for orders/payments, one for the rest
    (notify, audit, expiry, housekeeping; 4 processes like docker-compose's worker-notify), and
    beat; optionally the audit queue on its own single-process worker."""
    stack.start_worker("orders", ORDERS_QUEUES, concurrency)
    if dedicated_audit:
        stack.start_worker("side", SIDE_QUEUES.replace(",audit", ""), 2)
        stack.start_worker("audit", "audit", 1)
    else:
        stack.start_worker("side", SIDE_QUEUES, 4)
    stack.start_beat()


def run(size: int, as_json: bool, levels: tuple[int, ...] = (8, 32)) -> Report:
    report = Report("orders")
    warmup = max(20, size // 10)
    baseline_n = size
    app_units = sum(size + warmup + lvl for lvl in levels) + 200
    with Stack("orders", quiet=as_json) as stack:
        app_users = stack.add_users(10_000, max(levels), balance=PRICE * (size * 2 + 1000))
        base_users = stack.add_users(50_000, 64, balance=PRICE * (size * 2 + 1000))
        stack.add_product(PRODUCT, PRICE, app_units + 2 * baseline_n + 100)
        stack.vacuum()
        start_shop(stack, 8)
        time.sleep(2)  # beat's first ticks

        stack.log(f"raw-SQL baseline: {baseline_n} orders on 8 connections")
        assert stack.main is not None
        base = raw_baseline(stack.main, base_users, PRODUCT, PRICE, orders=baseline_n)
        report.add("baseline_orders_per_s", base, "baseline: raw SQL, 8 connections", "orders/s")
        hot = raw_baseline(stack.main, base_users, PRODUCT, PRICE, orders=baseline_n,
                           hot_row=True)
        report.add("baseline_hot_row_orders_per_s", hot,
                   "baseline with naive hot-row sold_count UPDATE", "orders/s")
        report.add("hot_row_ratio", hot / base, "  hot-row / delta baseline", "x")

        rates: dict[int, float] = {}
        for level in levels:
            stack.log(f"app: {size} orders at {level} in flight (+{warmup} warm-up)")
            result = drive(stack, app_users, PRODUCT, concurrency=level, total=size,
                           warmup=warmup)
            rates[level] = result.rate
            report.add(f"app_orders_per_s_c{level}", result.rate,
                       f"app: {level} shoppers in flight (worker -c 8)", "orders/s")
            report.add(f"app_latency_p50_ms_c{level}", percentile(result.latencies, 50) * 1000,
                       "  intent -> result + delivery published, p50", "ms")
            report.add(f"app_latency_p99_ms_c{level}", percentile(result.latencies, 99) * 1000,
                       "  p99", "ms")
            if set(result.statuses) != {"paid"}:
                report.note(f"statuses at {level}: {result.statuses}")
        low, high = levels[0], levels[-1]
        ratio = rates[low] / base if base else 0.0
        report.add("ratio_app_c8_vs_baseline", ratio, f"app@{low} / baseline", "x")
        report.check("target_app_ge_half_baseline", ratio >= 0.5, "target: app >= 0.5 x baseline")
        scale = rates[high] / rates[low] if rates[low] else 0.0
        report.add("ratio_c32_vs_c8", scale, f"app@{high} / app@{low}", "x")
        report.check("target_c32_ge_0_8_c8", scale >= 0.8, "target: rate@32 >= 0.8 x rate@8")
        report.add("size_orders_per_level", size)
        oversold = stack.q("SELECT count(*) - count(DISTINCT stock_id) FROM order_items")
        report.add("oversold_units", oversold, "units sold twice (must be 0)")
    return report
