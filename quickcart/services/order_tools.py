"""An admin's order actions that move no money of their own: re-send a delivery, re-check a
payment with the gateway. Each is recorded once per button press (order_actions, unique on
the press's idempotency key) with the admin as the audit actor.
"""

from __future__ import annotations

from sqlalchemy import Engine

from quickcart.db.sql import run
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services import payments, topics
from quickcart.services.effects import Effects
from quickcart.services.order_lookup import lock_buyer_and_order, require_admin
from quickcart.services.orders import Outcome


def resend_delivery(engine: Engine, actor_id: int, order_id: int,
                    idempotency_key: str) -> Outcome:
    """Queue the delivery of a paid order's current units again (the same units: the delivery
    reads the order's lines; never new stock), recorded once per press. Locks: buyer → order →
    the action's unique key (a twin press inserts nothing and queues nothing)."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"intent": idempotency_key, "action": "resend"})
        require_admin(session, actor_id)
        order = lock_buyer_and_order(session, order_id)
        if order.status != "paid":
            raise ShopError("order_not_paid", invoice_id=order.invoice_id)
        recorded = run(session, "INSERT INTO order_actions (order_id, action, actor_id,"
                       " idempotency_key, outcome) VALUES (:o, 'resend', :a, :k, 'queued')"
                       " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                       {"o": order_id, "a": actor_id, "k": idempotency_key}).scalar()
        result = {"invoice_id": order.invoice_id, "status": "queued" if recorded else "duplicate"}
        if recorded is None:
            return Outcome(result)
        effects = Effects(session)
        effects.add(topics.DELIVER_ORDER, {"order_id": order_id, "resend": True})
        uow.commit()
        return Outcome(result, effects.messages)


def recheck_payment(engine: Engine, gateway: payments.PaymentGateway, actor_id: int,
                    order_id: int, idempotency_key: str) -> Outcome:
    """Ask the gateway about an order and apply only what it confirms, through the webhook's
    own path (payments.confirm_payment: transaction_detail for the order's amount, then
    user → order locks; idempotent; a payment after expiry is credited to the balance). No
    lock is held during the gateway call. The press is recorded with the gateway's outcome."""
    with engine.connect() as conn:
        require_admin(conn, actor_id)
        invoice = run(conn, "SELECT invoice_id FROM orders WHERE id = :o",
                      {"o": order_id}).scalar()
    if invoice is None:
        raise ShopError("order_not_found")
    outcome = payments.confirm_payment(engine, gateway, str(invoice), actor_id=actor_id)
    result = {**outcome.result, "invoice_id": invoice}
    with unit_of_work(engine) as uow:
        uow.set_actor(actor_id, "admin", {"intent": idempotency_key, "action": "recheck"})
        run(uow.session, "INSERT INTO order_actions (order_id, action, actor_id, idempotency_key,"
            " outcome) VALUES (:o, 'recheck', :a, :k, :out)"
            " ON CONFLICT (idempotency_key) DO NOTHING",
            {"o": order_id, "a": actor_id, "k": idempotency_key,
             "out": str(result.get("outcome", ""))[:40]})
        uow.commit()
    return Outcome(result, outcome.outbox)
