"""Gateway notifications in: validated, deduplicated into the inbox, confirmation queued.

Pakasir does not sign its webhooks, so one is only ever a hint: it is checked against our record
(project, invoice, amount) and then `confirm_payment` asks the gateway itself before anything is
paid. A refused webhook changes nothing but the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from quickcart.adapters.pakasir import parse_webhook
from quickcart.db.outbox import OutboxMessage
from quickcart.db.uow import unit_of_work
from quickcart.services import topics
from quickcart.services.effects import Effects
from quickcart.services.payments import find_invoice

log = logging.getLogger(__name__)


@dataclass
class WebhookVerdict:
    """How the API answers, and the outbox rows to publish after commit."""

    status_code: int
    outcome: str
    outbox: list[OutboxMessage] = field(default_factory=list)


def _dedup_key(body: dict[str, Any]) -> str:
    canonical = json.dumps({k: body.get(k) for k in
                            ("project", "order_id", "amount", "status", "completed_at")},
                           sort_keys=True, default=str)
    return "pakasir:" + hashlib.sha256(canonical.encode()).hexdigest()


def _without_nul(value: Any) -> Any:
    """The value with NUL characters removed from every string (PostgreSQL text refuses them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _audit_refusal(engine: Engine, body: Any, reason: str, source_ip: str | None) -> None:
    """A refused notification leaves a permanent trace (and nothing else)."""
    body = _without_nul(body)
    invoice = str(body.get("order_id", ""))[:50] if isinstance(body, dict) else ""
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO audit_outbox (actor_type, entity_type, entity_id, action,"
                 " after_state, context) VALUES ('system', 'payment_webhook', :e, :a,"
                 " CAST(:s AS jsonb), CAST(:c AS jsonb))"),
            {"e": invoice or "-", "a": "webhook_rejected",
             "s": json.dumps(body if isinstance(body, dict) else {"raw": str(body)[:500]},
                             default=str),
             "c": json.dumps({"reason": reason, "ip": source_ip})},
        )


def receive_pakasir_webhook(engine: Engine, body: Any, expected_project: str,
                            source_ip: str | None = None) -> WebhookVerdict:
    """Validate a notification and queue its confirmation; locks nothing.

    Idempotent: the inbox's unique dedup key makes a repeated notification a no-op (200, so the
    gateway stops retrying).
    """
    if not isinstance(body, dict) or _without_nul(body) != body:
        # A NUL never belongs in a notification (and PostgreSQL cannot store one).
        _audit_refusal(engine, body, "malformed", source_ip)
        return WebhookVerdict(422, "malformed")
    try:
        notice = parse_webhook(body)
    except ValueError as exc:
        log.warning("malformed pakasir webhook: %s", exc)
        _audit_refusal(engine, body, "malformed", source_ip)
        return WebhookVerdict(422, "malformed")
    if notice.project != expected_project:
        _audit_refusal(engine, body, "wrong_project", source_ip)
        return WebhookVerdict(400, "wrong_project")
    found = find_invoice(engine, notice.order_id)
    if found is None:
        _audit_refusal(engine, body, "unknown_invoice", source_ip)
        return WebhookVerdict(404, "unknown_invoice")
    _kind, row = found
    expected_amount = Decimal(row.total_bill - row.payment_fee)
    if notice.amount != expected_amount:
        _audit_refusal(engine, body, "wrong_amount", source_ip)
        return WebhookVerdict(400, "wrong_amount")
    with unit_of_work(engine) as uow:
        event_id = uow.session.execute(
            text("INSERT INTO payment_events (dedup_key, invoice_id, amount, status, payload,"
                 " source_ip) VALUES (:k, :i, :a, :s, CAST(:p AS jsonb), :ip)"
                 " ON CONFLICT (dedup_key) DO NOTHING RETURNING id"),
            {"k": _dedup_key(body), "i": notice.order_id, "a": notice.amount,
             "s": notice.status, "p": json.dumps(body, default=str), "ip": source_ip},
        ).scalar()
        if event_id is None:
            return WebhookVerdict(200, "duplicate")
        effects = Effects(uow.session)
        effects.add(topics.CONFIRM_PAYMENT, {"invoice_id": notice.order_id, "event_id": event_id})
        uow.commit()
        return WebhookVerdict(200, "queued", effects.messages)
