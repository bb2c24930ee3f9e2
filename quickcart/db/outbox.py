"""Transactional outbox: side effects are rows committed with the change, published after commit.

Publishing is at-least-once (a crash between the broker call and marking the row re-publishes
it), so every consumer is idempotent on the outbox id it receives.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine

from quickcart.db.sql import Statement, Tx, run, run_alone, sql
from quickcart.logs import current_correlation_id

log = logging.getLogger(__name__)

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
                       guard: Statement | None = None) -> Statement:
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


#: Rows no relay is publishing: unpublished, never leased or the lease lapsed
#: (idx_outbox_unpublished).
_LEASABLE = ("FROM outbox WHERE published_at IS NULL"
             " AND (leased_until IS NULL OR leased_until < now())")

#: Rows the relay's sweep leases (`lease` without ids): leasable and older than `:age` seconds
#: (younger ones are their committing process' to publish). Beat's check
#: (quickcart.services.housekeeping) asks whether there is one.
RELAYABLE = _LEASABLE + " AND created_at <= now() - make_interval(secs => :age)"


def lease(engine: Engine, ids: Iterable[int] | None = None, limit: int = 200,
          min_age_seconds: float = 0.0) -> list[OutboxMessage]:
    """Lease unpublished rows (SKIP LOCKED, so relays never wait on each other) and commit.

    The lease is committed before anything is published: no row lock is held across the broker
    call, and a relay that dies leaves rows that another relay takes once the lease ends.
    """
    id_list = list(ids) if ids is not None else None
    if id_list == []:
        return []
    rows_from = RELAYABLE
    params: dict[str, Any] = {"limit": limit, "lease": LEASE_SECONDS, "age": min_age_seconds}
    if id_list is not None:
        rows_from = _LEASABLE + " AND id = ANY(:ids)"
        params["ids"] = id_list
    with engine.begin() as conn:
        rows = conn.execute(
            sql(
                "UPDATE outbox SET leased_until = now() + make_interval(secs => :lease),"
                " attempts = attempts + 1"
                " WHERE id IN (SELECT id " + rows_from +
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
    """Publish rows this process just committed (as `add_many` returned them); they are marked
    published shortly after, together with other publishes of this process (`_Marks`).

    No lease and no re-read: racing the relay (which waits out a grace period first) can publish
    a row twice, and consumers are idempotent on the outbox id.
    """
    if messages:
        publish(messages)
        MARKS.add(engine, [message.id for message in messages])
    return len(messages)


#: How long a published row may wait for its mark; well inside the relay's grace period (2 s),
#: so the relay does not take it for a lost publish.
MARK_EVERY_SECONDS = 0.2


class _Marks:
    """Ids of rows this process published and has not marked yet.

    A daemon thread marks them every MARK_EVERY_SECONDS in one statement per engine, instead of
    one transaction per publish: marking is bookkeeping for the relay, which re-publishes an
    unmarked row after its grace period (consumers are idempotent on the outbox id), so a mark
    lost with the process costs a duplicate publish, never a lost one. The thread starts in
    the process that first publishes (after a fork, anew in the child)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child the parent's lock may be held and its thread is gone: start afresh.
        # Ids copied from the parent stay with it (it marks them).
        self._lock = threading.Lock()
        self._queued = threading.Event()
        self._ids: dict[Engine, list[int]] = {}
        self._thread: threading.Thread | None = None

    def add(self, engine: Engine, ids: list[int]) -> None:
        """Queue these published ids for the next mark."""
        with self._lock:
            self._ids.setdefault(engine, []).extend(ids)
            self._queued.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-marks",
                                                daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Mark every queued id now (a process about to exit calls this). Never raises: a mark
        that fails leaves its rows to the relay."""
        with self._lock:
            batches, self._ids = self._ids, {}
        for engine, ids in batches.items():
            try:
                mark_published(engine, ids)
            except Exception:  # the relay re-publishes what stays unmarked
                log.warning("marking %d published outbox rows failed; the relay will send"
                            " them again", len(ids), exc_info=True)

    def _run(self) -> None:
        while True:
            self._queued.wait()
            time.sleep(MARK_EVERY_SECONDS)  # the window in which publishes gather
            self._queued.clear()  # before taking the ids: one added meanwhile sets it again
            self.flush()


MARKS = _Marks()


def relay(engine: Engine, publish: Publisher, ids: Iterable[int] | None = None,
          limit: int = 200, min_age_seconds: float = 0.0) -> int:
    """Publish leased rows, then mark them; returns how many reached the broker."""
    messages = lease(engine, ids, limit, min_age_seconds)
    if messages:
        publish(messages)
        mark_published(engine, [message.id for message in messages])
    return len(messages)


#: Rows published more than `:h` hours ago, which `purge_published` deletes
#: (idx_outbox_published_at); beat's check asks whether there is one.
PURGEABLE = "FROM outbox WHERE published_at < now() - make_interval(hours => :h)"


def purge_published(engine: Engine, older_than_hours: int = 24) -> int:
    """Delete rows published long ago (their consumers' idempotency keys outlive them)."""
    with engine.begin() as conn:
        result = conn.execute(sql("DELETE " + PURGEABLE), {"h": older_than_hours})
    return int(result.rowcount or 0)
