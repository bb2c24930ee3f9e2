"""Delivery of a paid order's stock content: claim, send (outside any transaction), complete.

Exactly once in the normal path: a delivery is claimed with a committed lease, so duplicate
delivery tasks find it claimed (or delivered) and stop; the message is sent with no lock held; the
completion is committed after the send. A worker killed between send and completion leaves a
lapsed lease, and the sweep re-sends: at-least-once there is the only honest promise towards a
non-transactional chat API, and the window is milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from quickcart.db import locks
from quickcart.db.sql import run, sql
from quickcart.db.uow import unit_of_work

CLAIM_SECONDS = 60
# Longer than this (or many units) goes as a .txt document instead of a chat message.
MAX_INLINE_CHARS = 3000
MAX_INLINE_UNITS = 10


@dataclass(frozen=True)
class DeliveryPayload:
    """Everything the notify worker needs to hand an order's content to its buyer."""

    order_id: int
    chat_id: int
    invoice_id: str
    product_names: list[str]
    contents: list[str]
    resend: bool
    language: str | None = None

    @property
    def as_document(self) -> bool:
        """Whether to send a .txt file rather than a message."""
        return (len(self.contents) > MAX_INLINE_UNITS
                or sum(len(c) + 1 for c in self.contents) > MAX_INLINE_CHARS)

    def document_text(self) -> str:
        """The .txt file: one unit per line, headed by the invoice."""
        return f"# {self.invoice_id}\n" + "\n".join(self.contents) + "\n"


def claim_delivery(engine: Engine, order_id: int, resend: bool = False,
                   requester_id: int | None = None,
                   owner: str | None = None) -> DeliveryPayload | None:
    """Lease an order's delivery to `owner` (the task id, which a retry keeps). Locks: the order
    row, only while claiming (committed at once).

    Returns None when there is nothing to send: not paid, already delivered (unless `resend`),
    leased to another owner right now, or `requester_id` is not the buyer. The owner's own live
    lease does not stop it: a retry after a failed send may claim again at once.
    """
    now = datetime.now(UTC)
    with unit_of_work(engine) as uow:
        session = uow.session
        order = locks.lock_order(session, order_id)
        if order is None or order.status != "paid":
            return None
        if requester_id is not None and requester_id != order.user_id:
            return None
        if order.delivered_at is not None and not resend:
            return None
        leased = order.delivery_claimed_until is not None and order.delivery_claimed_until > now
        if leased and (owner is None or order.delivery_claimed_by != owner):
            return None
        # Both in one round trip: the lease, then what it hands out.
        rows = run(
            session,
            "UPDATE orders SET delivery_claimed_until = :until, delivery_claimed_by = :by"
            " WHERE id = :o;"
            " SELECT p.name, s.content, u.language FROM order_items i"
            " JOIN product_stocks s ON s.id = i.stock_id"
            " JOIN products p ON p.id = i.product_id"
            " JOIN users u ON u.id = :u"
            " WHERE i.order_id = :o ORDER BY i.id",
            {"until": now + timedelta(seconds=CLAIM_SECONDS), "by": owner, "o": order_id,
             "u": order.user_id},
        ).all()
        uow.commit()
    names = sorted({r.name for r in rows})
    return DeliveryPayload(order_id, order.user_id, order.invoice_id, names,
                           [r.content for r in rows], resend,
                           rows[0].language if rows else None)


def complete_delivery(engine: Engine, order_id: int, owner: str | None = None) -> bool:
    """Record a successful send: first delivery time kept, count incremented, lease dropped.

    With `owner`, only while the lease is still that owner's (a sweep that took over a lapsed
    lease records its own send); False when it was not recorded."""
    with engine.begin() as conn:
        result = run(
            conn,
            "UPDATE orders SET delivered_at = coalesce(delivered_at, now()),"
            " delivery_count = delivery_count + 1, delivery_claimed_until = NULL,"
            " delivery_claimed_by = NULL"
            " WHERE id = :o AND (CAST(:by AS text) IS NULL OR delivery_claimed_by = :by)",
            {"o": order_id, "by": owner},
        )
    return bool(result.rowcount)


def release_delivery(engine: Engine, order_id: int, owner: str | None = None) -> None:
    """Give the lease back after a failed send, so any retry can claim it at once."""
    with engine.begin() as conn:
        conn.execute(
            sql("UPDATE orders SET delivery_claimed_until = NULL, delivery_claimed_by = NULL"
                 " WHERE id = :o AND (CAST(:by AS text) IS NULL OR delivery_claimed_by = :by)"),
            {"o": order_id, "by": owner})


def undelivered_orders(engine: Engine, grace_seconds: int = 30, limit: int = 200) -> list[int]:
    """Paid orders with no completed delivery and no live lease (the sweep re-sends them)."""
    with engine.connect() as conn:
        return list(conn.execute(
            sql("SELECT id FROM orders WHERE status = 'paid' AND delivered_at IS NULL"
                 " AND paid_at <= now() - make_interval(secs => :g)"
                 " AND (delivery_claimed_until IS NULL OR delivery_claimed_until < now())"
                 " ORDER BY paid_at LIMIT :n"), {"g": grace_seconds, "n": limit},
        ).scalars())
