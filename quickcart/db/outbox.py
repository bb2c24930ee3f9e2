"""Transactional outbox: side effects are rows committed with the change, published after commit.

Publishing is at-least-once (a crash between the broker call and marking the row re-publishes
it), so every consumer is idempotent on the outbox id it receives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from quickcart.db.sql import Tx, run, run_alone, sql
from quickcart.logs import current_correlation_id

LEASE_SECONDS = 30


@dataclass(frozen=True)
class OutboxMessage:
    """One side effect to publish: task `topic` on `queue` with `payload`."""

    id: int
    topic: str
    queue: str
    payload: dict[str, Any]
    correlation_id: str | None = None


class Publisher(Protocol):
    """Hands messages to the broker (implemented by workers/; not transaction-safe)."""

    def __call__(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish these messages (in one round trip); raise on failure so none is marked
        published (any that did reach the broker go again, to idempotent consumers)."""


def add_many(session: Tx, rows: list[tuple[str, str, dict[str, Any]]]) -> list[OutboxMessage]:
    """Queue several side effects with one INSERT in the caller's transaction.

    Returns the rows as stored (read back by RETURNING), so the caller can publish them
    after commit without reading them again."""
    if not rows:
        return []
    return stored(run(session, *add_many_statement(rows)).all())


def add_many_statement(rows: list[tuple[str, str, dict[str, Any]]],
                       guard: tuple[str, dict[str, Any]] | None = None
                       ) -> tuple[str, dict[str, Any]]:
    """The INSERT of `add_many` as a statement (for `sql.run_script`), returning the rows.

    With `guard` (a statement returning a row or none, e.g. `idempotency.claim_with_result`),
    the rows are written only if it returned one, in the same statement: no row back then means
    the guard refused, and nothing was queued."""
    if not rows:
        raise ValueError("no outbox rows to add")
    params: dict[str, Any] = {"c": current_correlation_id()}
    values = []
    for i, (topic, queue, payload) in enumerate(rows):
        values.append(f"(:t{i}, :q{i}, CAST(:p{i} AS jsonb))")
        params.update({f"t{i}": topic, f"q{i}": queue,
                       f"p{i}": json.dumps(payload, default=str)})
    insert = ("INSERT INTO outbox (topic, queue, payload, correlation_id)"
              " SELECT t, q, p, :c FROM (VALUES " + ", ".join(values) + ") AS v(t, q, p)")
    returning = " RETURNING id, topic, queue, payload, correlation_id"
    if guard is None:
        return insert + returning, params
    return ("WITH guard AS (" + guard[0] + ") " + insert
            + " WHERE EXISTS (SELECT 1 FROM guard)" + returning, {**guard[1], **params})


def stored(rows: Sequence[Any]) -> list[OutboxMessage]:
    """Outbox rows read back by RETURNING, as messages in id order."""
    return [OutboxMessage(r.id, r.topic, r.queue, dict(r.payload), r.correlation_id)
            for r in sorted(rows, key=lambda r: int(r.id))]


def lease(engine: Engine, ids: Iterable[int] | None = None, limit: int = 200,
          min_age_seconds: float = 0.0) -> list[OutboxMessage]:
    """Lease unpublished rows (SKIP LOCKED, so relays never wait on each other) and commit.

    The lease is committed before anything is published: no row lock is held across the broker
    call, and a relay that dies leaves rows that another relay takes once the lease ends.
    """
    id_list = list(ids) if ids is not None else None
    if id_list == []:
        return []
    filters = "published_at IS NULL AND (leased_until IS NULL OR leased_until < now())"
    params: dict[str, Any] = {"limit": limit, "lease": LEASE_SECONDS, "age": min_age_seconds}
    if id_list is not None:
        filters += " AND id = ANY(:ids)"
        params["ids"] = id_list
    else:
        filters += " AND created_at <= now() - make_interval(secs => :age)"
    with engine.begin() as conn:
        rows = conn.execute(
            sql(
                "UPDATE outbox SET leased_until = now() + make_interval(secs => :lease),"
                " attempts = attempts + 1"
                " WHERE id IN (SELECT id FROM outbox WHERE " + filters +
                " ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)"
                " RETURNING id, topic, queue, payload, correlation_id"
            ),
            params,
        ).all()
    return stored(rows)


def mark_published(engine: Engine, ids: list[int]) -> None:
    """Record that these rows reached the broker.

    Committed without waiting for the WAL flush: if a database crash loses this mark, the relay
    publishes the rows again, which idempotent consumers absorb, so the fsync buys nothing."""
    if ids:
        run_alone(engine, "SET LOCAL synchronous_commit = off;"
                  " UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)", {"ids": ids})


def publish_now(engine: Engine, publish: Publisher, messages: list[OutboxMessage]) -> int:
    """Publish rows this process just committed (as `add_many` returned them), then mark them.

    No lease and no re-read: racing the relay (which waits out a grace period first) can publish
    a row twice, and consumers are idempotent on the outbox id.
    """
    if messages:
        publish(messages)
        mark_published(engine, [message.id for message in messages])
    return len(messages)


def relay(engine: Engine, publish: Publisher, ids: Iterable[int] | None = None,
          limit: int = 200, min_age_seconds: float = 0.0) -> int:
    """Publish leased rows, then mark them; returns how many reached the broker."""
    messages = lease(engine, ids, limit, min_age_seconds)
    if messages:
        publish(messages)
        mark_published(engine, [message.id for message in messages])
    return len(messages)


def purge_published(engine: Engine, older_than_hours: int = 24) -> int:
    """Delete rows published long ago (their consumers' idempotency keys outlive them)."""
    with engine.begin() as conn:
        result = conn.execute(
            sql("DELETE FROM outbox WHERE published_at < now() - make_interval(hours => :h)"),
            {"h": older_than_hours},
        )
    return int(result.rowcount or 0)
