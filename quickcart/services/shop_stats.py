"""/stats [today|week|month|all]: the shop's figures for a period in the shop's timezone.

Revenue is what buyers paid for goods (total bill without the gateway fee), orders and units
are paid ones, new users registered in the period, QRIS vs SALDO split the paid orders, refunds
are ledger credits with reason 'refund', warranty claims are those opened in the period. One
REPEATABLE READ read-only snapshot; locks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine

from quickcart.db.sql import sql
from quickcart.domain.periods import PERIODS as PERIODS  # re-exported: the bot's /stats reads it
from quickcart.domain.periods import period_start

TOP_PRODUCTS = 5


@dataclass(frozen=True)
class TopProduct:
    """A product and its units sold in the period."""

    product_id: int
    name: str
    units: int


@dataclass(frozen=True)
class PeriodStats:
    """The figures of one period (`since` None: all time)."""

    period: str
    since: datetime | None
    revenue: Decimal
    orders: int
    units: int
    new_users: int
    qris_orders: int
    qris_revenue: Decimal
    saldo_orders: int
    saldo_revenue: Decimal
    refunds: int
    refunded: Decimal
    warranty_claims: int
    top: list[TopProduct]


_TOTALS = """
SELECT coalesce(sum(o.total_bill - o.payment_fee), 0) AS revenue,
       count(*) AS orders,
       count(*) FILTER (WHERE o.payment_method = 'qris') AS qris_orders,
       coalesce(sum(o.total_bill - o.payment_fee)
                FILTER (WHERE o.payment_method = 'qris'), 0) AS qris_revenue,
       count(*) FILTER (WHERE o.payment_method = 'account_balance') AS saldo_orders,
       coalesce(sum(o.total_bill - o.payment_fee)
                FILTER (WHERE o.payment_method = 'account_balance'), 0) AS saldo_revenue,
       coalesce(sum((SELECT count(*) FROM order_items i WHERE i.order_id = o.id)), 0) AS units
FROM orders o
WHERE o.status = 'paid' AND (CAST(:since AS timestamptz) IS NULL OR o.paid_at >= :since)
"""

_OTHERS = """
SELECT (SELECT count(*) FROM users
         WHERE CAST(:since AS timestamptz) IS NULL OR created_at >= :since) AS new_users,
       (SELECT count(*) FROM balance_ledger WHERE reason = 'refund' AND amount > 0
         AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)) AS refunds,
       (SELECT coalesce(sum(amount), 0) FROM balance_ledger WHERE reason = 'refund'
         AND amount > 0
         AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)) AS refunded
"""

_CLAIMS = """
SELECT count(*) FROM warranty_claims
WHERE CAST(:since AS timestamptz) IS NULL OR created_at >= :since
"""

_TOP = """
SELECT i.product_id, p.name, count(*) AS units
FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
WHERE o.status = 'paid' AND (CAST(:since AS timestamptz) IS NULL OR o.paid_at >= :since)
GROUP BY i.product_id, p.name
ORDER BY units DESC, i.product_id
LIMIT :n
"""


def period_stats(engine: Engine, period: str = "today",
                 now: datetime | None = None) -> PeriodStats:
    """The figures of `period` (today / week / month / all, Jakarta calendar)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = period_start(period, moment)  # ValueError for an unknown period
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        params = {"since": since}
        totals = conn.execute(sql(_TOTALS), params).one()
        others = conn.execute(sql(_OTHERS), params).one()
        has_claims = conn.execute(sql("SELECT to_regclass('warranty_claims') IS NOT NULL")
                                  ).scalar()
        claims = int(conn.execute(sql(_CLAIMS), params).scalar_one()) if has_claims else 0
        top = [TopProduct(int(r.product_id), str(r.name), int(r.units))
               for r in conn.execute(sql(_TOP), {**params, "n": TOP_PRODUCTS})]
        conn.rollback()
    return PeriodStats(
        period=period, since=since, revenue=Decimal(totals.revenue), orders=int(totals.orders),
        units=int(totals.units), new_users=int(others.new_users),
        qris_orders=int(totals.qris_orders), qris_revenue=Decimal(totals.qris_revenue),
        saldo_orders=int(totals.saldo_orders), saldo_revenue=Decimal(totals.saldo_revenue),
        refunds=int(others.refunds), refunded=Decimal(others.refunded),
        warranty_claims=claims, top=top)
