"""`soak`: N tasks through one worker; its RSS must not keep growing after warm-up."""

from __future__ import annotations

import random
import time

from bench.common import Report, intent_key
from bench.harness import Stack
from bench.orders import PRICE, PRODUCT

BACKLOG = 500  # queued tasks kept ahead of the worker


def run(size: int, as_json: bool) -> Report:
    report = Report("soak")
    new_every = 10  # one new purchase in ten; the rest are repeats of a recent intent
    with Stack("soak", telegram=False, quiet=as_json) as stack:
        users = stack.add_users(10_000, 200, balance=PRICE * (size // 100 + 100))
        stack.add_product(PRODUCT, PRICE, size // new_every + 1000)
        stack.vacuum()
        worker = stack.start_worker("soak", "orders", 2)
        assert stack.redis is not None
        recent: list[tuple[int, str]] = []
        samples: list[tuple[int, int]] = []  # (tasks done, tree RSS)
        sent = 0
        t0 = time.perf_counter()
        last_sample = 0.0
        stack.log(f"{size:,} create_order tasks (1 in {new_every} new, the rest repeats)")

        def backlog() -> int:
            assert stack.redis is not None
            return (int(stack.redis.llen(stack.key("orders")))
                    + int(stack.redis.hlen(stack.key("unacked"))))

        while True:
            queued = backlog()
            done = sent - queued
            now = time.perf_counter()
            if now - last_sample >= 0.5:
                samples.append((done, worker.tree_rss()))
                last_sample = now
                stack.check_alive()
            if sent >= size and queued == 0:
                break
            room = min(BACKLOG - queued, size - sent)
            for _ in range(max(0, room)):
                if sent % new_every == 0 or not recent:
                    uid = users[(sent // new_every) % len(users)]
                    key = intent_key("soak")
                    recent = [*recent[-49:], (uid, key)]
                else:
                    uid, key = random.choice(recent)
                stack.send("quickcart.create_order", user_id=uid, product_id=PRODUCT,
                           quantity=1, payment_method="account_balance", idempotency_key=key)
                sent += 1
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        samples.append((size, worker.tree_rss()))
        warm = [rss for done, rss in samples if 0.10 * size <= done <= 0.20 * size]
        end = [rss for done, rss in samples if done >= 0.90 * size]
        warm_rss = sum(warm) / len(warm) if warm else samples[0][1]
        end_rss = sum(end) / len(end) if end else samples[-1][1]
        growth = end_rss / warm_rss - 1 if warm_rss else 0.0
        paid = stack.q("SELECT count(*) FROM orders WHERE status = 'paid'")
        report.add("tasks", size, "tasks through one worker (-c 2)")
        report.add("tasks_per_s", size / elapsed, "throughput", "tasks/s")
        report.add("orders_paid", paid, "distinct purchases paid")
        report.add("rss_start_mb", samples[0][1] / 2**20, "worker tree RSS at start", "MB")
        report.add("rss_after_warmup_mb", warm_rss / 2**20, "RSS after warm-up (10-20%)", "MB")
        report.add("rss_end_mb", end_rss / 2**20, "RSS at the end (last 10%)", "MB")
        report.add("rss_peak_mb", max(r for _, r in samples) / 2**20, "RSS peak", "MB")
        report.add("rss_growth", growth, "growth after warm-up", "x")
        report.check("target_growth_lt_20pct", growth < 0.20, "target: growth < 20%")
    return report
