"""Registration: a Telegram user becomes a `users` row on first contact."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from quickcart.config import get_settings
from quickcart.db.outbox import OutboxMessage
from quickcart.db.uow import unit_of_work
from quickcart.domain.codes import new_bank_id
from quickcart.services import admin_rights
from quickcart.services.effects import Effects

BANK_ID_ATTEMPTS = 20


@dataclass(frozen=True)
class Registered:
    """The user as registered (or as found)."""

    user_id: int
    bank_id: str
    member_status: str
    is_banned: bool
    language: str
    created: bool
    outbox: list[OutboxMessage] = field(default_factory=list, compare=False)


def register_user(
    engine: Engine, user_id: int, name: str, username: str | None = None,
    language: str | None = None,
) -> Registered:
    """Create the user if new (idempotent: an existing row is returned, its name refreshed).

    Locks nothing up front: INSERT … ON CONFLICT makes concurrent first contacts of one user
    safe, and a bank_id collision (unique) is retried with a fresh random id in a savepoint.
    An id in ADMIN_IDS becomes an 'env' admin (admin_rights; audited as the system), and its
    command-menu refresh is returned in `outbox` for the caller to publish after commit.
    """
    settings = get_settings()
    name = (name or "").strip()[:255] or str(user_id)
    username = (username or "").strip()[:255] or None
    lang = language if language in ("id", "en") else settings.default_language
    env_admin = user_id in settings.admin_ids
    with unit_of_work(engine) as uow:
        uow.set_actor(user_id, "user")
        session = uow.session
        if username:
            # Telegram usernames move between accounts; the newest owner keeps it (UNIQUE).
            session.execute(
                text("UPDATE users SET username = NULL WHERE username = :u AND id <> :id"),
                {"u": username, "id": user_id},
            )
        created = False
        for _ in range(BANK_ID_ATTEMPTS):
            try:
                with session.begin_nested():
                    created = session.execute(
                        text(
                            "INSERT INTO users (id, name, username, bank_id, member_status,"
                            " language) VALUES (:id, :n, :u, :b, :r, :l)"
                            " ON CONFLICT (id) DO NOTHING RETURNING id"
                        ),
                        {"id": user_id, "n": name, "u": username, "b": new_bank_id(),
                         "r": "customer", "l": lang},
                    ).scalar() is not None
                break
            except IntegrityError as exc:
                if "bank_id" not in str(exc.orig):
                    raise
        else:  # pragma: no cover - 20 collisions in a 900,000 space
            raise RuntimeError("could not allocate a bank_id")
        if not created:
            session.execute(
                text(
                    "UPDATE users SET name = :n, username = :u WHERE id = :id"
                    " AND (name IS DISTINCT FROM :n OR username IS DISTINCT FROM :u)"
                    " AND erased_at IS NULL"
                ),
                {"id": user_id, "n": name, "u": username},
            )
            # Writing to the bot again (e.g. /start after unblocking it) makes the user
            # reachable by broadcasts again.
            session.execute(text("UPDATE users SET blocked_bot_at = NULL WHERE id = :id"
                                 " AND blocked_bot_at IS NOT NULL"), {"id": user_id})
        effects = Effects(session)
        if env_admin:
            # Locked first (the name update above may have touched nothing), as the sync locks
            # users before grants. The promotion is the system's doing (ADMIN_IDS), so it is
            # audited as such, after the user's own creation of the row.
            session.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"),
                            {"id": user_id})
            uow.set_actor(None, "system", admin_rights.ENV_CONTEXT)
            admin_rights.grant_env_admins(session, effects, [user_id])
        row = session.execute(
            text("SELECT bank_id, member_status, is_banned, language FROM users WHERE id = :id"),
            {"id": user_id},
        ).one()
        uow.commit()
    return Registered(user_id, row.bank_id, row.member_status, row.is_banned, row.language,
                      created, effects.messages)
