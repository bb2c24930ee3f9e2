"""The shopper's cart (Redis) and the checkout quote (the full bill before paying).

The cart is a Redis hash `cart:{user_id}` (product id → quantity, plus `order` = the id of
the order it was checked out into), 24 h TTL re-armed on every write. It lives outside the
bot process, so it survives a bot restart. It is emptied once its order is paid: at once for
a balance order (the create task), lazily for a QRIS order (the next read finds the order
paid). An expired or cancelled order leaves the cart as it was, so the shopper can retry.

The quote is read-only: it computes the bill with the same pricing functions as the order
engine (quickcart.domain.pricing), and the order is created with the quoted total as
`expected_total`, so the order row equals what the summary showed or the order is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import redis
from sqlalchemy import Engine, text

from quickcart.adapters import redis_store
from quickcart.domain.errors import ShopError
from quickcart.domain.money import ZERO
from quickcart.domain.pricing import Bill, make_bill
from quickcart.services import discounts as catalog_discounts
from quickcart.services import vouchers
from quickcart.services.orders import MAX_LINES, MAX_QUANTITY
from quickcart.services.vouchers import normalise_code

CART_TTL_SECONDS = 24 * 3600
_ORDER_FIELD = "order"
# A voucher code is at most this long (the column is VARCHAR(20)); longer input is a typo.
MAX_VOUCHER_CODE = 20


def cart_key(user_id: int) -> str:
    """The Redis key of `user_id`'s cart (prefixed like every shop key)."""
    return redis_store.prefixed(f"cart:{user_id}")


def _read(r: redis.Redis, user_id: int) -> tuple[dict[int, int], int | None]:
    raw = r.hgetall(cart_key(user_id))
    lines: dict[int, int] = {}
    order_id: int | None = None
    for field, value in dict(raw).items():
        name, val = str(field), str(value)
        if name == _ORDER_FIELD:
            order_id = int(val) if val.isdigit() else None
        elif name.isdigit() and val.isdigit() and int(val) > 0:
            lines[int(name)] = int(val)
    return lines, order_id


def lines(engine: Engine, r: redis.Redis, user_id: int) -> dict[int, int]:
    """The cart's lines (product id → quantity), by product id; a cart whose order has been
    paid is emptied first."""
    items, order_id = _read(r, user_id)
    if order_id is not None:
        with engine.connect() as conn:
            status = conn.execute(text("SELECT status FROM orders WHERE id = :o"),
                                  {"o": order_id}).scalar()
        if status == "paid":
            clear(r, user_id)
            return {}
    return dict(sorted(items.items()))


def set_quantity(r: redis.Redis, user_id: int, product_id: int, quantity: int) -> None:
    """Set a line's quantity (0 or less removes it); re-arms the 24 h TTL."""
    key = cart_key(user_id)
    pipe = r.pipeline()
    if quantity > 0:
        pipe.hset(key, str(product_id), str(min(quantity, MAX_QUANTITY)))
    else:
        pipe.hdel(key, str(product_id))
    pipe.expire(key, CART_TTL_SECONDS)
    pipe.execute()


def remember_order(r: redis.Redis, user_id: int, order_id: int) -> None:
    """Note the order the cart was checked out into (paid → the cart is emptied)."""
    key = cart_key(user_id)
    pipe = r.pipeline()
    pipe.hset(key, _ORDER_FIELD, str(order_id))
    pipe.expire(key, CART_TTL_SECONDS)
    pipe.execute()


def clear(r: redis.Redis, user_id: int) -> None:
    """Empty the cart."""
    r.delete(cart_key(user_id))


def free_stock(engine: Engine, product_ids: list[int]) -> dict[int, int]:
    """Free units (not sold, in no order) of active products among `product_ids`."""
    ids = [i for i in product_ids if 0 < i <= 2_147_483_647]
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.id, (SELECT count(*) FROM product_stocks s WHERE s.product_id = p.id"
            " AND NOT s.is_sold AND s.order_id IS NULL) AS free"
            " FROM products p WHERE p.is_active AND p.id = ANY(:ids)"), {"ids": ids}).all()
    return {int(r.id): int(r.free) for r in rows}


@dataclass(frozen=True)
class AddResult:
    """What adding to the cart did: the line's quantity now, and whether it was capped."""

    status: str  # added, capped, out_of_stock, unavailable, cart_full
    quantity: int
    available: int


def add(engine: Engine, r: redis.Redis, user_id: int, product_id: int,
        quantity: int) -> AddResult:
    """Add `quantity` units to the cart, capped by the product's free stock."""
    free = free_stock(engine, [product_id]).get(product_id)
    if free is None:
        return AddResult("unavailable", 0, 0)
    current = lines(engine, r, user_id)
    have = current.get(product_id, 0)
    if have == 0 and len(current) >= MAX_LINES:
        return AddResult("cart_full", 0, free)
    if free <= 0:
        return AddResult("out_of_stock", have, 0)
    wanted = have + max(quantity, 0)
    new = min(wanted, free, MAX_QUANTITY)
    set_quantity(r, user_id, product_id, new)
    return AddResult("capped" if new < wanted else "added", new, free)


@dataclass(frozen=True)
class QuoteLine:
    """One line of the summary, priced for the shopper's role."""

    product_id: int
    name: str
    quantity: int
    unit_price: Decimal
    available: int

    @property
    def total(self) -> Decimal:
        """Unit price × quantity."""
        return self.unit_price * self.quantity

    @property
    def short(self) -> bool:
        """Whether free stock no longer covers the quantity."""
        return self.available < self.quantity


@dataclass(frozen=True)
class Quote:
    """The full bill before paying, for both methods, and what stands in the way."""

    lines: list[QuoteLine]
    missing: list[int]  # products no longer sold
    voucher_amount: Decimal
    voucher_problem: ShopError | None
    qris: Bill
    balance_bill: Bill
    balance: Decimal
    pending_invoice: str | None
    pending_order_id: int | None

    @property
    def balance_after(self) -> Decimal:
        """The balance left after paying by SALDO."""
        return self.balance - self.balance_bill.total

    @property
    def balance_short(self) -> Decimal:
        """How much the balance lacks for SALDO (0 when it covers the total)."""
        return max(self.balance_bill.total - self.balance, ZERO)


def quote(engine: Engine, user_id: int, role: str, items: list[tuple[int, int]],
          voucher: dict[str, Any] | None = None) -> Quote:
    """The bill of `items` for `user_id` (prices for `role`), `voucher` (check_voucher's data)
    applied by the engine's rule, with free stock per line, the balance, and the user's
    pending order if any. Reads only. A voucher whose minimum purchase the lines no longer
    reach takes nothing off (`voucher_problem` says why; the engine would refuse it)."""
    ids = sorted({p for p, _q in items})
    with engine.connect() as conn:
        rows = {int(r.id): r for r in conn.execute(text(
            "SELECT p.id, p.name, p.customer_price, p.reseller_price,"
            " p.reseller_discount_floor, " + catalog_discounts.DISCOUNTS_JSON + " AS discounts,"
            " (SELECT count(*) FROM product_stocks s WHERE s.product_id = p.id"
            " AND NOT s.is_sold AND s.order_id IS NULL) AS free"
            " FROM products p WHERE p.is_active AND p.id = ANY(:ids)"), {"ids": ids})}
        user = conn.execute(text(
            "SELECT u.account_balance, o.id AS order_id, o.invoice_id FROM users u"
            " LEFT JOIN orders o ON o.user_id = u.id AND o.status = 'pending'"
            " WHERE u.id = :u"), {"u": user_id}).first()
    quoted: list[QuoteLine] = []
    missing: list[int] = []
    for product_id, quantity in sorted(items):
        row = rows.get(product_id)
        if row is None:
            missing.append(product_id)
            continue
        # THE unit price (domain/pricing.product_price) with the product's discounts.
        price = catalog_discounts.product_price(row, role).price
        quoted.append(QuoteLine(product_id, str(row.name), quantity, price, int(row.free)))
    subtotal = sum((line.total for line in quoted), ZERO)
    problem: ShopError | None = None
    try:
        off = voucher_discount(voucher, subtotal) if quoted else ZERO
    except ShopError as refusal:
        off, problem = ZERO, refusal
    return Quote(
        lines=quoted, missing=missing, voucher_amount=off, voucher_problem=problem,
        qris=make_bill(subtotal, off, "qris"),
        balance_bill=make_bill(subtotal, off, "account_balance"),
        balance=user.account_balance if user is not None else ZERO,
        pending_invoice=user.invoice_id if user is not None else None,
        pending_order_id=user.order_id if user is not None else None)


def check_voucher(engine: Engine, user_id: int, code: str,
                  now: datetime | None = None) -> dict[str, Any]:
    """Validate a typed code for `user_id` at once: the voucher as JSON-ready data (code,
    amount, percent, min_purchase) for `quote`.

    Raises the order engine's own refusals (voucher_unknown / used / expired / cooldown, ...):
    the check is vouchers.hold_voucher itself, in a transaction rolled back at once, so it
    writes nothing and holds the voucher's row lock only for that instant. The engine checks
    again, under lock, when the order is placed."""
    now = now or datetime.now(UTC)
    clean = normalise_code(code)
    if not clean or len(clean) > MAX_VOUCHER_CODE or not clean.isalnum() or not clean.isascii():
        raise ShopError("voucher_unknown", code=clean[:MAX_VOUCHER_CODE])
    with engine.connect() as conn, conn.begin() as tx:
        try:
            voucher = vouchers.hold_voucher(conn, user_id, clean, now)
        finally:
            tx.rollback()
    percent = getattr(voucher, "percent", None)
    minimum = getattr(voucher, "min_purchase", None)
    return {"code": voucher.code, "amount": str(voucher.amount),
            "percent": None if percent is None else str(percent),
            "min_purchase": None if minimum is None else str(minimum)}


def voucher_discount(voucher: dict[str, Any] | None, subtotal: Decimal) -> Decimal:
    """What `voucher` (check_voucher's data) takes off `subtotal`, by the engine's own rule
    (vouchers.voucher_discount); raises voucher_min_purchase under its minimum."""
    if not voucher:
        return ZERO
    return vouchers.voucher_discount(SimpleNamespace(
        code=voucher["code"], amount=Decimal(voucher["amount"]),
        percent=None if voucher.get("percent") is None else Decimal(voucher["percent"]),
        min_purchase=Decimal(voucher.get("min_purchase") or 0)), subtotal)
