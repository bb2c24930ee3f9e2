"""Admin groups: the group chats that receive admin notices, kept in the database.

ADMIN_GROUP_IDS seeds them ('env' rows, applied at start like ADMIN_IDS); `/whitelist` adds
'command' rows and `/rm` removes them. An 'env' group is removed by taking it out of
ADMIN_GROUP_IDS (the next start drops it), as with ADMIN_IDS admins; /rm says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine

from quickcart.db.sql import sql
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services.admin import admin_work

#: Telegram group and supergroup chat ids are negative (supergroups: -100…).
MIN_GROUP_ID = -(10 ** 15)


@dataclass(frozen=True)
class GroupChange:
    """What /whitelist or /rm did (`changed` False: it was already so)."""

    chat_id: int
    changed: bool


def _check_id(chat_id: int) -> None:
    if isinstance(chat_id, bool) or not MIN_GROUP_ID < chat_id < 0:
        raise ShopError("invalid_group_id", chat_id=chat_id)


def whitelist(engine: Engine, actor_id: int, chat_id: int) -> GroupChange:
    """/whitelist <group id>: notices go to that group too. Locks nothing (the primary key
    decides); idempotent: a listed group stays as it is."""
    _check_id(chat_id)
    with admin_work(engine, actor_id) as uow:
        added = uow.session.execute(sql(
            "INSERT INTO admin_groups (id, source, added_by) VALUES (:g, 'command', :a)"
            " ON CONFLICT (id) DO NOTHING RETURNING id"), {"g": chat_id, "a": actor_id}).scalar()
        uow.commit()
    return GroupChange(chat_id, added is not None)


def remove(engine: Engine, actor_id: int, chat_id: int) -> GroupChange:
    """/rm <group id>: the group gets no more notices. Refuses a group ADMIN_GROUP_IDS names
    (ShopError('env_group')). Locks the row (DELETE); idempotent: an unlisted group is a no-op."""
    _check_id(chat_id)
    with admin_work(engine, actor_id) as uow:
        source = uow.session.execute(sql("SELECT source FROM admin_groups WHERE id = :g"
                                         " FOR UPDATE"), {"g": chat_id}).scalar()
        if source == "env":
            raise ShopError("env_group", chat_id=chat_id)
        if source is None:
            return GroupChange(chat_id, False)
        uow.session.execute(sql("DELETE FROM admin_groups WHERE id = :g"), {"g": chat_id})
        uow.commit()
    return GroupChange(chat_id, True)


def sync_env_groups(engine: Engine, group_ids: Iterable[int]) -> tuple[list[int], list[int]]:
    """Apply ADMIN_GROUP_IDS: listed groups become 'env' rows, 'env' rows it no longer lists are
    dropped. Returns (added, dropped). Locks the rows it writes; idempotent."""
    wanted = sorted({int(g) for g in group_ids if MIN_GROUP_ID < int(g) < 0})
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", {"reason": "ADMIN_GROUP_IDS"})
        session = uow.session
        added = [int(g) for g in session.execute(sql(
            "INSERT INTO admin_groups (id, source) SELECT unnest(CAST(:ids AS bigint[])), 'env'"
            " ON CONFLICT (id) DO UPDATE SET source = 'env' WHERE admin_groups.source <> 'env'"
            " RETURNING id"), {"ids": wanted}).scalars()]
        dropped = [int(g) for g in session.execute(sql(
            "DELETE FROM admin_groups WHERE source = 'env' AND NOT (id = ANY(:ids))"
            " RETURNING id"), {"ids": wanted}).scalars()]
        uow.commit()
    return sorted(added), sorted(dropped)


def group_ids(engine: Engine) -> list[int]:
    """The whitelisted admin groups; a read."""
    with engine.connect() as conn:
        return [int(g) for g in conn.execute(sql("SELECT id FROM admin_groups ORDER BY id"))
                .scalars()]
