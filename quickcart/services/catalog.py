"""Read-only catalog queries for display (the bot's browse screens); never writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import Engine, Row, text

from quickcart.adapters import redis_store
from quickcart.domain.periods import period_start
from quickcart.services import discounts as catalog_discounts

PAGE_SIZE = 8

_FREE = ("(SELECT count(*) FROM product_stocks s WHERE s.product_id = p.id"
         " AND NOT s.is_sold AND s.order_id IS NULL)")
_DISCOUNTS = catalog_discounts.DISCOUNTS_JSON


@dataclass(frozen=True)
class ProductCard:
    """A product as a shopper of a given role sees it."""

    product_id: int
    name: str
    category: str
    description: str | None
    price: Decimal
    stock: int
    sold: int
    #: The undiscounted price when a discount applies (shown struck through), else None.
    original_price: Decimal | None = None


def shop_counts(engine: Engine, r: redis.Redis | None = None) -> tuple[int, int]:
    """(registered users, paid transactions) for the welcome screen.

    With `r`, read through `stats:total_users` / `stats:total_transactions` (60 s TTL;
    registration and payment tasks delete them after their commit).
    """
    if r is not None:
        users = redis_store.cache_get_int(r, redis_store.stats_users_key())
        paid = redis_store.cache_get_int(r, redis_store.stats_transactions_key())
        if users is not None and paid is not None:
            return users, paid
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT (SELECT count(*) FROM users WHERE erased_at IS NULL) AS users,"
            " (SELECT count(*) FROM orders WHERE status = 'paid') AS paid")).one()
    if r is not None:
        redis_store.cache_set_int(r, redis_store.stats_users_key(), int(row.users),
                                  redis_store.STATS_TTL_SECONDS)
        redis_store.cache_set_int(r, redis_store.stats_transactions_key(), int(row.paid),
                                  redis_store.STATS_TTL_SECONDS)
    return int(row.users), int(row.paid)


def stock_count(engine: Engine, product_id: int, r: redis.Redis | None = None) -> int:
    """Free units of a product (not sold, in no order); with `r`, read through
    `stock_count:{product_id}` (30 s TTL; stock-changing tasks delete it after commit)."""
    key = redis_store.stock_count_key(product_id)
    if r is not None:
        cached = redis_store.cache_get_int(r, key)
        if cached is not None:
            return cached
    with engine.connect() as conn:
        count = int(conn.execute(text(
            "SELECT count(*) FROM product_stocks WHERE product_id = :p"
            " AND NOT is_sold AND order_id IS NULL"), {"p": product_id}).scalar_one())
    if r is not None:
        redis_store.cache_set_int(r, key, count, redis_store.STOCK_COUNT_TTL_SECONDS)
    return count


def order_product_ids(engine: Engine, *, order_id: int | None = None,
                      invoice_id: str | None = None) -> list[int]:
    """Products of an order's units, held or released (whose stock counts it moved)."""
    with engine.connect() as conn:
        return [int(p) for p in conn.execute(text(
            "SELECT i.product_id FROM order_items i JOIN orders o ON o.id = i.order_id"
            " WHERE o.id = :o OR o.invoice_id = :i"
            " UNION SELECT i.product_id FROM released_order_items i"
            " JOIN orders o ON o.id = i.order_id WHERE o.id = :o OR o.invoice_id = :i"),
            {"o": order_id, "i": invoice_id}).scalars()]


def categories(engine: Engine) -> list[str]:
    """Categories of active products, sorted (their index is the callback id)."""
    with engine.connect() as conn:
        return [str(c) for c in conn.execute(text(
            "SELECT DISTINCT category FROM products WHERE is_active ORDER BY category")).scalars()]


def list_products(engine: Engine, role: str, *, category: str | None = None,
                  best: bool = False, page: int = 0,
                  page_size: int = PAGE_SIZE) -> tuple[list[ProductCard], int]:
    """One page of active products (by id, or best sellers first) and the total count."""
    order = "p.sold_count DESC, p.id" if best else "p.id"
    where = "p.is_active AND (CAST(:c AS text) IS NULL OR p.category = :c)"
    with engine.connect() as conn:
        total = int(conn.execute(text(f"SELECT count(*) FROM products p WHERE {where}"),
                                 {"c": category}).scalar_one())
        rows = conn.execute(text(
            f"SELECT p.*, {_FREE} AS stock, {_DISCOUNTS} AS discounts FROM products p"
            f" WHERE {where}"
            f" ORDER BY {order} LIMIT :n OFFSET :o"),
            {"c": category, "n": page_size, "o": max(page, 0) * page_size}).all()
    return [_card(r, role) for r in rows], total


def list_product_ids(engine: Engine, *, category: str | None = None,
                     best: bool = False) -> list[int]:
    """Ids of every active product (by id, or best sellers first): a list to page through."""
    order = "p.sold_count DESC, p.id" if best else "p.id"
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text(
            "SELECT p.id FROM products p WHERE p.is_active"
            f" AND (CAST(:c AS text) IS NULL OR p.category = :c) ORDER BY {order}"),
            {"c": category}).scalars()]


def cards(engine: Engine, product_ids: list[int], role: str) -> list[ProductCard]:
    """Cards of the still-active products among `product_ids`, in that order."""
    ids = [i for i in product_ids if 0 < i <= 2_147_483_647]
    if not ids:
        return []
    with engine.connect() as conn:
        rows = conn.execute(text(
            f"SELECT p.*, {_FREE} AS stock, {_DISCOUNTS} AS discounts FROM products p"
            " WHERE p.is_active AND p.id = ANY(:ids)"), {"ids": ids}).all()
    by_id = {int(r.id): _card(r, role) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def product(engine: Engine, product_id: int, role: str,
            r: redis.Redis | None = None) -> ProductCard | None:
    """An active product's card, or None; with `r` its stock is read through the
    `stock_count:{product_id}` cache."""
    if not 0 < product_id <= 2_147_483_647:
        return None
    cached = (redis_store.cache_get_int(r, redis_store.stock_count_key(product_id))
              if r is not None else None)
    free = "CAST(:cached AS bigint)" if cached is not None else _FREE
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT p.*, {free} AS stock, {_DISCOUNTS} AS discounts"
                                " FROM products p"
                                " WHERE p.id = :p AND p.is_active"),
                           {"p": product_id, "cached": cached}).first()
    if row is not None and r is not None and cached is None:
        redis_store.cache_set_int(r, redis_store.stock_count_key(product_id), int(row.stock),
                                  redis_store.STOCK_COUNT_TTL_SECONDS)
    return None if row is None else _card(row, role)


def in_stock_ids(engine: Engine, limit: int = 24) -> list[int]:
    """Ids of active products with free units (the reply keyboard's shortcuts), ascending;
    when more than `limit` are in stock, the `limit` best sellers among them."""
    with engine.connect() as conn:
        return sorted(int(i) for i in conn.execute(text(
            f"SELECT p.id FROM products p WHERE p.is_active AND {_FREE} > 0"
            " ORDER BY p.sold_count DESC, p.id LIMIT :n"), {"n": limit}).scalars())


@dataclass(frozen=True)
class TopBuyer:
    """A shopper on the Top Buyers board, name masked."""

    masked_name: str
    orders: int
    total: Decimal


def mask_name(name: str | None) -> str:
    """`Budi` → `Bu***i`: enough to recognise yourself, not enough to identify others."""
    clean = (name or "").strip() or "?"
    if len(clean) <= 3:
        return clean[0] + "***"
    return clean[:2] + "***" + clean[-1]


def top_buyers(engine: Engine, limit: int = 10) -> list[TopBuyer]:
    """The `limit` shoppers who paid most this calendar month (the shop's, as /stats month),
    by amount paid, with their number of paid orders. Reads only."""
    since = period_start("month", datetime.now(UTC))
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT u.name, count(*) AS orders, sum(o.total_bill) AS total"
            " FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE o.status = 'paid' AND u.erased_at IS NULL AND o.paid_at >= :since"
            " GROUP BY u.id, u.name ORDER BY total DESC, u.id LIMIT :n"),
            {"since": since, "n": limit}).all()
    return [TopBuyer(mask_name(r.name), int(r.orders), Decimal(r.total)) for r in rows]


def stock_overview(engine: Engine) -> list[tuple[int, str, int]]:
    """(id, name, free units) of every active product."""
    with engine.connect() as conn:
        return [(int(r.id), str(r.name), int(r.stock)) for r in conn.execute(text(
            f"SELECT p.id, p.name, {_FREE} AS stock FROM products p WHERE p.is_active"
            " ORDER BY p.id"))]


def _card(r: Row[Any], role: str) -> ProductCard:
    # THE unit price (domain/pricing.product_price) with the product's running discounts.
    price = catalog_discounts.product_price(r, role)
    return ProductCard(
        product_id=int(r.id), name=str(r.name), category=str(r.category),
        description=r.description,
        price=price.price, original_price=price.original if price.discounted else None,
        stock=int(r.stock), sold=int(r.sold_count))
