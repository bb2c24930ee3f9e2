"""Warranty replacement: a delivered unit reported dead is replaced by a free unit of the same
product, handed out like a sale.

The dead unit stays sold on its order (is_sold, order_id): the hand-out query only takes units
that are unsold and unreserved, so it is never sold again. The order line then points at the
replacement (order_items.stock_id; the line's price and the order's totals are unchanged), its
claim count goes up by one, and the claim row names both units. With no free unit the claim
stays open (counted once) and the buyer is told; a later try replaces it, or a refund settles it.

Locks, in this order: the buyer's users row → the order → the line's current unit (by primary
key) → one free unit (FOR UPDATE SKIP LOCKED, as a purchase) → the intent's idempotency key is
claimed after the order lock, so a twin press waits for the first to commit, then answers with
its result: one press replaces once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from quickcart.db import idempotency, locks
from quickcart.db.sql import run
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services.effects import Effects
from quickcart.services.order_lookup import lock_buyer_and_order, require_admin, short_id
from quickcart.services.orders import Outcome

#: The notify task that sends the buyer their replacement unit (workers/tasks/aftersales.py).
DELIVER_REPLACEMENT = ("quickcart.deliver_replacement", "notify")


def replace_unit(engine: Engine, actor_id: int, order_item_id: int, idempotency_key: str,
                 ticket_id: int | None = None) -> Outcome:
    """Replace the current unit of order line `order_item_id` (see the module for the locks).

    Refusals (ShopError, nothing written): not an admin, unknown line, order not paid or not
    delivered. Result status: 'replaced' (the buyer gets the new unit through the outbox) or
    'open' (no free unit; the buyer is told)."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"intent": idempotency_key, "action": "warranty"})
        require_admin(session, actor_id)
        order_id = run(session, "SELECT order_id FROM order_items WHERE id = :i",
                       {"i": order_item_id}).scalar()
        if order_id is None:
            raise ShopError("unit_not_in_order")
        order = lock_buyer_and_order(session, int(order_id))
        prior = idempotency.claim(session, idempotency_key, "warranty_replace")
        if prior is not None:
            return Outcome(prior)
        if order.status != "paid":
            raise ShopError("order_not_paid", invoice_id=order.invoice_id)
        if order.delivered_at is None:
            raise ShopError("order_not_delivered", invoice_id=order.invoice_id)
        item = run(session, "SELECT * FROM order_items WHERE id = :i", {"i": order_item_id}).one()
        run(session, "SELECT 1 FROM product_stocks WHERE id = :s FOR UPDATE",
            {"s": item.stock_id})
        claim_id = _open_claim(session, actor_id, order.id, item, ticket_id)
        effects = Effects(session)
        base: dict[str, Any] = {"claim_id": claim_id, "invoice_id": order.invoice_id,
                                "order_id": int(order.id), "product_id": int(item.product_id),
                                "old_unit": short_id(item.stock_id)}
        free = locks.take_free_units(session, int(item.product_id), 1)
        if not free:
            effects.message(order.user_id, "warranty.no_stock", invoice_id=order.invoice_id)
            result = {**base, "status": "open"}
        else:
            new_unit = free[0]
            run(session, "UPDATE product_stocks SET order_id = :o, is_sold = true WHERE id = :s",
                {"o": order.id, "s": new_unit})
            run(session, "UPDATE order_items SET stock_id = :s WHERE id = :i",
                {"s": new_unit, "i": order_item_id})
            run(session, "UPDATE warranty_claims SET status = 'replaced', new_stock_id = :s,"
                " resolved_by = :a, resolved_at = now() WHERE id = :c",
                {"s": new_unit, "a": actor_id, "c": claim_id})
            effects.add(DELIVER_REPLACEMENT, {"claim_id": claim_id})
            result = {**base, "status": "replaced", "new_unit": short_id(new_unit)}
        idempotency.record(session, idempotency_key, result)
        uow.commit()
        return Outcome(result, effects.messages)


def _open_claim(session: Any, actor_id: int, order_id: int, item: Any,
                ticket_id: int | None) -> int:
    """The open claim on the line's current unit, or a new one (the line's claim count goes up
    once per claim, not per try)."""
    existing = run(session, "SELECT id FROM warranty_claims WHERE old_stock_id = :s"
                   " AND status = 'open'", {"s": item.stock_id}).scalar()
    if existing is not None:
        return int(existing)
    run(session, "UPDATE order_items SET warranty_claims = warranty_claims + 1 WHERE id = :i",
        {"i": item.id})
    return int(run(session, "INSERT INTO warranty_claims (order_id, order_item_id, old_stock_id,"
                   " ticket_id, created_by) VALUES (:o, :i, :s, :t, :a) RETURNING id",
                   {"o": order_id, "i": item.id, "s": item.stock_id, "t": ticket_id,
                    "a": actor_id}).scalar_one())


def replacement_view(engine: Engine, claim_id: int) -> Any:
    """What the buyer is sent for a replaced claim (invoice, product, the new unit's content),
    or None when the claim is not replaced. Reads only."""
    with engine.connect() as conn:
        return run(conn, "SELECT c.id, o.invoice_id, o.user_id, p.name, s.content"
                   " FROM warranty_claims c JOIN orders o ON o.id = c.order_id"
                   " JOIN product_stocks s ON s.id = c.new_stock_id"
                   " JOIN products p ON p.id = s.product_id"
                   " WHERE c.id = :c AND c.status = 'replaced'", {"c": claim_id}).first()
