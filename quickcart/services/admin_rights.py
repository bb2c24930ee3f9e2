"""Admin rights: who is an admin, and why.

Admins come only from ADMIN_IDS ('env') and from admins' own role commands ('command'); the
source of each admin's rights is a row of `admin_grants`, removed with the role. ADMIN_IDS is
applied by `sync_env_admins` at bot start and by registration at first contact: ids in it become
'env' admins, and 'env' admins no longer in it go back to customer. Command admins are removed by
/rmadmin; an ADMIN_IDS admin cannot be (the owner removes the id from ADMIN_IDS and restarts).
An admin without a grant row (made before the table existed, or by direct SQL) counts as a
command admin: nobody loses rights by surprise.

Every change runs in one unit of work (audited: users and admin_grants carry the capture
triggers) and queues a refresh of that user's Telegram command menu in the outbox.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from quickcart.config import get_settings
from quickcart.db.outbox import OutboxMessage
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.domain.pricing import ROLES
from quickcart.services.admin import admin_work, lock_admins_and
from quickcart.services.effects import Effects

ENV = "env"
COMMAND = "command"
#: The worker task that makes one chat's command menu match the user's role (or, with no
#: user, the default menu and every admin's).
REFRESH_COMMANDS = ("quickcart.refresh_bot_commands", "notify")
#: The audit context of changes made because of ADMIN_IDS.
ENV_CONTEXT = {"reason": "ADMIN_IDS"}


@dataclass(frozen=True)
class SyncResult:
    """What applying ADMIN_IDS changed."""

    promoted: tuple[int, ...]
    demoted: tuple[int, ...]
    outbox: list[OutboxMessage] = field(default_factory=list, compare=False)


@dataclass(frozen=True)
class RoleChange:
    """A user's role after a role command, and the effects to publish after commit."""

    user_id: int
    member_status: str
    is_banned: bool
    changed: bool
    outbox: list[OutboxMessage] = field(default_factory=list, compare=False)


def _ids(values: Iterable[int]) -> list[int]:
    return sorted({int(v) for v in values})


def grant_env_admins(session: Session, effects: Effects,
                     admin_ids: Collection[int]) -> list[int]:
    """Make every registered, not erased id of `admin_ids` an 'env' admin, in the caller's
    transaction (under its audit actor); returns the ids whose role changed.

    The caller holds those users' row locks, or inserted the row itself (registration). An
    existing 'command' grant becomes 'env': ADMIN_IDS is then what keeps this admin.
    """
    ids = _ids(admin_ids)
    if not ids:
        return []
    promoted = sorted(int(i) for i in session.execute(
        text("UPDATE users SET member_status = 'admin' WHERE id = ANY(:ids)"
             " AND member_status <> 'admin' AND erased_at IS NULL RETURNING id"),
        {"ids": ids}).scalars())
    session.execute(
        text("INSERT INTO admin_grants (user_id, source)"
             " SELECT id, 'env' FROM users WHERE id = ANY(:ids) AND member_status = 'admin'"
             " ON CONFLICT (user_id) DO UPDATE SET source = 'env', granted_by = NULL,"
             " granted_at = now() WHERE admin_grants.source <> 'env'"),
        {"ids": ids})
    for user_id in promoted:
        effects.add(REFRESH_COMMANDS, {"user_id": user_id})
    return promoted


def sync_env_admins(engine: Engine, admin_ids: Collection[int]) -> SyncResult:
    """Apply ADMIN_IDS: its registered ids become 'env' admins, and 'env' admins it no longer
    names go back to customer (audited, actor system).

    Locks every admin row and the ADMIN_IDS rows in id order (lock_admins_and, as role commands
    do), so a concurrent /addadmin or /rmadmin cannot interleave. Idempotent: a second run with
    the same ids changes nothing. An ADMIN_IDS emptied of every admin leaves the shop without
    admins: that is the owner's explicit choice, so it is not refused.
    """
    ids = _ids(admin_ids)
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", ENV_CONTEXT)
        session = uow.session
        lock_admins_and(session, ids)
        effects = Effects(session)
        promoted = grant_env_admins(session, effects, ids)
        demoted = sorted(int(i) for i in session.execute(
            text("WITH gone AS (DELETE FROM admin_grants WHERE source = 'env'"
                 " AND NOT (user_id = ANY(:ids)) RETURNING user_id)"
                 " UPDATE users SET member_status = 'customer' FROM gone"
                 " WHERE users.id = gone.user_id AND users.member_status = 'admin'"
                 " RETURNING users.id"),
            {"ids": ids}).scalars())
        for user_id in demoted:
            effects.add(REFRESH_COMMANDS, {"user_id": user_id})
        uow.commit()
    return SyncResult(tuple(promoted), tuple(demoted), effects.messages)


def set_role(engine: Engine, actor_id: int, user_id: int, role: str, *,
             from_role: str | None = None,
             env_admin_ids: Collection[int] | None = None) -> RoleChange:
    """A role command: make a user customer, reseller or admin.

    Refuses (ShopError) when the target is not in `from_role` ('role_mismatch': /rmadmin of a
    non-admin), when it would take an ADMIN_IDS admin's rights ('env_admin': only ADMIN_IDS can),
    and when it would demote the last admin ('last_admin'). A new admin's grant is recorded as
    'command' (granted_by the actor); a demoted admin's grant is removed. `env_admin_ids`
    defaults to the settings' ADMIN_IDS.

    Locks all admin rows and the target (lock_admins_and), so two admins demoting each other at
    once cannot leave the shop without one. Idempotent: setting the current role is a no-op.
    """
    if role not in ROLES:
        raise ShopError("invalid_role", role=role)
    if from_role is not None and from_role not in ROLES:
        raise ShopError("invalid_role", role=from_role)
    env_ids = set(get_settings().admin_ids if env_admin_ids is None else env_admin_ids)
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        rows = {row.id: row for row in lock_admins_and(session, (user_id, actor_id))}
        actor = rows.get(actor_id)
        if actor is None or actor.member_status != "admin":
            raise ShopError("not_admin", actor_id=actor_id)
        target = rows.get(user_id)
        if target is None:
            raise ShopError("user_not_found", user_id=user_id)
        if from_role is not None and target.member_status != from_role:
            raise ShopError("role_mismatch", user_id=user_id, role=from_role)
        changed = target.member_status != role
        effects = Effects(session)
        if changed and target.member_status == "admin":
            source = session.execute(
                text("SELECT source FROM admin_grants WHERE user_id = :u"),
                {"u": user_id}).scalar()
            if source == ENV or user_id in env_ids:
                raise ShopError("env_admin", user_id=user_id)
            others = [r for r in rows.values() if r.member_status == "admin" and r.id != user_id
                      and not r.is_banned and r.erased_at is None]
            if not others:
                raise ShopError("last_admin", user_id=user_id)
            session.execute(text("DELETE FROM admin_grants WHERE user_id = :u"),
                            {"u": user_id})
        if changed:
            session.execute(text("UPDATE users SET member_status = :r WHERE id = :u"),
                            {"r": role, "u": user_id})
            if role == "admin":
                session.execute(
                    text("INSERT INTO admin_grants (user_id, source, granted_by)"
                         " VALUES (:u, 'command', :a) ON CONFLICT (user_id) DO UPDATE"
                         " SET source = 'command', granted_by = :a, granted_at = now()"),
                    {"u": user_id, "a": actor_id})
            if "admin" in (role, target.member_status):
                effects.add(REFRESH_COMMANDS, {"user_id": user_id})
        uow.commit()
    return RoleChange(user_id, role, target.is_banned, changed, effects.messages)


def chat_menu_language(engine: Engine, user_id: int) -> str | None:
    """The language of `user_id`'s admin command menu, or None when their chat shows only the
    shopper commands (not an admin, banned or erased); a read that locks nothing."""
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT coalesce(language, 'id') FROM users WHERE id = :u"
                 " AND member_status = 'admin' AND NOT is_banned AND erased_at IS NULL"),
            {"u": user_id}).scalar()
    return None if value is None else str(value)


def menu_admins(engine: Engine) -> list[tuple[int, str]]:
    """Every admin whose chat shows the admin commands, with their language (a read)."""
    with engine.connect() as conn:
        return [(int(r.id), str(r.language or "id")) for r in conn.execute(
            text("SELECT id, language FROM users WHERE member_status = 'admin'"
                 " AND NOT is_banned AND erased_at IS NULL ORDER BY id")).all()]


def grant_source(engine: Engine, user_id: int) -> str | None:
    """Where `user_id`'s admin rights came from ('env', 'command'), or None (a read)."""
    with engine.connect() as conn:
        value = conn.execute(text("SELECT source FROM admin_grants WHERE user_id = :u"),
                             {"u": user_id}).scalar()
    return None if value is None else str(value)
