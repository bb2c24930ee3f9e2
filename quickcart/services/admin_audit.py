"""The admin action audit: every admin command (reads too) before it runs and its outcome after,
non-admins' attempts at admin commands, and `/audit`'s reads of the audit database.

Each command is one `admin_actions` row (its request key — the bot update's intent key — makes
a redelivered or retried task one row) and two explicit audit events, written in the same
statement as the row: 'command_started' and then 'command_done' / 'command_refused' /
'command_failed'. The events are keyed by the command's subject (the user, invoice or product
it is about; the admin's own id when it has none), so `/audit <user id>` finds what admins did
to that user through the audit DB's (entity_type, entity_id) index, and `/audit <admin id>`
finds what that admin did through its actor index.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from quickcart.db import locks
from quickcart.db.outbox import OutboxMessage
from quickcart.db.sql import run, run_alone
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services.effects import Effects

#: Argument names whose values are never written to the audit: stock contents and secrets.
MASKED_ARGUMENTS = frozenset({"content", "contents", "lines", "units", "stock", "password",
                              "secret", "token", "api_key", "code", "codes", "file_id",
                              "payment_number"})
#: Arguments that name the command's subject, most specific first.
SUBJECT_ARGUMENTS = ("invoice_id", "user_id", "product_id", "stock_id", "review_id", "subject")
#: More non-admin attempts than this within an hour alert the admins.
ATTEMPT_LIMIT = 5
MAX_TEXT = 200
_ACCOUNT_LIKE = re.compile(r"\S+:\S+")


def mask(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the audit keeps them: stock contents and secrets replaced by their
    size, long texts shortened, anything shaped like `account:password` masked."""
    kept: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in ("idempotency_key", "outbox_id"):
            continue
        if name in MASKED_ARGUMENTS:
            size = len(value) if isinstance(value, (str, list, tuple)) else 1
            kept[name] = f"[masked, {size}]"
        elif isinstance(value, str):
            text = _ACCOUNT_LIKE.sub("[masked]", value)
            kept[name] = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
        elif value is None or isinstance(value, (bool, int, float)):
            kept[name] = value
        else:
            kept[name] = str(value)[:MAX_TEXT]
    return kept


def subject_of(arguments: dict[str, Any], actor_id: int) -> str:
    """The id the command is about (its audit key)."""
    for name in SUBJECT_ARGUMENTS:
        value = arguments.get(name)
        if value not in (None, ""):
            return str(value)[:50]
    return str(actor_id)


_EVENT = (
    " INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,"
    " after_state, context)"
    " SELECT a.actor_id, :atype, 'admin_action', coalesce(a.target, a.actor_id::text),"
    " :action, jsonb_build_object('command', a.command, 'arguments', a.arguments,"
    " 'outcome', a.outcome, 'detail', a.detail, 'action_id', a.id),"
    " jsonb_build_object('request_key', a.request_key) FROM a"
)


def command_started(engine: Engine, request_key: str, actor_id: int, command: str,
                    arguments: dict[str, Any]) -> bool:
    """Record that an admin command is about to run; False when this request was already
    recorded (a retry or redelivery). One statement, its own transaction."""
    rows = run_alone(
        engine,
        "WITH a AS (INSERT INTO admin_actions (request_key, actor_id, command, arguments,"
        " target, outcome) VALUES (:k, :u, :c, CAST(:args AS jsonb), :t, 'started')"
        " ON CONFLICT (request_key) DO NOTHING RETURNING *)" + _EVENT + " RETURNING id",
        {"k": request_key[:200], "u": actor_id, "c": command[:50],
         "args": json.dumps(mask(arguments), default=str),
         "t": subject_of(arguments, actor_id), "atype": "admin",
         "action": "command_started"},
    )
    return bool(rows.all())


def command_finished(engine: Engine, request_key: str, outcome: str,
                     detail: dict[str, Any] | None = None) -> bool:
    """Record a command's outcome (done / refused / failed) once; False if already recorded."""
    assert outcome in ("done", "refused", "failed")
    rows = run_alone(
        engine,
        "WITH a AS (UPDATE admin_actions SET outcome = :o, detail = CAST(:d AS jsonb),"
        " finished_at = now() WHERE request_key = :k AND outcome = 'started' RETURNING *)"
        + _EVENT + " RETURNING id",
        {"k": request_key[:200], "o": outcome, "d": json.dumps(detail or {}, default=str),
         "atype": "admin", "action": f"command_{outcome}"},
    )
    return bool(rows.all())


@dataclass(frozen=True)
class Attempt:
    """A non-admin's attempt at an admin command, as recorded."""

    recorded: bool
    attempts_last_hour: int
    alerted: bool
    outbox: list[OutboxMessage] = field(default_factory=list)


def record_attempt(engine: Engine, request_key: str, user_id: int, command: str) -> Attempt:
    """Audit a non-admin's admin command; more than ATTEMPT_LIMIT within an hour alerts the
    admins, at most once per user per hour. Locks: the user row (attempts of one user are
    counted one at a time, so two cannot both decide to alert). Idempotent by request key."""
    with unit_of_work(engine) as uow:
        session = uow.session
        uow.set_actor(user_id, "user", {"attempt": command})
        locks.lock_user(session, user_id)
        inserted = run(
            session,
            "WITH a AS (INSERT INTO admin_actions (request_key, actor_id, command, target,"
            " outcome, finished_at) VALUES (:k, :u, :c, :t, 'unauthorized', now())"
            " ON CONFLICT (request_key) DO NOTHING RETURNING *)" + _EVENT + " RETURNING id",
            {"k": request_key[:200], "u": user_id, "c": command[:50], "t": str(user_id),
             "atype": "user", "action": "unauthorized_attempt"},
        ).all()
        if not inserted:
            return Attempt(False, 0, False)
        effects = Effects(session)
        found = run(
            session,
            "SELECT count(*) AS n, bool_or(alerted) AS alerted FROM admin_actions"
            " WHERE actor_id = :u AND outcome = 'unauthorized'"
            " AND created_at > now() - interval '1 hour'", {"u": user_id}).one()
        alert = int(found.n) > ATTEMPT_LIMIT and not found.alerted
        if alert:
            run(session, "UPDATE admin_actions SET alerted = true WHERE request_key = :k",
                {"k": request_key[:200]})
            effects.admins("admin.attempts_alert", user_id=user_id, count=int(found.n),
                           command=command)
        uow.commit()
        return Attempt(True, int(found.n), alert, effects.messages)


# ------------------------------------------------------------------------------ /audit

@dataclass(frozen=True)
class AuditEntry:
    """One audit entry as /audit shows it."""

    at: datetime
    actor_id: int | None
    actor_type: str
    entity_type: str
    entity_id: str
    action: str
    summary: str


#: Audit entity types keyed by an invoice id.
INVOICE_ENTITIES = ("payment_webhook", "review_decision", "admin_action")
#: Audit entity types keyed by a user id.
USER_ENTITIES = ("users", "admin_action", "admin_grants")
_SUMMARY_KEYS = ("command", "arguments", "outcome", "detail", "status", "amount", "score",
                 "rules", "decision", "reason", "member_status", "is_banned", "account_balance",
                 "paid_at", "delivered_at", "invoice_id", "event_id", "ip")


def _summary(before: Any, after: Any, context: Any) -> str:
    state = after or before or {}
    if before and after:
        state = {k: v for k, v in after.items() if before.get(k) != v}
    picked = {k: state[k] for k in _SUMMARY_KEYS if k in state}
    if isinstance(context, dict) and context.get("reason") and "reason" not in picked:
        picked["reason"] = context["reason"]
    text = ", ".join(f"{k}={json.dumps(v, default=str, ensure_ascii=False)}"
                     for k, v in picked.items())
    return text[:300]


def parse_subject(text: str) -> tuple[str, str]:
    """('invoice', id) or ('id', digits); ShopError('invalid_subject') otherwise."""
    value = text.strip()
    if value.isdigit() and len(value) <= 19:
        return "id", value
    if re.fullmatch(r"[A-Za-z]{2}[A-Za-z0-9-]{4,40}", value):
        return "invoice", value
    raise ShopError("invalid_subject", subject=value[:40])


def _main_rows_of_invoice(engine: Engine, invoice_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = run(conn, "SELECT 'orders' AS t, id::text AS i FROM orders WHERE invoice_id = :v"
                   " UNION ALL SELECT 'deposits', id::text FROM deposits WHERE invoice_id = :v"
                   " UNION ALL SELECT 'risk_reviews', r.id::text FROM risk_reviews r"
                   " LEFT JOIN orders o ON o.id = r.order_id"
                   " LEFT JOIN deposits d ON d.id = r.deposit_id"
                   " WHERE coalesce(o.invoice_id, d.invoice_id) = :v", {"v": invoice_id}).all()
    return [(r.t, r.i) for r in rows]


def query(main: Engine, audit: Engine, subject: str, limit: int = 10) -> list[AuditEntry]:
    """The last `limit` audit entries about `subject` (an invoice, a user id or an admin id),
    newest first, read from the audit DB in a read-only transaction."""
    kind, value = parse_subject(subject)
    limit = max(1, min(int(limit), 50))
    if kind == "invoice":
        pairs = [(t, value) for t in INVOICE_ENTITIES] + _main_rows_of_invoice(main, value)
        where = "(entity_type, entity_id) IN (SELECT * FROM unnest(CAST(:types AS text[])," \
                " CAST(:ids AS text[])))"
        params: dict[str, Any] = {"types": [p[0] for p in pairs], "ids": [p[1] for p in pairs]}
    else:
        where = "(actor_id = CAST(:v AS bigint) OR (entity_type = ANY(CAST(:types AS text[]))" \
                " AND entity_id = :v))"
        params = {"v": value, "types": list(USER_ENTITIES)}
    with audit.connect() as raw:
        conn = raw.execution_options(postgresql_readonly=True)
        with conn.begin():
            rows = run(conn, "SELECT \"timestamp\" AS at, actor_id, actor_type, entity_type,"
                       " entity_id, action, before_state, after_state, context"
                       f" FROM audit_logs WHERE {where} ORDER BY id DESC LIMIT :n",
                       {**params, "n": limit}).all()
    return [AuditEntry(r.at, r.actor_id, r.actor_type, r.entity_type, r.entity_id, r.action,
                       _summary(r.before_state, r.after_state, r.context)) for r in rows]
