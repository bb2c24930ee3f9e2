"""Audit queue: captured changes move into the append-only, hash-chained audit database."""

from __future__ import annotations

from quickcart.services.audit_shipping import ship_audit_batch
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask

BATCH = 1000
MAX_BATCHES_PER_RUN = 20


@app.task(base=QuickCartTask, name="quickcart.ship_audit")
def ship_audit() -> int:
    """Ship audit_outbox to the audit DB in batches (exactly once per row by source_id)."""
    shipped = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        count = ship_audit_batch(runtime.engine(), runtime.audit_engine(), limit=BATCH)
        shipped += count
        if count < BATCH:
            break
    return shipped
