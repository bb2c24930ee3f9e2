"""Orders: create (reserving units), pay with balance, settle, expire and cancel."""

from __future__ import annotations

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
from quickcart.domain.pricing import PAYMENT_METHODS, Bill, make_bill, unit_price
from quickcart.i18n import N_
from quickcart.services import topics, vouchers
from quickcart.services.effects import Effects
from quickcart.services.ledger import checked_move_statements

MAX_QUANTITY = 1000


@dataclass(frozen=True)
class CreateOrder:
    """A shopper's intent to buy `quantity` units of one product."""

    user_id: int
    product_id: int
    quantity: int
    payment_method: str
    idempotency_key: str
    voucher_code: str | None = None


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
                plan = _check(uow.session, cmd, found, now)
            except ShopError as refusal:
                # Nothing but locks was taken yet: record the refusal in this transaction.
                result = _refuse(effects, cmd.user_id, refusal)
            else:
                result, writes = _writes(effects, cmd, plan, now)
            return _commit_claimed(uow, effects, cmd.idempotency_key, "create_order", result,
                                   writes)
    except ShopError as refusal:
        return reject(engine, cmd.user_id, cmd.idempotency_key, "create_order", refusal)


def reject(engine: Engine, user_id: int, key: str, scope: str, refusal: ShopError) -> Outcome:
    """Record a refusal under the intent's key with its message; nothing else changes."""
    with connection_unit_of_work(engine) as uow:
        effects = Effects(uow.session)
        result = _refuse(effects, user_id, refusal)
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


def _refuse(effects: Effects, user_id: int, refusal: ShopError) -> dict[str, Any]:
    effects.message(user_id, f"error.{refusal.code}", **refusal.params)
    return refusal.to_dict()


def _validate(cmd: CreateOrder) -> None:
    if cmd.payment_method not in PAYMENT_METHODS:
        raise ShopError("invalid_payment_method")
    if not isinstance(cmd.quantity, int) or not 1 <= cmd.quantity <= MAX_QUANTITY:
        raise ShopError("invalid_quantity", max=MAX_QUANTITY)


@dataclass(frozen=True)
class _Plan:
    """What the checks of an order decided, before anything is written."""

    order_id: int
    product_name: str
    price: Decimal
    bill: Bill
    units: list[uuid.UUID]
    voucher_id: int | None


_READ_FOR_ORDER = (
    "SELECT k.key IS NOT NULL AS claimed, k.result AS prior,"
    " u.id AS user_id, u.is_banned, u.member_status, u.account_balance,"
    " p.name, p.is_active, p.customer_price, p.reseller_price,"
    " o.invoice_id, o.total_bill, o.expires_at,"
    " nextval('orders_id_seq') AS next_order_id"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN idempotency_keys k ON k.key = :k"
    " LEFT JOIN users u ON u.id = :lock_user"
    " LEFT JOIN products p ON p.id = :p"
    " LEFT JOIN orders o ON o.user_id = :lock_user AND o.status = 'pending'"
)


def _lock_and_read(session: Tx, cmd: CreateOrder) -> Record:
    """Name the actor, lock the user, then read the intent's key, the user, the product and
    the user's pending order, and draw the new order's id, in one round trip."""
    actor = actor_statement(cmd.user_id, "user", {"intent": cmd.idempotency_key})
    return locks.lock_user_then(session, cmd.user_id, (_READ_FOR_ORDER, {
        "k": cmd.idempotency_key, "lock_user": cmd.user_id, "p": cmd.product_id}),
        first=actor).one()


def _check(session: Tx, cmd: CreateOrder, found: Record, now: datetime) -> _Plan:
    """Check the locked user's order, holding the voucher and free units; writes nothing, so
    a ShopError raised here leaves the transaction clean for recording the refusal."""
    if found.user_id is None:
        raise ShopError("user_not_registered")
    if found.is_banned:
        raise ShopError("user_banned")
    if found.invoice_id is not None:
        raise ShopError("pending_order_exists", invoice_id=found.invoice_id,
                        total=str(found.total_bill), expires_at=found.expires_at.isoformat())
    if found.name is None or not found.is_active:
        raise ShopError("product_unavailable", product_id=cmd.product_id)
    voucher = (vouchers.hold_voucher(session, cmd.user_id, cmd.voucher_code, now)
               if cmd.voucher_code else None)
    units = locks.take_free_units(session, cmd.product_id, cmd.quantity)
    if len(units) < cmd.quantity:
        # What SKIP LOCKED handed us is what is available: units other buyers hold right now
        # are not (they are being sold), so they are not offered.
        raise ShopError("out_of_stock" if not units else "not_enough_stock",
                        product_id=cmd.product_id, available=len(units))
    price = unit_price(found.member_status, found.customer_price, found.reseller_price)
    bill = make_bill(price * cmd.quantity, voucher.amount if voucher else ZERO,
                     cmd.payment_method)
    if cmd.payment_method == "account_balance" and bill.total > found.account_balance:
        raise ShopError("insufficient_balance", balance=str(found.account_balance),
                        needed=str(bill.total))
    return _Plan(int(found.next_order_id), found.name, price, bill, units,
                 voucher.id if voucher else None)


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
             "m": cmd.payment_method, "exp": expires_at, "p": cmd.product_id,
             "ids": plan.units, "price": plan.price, "now": now}
    if paid:
        # Paid at once: the order is born paid and its units are reserved and sold by one
        # write each, not written pending and then settled (a second version of the order row
        # and of every unit, each with its index entries, triggers and audit record).
        writes: list[Statement] = [(_INSERT_PAID_ORDER, order), (_SELL_UNITS, order)]
    else:
        writes = [(_INSERT_PENDING_ORDER, order), (_RESERVE_UNITS, order)]
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
    return {
        "status": status, "order_id": order_id, "invoice_id": invoice_id,
        "product_id": cmd.product_id, "product_name": plan.product_name,
        "quantity": cmd.quantity, "unit_price": as_text(plan.price),
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


def due_orders(engine: Engine, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Pending orders past their expiry (the beat sweep's backstop list); locks nothing."""
    with engine.connect() as conn:
        return list(conn.execute(
            sql("SELECT id FROM orders WHERE status = 'pending' AND expires_at <= :now"
                 " ORDER BY expires_at LIMIT :n"),
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
