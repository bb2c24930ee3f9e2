"""Reading an order the way after-sales needs it: lines with what each cost the buyer, payment,
status history, deliveries, refunds and warranty claims. Reads only; locks nothing.

Also the helpers the after-sales services share: the admin check, and what a line cost after
its share of the voucher (the refund formula's price; refunds are capped by it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import Engine

from quickcart.db import locks
from quickcart.db.sql import Tx, run, run_alone
from quickcart.domain.errors import ShopError

# Re-exported for the after-sales callers: THE admin check, and unit short ids as /liststock
# shows them and /delstock takes them.
from quickcart.services.admin import require_admin as require_admin
from quickcart.services.stock_admin import short_id as short_id

# An invoice (QC2412061234ABCD, DP…): letters and digits, at least one digit, 4–20 long.
INVOICE = re.compile(r"^(?=[A-Z_-]*[0-9])[A-Z0-9][A-Z0-9_-]{3,19}$")
RECENT_ORDERS = 6


@dataclass(frozen=True)
class Line:
    """One unit of an order: its product, current unit, price, share paid and claim count."""

    item_id: int
    product_id: int
    product_name: str
    stock_id: str
    price_per_unit: Decimal
    paid: Decimal
    claims: int


@dataclass(frozen=True)
class OrderView:
    """Everything the admin's order lookup shows, JSON-friendly."""

    order_id: int
    invoice_id: str
    user_id: int
    user_name: str
    username: str | None
    status: str
    payment_method: str
    subtotal: Decimal
    voucher_discount: Decimal
    payment_fee: Decimal
    total_bill: Decimal
    amount_paid: Decimal | None
    created_at: datetime
    paid_at: datetime | None
    expires_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    delivery_count: int
    lines: list[Line]
    events: list[Any] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    refunds: list[Any] = field(default_factory=list)
    claims: list[Any] = field(default_factory=list)
    late_credit: Decimal | None = None

    @property
    def paid_for_goods(self) -> Decimal:
        """What the buyer paid for the goods: subtotal less voucher, without the gateway fee."""
        return Decimal(self.subtotal - self.voucher_discount) if self.status == "paid" \
            else Decimal(0)

    @property
    def refunded(self) -> Decimal:
        """The sum of the refunds paid out."""
        return sum((Decimal(r.amount) for r in self.refunds if r.status == "paid"), Decimal(0))

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded."""
        return max(Decimal(0), self.paid_for_goods - self.refunded)


def lock_buyer_and_order(session: Tx, order_id: int) -> Any:
    """Lock an order's buyer (users row), then the order: the documented lock order of every
    after-sales change. Returns the locked order; ShopError('order_not_found') when unknown."""
    user_id = run(session, "SELECT user_id FROM orders WHERE id = :o", {"o": order_id}).scalar()
    if user_id is None:
        raise ShopError("order_not_found")
    locks.lock_user(session, int(user_id))
    order = locks.lock_order(session, order_id)
    assert order is not None
    return order


def is_admin(engine: Engine, user_id: int) -> bool:
    """Whether `user_id` is an admin now (a read; services re-check under their transaction)."""
    return run_alone(engine, "SELECT 1 FROM users WHERE id = :u AND member_status = 'admin'"
                     " AND NOT is_banned AND erased_at IS NULL", {"u": user_id}).first() \
        is not None


def line_shares(subtotal: Decimal, voucher_discount: Decimal,
                prices: Sequence[Decimal]) -> list[Decimal]:
    """What each line cost after its share of the voucher: the discount split in proportion to
    the line prices, rounded down, the remainder on the last line (the shares add up to
    subtotal − discount exactly)."""
    if not prices:
        return []
    shares = []
    for price in prices[:-1]:
        cut = (voucher_discount * price / subtotal).quantize(Decimal(1), rounding=ROUND_FLOOR) \
            if subtotal else Decimal(0)
        shares.append(Decimal(price) - cut)
    shares.append(Decimal(subtotal - voucher_discount) - sum(shares, Decimal(0)))
    return shares


def parse_reference(value: str) -> tuple[str, str | int] | None:
    """`/order` argument: ("user", id) for digits, ("invoice", INV) for an invoice, else None."""
    clean = value.strip()
    if clean.isdigit() and len(clean) <= 15:
        return "user", int(clean)
    if INVOICE.match(clean.upper()):
        return "invoice", clean.upper()
    return None


def find_order(engine: Engine, reference: tuple[str, str | int]) -> int | None:
    """The order an invoice names, or a user's latest order."""
    kind, value = reference
    if kind == "invoice":
        found = run_alone(engine, "SELECT id FROM orders WHERE invoice_id = :i",
                          {"i": value}).scalar()
    else:
        found = run_alone(engine, "SELECT id FROM orders WHERE user_id = :u"
                          " ORDER BY created_at DESC, id DESC LIMIT 1", {"u": value}).scalar()
    return int(found) if found is not None else None


def order_invoice(engine: Engine, user_id: int, order_id: int) -> str | None:
    """The invoice of `user_id`'s order `order_id` (None when it is not theirs)."""
    found = run_alone(engine, "SELECT invoice_id FROM orders WHERE id = :o AND user_id = :u",
                      {"o": order_id, "u": user_id}).scalar()
    return str(found) if found is not None else None


def recent_orders(engine: Engine, user_id: int, limit: int = RECENT_ORDERS) -> list[Any]:
    """A user's latest orders (id, invoice, status, total), newest first."""
    return run_alone(engine, "SELECT id, invoice_id, status, total_bill FROM orders"
                     " WHERE user_id = :u ORDER BY created_at DESC, id DESC LIMIT :n",
                     {"u": user_id, "n": limit}).all()


def order_lines(session: Tx, order_id: int, subtotal: Decimal,
                voucher_discount: Decimal) -> list[Line]:
    """The order's live lines with their paid shares, in item order."""
    rows = run(session,
               "SELECT i.id, i.product_id, p.name, i.stock_id, i.price_per_unit,"
               " i.warranty_claims FROM order_items i JOIN products p ON p.id = i.product_id"
               " WHERE i.order_id = :o ORDER BY i.id", {"o": order_id}).all()
    shares = line_shares(Decimal(subtotal), Decimal(voucher_discount),
                         [Decimal(r.price_per_unit) for r in rows])
    return [Line(int(r.id), int(r.product_id), str(r.name), str(r.stock_id),
                 Decimal(r.price_per_unit), share, int(r.warranty_claims))
            for r, share in zip(rows, shares, strict=True)]


def order_view(engine: Engine, order_id: int) -> OrderView | None:
    """The full after-sales view of one order (one read-only snapshot)."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            o = run(conn, "SELECT o.*, u.name AS user_name, u.username FROM orders o"
                    " JOIN users u ON u.id = o.user_id WHERE o.id = :o", {"o": order_id}).first()
            if o is None:
                return None
            lines = order_lines(conn, order_id, o.subtotal, o.voucher_discount)
            events = run(conn, "SELECT received_at, status, amount, outcome FROM payment_events"
                         " WHERE invoice_id = :i ORDER BY id", {"i": o.invoice_id}).all()
            actions = run(conn, "SELECT action, actor_id, outcome, created_at FROM order_actions"
                          " WHERE order_id = :o ORDER BY id", {"o": order_id}).all()
            refunds = run(conn, "SELECT id, amount, status, proposed_by, decided_by, created_at,"
                          " decided_at FROM order_refunds WHERE order_id = :o ORDER BY id",
                          {"o": order_id}).all()
            claims = run(conn, "SELECT id, order_item_id, old_stock_id, new_stock_id, status,"
                         " created_by, created_at FROM warranty_claims WHERE order_id = :o"
                         " ORDER BY id", {"o": order_id}).all()
            late = run(conn, "SELECT amount FROM balance_ledger WHERE reason = 'late_payment'"
                       " AND reference_type = 'order' AND reference_id = :i",
                       {"i": o.invoice_id}).scalar()
    return OrderView(
        int(o.id), str(o.invoice_id), int(o.user_id), str(o.user_name), o.username,
        str(o.status), str(o.payment_method), Decimal(o.subtotal), Decimal(o.voucher_discount),
        Decimal(o.payment_fee), Decimal(o.total_bill),
        Decimal(o.amount_paid) if o.amount_paid is not None else None, o.created_at, o.paid_at,
        o.expires_at, o.updated_at, o.delivered_at, int(o.delivery_count), lines,
        list(events), list(actions), list(refunds), list(claims),
        Decimal(late) if late is not None else None)


def refunded_totals(engine: Engine, order_ids: Iterable[int]) -> dict[int, Decimal]:
    """Refunds paid per order (orders without any are left out), for the shopper's history."""
    ids = list(order_ids)
    if not ids:
        return {}
    rows = run_alone(engine, "SELECT order_id, sum(amount) AS total FROM order_refunds"
                     " WHERE status = 'paid' AND order_id = ANY(:ids) GROUP BY order_id",
                     {"ids": ids}).all()
    return {int(r.order_id): Decimal(r.total) for r in rows}
