"""Support tickets: a shopper's message (text, at most one image) to the admins, the admins'
answers back, and the ticket's state (open → answered → closed).

Each message is a support_messages row, unique on the intent that carried it, so a redelivered
task adds nothing. Copies are sent after the commit by the notify worker (outbox), which records
where each copy landed (support_relays) so that a Telegram reply to it finds its ticket.

Locks, in this order: the shopper's users row (their rate limit, 5 messages per 10 minutes, is
counted under it, so parallel sends cannot slip past it) → the ticket row (by primary key; its
state moves under it) → the intent's idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from quickcart.db import idempotency, locks
from quickcart.db.sql import Tx, run, run_alone
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services.effects import Effects
from quickcart.services.order_lookup import require_admin
from quickcart.services.orders import Outcome

RATE_LIMIT = 5
RATE_WINDOW_MINUTES = 10
MAX_TEXT = 3000
#: Notify tasks (workers/tasks/support.py): a shopper's message to every admin chat, and an
#: admin's answer to the shopper.
FAN_OUT = ("quickcart.support_fan_out", "notify")
RELAY = ("quickcart.support_relay", "notify")


@dataclass(frozen=True)
class Incoming:
    """One message as it arrived: its text (maybe empty) and at most one image's file id."""

    text: str
    photo_file_id: str | None = None

    def checked(self) -> Incoming:
        """The message trimmed; ShopError('support_empty') when it has neither text nor image."""
        text = (self.text or "").strip()[:MAX_TEXT]
        if not text and not self.photo_file_id:
            raise ShopError("support_empty")
        return Incoming(text, self.photo_file_id)


def _rate_limited(session: Tx, user_id: int) -> None:
    count = run(session, "SELECT count(*) FROM support_messages WHERE author_id = :u"
                " AND direction = 'shopper'"
                " AND created_at > now() - make_interval(mins => :m)",
                {"u": user_id, "m": RATE_WINDOW_MINUTES}).scalar_one()
    if count >= RATE_LIMIT:
        raise ShopError("support_rate_limited", minutes=RATE_WINDOW_MINUTES)


def _add_message(session: Tx, effects: Effects, ticket_id: int, direction: str,
                 author_id: int, message: Incoming, key: str) -> int:
    message_id = int(run(session, "INSERT INTO support_messages (ticket_id, direction, author_id,"
                         " body, photo_file_id, idempotency_key) VALUES (:t, :d, :a, :b, :p, :k)"
                         " RETURNING id", {"t": ticket_id, "d": direction, "a": author_id,
                                           "b": message.text, "p": message.photo_file_id,
                                           "k": key}).scalar_one())
    effects.add(FAN_OUT if direction == "shopper" else RELAY, {"message_id": message_id})
    return message_id


def open_ticket(engine: Engine, user_id: int, message: Incoming, idempotency_key: str,
                order_id: int | None = None) -> Outcome:
    """A shopper's new ticket (about `order_id` when it is theirs). Locks: shopper → key.
    Refusals: an empty message, the rate limit. Idempotent on `idempotency_key`."""
    checked = message.checked()
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(user_id, "user", {"intent": idempotency_key, "action": "support"})
        if locks.lock_user(session, user_id) is None:
            raise ShopError("user_not_registered")
        prior = idempotency.claim(session, idempotency_key, "support_open")
        if prior is not None:
            return Outcome(prior)
        _rate_limited(session, user_id)
        if order_id is not None and run(session, "SELECT 1 FROM orders WHERE id = :o"
                                        " AND user_id = :u", {"o": order_id,
                                                              "u": user_id}).first() is None:
            order_id = None  # not theirs: the ticket is about no order
        ticket_id = int(run(session, "INSERT INTO support_tickets (user_id, order_id)"
                            " VALUES (:u, :o) RETURNING id",
                            {"u": user_id, "o": order_id}).scalar_one())
        effects = Effects(session)
        message_id = _add_message(session, effects, ticket_id, "shopper", user_id, checked,
                                  idempotency_key)
        effects.message(user_id, "support.ticket_opened", ticket=ticket_id)
        result = {"status": "open", "ticket_id": ticket_id, "message_id": message_id}
        idempotency.record(session, idempotency_key, result)
        uow.commit()
        return Outcome(result, effects.messages)


def shopper_follow_up(engine: Engine, user_id: int, ticket_id: int, message: Incoming,
                      idempotency_key: str) -> Outcome:
    """The shopper answers an admin (a Telegram reply to the answer): the ticket opens again.
    Locks: shopper → ticket → key. Refusals: not their ticket, closed ticket, rate limit."""
    checked = message.checked()
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(user_id, "user", {"intent": idempotency_key, "action": "support"})
        locks.lock_user(session, user_id)
        ticket = _lock_ticket(session, ticket_id)
        if ticket.user_id != user_id:
            raise ShopError("ticket_not_found", ticket=ticket_id)
        prior = idempotency.claim(session, idempotency_key, "support_follow_up")
        if prior is not None:
            return Outcome(prior)
        if ticket.status == "closed":
            raise ShopError("ticket_closed", ticket=ticket_id)
        _rate_limited(session, user_id)
        effects = Effects(session)
        message_id = _add_message(session, effects, ticket_id, "shopper", user_id, checked,
                                  idempotency_key)
        run(session, "UPDATE support_tickets SET status = 'open' WHERE id = :t", {"t": ticket_id})
        effects.message(user_id, "support.follow_up_sent", ticket=ticket_id)
        result = {"status": "open", "ticket_id": ticket_id, "message_id": message_id}
        idempotency.record(session, idempotency_key, result)
        uow.commit()
        return Outcome(result, effects.messages)


def _lock_owner_and_ticket(session: Tx, ticket_id: int) -> Any:
    """Lock the ticket's shopper, then the ticket (the documented order)."""
    owner = run(session, "SELECT user_id FROM support_tickets WHERE id = :t",
                {"t": ticket_id}).scalar()
    if owner is None:
        raise ShopError("ticket_not_found", ticket=ticket_id)
    locks.lock_user(session, int(owner))
    return _lock_ticket(session, ticket_id)


def _lock_ticket(session: Tx, ticket_id: int) -> Any:
    ticket = run(session, "SELECT * FROM support_tickets WHERE id = :t FOR UPDATE",
                 {"t": ticket_id}).first()
    if ticket is None:
        raise ShopError("ticket_not_found", ticket=ticket_id)
    return ticket


def admin_answer(engine: Engine, actor_id: int, ticket_id: int, message: Incoming,
                 idempotency_key: str, from_admin_group: bool = False) -> Outcome:
    """An admin's Telegram reply to a ticket: relayed to the shopper, the ticket 'answered'.
    Locks: shopper → ticket → key. A reply from a whitelisted admin group is trusted as the
    group's (`from_admin_group`); otherwise the sender must be an admin."""
    checked = message.checked()
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"intent": idempotency_key, "action": "support_answer",
                                          "admin_group": from_admin_group})
        if not from_admin_group:
            require_admin(session, actor_id)
        ticket = _lock_owner_and_ticket(session, ticket_id)
        prior = idempotency.claim(session, idempotency_key, "support_answer")
        if prior is not None:
            return Outcome(prior)
        if ticket.status == "closed":
            raise ShopError("ticket_closed", ticket=ticket_id)
        effects = Effects(session)
        message_id = _add_message(session, effects, ticket_id, "admin", actor_id, checked,
                                  idempotency_key)
        run(session, "UPDATE support_tickets SET status = 'answered' WHERE id = :t",
            {"t": ticket_id})
        result = {"status": "answered", "ticket_id": ticket_id, "message_id": message_id,
                  "user_id": int(ticket.user_id)}
        idempotency.record(session, idempotency_key, result)
        uow.commit()
        return Outcome(result, effects.messages)


def close_ticket(engine: Engine, actor_id: int, ticket_id: int) -> Outcome:
    """An admin closes a ticket and the shopper is told. Locks: shopper → ticket. Idempotent by
    state: a closed ticket is answered with its state and nobody is told twice."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(actor_id, "admin", {"action": "support_close", "ticket": ticket_id})
        require_admin(session, actor_id)
        ticket = _lock_owner_and_ticket(session, ticket_id)
        if ticket.status == "closed":
            return Outcome({"status": "closed", "ticket_id": ticket_id, "changed": False})
        run(session, "UPDATE support_tickets SET status = 'closed', closed_by = :a,"
            " closed_at = now() WHERE id = :t", {"a": actor_id, "t": ticket_id})
        effects = Effects(session)
        effects.message(int(ticket.user_id), "support.ticket_closed", ticket=ticket_id)
        uow.commit()
        return Outcome({"status": "closed", "ticket_id": ticket_id, "changed": True},
                       effects.messages)


def ticket_of_reply(engine: Engine, chat_id: int, message_id: int) -> int | None:
    """The ticket a message in this chat was a copy of (None: not a ticket message). A read."""
    found = run_alone(engine, "SELECT ticket_id FROM support_relays WHERE chat_id = :c"
                      " AND message_id = :m", {"c": chat_id, "m": message_id}).scalar()
    return int(found) if found is not None else None


def ticket_owner(engine: Engine, ticket_id: int) -> int | None:
    """The shopper a ticket belongs to (a read)."""
    found = run_alone(engine, "SELECT user_id FROM support_tickets WHERE id = :t",
                      {"t": ticket_id}).scalar()
    return int(found) if found is not None else None


def record_relay(engine: Engine, chat_id: int, message_id: int, ticket_id: int) -> None:
    """Remember where a ticket message's copy landed (idempotent)."""
    run_alone(engine, "INSERT INTO support_relays (chat_id, message_id, ticket_id)"
              " VALUES (:c, :m, :t) ON CONFLICT DO NOTHING",
              {"c": chat_id, "m": message_id, "t": ticket_id})


def ticket_has_earlier_messages(engine: Engine, ticket_id: int, message_id: int) -> bool:
    """Whether the ticket had messages before this one (a follow-up, not the opening one)."""
    return run_alone(engine, "SELECT 1 FROM support_messages WHERE ticket_id = :t AND id < :m"
                     " LIMIT 1", {"t": ticket_id, "m": message_id}).first() is not None


def message_view(engine: Engine, message_id: int) -> Any:
    """A ticket message with what its copies show: the ticket, the shopper, the order summary."""
    with engine.connect() as conn:
        return run(conn, "SELECT m.id, m.ticket_id, m.direction, m.author_id, m.body,"
                   " m.photo_file_id, t.user_id, t.order_id, t.status, u.name, u.username,"
                   " o.invoice_id, o.status AS order_status, o.total_bill,"
                   " (SELECT string_agg(DISTINCT p.name, ', ') FROM order_items i"
                   "  JOIN products p ON p.id = i.product_id WHERE i.order_id = o.id)"
                   "  AS products,"
                   " (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) AS units"
                   " FROM support_messages m JOIN support_tickets t ON t.id = m.ticket_id"
                   " JOIN users u ON u.id = t.user_id LEFT JOIN orders o ON o.id = t.order_id"
                   " WHERE m.id = :m", {"m": message_id}).first()
