"""Admin rights against real PostgreSQL: ADMIN_IDS grants and takes back exactly what it gave,
role commands record and remove 'command' grants, ADMIN_IDS admins cannot be removed by command,
the last admin stays, every change is audited and queues a command-menu refresh."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from quickcart.db import migrate
from quickcart.services import admin, admin_rights, stock_admin
from quickcart.services.registration import register_user
from tests.conftest import scalar
from tests.integration.test_admin_services import refuses
from tests.integration.test_db_rules import make_product, make_user
from tests.integration.test_migrations import scratch_urls  # noqa: F401  (a fixture)

OWNER = 1  # in ADMIN_IDS
HELPER = 2  # made admin by command
CUSTOMER = 3


@pytest.fixture()
def users(db: Engine) -> Engine:
    """Three registered customers."""
    with db.begin() as conn:
        for uid in (OWNER, HELPER, CUSTOMER):
            make_user(conn, uid)
    return db


def roles(engine: Engine) -> dict[int, tuple[str, str | None]]:
    """Each user's role and grant source."""
    with engine.connect() as conn:
        return {int(r.id): (str(r.member_status), r.source) for r in conn.execute(text(
            "SELECT u.id, u.member_status, g.source FROM users u"
            " LEFT JOIN admin_grants g ON g.user_id = u.id ORDER BY u.id"))}


def refreshes(messages: list[Any]) -> list[int]:
    """User ids whose command menu an outbox batch refreshes."""
    return sorted(m.payload["user_id"] for m in messages
                  if m.topic == admin_rights.REFRESH_COMMANDS[0])


def test_sync_grants_env_admins_and_takes_back_only_those(users: Engine) -> None:
    first = admin_rights.sync_env_admins(users, [OWNER, 424242])  # 424242 never registered
    assert (first.promoted, first.demoted) == ((OWNER,), ())
    assert refreshes(first.outbox) == [OWNER]
    assert roles(users)[OWNER] == ("admin", "env")
    assert scalar(users, "SELECT count(*) FROM admin_grants") == 1

    again = admin_rights.sync_env_admins(users, [OWNER])
    assert (again.promoted, again.demoted, again.outbox) == ((), (), [])

    admin_rights.set_role(users, OWNER, HELPER, "admin", env_admin_ids=[OWNER])
    assert roles(users)[HELPER] == ("admin", "command")
    assert scalar(users, "SELECT granted_by FROM admin_grants WHERE user_id = :u",
                  u=HELPER) == OWNER

    removed = admin_rights.sync_env_admins(users, [])  # OWNER taken out of ADMIN_IDS
    assert (removed.promoted, removed.demoted) == ((), (OWNER,))
    assert refreshes(removed.outbox) == [OWNER]
    assert roles(users) == {OWNER: ("customer", None), HELPER: ("admin", "command"),
                            CUSTOMER: ("customer", None)}
    with users.connect() as conn:
        audited = conn.execute(text(
            "SELECT entity_type, action, actor_type, context->>'reason' FROM audit_outbox"
            " WHERE entity_id = :u AND entity_type IN ('users', 'admin_grants')"
            " AND action <> 'create' ORDER BY id"), {"u": str(OWNER)}).all()
    # Promoted, then demoted with the grant deleted: each change recorded as the system's.
    assert sorted(tuple(r) for r in audited) == [
        ("admin_grants", "delete", "system", "ADMIN_IDS"),
        ("users", "update", "system", "ADMIN_IDS"),
        ("users", "update", "system", "ADMIN_IDS"),
    ]
    grant_created = scalar(users, "SELECT actor_type FROM audit_outbox WHERE entity_type ="
                                  " 'admin_grants' AND entity_id = :u AND action = 'create'",
                           u=str(OWNER))
    assert grant_created == "system"


def test_sync_turns_a_command_admin_named_in_admin_ids_into_an_env_admin(users: Engine) -> None:
    admin_rights.sync_env_admins(users, [OWNER])
    admin_rights.set_role(users, OWNER, HELPER, "admin", env_admin_ids=[OWNER])
    admin_rights.sync_env_admins(users, [OWNER, HELPER])
    assert roles(users)[HELPER] == ("admin", "env")
    assert admin_rights.sync_env_admins(users, [OWNER]).demoted == (HELPER,)


def test_an_admin_without_a_grant_row_is_kept_by_the_sync(users: Engine) -> None:
    with users.begin() as conn:  # an admin from before admin_grants existed
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :u"),
                     {"u": HELPER})
    assert admin_rights.sync_env_admins(users, []).demoted == ()
    assert roles(users)[HELPER] == ("admin", None)
    # …and counts as a command admin: /rmadmin may remove them.
    admin_rights.sync_env_admins(users, [OWNER])
    admin_rights.set_role(users, OWNER, HELPER, "customer", from_role="admin",
                          env_admin_ids=[OWNER])
    assert roles(users)[HELPER] == ("customer", None)


def test_rmadmin_refuses_admin_ids_admins_and_removes_command_admins(users: Engine) -> None:
    admin_rights.sync_env_admins(users, [OWNER])
    added = admin_rights.set_role(users, OWNER, HELPER, "admin", env_admin_ids=[OWNER])
    assert added.changed and refreshes(added.outbox) == [HELPER]

    def remove_owner(env_ids: list[int]) -> object:
        return admin_rights.set_role(users, HELPER, OWNER, "customer", from_role="admin",
                                     env_admin_ids=env_ids)

    # Refused by the grant's source (also once the id left ADMIN_IDS, until the sync)…
    assert refuses(users, "env_admin", lambda: remove_owner([OWNER])).params == {"user_id": OWNER}
    assert refuses(users, "env_admin", lambda: remove_owner([])).params == {"user_id": OWNER}
    # …and by ADMIN_IDS itself: a command admin the settings name before a sync recorded it.
    refuses(users, "env_admin", lambda: admin_rights.set_role(
        users, OWNER, HELPER, "customer", from_role="admin", env_admin_ids=[OWNER, HELPER]))
    # /rmress on an admin is no way around it either.
    refuses(users, "role_mismatch", lambda: admin_rights.set_role(
        users, HELPER, OWNER, "customer", from_role="reseller", env_admin_ids=[OWNER]))
    refuses(users, "env_admin", lambda: admin_rights.set_role(
        users, HELPER, OWNER, "reseller", env_admin_ids=[OWNER]))
    refuses(users, "role_mismatch", lambda: admin_rights.set_role(
        users, OWNER, CUSTOMER, "customer", from_role="admin", env_admin_ids=[OWNER]))

    removed = admin_rights.set_role(users, OWNER, HELPER, "customer", from_role="admin",
                                    env_admin_ids=[OWNER])
    assert removed.changed and refreshes(removed.outbox) == [HELPER]
    assert roles(users)[HELPER] == ("customer", None)
    # Repeated (a redelivered task): refused as not an admin, nothing changes.
    refuses(users, "role_mismatch", lambda: admin_rights.set_role(
        users, OWNER, HELPER, "customer", from_role="admin", env_admin_ids=[OWNER]))


def test_the_last_admin_cannot_remove_themselves(users: Engine) -> None:
    with users.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :u"),
                     {"u": HELPER})
    refuses(users, "last_admin", lambda: admin_rights.set_role(
        users, HELPER, HELPER, "customer", from_role="admin", env_admin_ids=[]))
    admin_rights.set_role(users, HELPER, CUSTOMER, "admin", env_admin_ids=[])
    admin_rights.set_role(users, HELPER, HELPER, "customer", from_role="admin",
                          env_admin_ids=[])
    assert roles(users)[HELPER] == ("customer", None)
    assert roles(users)[CUSTOMER] == ("admin", "command")


def test_reseller_commands_leave_grants_alone(users: Engine) -> None:
    admin_rights.sync_env_admins(users, [OWNER])
    change = admin_rights.set_role(users, OWNER, CUSTOMER, "reseller", env_admin_ids=[OWNER])
    assert change.changed and change.outbox == []  # no admin menu involved
    assert roles(users)[CUSTOMER] == ("reseller", None)
    assert admin.set_role(users, OWNER, CUSTOMER, "customer").member_status == "customer"


def test_registration_makes_admin_ids_env_admins(db: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from quickcart.config import get_settings

    monkeypatch.setenv("ADMIN_IDS", "77")
    get_settings.cache_clear()
    try:
        found = register_user(db, 77, "Owner")
        shopper = register_user(db, 78, "Shopper")
    finally:
        monkeypatch.delenv("ADMIN_IDS")
        get_settings.cache_clear()
    assert found.member_status == "admin" and refreshes(found.outbox) == [77]
    assert shopper.member_status == "customer" and shopper.outbox == []
    assert roles(db) == {77: ("admin", "env"), 78: ("customer", None)}
    with db.connect() as conn:
        audited = conn.execute(text(
            "SELECT actor_type, action FROM audit_outbox WHERE entity_type = 'users'"
            " AND entity_id = '77' ORDER BY id")).all()
    # The user created their row; the promotion was ADMIN_IDS's (the system's) doing.
    assert [tuple(r) for r in audited] == [("user", "create"), ("system", "update")]
    # Out of ADMIN_IDS, the next sync takes the role back.
    assert admin_rights.sync_env_admins(db, []).demoted == (77,)


def test_product_exists(db: Engine) -> None:
    with db.begin() as conn:
        make_product(conn, 5)
    assert stock_admin.product_exists(db, 5) is True
    assert stock_admin.product_exists(db, 999) is False
    assert stock_admin.product_exists(db, 0) is False
    assert stock_admin.product_exists(db, 10**40) is False


def test_upgrade_backfills_existing_admins_as_command_admins(
        scratch_urls: tuple[str, str]) -> None:  # noqa: F811
    main, _audit = scratch_urls
    migrate.ensure_database(main)
    migrate.upgrade("main", main, "0007_admin_pending_notices")
    engine = create_engine(main)
    try:
        with engine.begin() as conn:
            for uid in (11, 12, 13):
                make_user(conn, uid, bank_id=str(100000 + uid))
            conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id IN (11, 12)"))
        migrate.upgrade("main", main)
        # Nobody is demoted by the upgrade: existing admins count as command admins.
        assert roles(engine) == {11: ("admin", "command"), 12: ("admin", "command"),
                                 13: ("customer", None)}
        with engine.connect() as conn:
            actors = conn.execute(text(
                "SELECT actor_type FROM audit_outbox WHERE entity_type = 'admin_grants'")).all()
        assert [tuple(r) for r in actors] == [("system",), ("system",)]
        # …so the sync leaves them alone, and /rmadmin may remove one.
        assert admin_rights.sync_env_admins(engine, []).demoted == ()
        admin_rights.set_role(engine, 12, 11, "customer", from_role="admin", env_admin_ids=[])
        assert roles(engine)[11] == ("customer", None)
        migrate.downgrade("main", main, "0007_admin_pending_notices")
        assert scalar(engine, "SELECT to_regclass('admin_grants')") is None
    finally:
        engine.dispose()
