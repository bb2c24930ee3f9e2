"""Refunds to the balance: the calculator, the admin's proposal, its confirmation, the formula.

Money moves only when an admin confirms a proposal: one ledger credit (reason 'refund',
reference 'order' / '<invoice>#R<refund id>', the admin as actor) per refund. Locks, in this
order: the buyer's users row → the order → the refund row (all by primary key), so two
confirmations of one order queue on the buyer and the cap (the refunds of an order never add up
to more than the buyer paid for its goods) is checked on committed numbers. Idempotent by
state: a confirmed or cancelled refund is answered with its state and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Engine

from quickcart.db import idempotency
from quickcart.db.sql import Tx, run
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.domain.money import InvalidAmountError, as_text, rupiah
from quickcart.domain.refund_formula import SETTINGS, Estimate, Formula, estimate
from quickcart.services.effects import Effects
from quickcart.services.ledger import move_balance
from quickcart.services.order_lookup import lock_buyer_and_order, order_lines, require_admin
from quickcart.services.orders import Outcome

MAX_DAYS = 100_000
MAX_CLAIMS = 1_000


@dataclass(frozen=True)
class OrderEstimate:
    """The calculator's answer for one order: each line's estimate, and what is left."""

    order_id: int
    invoice_id: str
    lines: list[Estimate]
    total: Decimal
    paid_for_goods: Decimal
    refunded: Decimal

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded."""
        return max(Decimal(0), self.paid_for_goods - self.refunded)

    @property
    def suggested(self) -> Decimal:
        """The formula's answer, never above what is left to refund."""
        return min(self.total, self.refundable)


def load_formula(session: Tx) -> Formula:
    """The formula in force: the stored row, or the specified defaults when none was set."""
    row = run(session, "SELECT * FROM refund_formula WHERE id = 1").first()
    if row is None:
        return Formula()
    return Formula(int(row.period_days), Decimal(row.early), Decimal(row.late),
                   Decimal(row.claims_1_2), Decimal(row.claims_3), Decimal(row.claims_more))


def current_formula(engine: Engine) -> Formula:
    """The formula in force (a read)."""
    with engine.connect() as conn:
        return load_formula(conn)


def manual_estimate(engine: Engine, price: str, days_used: str, claims: str) -> Estimate:
    """`/reff price|days|claims`: ShopError('invalid_refund_input') for anything but a whole,
    non-negative price, days and claims."""
    try:
        value = rupiah(price)
        days, count = int(days_used), int(claims)
    except (InvalidAmountError, TypeError, ValueError) as exc:
        raise ShopError("invalid_refund_input") from exc
    if value <= 0 or not 0 <= days <= MAX_DAYS or not 0 <= count <= MAX_CLAIMS:
        raise ShopError("invalid_refund_input")
    return estimate(current_formula(engine), value, days, count)


def order_estimate(engine: Engine, order_id: int, now: datetime | None = None) -> OrderEstimate:
    """The calculator for a paid order: per line, what it cost (after its voucher share), whole
    days since delivery (0 before it), and its warranty claims. Reads only."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        order = run(conn, "SELECT * FROM orders WHERE id = :o", {"o": order_id}).first()
        if order is None:
            raise ShopError("order_not_found")
        if order.status != "paid":
            raise ShopError("order_not_paid", invoice_id=order.invoice_id)
        formula = load_formula(conn)
        lines = order_lines(conn, order_id, order.subtotal, order.voucher_discount)
        refunded = refunded_so_far(conn, order)
    days = max(0, (now - order.delivered_at).days) if order.delivered_at else 0
    estimates = [estimate(formula, line.paid, days, line.claims) for line in lines]
    return OrderEstimate(order_id, str(order.invoice_id), estimates,
                         sum((e.amount for e in estimates), Decimal(0)),
                         Decimal(order.subtotal - order.voucher_discount), refunded)


def refunded_so_far(session: Tx, order: Any) -> Decimal:
    """What the buyer got back for `order` so far: the refunds paid, and the review queue's
    refund of a held order (quickcart/services/review.py credits it under reference
    ('review', invoice) and keeps no order_refunds row), so neither pays twice."""
    return Decimal(run(session, "SELECT (SELECT coalesce(sum(amount), 0) FROM order_refunds"
                       " WHERE order_id = :o AND status = 'paid')"
                       " + (SELECT coalesce(sum(amount), 0) FROM balance_ledger"
                       " WHERE reason = 'refund' AND reference_type = 'review'"
                       " AND reference_id = :i)",
                       {"o": order.id, "i": order.invoice_id}).scalar())


def _cap(order: Any, refunded: Decimal, amount: Decimal) -> None:
    """Refuse an amount that is not positive or above what is left to refund."""
    left = Decimal(order.subtotal - order.voucher_discount) - refunded
    if amount <= 0:
        raise ShopError("invalid_amount", amount=as_text(amount))
    if amount > left:
        raise ShopError("refund_too_large", invoice_id=order.invoice_id,
                        max=as_text(max(left, Decimal(0))))


def propose(engine: Engine, actor_id: int, order_id: int, amount: Decimal | str,
            idempotency_key: str) -> Outcome:
    """An admin proposes refunding `amount` of a paid order (no money moves yet). Locks: buyer
    → order → the intent's key. Idempotent on `idempotency_key` (one proposal per press)."""
    try:
        value = rupiah(amount)
    except (InvalidAmountError, TypeError) as exc:
        raise ShopError("invalid_amount", amount=str(amount)) from exc
    with unit_of_work(engine) as uow:
        uow.set_actor(actor_id, "admin", {"intent": idempotency_key, "action": "refund_propose"})
        session = uow.session
        require_admin(session, actor_id)
        order = lock_buyer_and_order(session, order_id)
        prior = idempotency.claim(session, idempotency_key, "refund_propose")
        if prior is not None:
            return Outcome(prior)
        if order.status != "paid":
            raise ShopError("order_not_paid", invoice_id=order.invoice_id)
        _cap(order, refunded_so_far(session, order), value)
        refund_id = run(session, "INSERT INTO order_refunds (order_id, user_id, amount,"
                        " proposed_by) VALUES (:o, :u, :a, :by) RETURNING id",
                        {"o": order_id, "u": order.user_id, "a": value, "by": actor_id}).scalar()
        result = {"status": "proposed", "refund_id": int(refund_id), "amount": as_text(value),
                  "invoice_id": order.invoice_id, "user_id": int(order.user_id)}
        idempotency.record(session, idempotency_key, result)
        uow.commit()
        return Outcome(result)


def _locked_refund(session: Tx, actor_id: int, refund_id: int) -> tuple[Any, Any]:
    """(order, refund) with buyer → order → refund row locked, for an admin; refusals when the
    actor is no admin or the refund is unknown."""
    require_admin(session, actor_id)
    found = run(session, "SELECT order_id FROM order_refunds WHERE id = :r",
                {"r": refund_id}).scalar()
    if found is None:
        raise ShopError("refund_not_found")
    order = lock_buyer_and_order(session, int(found))
    refund = run(session, "SELECT * FROM order_refunds WHERE id = :r FOR UPDATE",
                 {"r": refund_id}).one()
    return order, refund


def confirm(engine: Engine, actor_id: int, refund_id: int) -> Outcome:
    """Pay a proposed refund to the buyer's balance, once. Locks: buyer → order → refund row.
    A refund already paid or cancelled is answered with its state (a double tap, a redelivered
    task); an amount now above what is left (another refund came first) is refused."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"refund_id": refund_id, "action": "refund_confirm"})
        order, refund = _locked_refund(session, actor_id, refund_id)
        base = {"refund_id": refund_id, "invoice_id": order.invoice_id,
                "amount": as_text(refund.amount), "user_id": int(order.user_id)}
        if refund.status != "proposed":
            return Outcome({**base, "status": refund.status, "changed": False})
        amount = Decimal(refund.amount)
        _cap(order, refunded_so_far(session, order), amount)
        balance = move_balance(session, order.user_id, amount, "refund", "order",
                               f"{order.invoice_id}#R{refund_id}", actor_id=actor_id,
                               note=f"refund of {order.invoice_id}")
        run(session, "UPDATE order_refunds SET status = 'paid', decided_by = :a,"
            " decided_at = now() WHERE id = :r", {"a": actor_id, "r": refund_id})
        # A dead unit nobody could replace is settled by the refund.
        run(session, "UPDATE warranty_claims SET status = 'refunded', resolved_by = :a,"
            " resolved_at = now() WHERE order_id = :o AND status = 'open'",
            {"a": actor_id, "o": order.id})
        effects = Effects(session)
        effects.message(order.user_id, "refund.paid", invoice_id=order.invoice_id,
                        amount=as_text(amount), balance=as_text(balance))
        uow.commit()
        return Outcome({**base, "status": "paid", "changed": True, "balance": as_text(balance)},
                       effects.messages)


def cancel(engine: Engine, actor_id: int, refund_id: int) -> Outcome:
    """Drop a proposal nobody confirmed. Locks: buyer → order → refund row. Idempotent by
    state (a paid refund stays paid)."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"refund_id": refund_id, "action": "refund_cancel"})
        order, refund = _locked_refund(session, actor_id, refund_id)
        base = {"refund_id": refund_id, "invoice_id": order.invoice_id,
                "amount": as_text(refund.amount)}
        if refund.status != "proposed":
            return Outcome({**base, "status": refund.status, "changed": False})
        run(session, "UPDATE order_refunds SET status = 'cancelled', decided_by = :a,"
            " decided_at = now() WHERE id = :r", {"a": actor_id, "r": refund_id})
        uow.commit()
        return Outcome({**base, "status": "cancelled", "changed": True})


def set_formula(engine: Engine, actor_id: int, name: str, value: str) -> tuple[Formula, Formula]:
    """/setformula name|value: change one multiplier or the period; returns (before, after).
    Validated (0 < multiplier ≤ 1, period ≥ 1) before anything is written; the row's audit
    record carries both states. Locks: the formula row (concurrent changes queue)."""
    column = SETTINGS.get(name.strip().lower())
    if column is None:
        raise ShopError("formula_unknown_setting", name=name)
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"action": "setformula", "name": name})
        require_admin(session, actor_id)
        run(session, "INSERT INTO refund_formula (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
        run(session, "SELECT 1 FROM refund_formula WHERE id = 1 FOR UPDATE")
        before = load_formula(session)
        try:
            parsed: Any = int(value) if column == "period_days" \
                else Decimal(value.strip().replace(",", "."))
            after = replace(before, **{column: parsed})
            after.validate()
        except (ValueError, InvalidOperation) as exc:
            raise ShopError("formula_invalid", name=name, value=value) from exc
        run(session, f"UPDATE refund_formula SET {column} = :v, updated_by = :a,"  # noqa: S608
            " updated_at = now() WHERE id = 1", {"v": parsed, "a": actor_id})
        uow.commit()
        return before, after
