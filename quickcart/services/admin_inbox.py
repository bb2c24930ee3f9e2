"""Notices for admins who have not opened the bot yet: kept, then sent at their first contact.

Telegram answers "chat not found" to a message for a user who never started the bot, so an
admin named in ADMIN_IDS who has not sent /start would lose every notice. The notify worker
keeps such a notice here (at most `KEEP_PER_CHAT` per admin, newest kept) and registration
hands them back as ordinary outbox messages when the admin first writes to the bot.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine

from quickcart.config import get_settings
from quickcart.db import outbox
from quickcart.db.sql import run, sql
from quickcart.db.uow import unit_of_work
from quickcart.services.effects import Effects

KEEP_PER_CHAT = 50


def is_admin_chat(engine: Engine, chat_id: int) -> bool:
    """True for an admin's private chat (ADMIN_IDS or an admin row); groups are not kept."""
    if chat_id in get_settings().admin_ids:
        return True
    with engine.connect() as conn:
        return bool(conn.execute(sql(
            "SELECT EXISTS (SELECT 1 FROM users WHERE id = :c AND member_status = 'admin')"),
            {"c": chat_id}).scalar())


def keep_notice(engine: Engine, chat_id: int, key: str, params: dict[str, Any],
                once_key: str | None) -> bool:
    """Keep one undeliverable admin notice; False when `chat_id` is not an admin's chat.

    Locks nothing: the insert is idempotent on the failed send's `once_key` (a redelivered
    send keeps it once), and the trim keeps the newest `KEEP_PER_CHAT` of that chat."""
    if not is_admin_chat(engine, chat_id):
        return False
    with unit_of_work(engine) as uow:
        run(uow.session, "INSERT INTO admin_pending_notices (chat_id, key, params, once_key)"
            " VALUES (:c, :k, CAST(:p AS jsonb), :o) ON CONFLICT (once_key) DO NOTHING",
            {"c": chat_id, "k": key, "p": json.dumps(params, default=str), "o": once_key})
        run(uow.session, "DELETE FROM admin_pending_notices WHERE chat_id = :c AND id <"
            " (SELECT min(id) FROM (SELECT id FROM admin_pending_notices WHERE chat_id = :c"
            " ORDER BY id DESC LIMIT :n) newest)", {"c": chat_id, "n": KEEP_PER_CHAT})
        uow.commit()
    return True


def release_notices(engine: Engine, chat_id: int) -> list[outbox.OutboxMessage]:
    """Turn the kept notices of `chat_id` into outbox messages, oldest first; returns them to
    publish after commit.

    Deletes the kept rows in the transaction that writes their outbox rows, so a second run
    (or a concurrent one, which waits on the deleted rows) finds nothing to release."""
    with unit_of_work(engine) as uow:
        rows = run(uow.session, "DELETE FROM admin_pending_notices WHERE chat_id = :c"
                   " RETURNING id, key, params", {"c": chat_id}).all()
        if not rows:
            return []
        effects = Effects(uow.session)
        for row in sorted(rows, key=lambda r: r.id):
            effects.notice(chat_id, row.key, dict(row.params))
        uow.commit()
    return effects.messages


def admins_not_opened(engine: Engine) -> list[int]:
    """ADMIN_IDS that have never written to the bot (no user row yet) or that have kept
    notices waiting (Telegram said "chat not found" for them), sorted."""
    settings = get_settings()
    with engine.connect() as conn:
        known = set(conn.execute(sql("SELECT id FROM users WHERE id = ANY(:ids)"),
                                 {"ids": list(settings.admin_ids)}).scalars())
        waiting = set(conn.execute(sql(
            "SELECT DISTINCT chat_id FROM admin_pending_notices")).scalars())
    return sorted((set(settings.admin_ids) - known) | waiting)
