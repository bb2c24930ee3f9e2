"""Idempotency keys: an intent's key is claimed in the same transaction as its effect."""

from __future__ import annotations

import json
from typing import Any

from quickcart.db.sql import Statement, Tx, run


def claim(session: Tx, key: str, scope: str) -> dict[str, Any] | None:
    """Claim `key`; returns None when this transaction owns it, else the recorded result.

    A concurrent claimer of the same key blocks on the primary key until the owner commits (then
    sees its result) or rolls back (then owns the key), so an intent takes effect once.
    """
    inserted = run(session, "INSERT INTO idempotency_keys (key, scope) VALUES (:k, :s)"
                   " ON CONFLICT (key) DO NOTHING RETURNING key",
                   {"k": key, "s": scope}).scalar()
    if inserted is not None:
        return None
    return recorded(session, key)


def claim_with_result(key: str, scope: str, result: dict[str, Any]) -> Statement:
    """The statement that claims `key` with its outcome at once, at the end of the effect's
    transaction (`outbox.add_many_statement` runs it as the guard of the effect's outbox rows).

    It returns the key when this transaction owns it and no row when a twin of the intent
    already did (the twin's result is then what counts: roll back and read it). A twin still
    in flight makes it wait for that twin's commit or rollback, as `claim` does."""
    return ("INSERT INTO idempotency_keys (key, scope, result)"
            " VALUES (:ik, :iscope, CAST(:iresult AS jsonb))"
            " ON CONFLICT (key) DO NOTHING RETURNING key",
            {"ik": key, "iscope": scope, "iresult": _json(result)})


def recorded(session: Tx, key: str) -> dict[str, Any]:
    """The result recorded under `key` by the transaction that claimed it."""
    return as_result(run(session, "SELECT result FROM idempotency_keys WHERE key = :k",
                         {"k": key}).scalar())


def as_result(stored: Any) -> dict[str, Any]:
    """A key's stored result as the intent's answer (a key claimed with no result: "done")."""
    return dict(stored) if stored else {"status": "done"}


def record(session: Tx, key: str, result: dict[str, Any]) -> None:
    """Store the outcome of the intent that claimed `key` (same transaction as the effect)."""
    run(session, "UPDATE idempotency_keys SET result = CAST(:r AS jsonb) WHERE key = :k",
        {"k": key, "r": _json(result)})


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=str)


def claimed(session: Tx, keys: list[str]) -> set[str]:
    """Which of `keys` a committed intent has claimed (it took effect, or was refused and the
    refusal recorded): those are never to be sent again. Locks nothing."""
    return {str(k) for k in run(session, "SELECT key FROM idempotency_keys WHERE key = ANY(:k)",
                                {"k": keys}).scalars()}
