"""Orders: create (reserving units), pay with balance, settle, expire and cancel."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from quickcart.config import get_settings
from quickcart.db import idempotency, locks, outbox
from quickcart.db.outbox import OutboxMessage
from quickcart.db.sql import Record, Statement, Tx, run_script, sql
from quickcart.db.uow import UnitOfWork, actor_statement, connection_unit_of_work, unit_of_work
from quickcart.domain.codes import new_invoice_id
from quickcart.domain.errors import ShopError
from quickcart.domain.money import ZERO, as_text
from quickcart.domain.pricing import PAYMENT_METHODS, Bill, make_bill
from quickcart.i18n import N_
from quickcart.services import discounts as catalog_discounts
from quickcart.services import fraud, topics, vouchers
from quickcart.services.effects import Effects
from quickcart.services.ledger import checked_move_statements

MAX_QUANTITY = 1000
# Distinct products in one order (a cart holds at most this many lines).
MAX_LINES = 20


@dataclass(frozen=True)
class CreateOrder:
    """A shopper's intent to buy: `quantity` units of one product ("Beli sekarang"), or the
    cart's `lines` ((product_id, quantity) pairs; when given, product_id/quantity are unused).

    `expected_total`, when given, is the total the shopper was shown on the summary: an order
    whose bill would differ (a price changed meanwhile) is refused, never created, so the
    order row always equals what the shopper agreed to."""

    user_id: int
    product_id: int
    quantity: int
    payment_method: str
    idempotency_key: str
    voucher_code: str | None = None
    lines: tuple[tuple[int, int], ...] | None = None
    expected_total: str | None = None
    reply_to: int | None = None  # the bot's "⏳ … sedang diproses" message, edited into the outcome

    def items(self) -> list[tuple[int, int]]:
        """The order's (product_id, quantity) lines, merged per product, by product id.

        Sorted by product id: units are taken product by product in this order (the
        documented lock order for a multi-product order; see `_take_units`)."""
        merged: dict[int, int] = {}
        for product_id, quantity in (self.lines if self.lines is not None
                                     else ((self.product_id, self.quantity),)):
            merged[product_id] = merged.get(product_id, 0) + quantity
        return sorted(merged.items())


@dataclass
class Outcome:
    """What a use case decided (JSON-ready) and the outbox rows to publish after commit."""

    result: dict[str, Any]
    outbox: list[OutboxMessage] = field(default_factory=list)


def create_order(engine: Engine, cmd: CreateOrder) -> Outcome:
    """Create an order, reserving units with SKIP LOCKED; a balance order is paid in the same
    transaction. Locks: user → voucher → free units. Idempotent: the intent's key is claimed in
    this transaction, with its outcome (a refusal too, with its one polite message), by the
    statement that queues the outbox rows; a twin that claimed it first wins, this one rolls
    back and answers with the twin's result.

    Four round trips when nothing is refused and no voucher is given: lock and read, take
    units, write everything, commit (each round trip costs both processes about as much CPU as
    the statements in it)."""
    try:
        _validate(cmd)
        with connection_unit_of_work(engine) as uow:
            now = datetime.now(UTC)
            effects = Effects(uow.session)
            writes: list[Statement] = []
            try:
                found = _lock_and_read(uow.session, cmd)
                if found.claimed:
                    return Outcome(idempotency.as_result(found.prior))
                plan = _check(uow.session, effects, cmd, found, now)
            except ShopError as refusal:
                # Nothing but locks was taken yet: record the refusal in this transaction.
                result = _refuse(effects, cmd.user_id, refusal, cmd.reply_to)
            else:
                result, writes = _writes(effects, cmd, plan, now)
            return _commit_claimed(uow, effects, cmd.idempotency_key, "create_order", result,
                                   writes)
    except ShopError as refusal:
        return reject(engine, cmd.user_id, cmd.idempotency_key, "create_order", refusal,
                      cmd.reply_to)


def reject(engine: Engine, user_id: int, key: str, scope: str, refusal: ShopError,
           reply_to: int | None = None) -> Outcome:
    """Record a refusal under the intent's key with its message; nothing else changes."""
    with connection_unit_of_work(engine) as uow:
        effects = Effects(uow.session)
        result = _refuse(effects, user_id, refusal, reply_to)
        return _commit_claimed(uow, effects, key, scope, result, [])


def _commit_claimed(uow: UnitOfWork[Connection], effects: Effects, key: str, scope: str,
                    result: dict[str, Any], writes: list[Statement]) -> Outcome:
    """Run `writes`, then claim `key` with `result` as the guard of the effects' outbox rows,
    in one round trip, and commit. A twin that claimed the key first wins: this transaction
    is left uncommitted (rolled back by the unit of work) and answers with the twin's result."""
    claim = idempotency.claim_with_result(key, scope, result)
    stored = run_script(uow.session, [
        *writes, outbox.add_many_statement(effects.take(), guard=claim)]).all()
    if not stored:
        # The twin committed while we worked (a new statement sees its row).
        return Outcome(idempotency.recorded(uow.session, key))
    effects.messages = outbox.stored(stored)
    uow.commit()
    return Outcome(result, effects.messages)


# The next steps a refusal of a checkout offers, as rows of (label key, callback data); the
# callback data are the bot's (bot/handlers/cart.py: k:sum re-opens the summary, k:view the
# cart, k:po / k:pc show / cancel the pending order; a:dep tops up; c:all:0 the catalog).
_BACK_TO_SUMMARY = (N_("button.back_to_summary"), "k:sum")
NEXT_STEPS: dict[str, list[list[tuple[str, str]]]] = {
    "insufficient_balance": [[(N_("button.topup"), "a:dep"), _BACK_TO_SUMMARY]],
    "out_of_stock": [[(N_("button.change_quantity"), "k:view")],
                     [(N_("button.catalog"), "c:all:0")]],
    "not_enough_stock": [[(N_("button.change_quantity"), "k:view")],
                         [(N_("button.catalog"), "c:all:0")]],
    "product_unavailable": [[(N_("button.change_quantity"), "k:view")],
                            [(N_("button.catalog"), "c:all:0")]],
    "pending_order_exists": [[(N_("button.show_order"), "k:po"),
                              (N_("button.cancel_and_new"), "k:pc")]],
    "bill_changed": [[_BACK_TO_SUMMARY]],
    "voucher_unknown": [[_BACK_TO_SUMMARY]],
    "voucher_used": [[_BACK_TO_SUMMARY]],
    "voucher_expired": [[_BACK_TO_SUMMARY]],
    "voucher_cooldown": [[_BACK_TO_SUMMARY]],
}


def _refuse(effects: Effects, user_id: int, refusal: ShopError,
            reply_to: int | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if reply_to is not None:
        # A refusal of the bot's checkout: it replaces the processing message and never
        # ends the conversation (every refusal offers its next step).
        extra = {"_edit": reply_to,
                 "_buttons": NEXT_STEPS.get(refusal.code,
                                            [[(N_("button.main_menu"), "m:home")]])}
    effects.message(user_id, f"error.{refusal.code}", **refusal.params, **extra)
    return refusal.to_dict()


def _validate(cmd: CreateOrder) -> None:
    if cmd.payment_method not in PAYMENT_METHODS:
        raise ShopError("invalid_payment_method")
    raw = cmd.lines if cmd.lines is not None else ((cmd.product_id, cmd.quantity),)
    if not 1 <= len(raw) <= MAX_LINES:
        raise ShopError("cart_too_large", max=MAX_LINES)
    for product_id, quantity in raw:
        if not isinstance(product_id, int) or isinstance(product_id, bool) \
                or not 1 <= product_id <= 2**31 - 1:
            raise ShopError("product_unavailable", product_id=product_id)
        if not isinstance(quantity, int) or isinstance(quantity, bool) \
                or not 1 <= quantity <= MAX_QUANTITY:
            raise ShopError("invalid_quantity", max=MAX_QUANTITY)
    if sum(q for _p, q in cmd.items()) > MAX_QUANTITY:
        raise ShopError("invalid_quantity", max=MAX_QUANTITY)


@dataclass(frozen=True)
class _Line:
    """One product of an order: its price for the buyer and the free units taken for it."""

    product_id: int
    product_name: str
    price: Decimal
    units: list[uuid.UUID]

    @property
    def quantity(self) -> int:
        """Units of this line."""
        return len(self.units)

    def as_result(self) -> dict[str, Any]:
        """JSON-ready form for the intent's result."""
        return {"product_id": self.product_id, "product_name": self.product_name,
                "quantity": self.quantity, "unit_price": as_text(self.price),
                "line_total": as_text(self.price * self.quantity)}


@dataclass(frozen=True)
class _Plan:
    """What the checks of an order decided, before anything is written."""

    order_id: int
    lines: list[_Line]
    bill: Bill
    voucher_id: int | None


_READ_FOR_ORDER = (
    "SELECT k.key IS NOT NULL AS claimed, k.result AS prior,"
    " u.id AS user_id, u.is_banned, u.member_status, u.account_balance,"
    " o.invoice_id, o.total_bill, o.expires_at,"
    # Prices as text: JSON numbers would come back as floats.
    " (SELECT json_agg(json_build_object('id', p.id, 'name', p.name, 'active', p.is_active,"
    " 'customer_price', p.customer_price::text, 'reseller_price', p.reseller_price::text,"
    # The product's running discounts and reseller floor (issue 23), for the price below.
    " 'reseller_discount_floor', p.reseller_discount_floor::text,"
    " 'discounts', " + catalog_discounts.DISCOUNTS_JSON + "))"
    " FROM products p WHERE p.id = ANY(CAST(:ps AS int[]))) AS products,"
    " nextval('orders_id_seq') AS next_order_id"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN idempotency_keys k ON k.key = :k"
    " LEFT JOIN users u ON u.id = :lock_user"
    " LEFT JOIN orders o ON o.user_id = :lock_user AND o.status = 'pending'"
)


def _lock_and_read(session: Tx, cmd: CreateOrder) -> Record:
    """Name the actor, lock the user, then read the intent's key, the user, the products and
    the user's pending order, and draw the new order's id, in one round trip."""
    actor = actor_statement(cmd.user_id, "user", {"intent": cmd.idempotency_key})
    return locks.lock_user_then(session, cmd.user_id, (_READ_FOR_ORDER, {
        "k": cmd.idempotency_key, "lock_user": cmd.user_id,
        "ps": [p for p, _q in cmd.items()]}), first=actor).one()


def _check(session: Tx, effects: Effects, cmd: CreateOrder, found: Record,
           now: datetime) -> _Plan:
    """Check the locked user's order, holding the voucher and free units; writes nothing but
    the risk assessment, so a ShopError raised here leaves the transaction clean for recording
    the refusal. A held balance order's messages go into `effects` (published after commit
    by this task, not later by the relay sweep)."""
    if found.user_id is None:
        raise ShopError("user_not_registered")
    if found.is_banned:
        raise ShopError("user_banned")
    if found.invoice_id is not None:
        raise ShopError("pending_order_exists", invoice_id=found.invoice_id,
                        total=str(found.total_bill), expires_at=found.expires_at.isoformat())
    products = {int(p["id"]): p for p in (found.products or [])}
    for product_id, _quantity in cmd.items():
        product = products.get(product_id)
        if product is None or not product["active"]:
            raise ShopError("product_unavailable", product_id=product_id,
                            product_name=product["name"] if product else str(product_id))
    voucher = (vouchers.hold_voucher(session, cmd.user_id, cmd.voucher_code, now)
               if cmd.voucher_code else None)
    lines = _take_units(session, cmd, products, found.member_status)
    subtotal = sum((line.price * line.quantity for line in lines), ZERO)
    # A voucher's discount: its amount, or a percentage up to its cap, above its minimum.
    bill = make_bill(subtotal, vouchers.voucher_discount(voucher, subtotal) if voucher else ZERO,
                     cmd.payment_method)
    if cmd.expected_total is not None and bill.total != Decimal(cmd.expected_total):
        raise ShopError("bill_changed", total=str(bill.total), expected=cmd.expected_total)
    if cmd.payment_method == "account_balance" and bill.total > found.account_balance:
        raise ShopError("insufficient_balance", balance=str(found.account_balance),
                        needed=str(bill.total),
                        short=str(bill.total - found.account_balance))
    # Risk rules under the user lock: a block refuses here; a held balance order is born paid
    # and held for review (quickcart/services/fraud.py).
    fraud.screen(session, cmd.user_id, bill.total, external=cmd.payment_method == "qris",
                 paid_now=cmd.payment_method != "qris" or bill.total == ZERO,
                 order_id=int(found.next_order_id), effects=effects)
    return _Plan(int(found.next_order_id), lines, bill, voucher.id if voucher else None)


def _take_units(session: Tx, cmd: CreateOrder, products: dict[int, Any],
                role: str) -> list[_Line]:
    """Take every line's free units, or refuse the whole order (all or nothing).

    Lock order: lines by ascending product id, units of a product by (created_at, id), each
    with SKIP LOCKED. A buyer never waits on a unit another buyer holds, so two carts holding
    the same products in different orders cannot deadlock; the first short line refuses the
    order, and the transaction (which wrote nothing) releases what it had taken."""
    lines = []
    for product_id, quantity in cmd.items():
        product = products[product_id]
        units = locks.take_free_units(session, product_id, quantity)
        if len(units) < quantity:
            # What SKIP LOCKED handed us is what is available: units other buyers hold right
            # now are not (they are being sold), so they are not offered.
            raise ShopError("out_of_stock" if not units else "not_enough_stock",
                            product_id=product_id, product_name=product["name"],
                            available=len(units), requested=quantity)
        # THE unit price (domain/pricing.product_price) with the product's discounts.
        price = catalog_discounts.product_price(product, role).price
        lines.append(_Line(product_id, product["name"], price, units))
    return lines


_ORDER_COLUMNS = ("INSERT INTO orders (id, invoice_id, user_id, subtotal, voucher_discount,"
                  " payment_fee, total_bill, payment_method, expires_at, fee_estimate")
_INSERT_PENDING_ORDER = (_ORDER_COLUMNS + ")"
                         " VALUES (:o, :inv, :u, :sub, :disc, :fee, :total, :m, :exp, :fee)")
_INSERT_PAID_ORDER = (_ORDER_COLUMNS + ", status, paid_at, amount_paid)"
                      " VALUES (:o, :inv, :u, :sub, :disc, :fee, :total, :m, :exp, :fee,"
                      " 'paid', :now, :total)")
# One statement: the units point at the order, then the items at the units (the composite key
# from item to unit is checked at the end of the statement, after both).
_RESERVE_UNITS = (
    "WITH reserved AS (UPDATE product_stocks SET order_id = :o"
    " WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING id)"
    " INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
    " SELECT :o, :p, id, :price FROM reserved")
# The same, the units sold at once and the sale counted (products.sold_count is rolled up).
_SELL_UNITS = (
    "WITH sold AS (UPDATE product_stocks SET order_id = :o, is_sold = true"
    " WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING id),"
    " items AS (INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
    " SELECT :o, :p, id, :price FROM sold)"
    " INSERT INTO sold_count_deltas (product_id, quantity, order_id)"
    " SELECT :p, count(*), :o FROM sold")


_LINE_PARAMS = re.compile(r":(p|ids|price)\b")


def _line_statement(statement: str, n: int, order_id: int, line: _Line) -> Statement:
    """`statement` for the order's `n`th line, its parameters numbered: the lines' statements
    share one script, whose parameter names must be unique."""
    return (_LINE_PARAMS.sub(lambda m: f":{m.group(1)}_{n}", statement),
            {"o": order_id, f"p_{n}": line.product_id, f"ids_{n}": line.units,
             f"price_{n}": line.price})


def _writes(effects: Effects, cmd: CreateOrder, plan: _Plan,
            now: datetime) -> tuple[dict[str, Any], list[Statement]]:
    """The checked order's writes, as one script: order, items, units reserved; paid at once
    for balance. Returns the intent's result and the statements, which the caller runs."""
    bill, order_id = plan.bill, plan.order_id
    invoice_id = new_invoice_id("QC", now)
    expires_at = now + timedelta(minutes=get_settings().order_expiry_minutes)
    paid = cmd.payment_method == "account_balance" or bill.total == ZERO
    order = {"o": order_id, "inv": invoice_id, "u": cmd.user_id, "sub": bill.subtotal,
             "disc": bill.voucher_discount, "fee": bill.payment_fee, "total": bill.total,
             "m": cmd.payment_method, "exp": expires_at, "now": now}
    # Paid at once: the order is born paid and its units are reserved and sold by one write
    # per line, not written pending and then settled (a second version of the order row and
    # of every unit, each with its index entries, triggers and audit record).
    writes: list[Statement] = [(_INSERT_PAID_ORDER if paid else _INSERT_PENDING_ORDER, order)]
    writes += [_line_statement(_SELL_UNITS if paid else _RESERVE_UNITS, n, order_id, line)
               for n, line in enumerate(plan.lines)]
    if plan.voucher_id is not None:
        writes += vouchers.held_voucher_statements(plan.voucher_id, order_id, cmd.user_id, now,
                                                   paid=paid)
    if paid:
        if bill.total > ZERO:
            # _check compared the total with the balance under the user lock.
            writes += checked_move_statements(cmd.user_id, -bill.total, "purchase", "order",
                                              invoice_id, actor_id=cmd.user_id)
        _queue_settled(effects, order_id, cmd.payment_method)
        status = "paid"
    else:
        effects.add(topics.START_QRIS, {"kind": "order", "id": order_id})
        effects.schedule_expiry("order", order_id, expires_at)
        status = "pending"
    if cmd.reply_to is not None:
        # The bot's processing message becomes the outcome (the QR photo and the delivery
        # follow as messages of their own).
        buttons = [[(N_("button.history"), "a:hist:0"), (N_("button.main_menu"), "m:home")]]
        if not paid:
            buttons = [[(N_("button.check_status"), f"pay:check:{invoice_id}"),
                        (N_("button.cancel"), f"pay:cancel:{invoice_id}")]]
        effects.message(cmd.user_id, N_("order.placed_paid") if paid else N_("order.placed_qris"),
                        invoice_id=invoice_id, total_bill=as_text(bill.total),
                        _edit=cmd.reply_to, _buttons=buttons)
    first = plan.lines[0]
    return {
        "status": status, "order_id": order_id, "invoice_id": invoice_id,
        "product_id": first.product_id, "product_name": first.product_name,
        "quantity": sum(line.quantity for line in plan.lines),
        "unit_price": as_text(first.price),
        "lines": [line.as_result() for line in plan.lines],
        "subtotal": as_text(bill.subtotal),
        "voucher_discount": as_text(bill.voucher_discount),
        "payment_fee": as_text(bill.payment_fee),
        "total_bill": as_text(bill.total), "payment_method": cmd.payment_method,
        "expires_at": expires_at.isoformat(),
    }, writes


def settle_paid(session: Tx, effects: Effects, order: Record, now: datetime,
                amount_paid: Any) -> None:
    """Mark a pending order paid: units sold, sales counted, voucher used, delivery queued.

    The caller holds the user and order locks; the order's units are reserved to it, so only
    this transaction touches them.
    """
    run_script(session, _settle_statements(effects, order.id, order.payment_method, now,
                                           amount_paid))
    vouchers.use_order_voucher(session, order.id, order.user_id, now)


def _queue_settled(effects: Effects, order_id: int, payment_method: str) -> None:
    """The effects of an order becoming paid: its delivery, and its QR message updated."""
    effects.add(topics.DELIVER_ORDER, {"order_id": order_id})
    if payment_method == "qris":
        effects.add(topics.UPDATE_PAYMENT_QR, {"kind": "order", "id": order_id, "state": "paid"})
    # Admins hear of sales in the periodic digest (quickcart.services.digest), not per order.


def _settle_statements(effects: Effects, order_id: int, payment_method: str, now: datetime,
                       amount_paid: Any) -> list[Statement]:
    """The statements that mark a pending order paid (its voucher aside), effects queued."""
    _queue_settled(effects, order_id, payment_method)
    return [(
        "WITH sold AS (UPDATE product_stocks SET is_sold = true WHERE order_id = :o"
        " RETURNING product_id),"
        " counted AS (INSERT INTO sold_count_deltas (product_id, quantity, order_id)"
        " SELECT product_id, count(*), :o FROM sold GROUP BY product_id)"
        " UPDATE orders SET status = 'paid', paid_at = :now, amount_paid = :paid,"
        " payment_number = NULL WHERE id = :o",
        {"now": now, "paid": amount_paid, "o": order_id},
    )]


def release_order(session: Tx, effects: Effects, order: Record, status: str) -> None:
    """Expire or cancel a pending order: items kept as history, units and voucher freed.

    The caller holds the user and order locks. Items leave order_items first: the composite key
    from items to units forbids freeing a unit an item still points at.
    """
    session.execute(
        sql("INSERT INTO released_order_items (id, order_id, product_id, stock_id,"
             " price_per_unit) SELECT id, order_id, product_id, stock_id, price_per_unit"
             " FROM order_items WHERE order_id = :o"), {"o": order.id},
    )
    session.execute(sql("DELETE FROM order_items WHERE order_id = :o"), {"o": order.id})
    session.execute(
        sql("UPDATE product_stocks SET order_id = NULL WHERE order_id = :o AND NOT is_sold"),
        {"o": order.id},
    )
    vouchers.release_order_voucher(session, order.id)
    session.execute(sql("UPDATE orders SET status = :s, payment_number = NULL WHERE id = :o"),
                    {"s": status, "o": order.id})
    if order.payment_method == "qris":
        effects.add(topics.UPDATE_PAYMENT_QR, {"kind": "order", "id": order.id, "state": status})
    if order.payment_method == "qris" and order.payment_number is not None:
        effects.add(topics.CANCEL_GATEWAY, {"invoice_id": order.invoice_id,
                                            "amount": str(order.total_bill - order.payment_fee)})


def expire_order(engine: Engine, order_id: int, status: str = "expired",
                 reason: str = "expired", actor_id: int | None = None,
                 now: datetime | None = None, force: bool = False) -> Outcome:
    """Expire (when due) or cancel a pending order. Locks: user → order.

    Idempotent by state: a settled order is left alone; an order not yet due is not expired
    (a stale entry of the Redis expiry set cannot expire it early).
    """
    now = now or datetime.now(UTC)
    with unit_of_work(engine) as uow:
        uow.set_actor(actor_id, "user" if actor_id else "system", {"reason": reason})
        session = uow.session
        user_id = session.execute(sql("SELECT user_id FROM orders WHERE id = :o"),
                                  {"o": order_id}).scalar()
        if user_id is None:
            return Outcome({"status": "unknown", "changed": False})
        locks.lock_user(session, user_id)
        order = locks.lock_order(session, order_id)
        assert order is not None
        if order.status != "pending":
            return Outcome({"status": order.status, "changed": False})
        if status == "expired" and order.expires_at > now and not force:
            return Outcome({"status": "pending", "changed": False, "due": order.expires_at})
        effects = Effects(session)
        release_order(session, effects, order, status)
        key = {"expired": N_("order.expired"), "cancelled": N_("order.cancelled")}[status]
        if reason == "gateway_unavailable":
            key = N_("error.payments_unavailable")
        effects.message(order.user_id, key, invoice_id=order.invoice_id)
        uow.commit()
        return Outcome({"status": status, "changed": True, "invoice_id": order.invoice_id},
                       effects.messages)


def cancel_own_order(engine: Engine, user_id: int, order_id: int | None = None) -> Outcome:
    """A shopper cancels their pending order (their only one when `order_id` is None)."""
    with engine.connect() as conn:
        found = conn.execute(
            sql("SELECT id FROM orders WHERE user_id = :u AND status = 'pending'"
                 " AND (CAST(:o AS int) IS NULL OR id = :o)"), {"u": user_id, "o": order_id},
        ).scalar()
    if found is None:
        return Outcome({"status": "rejected", "error": "no_pending_order"})
    return expire_order(engine, found, status="cancelled", reason="user", actor_id=user_id)


def pending_order_view(engine: Engine, user_id: int) -> dict[str, Any] | None:
    """The user's pending order for the bot (invoice, total, minutes left), or None."""
    with engine.connect() as conn:
        row = conn.execute(sql(
            "SELECT invoice_id, total_bill, expires_at FROM orders"
            " WHERE user_id = :u AND status = 'pending'"), {"u": user_id}).first()
    if row is None:
        return None
    return {"invoice_id": row.invoice_id, "total_bill": as_text(row.total_bill),
            "minutes": _minutes_left(row.expires_at)}


def _minutes_left(expires_at: datetime) -> int:
    return max(0, -(-int((expires_at - datetime.now(UTC)).total_seconds()) // 60))


def payment_status(engine: Engine, user_id: int, invoice_id: str) -> dict[str, Any] | None:
    """Where the user's order or deposit `invoice_id` stands (reads only): kind, status,
    minutes left while pending, delivered or not; None when it is not theirs."""
    with engine.connect() as conn:
        row = conn.execute(sql(
            "SELECT 'order' AS kind, status, expires_at, total_bill, delivered_at"
            " FROM orders WHERE invoice_id = :i AND user_id = :u"
            " UNION ALL SELECT 'deposit', status, expires_at, total_bill, NULL"
            " FROM deposits WHERE invoice_id = :i AND user_id = :u"),
            {"i": invoice_id[:40], "u": user_id}).first()
    if row is None:
        return None
    status = row.status
    if status == "pending" and row.expires_at <= datetime.now(UTC):
        status = "expired"  # due; the expiry worker is about to release it
    return {"kind": row.kind, "status": status, "invoice_id": invoice_id,
            "total_bill": as_text(row.total_bill), "minutes": _minutes_left(row.expires_at),
            "delivered": row.delivered_at is not None}


#: Pending orders expired by `:now` (idx_orders_pending_expires_at): what the expiry sweep
#: (`due_orders`) expires, and what beat's check (quickcart.services.housekeeping) asks about.
DUE = "FROM orders WHERE status = 'pending' AND expires_at <= :now"


def due_orders(engine: Engine, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending orders past their expiry (the beat sweep's backstop list); locks nothing."""
    with engine.connect() as conn:
        return list(conn.execute(
            sql("SELECT id " + DUE + " ORDER BY expires_at LIMIT :n"),
            {"now": now or datetime.now(UTC), "n": limit},
        ).scalars())


def rollup_sold_counts(engine: Engine) -> int:
    """Fold sold_count_deltas into products.sold_count in one statement; returns products moved.

    Deleting the deltas and adding them happen in one statement, so a delta is counted once.
    """
    with engine.begin() as conn:
        conn.execute(sql("SELECT set_config('quickcart.actor_type', 'system', true)"))
        result = conn.execute(sql(
            "WITH moved AS (DELETE FROM sold_count_deltas RETURNING product_id, quantity),"
            " sums AS (SELECT product_id, sum(quantity) AS q FROM moved GROUP BY product_id)"
            " UPDATE products p SET sold_count = p.sold_count + sums.q FROM sums"
            " WHERE p.id = sums.product_id"
        ))
    return int(result.rowcount or 0)
