"""Ship captured changes from the main DB's `audit_outbox` into the hash-chained `audit_logs`.

Exactly once, whatever runs concurrently or crashes: a batch is claimed in the main DB with
`FOR UPDATE SKIP LOCKED` (concurrent shippers take disjoint rows), appended to the audit DB under
one advisory lock (the chain stays linear), the audit DB commits, and only then are the rows
deleted from the outbox. A crash between the two commits leaves rows that are already in the
audit DB; the next run finds their `source_id` there and deletes them without appending again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, text

# Every shipper takes this transaction-level lock in the audit DB before reading the chain head,
# so two appends can never both link to the same previous checksum. Arbitrary but fixed.
AUDIT_CHAIN_LOCK_KEY = 0x51_43_41_55_44  # "QCAUD"

GENESIS_CHECKSUM = "0" * 64
VALID_ACTOR_TYPES = ("user", "admin", "system")

#: Called with the name of each step a batch passes; tests raise from it to simulate a crash.
CrashHook = Callable[[str], None]

_CLAIM_SQL = text(
    """
    SELECT id, occurred_at, actor_id,
           -- audit_logs accepts only the seed's actor types; anything else a session claimed is
           -- recorded as 'system' with the claim kept in the context, rather than blocking the
           -- outbox forever on a CHECK violation.
           CASE WHEN actor_type IN ('user', 'admin', 'system') THEN actor_type
                ELSE 'system' END AS actor_type,
           entity_type, entity_id, action,
           before_state::text AS before_json,
           after_state::text AS after_json,
           CASE WHEN actor_type IN ('user', 'admin', 'system') THEN context::text
                ELSE (coalesce(context, '{}'::jsonb)
                      || jsonb_build_object('claimed_actor_type', actor_type))::text
           END AS context_json
    FROM audit_outbox
    ORDER BY id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)

_INSERT_SQL = text(
    """
    INSERT INTO audit_logs (id, "timestamp", actor_id, actor_type, entity_type, entity_id,
                            action, before_state, after_state, context, ip_address, source_id,
                            content_hash, prev_checksum, checksum)
    SELECT r.id, r.ts, r.actor_id, r.actor_type, r.entity_type, r.entity_id, r.action,
           r.before_json::jsonb, r.after_json::jsonb, r.context_json::jsonb, NULL,
           r.source_id, r.content_hash, r.prev_checksum, r.checksum
    FROM unnest(CAST(:ids AS bigint[]), CAST(:ts AS timestamptz[]), CAST(:actor_ids AS bigint[]),
                CAST(:actor_types AS text[]), CAST(:entity_types AS text[]),
                CAST(:entity_ids AS text[]), CAST(:actions AS text[]),
                CAST(:befores AS text[]), CAST(:afters AS text[]), CAST(:contexts AS text[]),
                CAST(:source_ids AS bigint[]), CAST(:content_hashes AS text[]),
                CAST(:prevs AS text[]), CAST(:checksums AS text[]))
         AS r(id, ts, actor_id, actor_type, entity_type, entity_id, action, before_json,
              after_json, context_json, source_id, content_hash, prev_checksum, checksum)
    ON CONFLICT (source_id) DO NOTHING
    RETURNING source_id
    """
)


@dataclass(frozen=True)
class OutboxEntry:
    """One captured change as read from `audit_outbox` (JSON kept as PostgreSQL's jsonb text)."""

    source_id: int
    occurred_at: datetime
    actor_id: int | None
    actor_type: str
    entity_type: str
    entity_id: str
    action: str
    before_json: str | None
    after_json: str | None
    context_json: str | None


@dataclass(frozen=True)
class ShipResult:
    """What one batch did: rows taken off the outbox, and how many of them were new in audit."""

    taken: int
    appended: int


def _parse_json(raw: str | None) -> Any:
    # Decimal, not float: jsonb keeps numerics exact ("10000.00"), and so must the hash input.
    return None if raw is None else json.loads(raw, parse_float=Decimal)


def _iso_utc(moment: datetime) -> str:
    # The session time zone decides how PostgreSQL hands a timestamptz back; UTC makes the hash
    # independent of it.
    return moment.astimezone(UTC).isoformat()


def content_hash(
    *,
    timestamp: datetime,
    actor_id: int | None,
    actor_type: str,
    entity_type: str,
    entity_id: str,
    action: str,
    before_json: str | None,
    after_json: str | None,
    context_json: str | None,
    ip_address: str | None,
    source_id: int | None,
) -> str:
    """SHA-256 of an entry's canonical JSON; pure (no lock), so shipping and verifying agree."""
    # JSON columns come as PostgreSQL's `jsonb::text`, stable across jsonb round trips; numbers
    # are parsed as Decimal and rendered with `str`, so no float rounding enters the hash.
    canonical = json.dumps(
        [
            _iso_utc(timestamp),
            actor_id,
            actor_type,
            entity_type,
            entity_id,
            action,
            _parse_json(before_json),
            _parse_json(after_json),
            _parse_json(context_json),
            None if ip_address is None else str(ip_address),
            source_id,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def chain_checksum(prev_checksum: str | None, entry_content_hash: str) -> str:
    """sha256(previous checksum, or 64 zeros for the first entry, + content hash); pure."""
    return hashlib.sha256(
        ((prev_checksum or GENESIS_CHECKSUM) + entry_content_hash).encode("ascii")
    ).hexdigest()


def claim_batch(main_conn: Connection, limit: int) -> list[OutboxEntry]:
    """Lock up to `limit` oldest outbox rows no other shipper holds (SKIP LOCKED); read-only."""
    rows = main_conn.execute(_CLAIM_SQL, {"limit": limit}).all()
    return [
        OutboxEntry(
            source_id=r.id,
            occurred_at=r.occurred_at,
            actor_id=r.actor_id,
            actor_type=r.actor_type,
            entity_type=r.entity_type,
            entity_id=r.entity_id,
            action=r.action,
            before_json=r.before_json,
            after_json=r.after_json,
            context_json=r.context_json,
        )
        for r in rows
    ]


def append_to_audit(
    audit_engine: Engine, entries: Sequence[OutboxEntry], hook: CrashHook | None = None
) -> int:
    """Append under the chain advisory lock and commit; present source_ids are skipped (no-op)."""
    if not entries:
        return 0
    with audit_engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_CHAIN_LOCK_KEY})
        source_ids = [e.source_id for e in entries]
        # Under the lock no other shipper appends, so this read and the chain head are stable.
        present = set(
            conn.execute(
                text("SELECT source_id FROM audit_logs WHERE source_id = ANY(:ids)"),
                {"ids": source_ids},
            ).scalars()
        )
        fresh = [e for e in entries if e.source_id not in present]
        if not fresh:
            return 0
        prev: str | None = conn.execute(
            text("SELECT checksum FROM audit_logs ORDER BY id DESC LIMIT 1")
        ).scalar()
        # Ids are drawn here and given out in chain order, so `ORDER BY id` (what verify walks)
        # is the chain order without relying on how INSERT ... SELECT evaluates nextval.
        ids = sorted(
            conn.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence('audit_logs', 'id'))"
                    " FROM generate_series(1, :n)"
                ),
                {"n": len(fresh)},
            ).scalars()
        )
        params: dict[str, list[Any]] = {
            key: []
            for key in (
                "ids", "ts", "actor_ids", "actor_types", "entity_types", "entity_ids", "actions",
                "befores", "afters", "contexts", "source_ids", "content_hashes", "prevs",
                "checksums",
            )
        }
        for row_id, e in zip(ids, fresh, strict=True):
            digest = content_hash(
                timestamp=e.occurred_at,
                actor_id=e.actor_id,
                actor_type=e.actor_type,
                entity_type=e.entity_type,
                entity_id=e.entity_id,
                action=e.action,
                before_json=e.before_json,
                after_json=e.after_json,
                context_json=e.context_json,
                ip_address=None,
                source_id=e.source_id,
            )
            checksum = chain_checksum(prev, digest)
            for key, value in (
                ("ids", row_id), ("ts", e.occurred_at), ("actor_ids", e.actor_id),
                ("actor_types", e.actor_type), ("entity_types", e.entity_type),
                ("entity_ids", e.entity_id), ("actions", e.action), ("befores", e.before_json),
                ("afters", e.after_json), ("contexts", e.context_json),
                ("source_ids", e.source_id), ("content_hashes", digest), ("prevs", prev),
                ("checksums", checksum),
            ):
                params[key].append(value)
            prev = checksum
        inserted = conn.execute(_INSERT_SQL, params).scalars().all()
        if len(inserted) != len(fresh):
            # Someone inserted one of these source_ids without the chain lock: the links computed
            # above would now skip a row. Roll back rather than commit a forked chain.
            raise RuntimeError(
                f"audit chain append conflicted ({len(inserted)} of {len(fresh)} inserted);"
                " a writer bypassed the chain lock"
            )
        if hook is not None:
            hook("audit_inserted")
    if hook is not None:
        hook("audit_committed")
    return len(inserted)


def ship_audit_batch_result(
    main_engine: Engine, audit_engine: Engine, limit: int = 1000, hook: CrashHook | None = None
) -> ShipResult:
    """Move one batch, its outbox rows locked until audit commits; idempotent by source_id."""
    with main_engine.begin() as main_conn:
        entries = claim_batch(main_conn, limit)
        if not entries:
            return ShipResult(taken=0, appended=0)
        if hook is not None:
            hook("claimed")
        appended = append_to_audit(audit_engine, entries, hook)
        main_conn.execute(
            text("DELETE FROM audit_outbox WHERE id = ANY(:ids)"),
            {"ids": [e.source_id for e in entries]},
        )
        if hook is not None:
            hook("outbox_deleted")
    return ShipResult(taken=len(entries), appended=appended)


def ship_audit_batch(main_engine: Engine, audit_engine: Engine, limit: int = 1000) -> int:
    """Move up to `limit` rows (SKIP LOCKED) to audit_logs, idempotent by source_id; # moved."""
    return ship_audit_batch_result(main_engine, audit_engine, limit).taken


def ship_all(
    main_engine: Engine, audit_engine: Engine, batch: int = 1000, max_batches: int | None = None
) -> int:
    """Ship batches (SKIP LOCKED, idempotent by source_id) until none is left; # moved."""
    moved = 0
    done = 0
    while max_batches is None or done < max_batches:
        taken = ship_audit_batch(main_engine, audit_engine, batch)
        moved += taken
        done += 1
        # A short batch means no unlocked rows remain; rows other shippers hold are theirs.
        if taken < batch:
            break
    return moved
