"""Check, over the live databases, the invariants QuickCart promises: stock conserved, balances
equal their ledgers, paid orders delivered, totals consistent, every change audited.

Each rule is set-based SQL (GROUP BY, anti-joins, window functions), so a check over a million
stock units is a few scans, never a Python loop per row. All main-DB rules read one REPEATABLE
READ snapshot, so a purchase committing mid-check cannot look half-done. The database already
refuses most of these states; the checker exists for what it cannot refuse: a superuser session
with triggers disabled, a restore from a bad backup, or a bug in a rule we forgot to enforce.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from quickcart.services.audit_verify import verify_audit_chain

#: Tables whose changes the main DB captures into audit_outbox (migrations/main, 0001).
AUDITED_TABLES = (
    "users", "products", "product_stocks", "orders", "order_items", "vouchers", "deposits",
    "admin_grants", "discounts", "voucher_redemptions", "admin_groups", "broadcasts",
    "restock_watches", "fraud_settings", "risk_assessments", "risk_reviews",
    "support_tickets", "support_messages", "order_actions", "warranty_claims", "order_refunds",
    "refund_formula",
)

# Each query yields one text column `detail`, one row per violation.
_STOCK_CONSERVED = (
    # Every unit is in exactly one state: free, reserved by a pending order, or sold on a paid one.
    """
    SELECT format('product %s: %s units but %s free + %s reserved + %s sold',
                  product_id, total, free, reserved, sold)
    FROM (
        SELECT ps.product_id,
               count(*) AS total,
               count(*) FILTER (WHERE ps.order_id IS NULL AND NOT ps.is_sold) AS free,
               count(*) FILTER (WHERE ps.order_id IS NOT NULL AND NOT ps.is_sold
                                  AND o.status = 'pending') AS reserved,
               count(*) FILTER (WHERE ps.is_sold AND o.status = 'paid') AS sold
        FROM product_stocks ps LEFT JOIN orders o ON o.id = ps.order_id
        GROUP BY ps.product_id
    ) AS per_product
    WHERE free + reserved + sold <> total
    """,
    """
    SELECT format('unit %s of product %s: %s', ps.id, ps.product_id,
                  CASE WHEN ps.is_sold
                       THEN format('sold, but its order %s is %s', o.id, o.status)
                       WHEN o.status = 'paid'
                       THEN format('reserved but not sold on paid order %s', o.id)
                       ELSE format('still reserved by %s order %s', o.status, o.id) END)
    FROM product_stocks ps JOIN orders o ON o.id = ps.order_id
    WHERE (ps.is_sold AND o.status <> 'paid') OR (NOT ps.is_sold AND o.status <> 'pending')
    """,
    """
    SELECT format('unit %s is held by order %s, which has no item for it', ps.id, ps.order_id)
    FROM product_stocks ps
    WHERE ps.order_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM order_items oi
                      WHERE oi.stock_id = ps.id AND oi.order_id = ps.order_id)
      -- A unit replaced under warranty stays sold on its order; its line moved to the new one.
      AND NOT EXISTS (SELECT 1 FROM warranty_claims wc WHERE wc.old_stock_id = ps.id
                      AND wc.order_id = ps.order_id AND wc.status = 'replaced')
    """,
)

_UNIT_IN_ONE_ORDER = (
    """
    SELECT format('unit %s is in %s order items (orders %s)',
                  stock_id, count(*), string_agg(order_id::text, ', ' ORDER BY order_id))
    FROM order_items GROUP BY stock_id HAVING count(*) > 1
    """,
    """
    SELECT format('order item %s puts unit %s (product %s) in order %s,'
                  ' but the unit is of product %s held by %s',
                  oi.id, oi.stock_id, oi.product_id, oi.order_id, ps.product_id,
                  coalesce('order ' || ps.order_id, 'no order'))
    FROM order_items oi JOIN product_stocks ps ON ps.id = oi.stock_id
    WHERE ps.order_id IS DISTINCT FROM oi.order_id OR ps.product_id <> oi.product_id
    """,
)

_BALANCE_EQUALS_LEDGER = (
    """
    SELECT format('user %s: balance %s but the ledger sums to %s',
                  u.id, u.account_balance, coalesce(l.total, 0))
    FROM users u
    LEFT JOIN (SELECT user_id, sum(amount) AS total FROM balance_ledger GROUP BY user_id) l
           ON l.user_id = u.id
    WHERE u.account_balance <> coalesce(l.total, 0)
    """,
    "SELECT format('user %s: negative balance %s', id, account_balance)"
    " FROM users WHERE account_balance < 0",
    """
    SELECT format('ledger row %s of user %s: balance_after %s but the running sum is %s',
                  id, user_id, balance_after, running)
    FROM (SELECT id, user_id, balance_after,
                 sum(amount) OVER (PARTITION BY user_id ORDER BY id) AS running
          FROM balance_ledger) AS r
    WHERE balance_after <> running
    """,
)

_PAID_ORDERS_DELIVERED = (
    # Delivery runs after the payment commits (a queued task), hence the grace period.
    """
    SELECT format('order %s (%s) paid at %s is not delivered after %s s',
                  id, invoice_id, paid_at, CAST(:delivery_grace AS int))
    FROM orders
    WHERE status = 'paid' AND delivered_at IS NULL
      AND paid_at < now() - make_interval(secs => :delivery_grace)
      -- Paid and held by the risk rules (or refunded after review) is not undelivered.
      AND NOT EXISTS (SELECT 1 FROM risk_reviews rv WHERE rv.order_id = orders.id
                      AND rv.status <> 'approved')
    """,
    """
    SELECT format('order %s (%s) is %s but marked delivered at %s',
                  id, invoice_id, status, delivered_at)
    FROM orders WHERE delivered_at IS NOT NULL AND status <> 'paid'
    """,
    """
    SELECT format('order %s (%s): delivered_at %s but delivery_count %s',
                  id, invoice_id, coalesce(delivered_at::text, 'unset'), delivery_count)
    FROM orders
    WHERE (delivered_at IS NOT NULL AND delivery_count < 1)
       OR (delivered_at IS NULL AND delivery_count > 0)
    """,
)

_ORDER_TOTALS = (
    """
    SELECT format('order %s: total_bill %s <> subtotal %s - discount %s + fee %s',
                  id, total_bill, subtotal, voucher_discount, payment_fee)
    FROM orders WHERE total_bill <> subtotal - voucher_discount + payment_fee
    """,
    """
    SELECT format('order %s: subtotal %s but its items (live + released) sum to %s',
                  o.id, o.subtotal, coalesce(i.total, 0))
    FROM orders o
    LEFT JOIN (SELECT order_id, sum(price_per_unit) AS total
               FROM (SELECT order_id, price_per_unit FROM order_items
                     UNION ALL
                     SELECT order_id, price_per_unit FROM released_order_items) AS all_items
               GROUP BY order_id) i ON i.order_id = o.id
    WHERE o.subtotal <> coalesce(i.total, 0)
    """,
)

_SOLD_COUNT_TEMPLATE = """
    SELECT format('product %s: sold_count %s + pending deltas %s but %s units are sold',
                  p.id, p.sold_count, {delta}, coalesce(s.n, 0))
    FROM products p
    LEFT JOIN (SELECT product_id, count(*) AS n FROM product_stocks ps WHERE is_sold
               -- a warranty replacement is not a sale: its dead unit is not counted again
               AND NOT EXISTS (SELECT 1 FROM warranty_claims wc WHERE wc.old_stock_id = ps.id
                               AND wc.status = 'replaced')
               GROUP BY product_id) s ON s.product_id = p.id
    {delta_join}
    WHERE p.sold_count + {delta} <> coalesce(s.n, 0)
"""

_AFTER_SALES = (
    # A replacement: the dead unit and the new one are sold on the claim's order, and the line
    # the claim names now holds a unit of the same product that is not the dead one.
    """
    SELECT format('warranty claim %s: %s', wc.id,
                  CASE WHEN NOT (old.is_sold AND old.order_id IS NOT DISTINCT FROM wc.order_id)
                       THEN format('replaced unit %s is not sold on order %s', old.id, wc.order_id)
                       WHEN NOT (new.is_sold AND new.order_id IS NOT DISTINCT FROM wc.order_id)
                       THEN format('replacement %s is not sold on order %s', new.id, wc.order_id)
                       WHEN new.product_id <> old.product_id
                       THEN format('replacement %s is of another product', new.id)
                       ELSE format('order line %s still holds the replaced unit %s',
                                   oi.id, old.id) END)
    FROM warranty_claims wc
    JOIN product_stocks old ON old.id = wc.old_stock_id
    JOIN product_stocks new ON new.id = wc.new_stock_id
    JOIN order_items oi ON oi.id = wc.order_item_id
    WHERE wc.status = 'replaced'
      AND (NOT (old.is_sold AND old.order_id IS NOT DISTINCT FROM wc.order_id)
           OR NOT (new.is_sold AND new.order_id IS NOT DISTINCT FROM wc.order_id)
           OR new.product_id <> old.product_id OR oi.stock_id = old.id)
    """,
    # Refunds: only of paid orders, never more than was paid for the goods, each paid one
    # credited by exactly its ledger row (reason 'refund', reference '<invoice>#R<id>').
    """
    SELECT format('order %s (%s): refunds paid %s but it is %s and its goods cost %s',
                  o.id, o.invoice_id, r.total, o.status, o.subtotal - o.voucher_discount)
    FROM (SELECT order_id, sum(amount) AS total FROM order_refunds WHERE status = 'paid'
          GROUP BY order_id) r JOIN orders o ON o.id = r.order_id
    WHERE o.status <> 'paid' OR r.total > o.subtotal - o.voucher_discount
    """,
    """
    SELECT format('refund %s of order %s (%s): %s paid, ledger credit %s',
                  r.id, o.id, o.invoice_id, r.amount, coalesce(l.amount::text, 'missing'))
    FROM order_refunds r JOIN orders o ON o.id = r.order_id
    LEFT JOIN balance_ledger l ON l.reason = 'refund' AND l.reference_type = 'order'
         AND l.reference_id = o.invoice_id || '#R' || r.id
    WHERE (r.status = 'paid') <> (l.id IS NOT NULL)
       OR (l.id IS NOT NULL AND (l.amount <> r.amount OR l.user_id <> o.user_id))
    """,
)

_VOUCHERS = (
    """
    SELECT format('voucher %s (%s) is used but its order %s is %s',
                  v.id, v.code, coalesce(v.order_id::text, '-'), coalesce(o.status, 'missing'))
    FROM vouchers v LEFT JOIN orders o ON o.id = v.order_id
    WHERE v.is_used AND o.status IS DISTINCT FROM 'paid'
    """,
    """
    SELECT format('voucher %s (%s) is held by order %s, which is %s',
                  v.id, v.code, v.order_id, o.status)
    FROM vouchers v JOIN orders o ON o.id = v.order_id
    WHERE NOT v.is_used AND o.status <> 'pending'
    """,
)

_ONE_PENDING = (
    """
    SELECT format('user %s has %s pending orders', user_id, count(*))
    FROM orders WHERE status = 'pending' GROUP BY user_id HAVING count(*) > 1
    """,
    """
    SELECT format('user %s has %s pending deposits', user_id, count(*))
    FROM deposits WHERE status = 'pending' GROUP BY user_id HAVING count(*) > 1
    """,
)


@dataclass(frozen=True)
class Violation:
    """One broken invariant: the rule's name and what exactly is wrong."""

    rule: str
    detail: str


@dataclass
class InvariantReport:
    """Every violation found by one check, and which rules were checked."""

    violations: list[Violation] = field(default_factory=list)
    rules_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no rule is violated."""
        return not self.violations

    def rules_violated(self) -> set[str]:
        """Names of the rules with at least one violation."""
        return {v.rule for v in self.violations}

    def format(self) -> str:
        """Human-readable report, grouped by rule."""
        lines = []
        for rule in self.rules_checked:
            found = [v for v in self.violations if v.rule == rule]
            lines.append(f"{'FAIL' if found else 'ok  '} {rule}")
            lines.extend(f"       {v.detail}" for v in found)
        lines.append("all invariants hold" if self.ok
                     else f"{len(self.violations)} violation(s)")
        return "\n".join(lines)


class _Collector:
    """Runs each rule's queries and records at most `cap` details per query."""

    def __init__(self, report: InvariantReport, cap: int) -> None:
        self.report = report
        self.cap = cap

    def rule(self, name: str) -> None:
        self.report.rules_checked.append(name)

    def add(self, rule: str, detail: str) -> None:
        self.report.violations.append(Violation(rule, detail))

    def run(self, conn: Connection, rule: str, queries: tuple[str, ...],
            params: Mapping[str, object] | None = None) -> None:
        self.rule(rule)
        for query in queries:
            details = conn.execute(
                text(f"SELECT * FROM ({query}) AS found LIMIT :_cap"),
                {**(params or {}), "_cap": self.cap + 1},
            ).scalars().all()
            for detail in details[: self.cap]:
                self.add(rule, str(detail))
            if len(details) > self.cap:
                self.add(rule, f"... more like the above not shown (limit {self.cap})")


def _sold_count_queries(conn: Connection) -> tuple[str, ...]:
    # Sales may be batched into sold_count_deltas and folded in later; count them when present.
    has_deltas = conn.execute(text("SELECT to_regclass('sold_count_deltas') IS NOT NULL")).scalar()
    if has_deltas:
        return (_SOLD_COUNT_TEMPLATE.format(
            delta="coalesce(d.q, 0)",
            delta_join="LEFT JOIN (SELECT product_id, sum(quantity) AS q FROM sold_count_deltas"
                       " GROUP BY product_id) d ON d.product_id = p.id",
        ),)
    return (_SOLD_COUNT_TEMPLATE.format(delta="0", delta_join=""),)


def _audit_counts_main(conn: Connection, grace: float) -> tuple[tuple[int, int | None, object],
                                                                  dict[str, int], dict[str, int]]:
    stale = conn.execute(
        text("SELECT count(*), min(id), min(occurred_at) FROM audit_outbox"
             " WHERE occurred_at < now() - make_interval(secs => :grace)"),
        {"grace": grace},
    ).one()
    pending_creates = {
        str(r[0]): int(r[1])
        for r in conn.execute(text(
            "SELECT entity_type, count(*) FROM audit_outbox WHERE action = 'create'"
            " GROUP BY entity_type"))
    }
    # One statement, one scan per table, in the same snapshot as the outbox counts above.
    row_counts_sql = " UNION ALL ".join(
        f"SELECT '{table}', count(*) FROM {table}" for table in AUDITED_TABLES
    )
    row_counts = {str(r[0]): int(r[1]) for r in conn.execute(text(row_counts_sql))}
    return (int(stale[0]), stale[1], stale[2]), pending_creates, row_counts


def check_invariants(
    main_engine: Engine,
    audit_engine: Engine,
    *,
    delivery_grace_seconds: float = 60,
    audit_grace_seconds: float = 30,
    max_details: int = 20,
) -> InvariantReport:
    """Check every rule over one read-only snapshot (no lock, no write: safe to repeat anytime)."""
    report = InvariantReport()
    collect = _Collector(report, max_details)
    with main_engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            collect.run(conn, "stock_conserved", _STOCK_CONSERVED)
            collect.run(conn, "unit_in_one_order", _UNIT_IN_ONE_ORDER)
            collect.run(conn, "balance_equals_ledger", _BALANCE_EQUALS_LEDGER)
            collect.run(conn, "paid_orders_delivered_once", _PAID_ORDERS_DELIVERED,
                        {"delivery_grace": delivery_grace_seconds})
            collect.run(conn, "order_totals", _ORDER_TOTALS)
            collect.run(conn, "sold_count_matches", _sold_count_queries(conn))
            collect.run(conn, "vouchers", _VOUCHERS)
            collect.run(conn, "replacements_and_refunds", _AFTER_SALES)
            collect.run(conn, "one_pending_per_user", _ONE_PENDING)
            stale, pending_creates, row_counts = _audit_counts_main(conn, audit_grace_seconds)

    # The audit DB is read after the main snapshot: a row shipped in between is then counted
    # twice (outbox and audit), never zero times, so the count check cannot raise a false alarm.
    with audit_engine.connect() as audit_conn:
        audited_creates = {
            str(r[0]): int(r[1])
            for r in audit_conn.execute(text(
                "SELECT entity_type, count(*) FROM audit_logs WHERE action = 'create'"
                " GROUP BY entity_type"))
        }

    collect.rule("every_change_audited")
    stale_count, stale_oldest_id, stale_oldest_at = stale
    if stale_count:
        collect.add("every_change_audited",
                    f"{stale_count} audit_outbox rows older than {audit_grace_seconds:g} s are"
                    f" not shipped (oldest id {stale_oldest_id} at {stale_oldest_at})")
    for table in AUDITED_TABLES:
        # Every row that exists was created once, and each creation is recorded (shipped or
        # still in the outbox); fewer recorded creations than rows means a change went unaudited.
        recorded = audited_creates.get(table, 0) + pending_creates.get(table, 0)
        if recorded < row_counts.get(table, 0):
            collect.add("every_change_audited",
                        f"{table}: {row_counts[table]} rows but only {recorded} creations recorded"
                        f" ({audited_creates.get(table, 0)} in audit_logs,"
                        f" {pending_creates.get(table, 0)} in audit_outbox)")

    collect.rule("audit_chain_intact")
    chain = verify_audit_chain(audit_engine)
    for problem in chain.problems[:max_details]:
        collect.add("audit_chain_intact", f"audit entry {problem.entry_id}: {problem.reason}")
    if len(chain.problems) > max_details:
        collect.add("audit_chain_intact",
                    f"... {len(chain.problems) - max_details} more audit problems not shown")
    return report
