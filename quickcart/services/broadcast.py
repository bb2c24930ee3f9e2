"""Broadcasts: one message to many shoppers, resumable, each addressee served at most once.

A broadcast is a row in `broadcasts` and one `broadcast_recipients` row per addressee, written
in one transaction (idempotent on the admin's intent key). One slice execution at a time sends
it, holding a lease in `broadcast_runners` (a slice message delivered twice runs once); it
claims an addressee (pending → sending, committed) before the send and records the outcome after
(sent / failed / blocked). A worker that dies leaves its lease to lapse; the next runner takes
over and turns the dead runner's in-flight addressees into 'unsure': their message may have gone
out, and Telegram has no idempotency key, so they are never sent again (no one gets a broadcast
twice) and count as sent, unconfirmed. Users who blocked the bot are marked
(users.blocked_bot_at) and left out of later broadcasts. Sends are paced (`rate_per_second`,
default 30/s: a ceiling, the shared send limits keep Telegram's figure and spread a broadcast's
sends evenly, behind every other class) in small slices that re-queue themselves, so a delivery
queued behind a broadcast waits for one slice at most.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from quickcart.adapters.telegram_api import (
    TelegramChatNotFound,
    TelegramError,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramUnavailable,
    TelegramUnsure,
)
from quickcart.db.sql import Record, sql
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.messages import render
from quickcart.services.admin import admin_work

KINDS = ("text", "photo", "giveaway", "restock")
MAX_TEXT = 3500
MAX_ATTEMPTS = 3
#: A runner renews its lease with every claim; one that stops renewing for this long is dead.
LEASE_SECONDS = 20
#: Sends per slice (one task run) when the broadcast is not paced per second.
SLICE = 50


class BroadcastSettings(BaseSettings):
    """BROADCAST_RATE_PER_SECOND: messages per second a broadcast sends at most."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # A ceiling: the shared limiter (quickcart.adapters.rate_limit) keeps Telegram's 30/s, puts
    # broadcasts behind every other class and spreads their slots evenly, so a broadcast may
    # fill the pipe when nothing else needs it (issue 25: ≥ 0.9× the limit while there is work).
    broadcast_rate_per_second: int = 30


@dataclass(frozen=True)
class Started:
    """A broadcast that exists (created now or by an earlier run of the same intent)."""

    broadcast_id: int
    total: int
    created: bool


@dataclass(frozen=True)
class Report:
    """A finished broadcast's outcome, for the admin (unsure counts as sent)."""

    broadcast_id: int
    created_by: int
    kind: str
    total: int
    sent: int
    unsure: int
    failed: int
    blocked: int


@dataclass(frozen=True)
class Slice:
    """What one run of the sender did."""

    sent: int
    finished: Report | None
    more: bool
    wait_seconds: float


# ------------------------------------------------------------------ starting

def start(engine: Engine, actor_id: int, intent_key: str, kind: str, body: str,
          params: dict[str, Any] | None = None, photo_file_id: str | None = None,
          rate_per_second: int | None = None, status_message_id: int | None = None) -> Started:
    """Create a broadcast to every non-banned shopper who has not blocked the bot, as admin
    `actor_id` (`status_message_id`: the admin's message that shows its progress). Locks
    nothing but its intent key's row; idempotent per `intent_key`."""
    if kind not in KINDS:
        raise ValueError(f"unknown broadcast kind {kind!r}")
    if kind in ("text", "photo") and (not body.strip() or len(body) > MAX_TEXT):
        raise ShopError("invalid_text", field="broadcast")
    with admin_work(engine, actor_id) as uow:
        started = _create(uow.session, actor_id, intent_key, kind, body, params, photo_file_id,
                          rate_per_second, None, status_message_id)
        uow.commit()
    return started


def _create(session: Session, actor_id: int, intent_key: str, kind: str, body: str,
            params: dict[str, Any] | None, photo_file_id: str | None,
            rate_per_second: int | None, only: list[int] | None,
            status_message_id: int | None = None) -> Started:
    """The broadcast row and its addressees (those of `only`, when given), in the caller's
    transaction; an intent key seen before returns that broadcast."""
    row = session.execute(sql(
        "INSERT INTO broadcasts (intent_key, created_by, message_kind, body, params,"
        " photo_file_id, rate_per_second, status_message_id)"
        " VALUES (:k, :a, :kind, :b, CAST(:p AS jsonb), :f, :r, :m)"
        " ON CONFLICT (intent_key) DO NOTHING RETURNING id"),
        {"k": intent_key, "a": actor_id, "kind": kind, "b": body,
         "p": json.dumps(params, default=str) if params is not None else None,
         "f": photo_file_id, "r": rate_per_second, "m": status_message_id}).scalar()
    if row is None:
        found = session.execute(sql("SELECT id, total FROM broadcasts WHERE intent_key = :k"),
                                {"k": intent_key}).one()
        return Started(int(found.id), int(found.total), False)
    total = int(session.connection().execute(sql(
        "INSERT INTO broadcast_recipients (broadcast_id, user_id) SELECT :b, id FROM users"
        " WHERE NOT is_banned AND erased_at IS NULL AND blocked_bot_at IS NULL"
        " AND (CAST(:only AS bigint[]) IS NULL OR id = ANY(CAST(:only AS bigint[])))"
        " ORDER BY id"), {"b": row, "only": only}).rowcount or 0)
    session.execute(sql("UPDATE broadcasts SET total = :t WHERE id = :b"), {"t": total, "b": row})
    return Started(int(row), total, True)


def start_restock_notice(engine: Engine, actor_id: int, product_id: int,
                         intent_key: str) -> Started | None:
    """Stock was added: the shoppers who pressed "🔔 Kabari saya" for the product get one
    message. Their watches are taken (deleted) in the transaction that creates the broadcast,
    so each hears once; None when nobody waits or the product has no free stock. Locks the
    watch rows (DELETE)."""
    with unit_of_work(engine) as uow:
        uow.set_actor(actor_id, "admin", {"reason": "restock notice"})
        session = uow.session
        product = session.execute(sql(
            "SELECT p.id, p.name FROM products p WHERE p.id = :p AND p.is_active AND EXISTS"
            " (SELECT 1 FROM product_stocks s WHERE s.product_id = p.id AND NOT s.is_sold"
            " AND s.order_id IS NULL)"), {"p": product_id}).first()
        if product is None:
            return None
        users = [int(u) for u in session.execute(sql(
            "DELETE FROM restock_watches WHERE product_id = :p RETURNING user_id"),
            {"p": product_id}).scalars()]
        if not users:
            return None
        started = _create(session, actor_id, intent_key, "restock", N_("restock.available"),
                          {"product_id": product_id, "name": product.name}, None, None, users)
        uow.commit()
    return started


# ------------------------------------------------------------------ sending

#: Running broadcasts whose runner is gone (no lease or a lapsed one): `running` lists them,
#: beat's check (quickcart.services.housekeeping) asks whether there is one.
ORPHANED = ("FROM broadcasts b LEFT JOIN broadcast_runners r ON r.broadcast_id = b.id"
            " WHERE b.status = 'running' AND (r.lease_until IS NULL OR r.lease_until < now())")


def running(engine: Engine) -> list[int]:
    """Broadcasts still running whose runner is gone (no lease or a lapsed one); a read."""
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(sql(
            "SELECT b.id " + ORPHANED + " ORDER BY b.id")).scalars()]


def _take_lease(engine: Engine, broadcast_id: int, runner: str, execution: str) -> bool:
    """Become the broadcast's only sender as `execution`, one run of the chain of slices
    `runner` (each slice passes the token to the next). It may start at once when the chain's
    previous slice ended (it left no execution) or when the lease lapsed (its holder is dead);
    never while another execution holds it, even of the same chain (a slice message delivered
    twice). Taking a lapsed lease, any 'sending' addressee belongs to the dead holder: it
    becomes 'unsure' (never re-sent). Locks the runner row."""
    with engine.begin() as conn:
        taken = conn.execute(sql(
            "INSERT INTO broadcast_runners (broadcast_id, runner, execution, lease_until)"
            " SELECT b.id, :r, :e, now() + make_interval(secs => :s) FROM broadcasts b"
            " WHERE b.id = :b AND b.status = 'running'"
            " ON CONFLICT (broadcast_id) DO UPDATE SET runner = EXCLUDED.runner,"
            " execution = EXCLUDED.execution, lease_until = EXCLUDED.lease_until"
            " WHERE (broadcast_runners.runner = EXCLUDED.runner"
            " AND broadcast_runners.execution IS NULL)"
            " OR broadcast_runners.lease_until < now()"
            " RETURNING broadcast_id"),
            {"b": broadcast_id, "r": runner, "e": execution, "s": LEASE_SECONDS}).first()
        if taken is None:
            return False
        # Any 'sending' row now belongs to an execution that is gone (this one has none yet).
        conn.execute(sql(
            "UPDATE broadcast_recipients SET status = 'unsure', done_at = now()"
            " WHERE broadcast_id = :b AND status = 'sending'"), {"b": broadcast_id})
    return True


def _next_due(engine: Engine, broadcast_id: int) -> Record | None:
    """The next pending addressee that is due, and their language; a read (the one runner
    claims it after its turn to send comes)."""
    with engine.connect() as conn:
        return _due(conn, broadcast_id)


def _due(conn: Connection, broadcast_id: int) -> Record | None:
    return conn.execute(sql(
        "SELECT r.user_id, u.language FROM broadcast_recipients r"
        " JOIN users u ON u.id = r.user_id WHERE r.broadcast_id = :b"
        " AND r.status = 'pending' AND (r.not_before IS NULL OR r.not_before <= now())"
        " ORDER BY r.user_id LIMIT 1"), {"b": broadcast_id}).first()


def _claim(engine: Engine, broadcast_id: int, execution: str, user_id: int) -> int | None:
    """Renew the lease and claim addressee `user_id` (pending → sending), committed just
    before the send; returns the attempt number, None when the lease is lost or the
    addressee is no longer pending."""
    with engine.begin() as conn:
        lease = conn.execute(sql(
            "UPDATE broadcast_runners SET lease_until = now() + make_interval(secs => :s)"
            " WHERE broadcast_id = :b AND execution = :e RETURNING broadcast_id"),
            {"b": broadcast_id, "e": execution, "s": LEASE_SECONDS}).scalar()
        if lease is None:
            return None
        attempts = conn.execute(sql(
            "UPDATE broadcast_recipients SET status = 'sending', claimed_at = now(),"
            " attempts = attempts + 1 WHERE broadcast_id = :b AND user_id = :u"
            " AND status = 'pending' RETURNING attempts"),
            {"b": broadcast_id, "u": user_id}).scalar()
    return None if attempts is None else int(attempts)


def _settle(engine: Engine, broadcast_id: int, user_id: int, status: str,
            retry_in: float | None = None) -> Record | None:
    """Record one addressee's outcome ('pending' again with a delay when it may be retried);
    returns the next due addressee, read in the same round trip's transaction."""
    with engine.begin() as conn:
        if status == "pending":
            conn.execute(sql(
                "UPDATE broadcast_recipients SET status = 'pending', claimed_at = NULL,"
                " not_before = now() + make_interval(secs => :d)"
                " WHERE broadcast_id = :b AND user_id = :u AND status = 'sending'"),
                {"b": broadcast_id, "u": user_id, "d": retry_in or 0})
            return _due(conn, broadcast_id)
        conn.execute(sql(
            "UPDATE broadcast_recipients SET status = :st, done_at = now()"
            " WHERE broadcast_id = :b AND user_id = :u AND status = 'sending'"),
            {"b": broadcast_id, "u": user_id, "st": status})
        if status == "blocked":
            conn.execute(sql("UPDATE users SET blocked_bot_at = now() WHERE id = :u"
                             " AND blocked_bot_at IS NULL"), {"u": user_id})
        return _due(conn, broadcast_id)


def _finish(engine: Engine, broadcast_id: int) -> Report | None:
    """Close the broadcast when no addressee is pending or in flight; returns the report to
    the one caller that closed it (None otherwise)."""
    with engine.begin() as conn:
        open_rows = conn.execute(sql(
            "SELECT 1 FROM broadcast_recipients WHERE broadcast_id = :b"
            " AND status IN ('pending', 'sending') LIMIT 1"), {"b": broadcast_id}).scalar()
        if open_rows:
            return None
        row = conn.execute(sql(
            "WITH c AS (SELECT count(*) FILTER (WHERE status = 'sent') AS sent,"
            " count(*) FILTER (WHERE status = 'unsure') AS unsure,"
            " count(*) FILTER (WHERE status = 'failed') AS failed,"
            " count(*) FILTER (WHERE status = 'blocked') AS blocked"
            " FROM broadcast_recipients WHERE broadcast_id = :b)"
            " UPDATE broadcasts b SET status = 'done', finished_at = now(),"
            " sent = c.sent + c.unsure, failed = c.failed, blocked = c.blocked FROM c"
            " WHERE b.id = :b AND b.status = 'running'"
            " RETURNING b.id, b.created_by, b.message_kind AS kind, b.total, c.sent, c.unsure,"
            " c.failed,"
            " c.blocked"), {"b": broadcast_id}).first()
        conn.execute(sql("DELETE FROM broadcast_runners WHERE broadcast_id = :b"),
                     {"b": broadcast_id})
    if row is None:
        return None
    return Report(int(row.id), int(row.created_by), str(row.kind), int(row.total),
                  int(row.sent) + int(row.unsure), int(row.unsure), int(row.failed),
                  int(row.blocked))


def message_of(engine: Engine, broadcast_id: int) -> Record | None:
    """The broadcast's kind, body, params, photo, pace, status, author, size and the admin's
    status message; a read."""
    with engine.connect() as conn:
        return conn.execute(sql(
            "SELECT id, message_kind AS kind, body, params, photo_file_id, rate_per_second,"
            " status, created_by, total, status_message_id"
            " FROM broadcasts WHERE id = :b"), {"b": broadcast_id}).first()


def set_status_message(engine: Engine, broadcast_id: int, message_id: int) -> None:
    """Record the admin's status message (sent when the broadcast had none); one UPDATE of the
    broadcast row, by its one runner."""
    with engine.begin() as conn:
        conn.execute(sql("UPDATE broadcasts SET status_message_id = :m WHERE id = :b"),
                     {"m": message_id, "b": broadcast_id})


def render_for(message: Record, language: str) -> str:
    """The text one addressee reads (admin text framed by the catalog, or a catalog message)."""
    if message.kind in ("text", "photo"):
        return render("broadcast.message", language, text=message.body)
    return render(str(message.body), language, **(message.params or {}))


#: send(chat_id, text): one message, posted at most once (no retry after it may have left),
#: raising the Bot API client's errors (TelegramUnsure when it may have reached Telegram).
Send = Callable[[int, str], None]
#: pace(chat_id): wait for the turn to send to `chat_id` under the shared limits (SendLater
#: when that is longer than a worker waits); called before the addressee is claimed.
Pace = Callable[[int], None]


def send_slice(engine: Engine, broadcast_id: int, runner: str, send: Send,
               default_rate: int | None = None,
               clock: Callable[[], float] = time.monotonic,
               message: Record | None = None, pace: Pace | None = None) -> Slice:
    """Send the next slice of a broadcast as its only runner: up to `rate` messages (one
    second's worth) or SLICE when unpaced. Each addressee is claimed (committed) after the
    wait for its turn and just before its send, so a crash leaves in doubt only a send that
    had started; `message` is the caller's `message_of` read, if it made one. Idempotent
    across crashes and duplicate runs (lease + per-addressee claims)."""
    message = message or message_of(engine, broadcast_id)
    if message is None or message.status != "running":
        return Slice(0, None, False, 0)
    execution = uuid.uuid4().hex
    if not _take_lease(engine, broadcast_id, runner, execution):
        return Slice(0, None, False, 0)  # another execution has it
    rate = message.rate_per_second or default_rate or BroadcastSettings().broadcast_rate_per_second
    budget = min(rate, SLICE) if rate else SLICE
    started = clock()
    sent = 0
    wait = 0.0
    due = _next_due(engine, broadcast_id)
    for _ in range(budget):
        if due is None:
            break
        user_id = int(due.user_id)
        text = render_for(message, str(due.language or "id"))
        try:
            if pace is not None:
                pace(user_id)
        except TelegramRetryAfter as exc:  # our limits ask for a longer wait: nothing claimed
            wait = max(wait, float(exc.retry_after))
            break
        attempts = _claim(engine, broadcast_id, execution, user_id)
        if attempts is None:
            break  # the lease went to another runner
        outcome = _send_once(send, user_id, text, attempts)
        if isinstance(outcome, float):
            _settle(engine, broadcast_id, user_id, "pending", outcome)
            wait = max(wait, outcome)
            break
        if outcome == "retry":
            due = _settle(engine, broadcast_id, user_id, "pending", 2.0)
            continue
        due = _settle(engine, broadcast_id, user_id, outcome)
        sent += outcome == "sent"
    report = _finish(engine, broadcast_id)
    if report is None:
        elapsed = clock() - started
        if rate and budget >= rate:
            wait = max(wait, 1.0 - elapsed)
        _extend(engine, broadcast_id, execution, wait)
        with engine.connect() as conn:
            # Only retries waiting for their delay are left: come back when the first is due.
            due = conn.execute(sql(
                "SELECT extract(epoch FROM min(not_before) - now()) FROM broadcast_recipients"
                " WHERE broadcast_id = :b AND status = 'pending'"), {"b": broadcast_id}).scalar()
        if due is not None:
            wait = max(wait, float(due))
    return Slice(sent, report, report is None, max(wait, 0.0))


def _send_once(send: Send, user_id: int, text: str, attempts: int) -> str | float:
    """One claimed addressee's send: its outcome ('sent', 'unsure', 'blocked', 'failed',
    'retry' when nothing left and it may be tried again), or the seconds to wait before
    trying again when Telegram or our limits asked to wait (nothing was sent)."""
    try:
        send(user_id, text)
    except TelegramRetryAfter as exc:
        return float(exc.retry_after)
    except (TelegramForbidden, TelegramChatNotFound):
        return "blocked"
    except TelegramUnsure:
        # It may have reached Telegram: never sent again, reported as unconfirmed.
        return "unsure"
    except TelegramUnavailable:
        # Nothing left (the request never went out): tried a few times, then counted failed.
        return "retry" if attempts < MAX_ATTEMPTS else "failed"
    except TelegramError:
        return "failed"  # refused by Telegram: nothing was sent
    except Exception:  # noqa: BLE001 - not the client's error: whether it left is unknown
        return "unsure"
    return "sent"


def _extend(engine: Engine, broadcast_id: int, execution: str, wait: float) -> None:
    """End this slice's hold: the lease stays the chain's over the pause before its next slice
    (same runner token), with no execution, so that slice may start at once."""
    with engine.begin() as conn:
        conn.execute(sql(
            "UPDATE broadcast_runners SET lease_until = now() + make_interval(secs => :s),"
            " execution = NULL WHERE broadcast_id = :b AND execution = :e"),
            {"b": broadcast_id, "e": execution, "s": LEASE_SECONDS + wait})


def progress(engine: Engine, broadcast_id: int) -> dict[str, int]:
    """How many addressees are in each state; a read."""
    with engine.connect() as conn:
        return {str(s): int(n) for s, n in conn.execute(sql(
            "SELECT status, count(*) FROM broadcast_recipients WHERE broadcast_id = :b"
            " GROUP BY status"), {"b": broadcast_id}).all()}


def finished_at(engine: Engine, broadcast_id: int) -> datetime | None:
    """When the broadcast finished (None while it runs); a read."""
    with engine.connect() as conn:
        value = conn.execute(sql("SELECT finished_at FROM broadcasts WHERE id = :b"),
                             {"b": broadcast_id}).scalar()
    return value if isinstance(value, datetime) else None
