"""The only way a balance moves: the user row and its ledger row, in the caller's transaction."""

from __future__ import annotations

from decimal import Decimal

from quickcart.db.sql import Statement, Tx, run
from quickcart.domain.errors import ShopError


def move_balance(
    session: Tx,
    user_id: int,
    amount: Decimal,
    reason: str,
    reference_type: str,
    reference_id: str,
    actor_id: int | None = None,
    note: str | None = None,
) -> Decimal:
    """Add `amount` (negative to debit) and ledger it; returns the new balance.

    The caller must already hold the user row lock (locks.lock_user). A debit that would make the
    balance negative raises ShopError('insufficient_balance') before anything is written. The
    ledger's unique (reason, reference) makes a repeated move of the same reference fail.
    """
    # The guard in WHERE refuses an overdraft without a round trip to read the balance first.
    new_balance: Decimal | None = run(
        session,
        "UPDATE users SET account_balance = account_balance + :a"
        " WHERE id = :u AND account_balance + :a >= 0 RETURNING account_balance",
        {"a": amount, "u": user_id},
    ).scalar()
    if new_balance is None:
        balance = run(session, "SELECT account_balance FROM users WHERE id = :u",
                      {"u": user_id}).scalar_one()
        raise ShopError("insufficient_balance", balance=str(balance), needed=str(-amount))
    run(session, *_ledger_row(user_id, amount, reason, reference_type, reference_id, actor_id,
                              note))
    return new_balance


def checked_move_statements(user_id: int, amount: Decimal, reason: str, reference_type: str,
                            reference_id: str, actor_id: int | None = None,
                            note: str | None = None) -> list[Statement]:
    """`move_balance` as statements for one round trip (`sql.run_script`), for a caller that
    holds the user lock and has already checked the balance covers a debit under it.

    With no guard in WHERE, an overdraft still cannot happen: the users CHECK refuses a
    negative balance, failing the whole transaction. The ledger row is a statement of its own
    after the update, so its trigger reads the new balance into balance_after."""
    return [
        ("UPDATE users SET account_balance = account_balance + :a WHERE id = :u",
         {"a": amount, "u": user_id}),
        _ledger_row(user_id, amount, reason, reference_type, reference_id, actor_id, note),
    ]


def _ledger_row(user_id: int, amount: Decimal, reason: str, reference_type: str,
                reference_id: str, actor_id: int | None,
                note: str | None) -> Statement:
    return (
        "INSERT INTO balance_ledger (user_id, amount, reason, reference_type, reference_id,"
        " actor_id, note) VALUES (:u, :a, :r, :rt, :ri, :actor, :note)",
        {"u": user_id, "a": amount, "r": reason, "rt": reference_type, "ri": reference_id,
         "actor": actor_id, "note": note},
    )


def ledger_has(session: Tx, reason: str, reference_type: str, reference_id: str) -> bool:
    """Whether this exact balance move already happened (the retry-safe check)."""
    return bool(run(
        session,
        "SELECT 1 FROM balance_ledger WHERE reason = :r AND reference_type = :rt"
        " AND reference_id = :ri",
        {"r": reason, "rt": reference_type, "ri": reference_id},
    ).scalar())
