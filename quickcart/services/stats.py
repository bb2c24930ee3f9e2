"""Shop statistics for the admin /stats command: a few set-based queries, one snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, text

SHOP_TIMEZONE = "Asia/Jakarta"
TOP_PRODUCTS = 5


@dataclass(frozen=True)
class ProductSales:
    """A product and how many of its units were sold."""

    product_id: int
    name: str
    units_sold: int


@dataclass(frozen=True)
class ProductStock:
    """An active product and how many free units it has left."""

    product_id: int
    name: str
    units_left: int


@dataclass(frozen=True)
class ShopStats:
    """The numbers an admin sees; `day_start` is the Jakarta midnight revenue counts from."""

    total_users: int
    paid_transactions: int
    revenue_today: Decimal
    active_orders: int
    top_products: list[ProductSales]
    stock_left: list[ProductStock]
    day_start: datetime


_TOTALS = """
SELECT
    (SELECT count(*) FROM users) AS total_users,
    (SELECT count(*) FROM orders WHERE status = 'paid') AS paid_transactions,
    (SELECT coalesce(sum(total_bill - payment_fee), 0) FROM orders
      WHERE status = 'paid' AND paid_at >= day.start AND paid_at < day.start + interval '1 day')
        AS revenue_today,
    (SELECT count(*) FROM orders WHERE status = 'pending') AS active_orders,
    day.start AS day_start
FROM (SELECT date_trunc('day', CAST(:now AS timestamptz), :tz) AS start) AS day
"""

# Sold units counted from product_stocks itself (exact, unlike the rolled-up sold_count).
_TOP = """
SELECT s.product_id, p.name, count(*) AS units_sold
FROM product_stocks AS s JOIN products AS p ON p.id = s.product_id
WHERE s.is_sold
GROUP BY s.product_id, p.name
ORDER BY units_sold DESC, s.product_id
LIMIT :n
"""

# One count per active product over the partial index of free units.
_STOCK = """
SELECT p.id AS product_id, p.name,
       (SELECT count(*) FROM product_stocks AS s
         WHERE s.product_id = p.id AND NOT s.is_sold AND s.order_id IS NULL) AS units_left
FROM products AS p
WHERE p.is_active
ORDER BY p.id
"""


def shop_stats(engine: Engine, now: datetime | None = None) -> ShopStats:
    """Users, paid orders, today's revenue (Jakarta day, net of the gateway fee), pending
    orders, top sellers and stock left. Locks nothing: one REPEATABLE READ read-only snapshot.
    """
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        totals = conn.execute(text(_TOTALS), {"now": moment, "tz": SHOP_TIMEZONE}).one()
        top = [ProductSales(r.product_id, r.name, int(r.units_sold))
               for r in conn.execute(text(_TOP), {"n": TOP_PRODUCTS})]
        stock = [ProductStock(r.product_id, r.name, int(r.units_left))
                 for r in conn.execute(text(_STOCK))]
        conn.rollback()
    return ShopStats(
        total_users=int(totals.total_users),
        paid_transactions=int(totals.paid_transactions),
        revenue_today=Decimal(totals.revenue_today),
        active_orders=int(totals.active_orders),
        top_products=top,
        stock_left=stock,
        day_start=totals.day_start,
    )
