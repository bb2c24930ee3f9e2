"""Where an order's time goes: the create_order service + outbox publish, in-process, no Celery.

Usage: python -m bench.profile_orders [N]  — runs N balance orders on one thread against a
throw-away database, prints the per-order wall and CPU time, the statements and commits per
order, and the top of a cProfile (cumulative)."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

from sqlalchemy import event

from bench import cpu
from bench.common import intent_key
from bench.harness import Stack
from quickcart.db import outbox
from quickcart.services import orders


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 300
    with Stack("profile", telegram=False) as stack:
        assert stack.main is not None
        users = stack.add_users(10_000, 8, balance=1000 * (n + 10))
        stack.add_product(1, 1000, n + 100)
        stack.vacuum()
        counts = {"statements": 0, "commits": 0}

        @event.listens_for(stack.main, "before_cursor_execute")
        def _count(*_: object) -> None:
            counts["statements"] += 1

        @event.listens_for(stack.main, "commit")
        def _commit(*_: object) -> None:
            counts["commits"] += 1

        def one(i: int) -> None:
            outcome = orders.create_order(stack.main, orders.CreateOrder(  # type: ignore[arg-type]
                user_id=users[i % len(users)], product_id=1, quantity=1,
                payment_method="account_balance", idempotency_key=intent_key("prof")))
            outbox.publish_now(stack.main, lambda m: None, outcome.outbox)  # type: ignore[arg-type]

        for i in range(20):
            one(i)
        counts.update(statements=0, commits=0)
        prof = cProfile.Profile()
        w0, c0 = time.perf_counter(), time.process_time()
        with cpu.measured(stack) as phase:
            prof.enable()
            for i in range(n):
                one(i)
            prof.disable()
        wall, used = time.perf_counter() - w0, time.process_time() - c0
        print(f"{n} orders on one thread: {1000 * wall / n:.2f} ms wall, "
              f"{1000 * used / n:.2f} ms Python CPU, "
              f"{phase.ms_per(n).get('postgres', 0.0):.2f} ms PostgreSQL CPU per order; "
              f"{counts['statements'] / n:.1f} statements, {counts['commits'] / n:.1f} commits"
              " per order")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        # The marks thread writes to the throw-away database: mark now, before it is dropped.
        outbox.MARKS.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
