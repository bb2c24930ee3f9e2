"""Payments queue: gateway transactions opened, confirmed and cancelled."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from quickcart.adapters import redis_store
from quickcart.adapters.pakasir import GatewayRejectedError, GatewayUnavailableError
from quickcart.config import MissingSettingError, get_settings
from quickcart.services import payments
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe

log = logging.getLogger(__name__)


@app.task(base=QuickCartTask, name="quickcart.start_qris_payment")
def start_qris_payment(kind: str, id: int, outbox_id: int | None = None) -> dict[str, Any]:
    """Open the QRIS transaction of a pending order/deposit (idempotent: once it has a QR)."""
    outcome = payments.start_qris_payment(
        runtime.engine(), runtime.gateway(), kind, id,
        unavailable=(GatewayUnavailableError, GatewayRejectedError))
    publish_committed_unsafe(outcome.outbox)
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.confirm_payment")
def confirm_payment(invoice_id: str, event_id: int | None = None,
                    outbox_id: int | None = None) -> dict[str, Any]:
    """Re-check with the gateway, then settle under lock (idempotent by state and ledger)."""
    outcome = payments.confirm_payment(runtime.engine(), runtime.gateway(), invoice_id, event_id)
    publish_committed_unsafe(outcome.outbox)
    # After the commit: a settled order changes the welcome screen's paid count (best effort).
    redis_store.invalidate(runtime.redis_client(), redis_store.stats_transactions_key())
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.cancel_gateway_transaction")
def cancel_gateway_transaction(invoice_id: str, amount: str,
                               outbox_id: int | None = None) -> dict[str, Any]:
    """Close the gateway side of an expired/cancelled row (the gateway refusing is fine)."""
    try:
        runtime.gateway().cancel(invoice_id, Decimal(amount))
    except GatewayRejectedError as exc:  # already paid, expired or unknown there: nothing to do
        return {"outcome": "rejected", "status_code": getattr(exc, "status_code", None)}
    return {"outcome": "cancelled"}


@app.task(base=QuickCartTask, name="quickcart.create_deposit")
def create_deposit(user_id: int, amount: str, idempotency_key: str) -> dict[str, Any]:
    """Open a QRIS top-up; idempotent on `idempotency_key`."""
    outcome = payments.create_deposit(runtime.engine(), user_id, amount, idempotency_key)
    publish_committed_unsafe(outcome.outbox)
    return outcome.result


_unconfigured_reported: list[bool] = []


@app.task(base=QuickCartTask, name="quickcart.reconcile_payments")
def reconcile_payments() -> int:
    """Every 30 s: ask the gateway about pending QRIS rows older than a minute, and restart the
    QR of rows that never got one (their start message was lost)."""
    engine = runtime.engine()
    try:
        gateway = runtime.gateway()
    except MissingSettingError as exc:
        # Without Pakasir settings there is no gateway to ask (a balance-only shop, a bench);
        # QRIS rows, if any, expire on their own. Said once per process, not raised (and its
        # traceback rendered) every 30 s.
        if not _unconfigured_reported:
            log.warning("payment reconciliation skipped: %s", exc)
            _unconfigured_reported.append(True)
        return 0
    for kind, row_id in payments.pending_without_qr(
            engine, older_than_seconds=get_settings().reconcile_after_seconds):
        try:
            started = payments.start_qris_payment(
                engine, gateway, kind, row_id,
                unavailable=(GatewayUnavailableError, GatewayRejectedError))
        except GatewayUnavailableError:
            break
        publish_committed_unsafe(started.outbox)
    invoices = payments.pending_for_reconciliation(
        engine, older_than_seconds=get_settings().reconcile_after_seconds)
    for invoice_id in invoices:
        try:
            outcome = payments.reconcile(engine, gateway, invoice_id)
        except GatewayUnavailableError:
            break  # the gateway is down: the next run tries again
        publish_committed_unsafe(outcome.outbox)
    return len(invoices)
