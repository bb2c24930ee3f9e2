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

from quickcart.config import get_settings
from quickcart.db.sql import run_alone, sql

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
    # (product name, its units' contents) per product, in the order's item order.
    sections: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def as_document(self) -> bool:
        """Whether to send a .txt file rather than a message."""
        return (len(self.contents) > MAX_INLINE_UNITS
                or sum(len(c) + 1 for c in self.contents) > MAX_INLINE_CHARS)

    def document_text(self) -> str:
        """The .txt file: headed by the invoice, a section per product, one unit per line."""
        if len(self.sections) <= 1:
            return f"# {self.invoice_id}\n" + "\n".join(self.contents) + "\n"
        parts = [f"# {self.invoice_id}"]
        for name, contents in self.sections:
            parts += ["", f"## {name} x{len(contents)}", *contents]
        return "\n".join(parts) + "\n"

    def sectioned_text(self) -> str:
        """The chat message's body: the units, under a heading per product when several."""
        if len(self.sections) <= 1:
            return "\n".join(self.contents)
        return "\n\n".join(f"📦 {name} × {len(contents)}\n" + "\n".join(contents)
                            for name, contents in self.sections)

    def summary(self) -> str:
        """Each product and its quantity: "Netflix × 2, Spotify × 1"."""
        return ", ".join(f"{name} × {len(contents)}" for name, contents in self.sections)


# The lease and what it hands out, in one statement and one round trip: the UPDATE's WHERE is
# the claim's every condition, so a concurrent claimer's lease (READ COMMITTED re-checks the
# row it waited for) makes it match nothing. LEFT JOINs: a claimed order always yields a row.
_CLAIM = (
    "WITH claimed AS (UPDATE orders SET delivery_claimed_until = :until,"
    " delivery_claimed_by = :by"
    " WHERE id = :o AND status = 'paid'"
    " AND (CAST(:req AS bigint) IS NULL OR user_id = :req)"
    " AND (delivered_at IS NULL OR :resend)"
    # Held by the risk rules (quickcart/services/review.py) until an admin approves.
    " AND NOT EXISTS (SELECT 1 FROM risk_reviews rv WHERE rv.order_id = :o"
    " AND rv.status <> 'approved')"
    " AND (delivery_claimed_until IS NULL OR delivery_claimed_until <= :now"
    " OR (CAST(:by AS text) IS NOT NULL AND delivery_claimed_by = :by))"
    " RETURNING id, user_id, invoice_id)"
    " SELECT c.user_id, c.invoice_id, p.name, s.content, u.language"
    " FROM claimed c JOIN users u ON u.id = c.user_id"
    " LEFT JOIN order_items i ON i.order_id = c.id"
    " LEFT JOIN product_stocks s ON s.id = i.stock_id"
    " LEFT JOIN products p ON p.id = i.product_id"
    " ORDER BY i.id"
)


def claim_delivery(engine: Engine, order_id: int, resend: bool = False,
                   requester_id: int | None = None,
                   owner: str | None = None) -> DeliveryPayload | None:
    """Lease an order's delivery to `owner` (the task id, which a retry keeps). Locks: the order
    row, for the one statement that claims it (a transaction of its own, committed at once).

    Returns None when there is nothing to send: not paid, already delivered (unless `resend`),
    leased to another owner right now, or `requester_id` is not the buyer. The owner's own live
    lease does not stop it: a retry after a failed send may claim again at once.
    """
    now = datetime.now(UTC)
    rows = run_alone(engine, _CLAIM, {
        "until": now + timedelta(seconds=CLAIM_SECONDS), "by": owner, "o": order_id,
        "req": requester_id, "resend": resend, "now": now}).all()
    if not rows:
        return None
    items = [r for r in rows if r.content is not None]
    first = rows[0]
    grouped: dict[str, list[str]] = {}
    for r in items:
        grouped.setdefault(str(r.name), []).append(str(r.content))
    return DeliveryPayload(order_id, first.user_id, first.invoice_id,
                           sorted({r.name for r in items}), [r.content for r in items], resend,
                           first.language or get_settings().default_language,
                           tuple((name, tuple(c)) for name, c in grouped.items()))


def complete_delivery(engine: Engine, order_id: int, owner: str | None = None) -> bool:
    """Record a successful send: first delivery time kept, count incremented, lease dropped.

    With `owner`, only while the lease is still that owner's (a sweep that took over a lapsed
    lease records its own send); False when it was not recorded."""
    result = run_alone(
        engine,
        "UPDATE orders SET delivered_at = coalesce(delivered_at, now()),"
        " delivery_count = delivery_count + 1, delivery_claimed_until = NULL,"
        " delivery_claimed_by = NULL"
        " WHERE id = :o AND (CAST(:by AS text) IS NULL OR delivery_claimed_by = :by)",
        {"o": order_id, "by": owner},
    )
    return bool(result.rowcount)


def release_delivery(engine: Engine, order_id: int, owner: str | None = None) -> None:
    """Give the lease back after a failed send, so any retry can claim it at once."""
    run_alone(engine,
              "UPDATE orders SET delivery_claimed_until = NULL, delivery_claimed_by = NULL"
              " WHERE id = :o AND (CAST(:by AS text) IS NULL OR delivery_claimed_by = :by)",
              {"o": order_id, "by": owner})


#: Paid orders undelivered for `:g` seconds, with no live delivery lease and not held by a risk
#: review: what the redelivery sweep (`undelivered_orders`) re-sends, and what beat's check
#: (quickcart.services.housekeeping) asks about (idx_orders_paid_undelivered, migration 0014).
UNDELIVERED = ("FROM orders WHERE status = 'paid' AND delivered_at IS NULL"
               " AND paid_at <= now() - make_interval(secs => :g)"
               " AND (delivery_claimed_until IS NULL OR delivery_claimed_until < now())"
               " AND NOT EXISTS (SELECT 1 FROM risk_reviews rv WHERE rv.order_id = orders.id"
               " AND rv.status <> 'approved')")


def undelivered_orders(engine: Engine, grace_seconds: int = 30, limit: int = 200) -> list[int]:
    """Paid orders with no completed delivery and no live lease (the sweep re-sends them)."""
    with engine.connect() as conn:
        return list(conn.execute(
            sql("SELECT id " + UNDELIVERED + " ORDER BY paid_at LIMIT :n"),
            {"g": grace_seconds, "n": limit},
        ).scalars())
