"""Shared pieces: percentiles, printing figures, the raw-SQL order transaction (the baseline)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from quickcart.domain.codes import new_invoice_id


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


@dataclass
class Report:
    """Named figures of one scenario, printed for a human or as one JSON object."""

    scenario: str
    figures: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def add(self, name: str, value: Any, label: str | None = None, unit: str = "") -> None:
        self.figures[name] = round(value, 4) if isinstance(value, float) else value
        if label is not None:
            shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
            self.lines.append(f"  {label:<52} {shown} {unit}".rstrip())

    def check(self, name: str, ok: bool, label: str) -> None:
        self.figures[name] = ok
        self.lines.append(f"  {label:<52} {'PASS' if ok else 'MISS'}")

    def note(self, text: str) -> None:
        self.lines.append(f"  note: {text}")

    def print(self, as_json: bool) -> None:
        if as_json:
            print(json.dumps({"scenario": self.scenario, **self.figures}, default=str))
        else:
            print(f"== {self.scenario} ==")
            print("\n".join(self.lines))


RAW_ORDER_SQL = (
    "SELECT id, account_balance FROM users WHERE id = %(u)s FOR UPDATE",
    "SELECT id FROM product_stocks WHERE product_id = %(p)s AND NOT is_sold"
    " AND order_id IS NULL ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
)


def raw_order(cur: Any, user_id: int, product_id: int, price: int, hot_row: bool,
              settle_apart: bool = False) -> bool:
    """The balance-order transaction of orders.create_order in plain SQL (caller commits).

    Lock user, take a unit with SKIP LOCKED, the order (born paid, as the shop writes a balance
    order), the unit reserved and sold in one UPDATE, item, debit + ledger, sold_count (delta
    row, or the naive hot-row UPDATE). False when sold out.

    `settle_apart`: the steps as issue 7 lists them, as the shop wrote them until session 8:
    the order pending and the unit reserved, then the unit sold and the order marked paid."""
    cur.execute(RAW_ORDER_SQL[0], {"u": user_id})
    cur.execute(RAW_ORDER_SQL[1], {"p": product_id})
    unit = cur.fetchone()
    if unit is None:
        return False
    invoice = new_invoice_id("QC")
    born = "'pending', NULL, NULL" if settle_apart else "'paid', now(), %(a)s"
    cur.execute(
        "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method,"
        " expires_at, fee_estimate, status, paid_at, amount_paid) VALUES (%(i)s, %(u)s, %(a)s,"
        f" %(a)s, 'account_balance', now() + interval '10 minutes', 0, {born}) RETURNING id",
        {"i": invoice, "u": user_id, "a": price})
    order_id = cur.fetchone()[0]
    cur.execute("UPDATE product_stocks SET order_id = %(o)s, is_sold = %(sold)s"
                " WHERE id = %(s)s", {"o": order_id, "s": unit[0], "sold": not settle_apart})
    cur.execute("INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                " VALUES (%(o)s, %(p)s, %(s)s, %(a)s)",
                {"o": order_id, "p": product_id, "s": unit[0], "a": price})
    cur.execute("UPDATE users SET account_balance = account_balance - %(a)s WHERE id = %(u)s",
                {"a": price, "u": user_id})
    cur.execute("INSERT INTO balance_ledger (user_id, amount, reason, reference_type,"
                " reference_id, actor_id) VALUES (%(u)s, %(a)s, 'purchase', 'order', %(i)s,"
                " %(u)s)", {"u": user_id, "a": -price, "i": invoice})
    if hot_row:
        cur.execute("UPDATE products SET sold_count = sold_count + 1 WHERE id = %(p)s",
                    {"p": product_id})
    else:
        cur.execute("INSERT INTO sold_count_deltas (product_id, quantity, order_id)"
                    " VALUES (%(p)s, 1, %(o)s)", {"p": product_id, "o": order_id})
    if settle_apart:
        cur.execute("UPDATE product_stocks SET is_sold = true WHERE order_id = %(o)s",
                    {"o": order_id})
        cur.execute("UPDATE orders SET status = 'paid', paid_at = now(), amount_paid = %(a)s,"
                    " payment_number = NULL WHERE id = %(o)s", {"a": price, "o": order_id})
    return True


def raw_baseline(engine: Engine, users: list[int], product_id: int, price: int, *,
                 orders: int, threads: int = 8, hot_row: bool = False,
                 settle_apart: bool = False) -> float:
    """Orders/s of `orders` raw-SQL order transactions on `threads` connections (each thread
    its own users, so the user lock never queues, like distinct shoppers)."""
    per = [users[i::threads] for i in range(threads)]
    counts = [0] * threads
    target = orders // threads
    errors: list[BaseException] = []
    start_gate = threading.Barrier(threads + 1)

    def run(i: int) -> None:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            start_gate.wait()
            n = 0
            while n < target:
                uid = per[i][n % len(per[i])]
                if not raw_order(cur, uid, product_id, price, hot_row, settle_apart):
                    raw.rollback()
                    raise RuntimeError("baseline ran out of stock")
                raw.commit()
                n += 1
            counts[i] = n
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            raw.rollback()
        finally:
            raw.close()

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed


def seed_history(stack: Any, users: list[int], product_id: int, price: int,
                 orders: int = 3000) -> None:
    """Make the shop one that has sold before: `orders` raw-SQL sales (unmeasured), shipped to
    the audit DB, then ANALYZE, so measured phases run on the plans a live shop has.

    A table ANALYZEd while empty gets its foreign-key checks and the order-totals trigger's
    lookups planned as sequential scans, and every backend keeps those cached plans until the
    table is analyzed again (autovacuum: a minute later at the earliest). The raw baseline
    then fell from 613 to 396 orders/s over 12,000 sales; auto_explain showed `Seq Scan on
    orders x` in the FK check. With this history it held 574-691 orders/s."""
    raw_baseline(stack.main, users, product_id, price, orders=orders)
    stack.wait_audit_shipped()
    with stack.main.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def intent_key(prefix: str) -> str:
    return f"bench:{prefix}:{uuid.uuid4().hex}"
