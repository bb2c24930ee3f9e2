"""The review queue: held orders and deposits, the admins' decisions, and reminders.

A held order is paid but not delivered (the delivery claim skips it); a held deposit is paid
but not credited. Decisions:
- approve: an order is delivered through the normal idempotent delivery (DELIVER_ORDER); a
  deposit is credited to the balance.
- refund: the money goes to the buyer's balance (an order: what was paid minus the gateway fee,
  ledger reason 'refund', reference ('review', invoice); its units go back to stock); a
  deposit: its amount is credited.
- keep: it stays held; the reason is told to the shopper. A kept item can be decided later.

Locks (the documented order): users → orders/deposits → risk_reviews. Every decision is
idempotent by state (only an open or kept item can be decided; a stale button gets the state).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from quickcart.db import locks
from quickcart.db.outbox import OutboxMessage
from quickcart.db.sql import Tx, run, run_script
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.services import topics
from quickcart.services.effects import Effects
from quickcart.services.fraud_settings import current
from quickcart.services.ledger import move_balance
from quickcart.services.order_lookup import require_admin
from quickcart.services.refunds import refunded_so_far

DECISIONS = ("approve", "refund", "keep")
#: Priority by score: (minimum score, name, hours to decide).
PRIORITIES = ((80, "critical", 1), (60, "high", 4), (40, "medium", 12), (0, "low", 24))
MAX_REASON = 300


def priority(score: int) -> tuple[str, int]:
    """The queue priority of a score and the hours an admin has to decide."""
    for minimum, name, hours in PRIORITIES:
        if score >= minimum:
            return name, hours
    return "low", 24


@dataclass(frozen=True)
class ReviewItem:
    """A held payment as admins see it in /review."""

    review_id: int
    kind: str
    invoice_id: str
    user_id: int
    user_name: str
    amount: Decimal
    score: int
    rules: list[str]
    band: str
    status: str
    reason: str | None
    created_at: datetime
    age_minutes: int
    account_age_days: int
    paid_30d: int
    paid_30d_total: Decimal
    earlier_reviews: int

    @property
    def priority(self) -> str:
        """critical / high / medium / low."""
        return priority(self.score)[0]

    @property
    def overdue(self) -> bool:
        """Older than its priority allows."""
        return self.age_minutes > priority(self.score)[1] * 60


_QUEUE = """
SELECT r.id, r.payment_kind AS kind, coalesce(o.invoice_id, d.invoice_id) AS invoice_id, r.user_id,
       u.name AS user_name, r.amount, r.score, r.rules, r.band, r.status, r.reason,
       r.created_at,
       (extract(epoch FROM now() - r.created_at) / 60)::int AS age_minutes,
       (extract(epoch FROM now() - u.created_at) / 86400)::int AS account_age_days,
       (SELECT count(*) FROM orders x WHERE x.user_id = r.user_id AND x.status = 'paid'
            AND x.paid_at > now() - interval '30 days') AS paid_30d,
       (SELECT coalesce(sum(x.total_bill), 0) FROM orders x WHERE x.user_id = r.user_id
            AND x.status = 'paid' AND x.paid_at > now() - interval '30 days') AS paid_30d_total,
       (SELECT count(*) FROM risk_reviews y WHERE y.user_id = r.user_id AND y.id <> r.id)
            AS earlier_reviews
FROM risk_reviews r
JOIN users u ON u.id = r.user_id
LEFT JOIN orders o ON o.id = r.order_id
LEFT JOIN deposits d ON d.id = r.deposit_id
WHERE r.status IN ('open', 'kept') AND (CAST(:id AS int) IS NULL OR r.id = :id)
ORDER BY r.status = 'open' DESC, r.score DESC, r.amount DESC, r.created_at
LIMIT :n
"""


def _item(r: Any) -> ReviewItem:
    return ReviewItem(
        r.id, r.kind, r.invoice_id, r.user_id, r.user_name, Decimal(r.amount), r.score,
        [f["rule"] for f in r.rules], r.band, r.status, r.reason, r.created_at, r.age_minutes,
        r.account_age_days, int(r.paid_30d), Decimal(r.paid_30d_total), int(r.earlier_reviews))


def queue(engine: Engine, actor_id: int, limit: int = 10) -> list[ReviewItem]:
    """Held items by priority (open first; then score, amount, age), admins only; a read."""
    with engine.connect() as conn:
        require_admin(conn, actor_id)
        return [_item(r) for r in run(conn, _QUEUE, {"id": None, "n": limit}).all()]


@dataclass(frozen=True)
class Decision:
    """What a decision did (or the item's state when it was already decided)."""

    review_id: int
    status: str
    changed: bool
    invoice_id: str
    user_id: int
    amount: Decimal
    outbox: list[OutboxMessage]


_RELEASE_UNITS: list[tuple[str, dict[str, Any]]] = [
    ("INSERT INTO released_order_items (id, order_id, product_id, stock_id, price_per_unit)"
     " SELECT id, order_id, product_id, stock_id, price_per_unit FROM order_items"
     " WHERE order_id = :o", {}),
    ("DELETE FROM order_items WHERE order_id = :o", {}),
    ("WITH freed AS (UPDATE product_stocks SET order_id = NULL, is_sold = false"
     " WHERE order_id = :o RETURNING product_id)"
     " INSERT INTO sold_count_deltas (product_id, quantity, order_id)"
     " SELECT product_id, -count(*), :o FROM freed GROUP BY product_id", {}),
]


def decide(engine: Engine, actor_id: int, review_id: int, decision: str,
           reason: str | None = None) -> Decision:
    """Approve, refund or keep a held item (admins only). Locks: user → order/deposit →
    review. Idempotent by state: a decided item is returned as it is, unchanged."""
    if decision not in DECISIONS:
        raise ShopError("invalid_decision", decision=decision)
    reason = (reason or "").strip()[:MAX_REASON] or None
    with unit_of_work(engine) as uow:
        session = uow.session
        require_admin(session, actor_id)
        head = run(session, "SELECT user_id, payment_kind AS kind, order_id, deposit_id"
                            " FROM risk_reviews WHERE id = :r", {"r": review_id}).first()
        if head is None:
            raise ShopError("review_not_found", review_id=review_id)
        uow.set_actor(actor_id, "admin", {"command": "review", "decision": decision,
                                          "review_id": review_id})
        locks.lock_user(session, head.user_id)
        row = (locks.lock_order(session, head.order_id) if head.kind == "order"
               else locks.lock_deposit(session, head.deposit_id))
        assert row is not None
        item = run(session, "SELECT * FROM risk_reviews WHERE id = :r FOR UPDATE",
                   {"r": review_id}).one()
        if item.status not in ("open", "kept"):
            return Decision(review_id, item.status, False, row.invoice_id, item.user_id,
                            Decimal(item.amount), [])
        effects = Effects(session)
        status = _apply(session, effects, actor_id, decision, head.kind, row, reason)
        run(session, "UPDATE risk_reviews SET status = :s, reason = :why, decided_by = :a,"
                     " decided_at = now() WHERE id = :r",
            {"s": status, "why": reason, "a": actor_id, "r": review_id})
        _audit_decision(session, actor_id, item, row.invoice_id, status, reason)
        uow.commit()
        return Decision(review_id, status, True, row.invoice_id, item.user_id,
                        Decimal(item.amount), effects.messages)


def _apply(session: Tx, effects: Effects, actor_id: int, decision: str, kind: str, row: Any,
           reason: str | None) -> str:
    """The decision's effect on the held order/deposit; returns the review's new status."""
    invoice = row.invoice_id
    if decision == "keep":
        effects.message(row.user_id, "review.kept", invoice_id=invoice,
                        reason=reason or "-")
        return "kept"
    if kind == "deposit":
        # The deposit's money is the buyer's either way: approving or refunding credits it.
        balance = move_balance(session, row.user_id, Decimal(row.amount), "deposit", "deposit",
                               invoice, actor_id=actor_id, note=f"review {decision}")
        key = N_("deposit.paid") if decision == "approve" else N_("review.refunded")
        effects.message(row.user_id, key, invoice_id=invoice, amount=str(row.amount),
                        balance=str(balance), reason=reason or "-")
        return "approved" if decision == "approve" else "refunded"
    if decision == "approve":
        effects.add(topics.DELIVER_ORDER, {"order_id": row.id})
        effects.message(row.user_id, "review.approved", invoice_id=invoice)
        return "approved"
    paid = Decimal(row.amount_paid if row.amount_paid is not None else row.total_bill)
    # What an admin's /refund already paid back for this order is not paid a second time.
    amount = max(paid - Decimal(row.payment_fee) - refunded_so_far(session, row), Decimal(0))
    run_script(session, [(statement, {"o": row.id}) for statement, _ in _RELEASE_UNITS])
    if amount > 0:
        balance = move_balance(session, row.user_id, amount, "refund", "review", invoice,
                               actor_id=actor_id, note=reason)
    else:  # refunded in full before: the units go back to stock, no ledger row
        balance = Decimal(run(session, "SELECT account_balance FROM users WHERE id = :u",
                              {"u": row.user_id}).scalar_one())
    effects.message(row.user_id, "review.refunded", invoice_id=invoice, amount=str(amount),
                    balance=str(balance), reason=reason or "-")
    return "refunded"


def _audit_decision(session: Tx, actor_id: int, item: Any, invoice_id: str, status: str,
                    reason: str | None) -> None:
    """The decision as an audit event keyed by the invoice (with the score and rules)."""
    run(session,
        "INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,"
        " after_state, context) VALUES (:a, 'admin', 'review_decision', :inv, :act,"
        " CAST(:state AS jsonb), NULL)",
        {"a": actor_id, "inv": invoice_id, "act": f"review_{status}",
         "state": json.dumps({"review_id": item.id, "user_id": item.user_id,
                              "kind": item.payment_kind, "amount": str(item.amount),
                              "score": item.score, "rules": item.rules, "band": item.band,
                              "decision": status, "reason": reason})})


def remind(engine: Engine, limit: int = 50) -> list[OutboxMessage]:
    """Re-notify admins of open items not decided since the renotify setting (default 30 min).
    Locks: the due reviews (SKIP LOCKED). Idempotent: the reminder moves notified_at in the
    same transaction, so a repeated sweep finds nothing due."""
    minutes = int(current(engine)["renotify_minutes"])
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(None, "system", {"reason": "review reminder"})
        due = run(session,
                  "WITH due AS (SELECT id FROM risk_reviews WHERE status = 'open'"
                  " AND notified_at <= now() - make_interval(mins => :m)"
                  " ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)"
                  " UPDATE risk_reviews r SET notified_at = now() FROM due WHERE r.id = due.id"
                  " RETURNING r.id, r.payment_kind AS kind, r.user_id, r.amount, r.score,"
                  " (extract(epoch FROM now() - r.created_at) / 60)::int AS age_minutes",
                  {"m": minutes, "n": limit}).all()
        effects = Effects(session)
        for r in due:
            effects.admins("review.reminder", review_id=r.id, kind=r.kind, user_id=r.user_id,
                           amount=str(r.amount), score=r.score, minutes=r.age_minutes,
                           priority=priority(r.score)[0])
        uow.commit()
        return effects.messages
