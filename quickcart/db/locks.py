"""Every row lock QuickCart takes, in one place, in one order.

Lock order (always acquire in this order, never the reverse, so transactions cannot deadlock):
    1. users            (the buyer; one row per transaction, by primary key)
    2. orders / deposits (by primary key)
    3. vouchers          (by code)
    4. product_stocks    (free units: SKIP LOCKED, so buyers never wait on each other; an order's
                          own units: by primary key order)
    5. idempotency_keys  (a purchase claims its intent's key last, with its result, so a twin
                          waiting there holds nothing the owner still needs)
products is never locked on the purchase path: sold_count moves through sold_count_deltas.
"""

from __future__ import annotations

import uuid

from quickcart.db.sql import Record, Rows, Statement, Tx, run, run_script


def lock_user(session: Tx, user_id: int) -> Record | None:
    """Lock the user row (balance, role, ban flag) for the rest of the transaction."""
    return run(session, "SELECT * FROM users WHERE id = :id FOR UPDATE", {"id": user_id}).first()


def lock_user_then(session: Tx, user_id: int, then: Statement,
                   first: Statement | None = None) -> Rows:
    """Lock the user row, then run `then` (a read of what the lock guards), in one round trip;
    returns what `then` returned. `first` (e.g. uow.actor_statement) runs before the lock.

    `then` is a statement of its own after the lock: in READ COMMITTED it sees what a
    transaction that held the lock before us committed (the pending order a concurrent intent
    of this user created). The user's parameter is `:lock_user`."""
    script = [("SELECT 1 FROM users WHERE id = :lock_user FOR UPDATE", {"lock_user": user_id}),
              then]
    return run_script(session, [first, *script] if first is not None else script)


def lock_order(session: Tx, order_id: int) -> Record | None:
    """Lock one order by id; its status can then be checked and moved safely."""
    return run(session, "SELECT * FROM orders WHERE id = :id FOR UPDATE",
               {"id": order_id}).first()


def lock_deposit(session: Tx, deposit_id: int) -> Record | None:
    """Lock one deposit by id."""
    return run(session, "SELECT * FROM deposits WHERE id = :id FOR UPDATE",
               {"id": deposit_id}).first()


def lock_voucher(session: Tx, code: str) -> Record | None:
    """Lock a voucher by code: concurrent redeemers of one code queue here, one wins."""
    return run(session, "SELECT * FROM vouchers WHERE code = :c FOR UPDATE", {"c": code}).first()


def take_free_units(session: Tx, product_id: int, quantity: int) -> list[uuid.UUID]:
    """Lock up to `quantity` free units of a product, skipping units other buyers hold."""
    return run(
        session,
        "SELECT id FROM product_stocks"
        " WHERE product_id = :p AND NOT is_sold AND order_id IS NULL"
        " ORDER BY created_at, id LIMIT :n FOR UPDATE SKIP LOCKED",
        {"p": product_id, "n": quantity},
    ).scalars()


def lock_order_units(session: Tx, order_id: int) -> list[uuid.UUID]:
    """Lock the units reserved for an order, in primary-key order."""
    return run(session,
               "SELECT id FROM product_stocks WHERE order_id = :o ORDER BY id FOR UPDATE",
               {"o": order_id}).scalars()
