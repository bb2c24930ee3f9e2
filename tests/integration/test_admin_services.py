"""Admin services against real PostgreSQL: effects, refusals that change nothing,
retries that act once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from quickcart.domain.errors import ShopError
from quickcart.services import admin
from quickcart.services import stock_admin as units
from tests.conftest import scalar
from tests.integration.test_db_rules import (
    make_admin,
    make_order,
    make_product,
    make_stock,
    make_user,
)

ADMIN = 1
ADMIN2 = 2
CUSTOMER = 3
PRODUCT = 10


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """Admin 1, customer 3 and product 10 (Rp10.000)."""
    with db.begin() as conn:
        make_admin(conn, ADMIN)
        make_user(conn, CUSTOMER)
        make_product(conn, PRODUCT)
    return db


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything an admin service could change."""
    with engine.connect() as conn:
        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(text(sql))]
        return {
            "users": rows("SELECT id, member_status, is_banned, account_balance FROM users"
                          " ORDER BY id"),
            "products": rows("SELECT id, name, category, description, customer_price,"
                             " reseller_price, is_active FROM products ORDER BY id"),
            "stock": rows("SELECT id, product_id, content, order_id, is_sold FROM product_stocks"
                          " ORDER BY id"),
            "ledger": rows("SELECT id, user_id, amount FROM balance_ledger ORDER BY id"),
            "audit": rows("SELECT count(*) FROM audit_outbox"),
        }


def refuses(engine: Engine, code: str, call: Callable[[], object]) -> ShopError:
    """`call` raises ShopError(code) and leaves every table as it was."""
    before = snapshot(engine)
    with pytest.raises(ShopError) as info:
        call()
    assert info.value.code == code
    assert snapshot(engine) == before
    return info.value


def add_admin(engine: Engine, user_id: int = ADMIN2) -> None:
    with engine.begin() as conn:
        make_admin(conn, user_id)


def ledger_matches(engine: Engine) -> bool:
    return scalar(engine, "SELECT bool_and(u.account_balance = coalesce(l.total, 0)) FROM users u"
                          " LEFT JOIN (SELECT user_id, sum(amount) AS total FROM balance_ledger"
                          " GROUP BY user_id) l ON l.user_id = u.id") is True


# ------------------------------------------------------------------ products

def test_create_product(shop: Engine) -> None:
    view = admin.create_product(shop, ADMIN, 11, " Netflix 1 bulan ", "Streaming", "Rp 25.000",
                                "Akun sharing")
    assert view == admin.ProductView(11, "Netflix 1 bulan", "Streaming", "Akun sharing",
                                     Decimal("25000"), None, True)
    assert scalar(shop, "SELECT customer_price FROM products WHERE id = 11") == Decimal("25000")
    assert scalar(shop, "SELECT actor_id FROM audit_outbox WHERE entity_type = 'products'"
                        " AND entity_id = '11'") == ADMIN
    assert admin.create_product(shop, ADMIN, 12, "X", "", 1000, None).category == "Uncategorized"


@pytest.mark.parametrize("price", [0, "-5", "abc", "10.5", Decimal("0.5"), 1.5, None])
def test_create_product_invalid_price(shop: Engine, price: Any) -> None:
    refuses(shop, "invalid_price", lambda: admin.create_product(shop, ADMIN, 11, "N", "C", price,
                                                                None))


def test_create_product_refusals(shop: Engine) -> None:
    refuses(shop, "product_exists",
            lambda: admin.create_product(shop, ADMIN, PRODUCT, "Again", "C", 5000, None))
    refuses(shop, "not_admin",
            lambda: admin.create_product(shop, CUSTOMER, 11, "N", "C", 5000, None))
    refuses(shop, "not_admin", lambda: admin.create_product(shop, 999, 11, "N", "C", 5000, None))
    refuses(shop, "invalid_product_id",
            lambda: admin.create_product(shop, ADMIN, 0, "N", "C", 5000, None))
    refuses(shop, "invalid_text", lambda: admin.create_product(shop, ADMIN, 11, " ", "C", 5000))


def test_banned_admin_is_not_an_admin(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("UPDATE users SET is_banned = true WHERE id = :a"), {"a": ADMIN})
    refuses(shop, "not_admin", lambda: admin.create_product(shop, ADMIN, 11, "N", "C", 5000))


def test_update_product(shop: Engine) -> None:
    view = admin.update_product(shop, ADMIN, PRODUCT, name="New", customer_price="15.000",
                                reseller_price=12000, description="d", category="Games")
    assert (view.name, view.customer_price, view.reseller_price, view.category) == (
        "New", Decimal("15000"), Decimal("12000"), "Games")
    view = admin.update_product(shop, ADMIN, PRODUCT, reseller_price=None, is_active=False)
    assert view.reseller_price is None and view.is_active is False
    assert scalar(shop, "SELECT reseller_price FROM products WHERE id = :p", p=PRODUCT) is None


def test_update_product_refusals(shop: Engine) -> None:
    refuses(shop, "product_not_found", lambda: admin.update_product(shop, ADMIN, 99, name="X"))
    refuses(shop, "invalid_price",
            lambda: admin.update_product(shop, ADMIN, PRODUCT, name="X", customer_price=0))
    refuses(shop, "invalid_price",
            lambda: admin.update_product(shop, ADMIN, PRODUCT, reseller_price="-1"))
    refuses(shop, "unknown_field", lambda: admin.update_product(shop, ADMIN, PRODUCT, sold_count=5))
    refuses(shop, "not_admin", lambda: admin.update_product(shop, CUSTOMER, PRODUCT, name="X"))


def test_deactivate_product_is_a_soft_delete(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 2)
    assert admin.deactivate_product(shop, ADMIN, PRODUCT).is_active is False
    audit = scalar(shop, "SELECT count(*) FROM audit_outbox")
    assert admin.deactivate_product(shop, ADMIN, PRODUCT).is_active is False
    assert scalar(shop, "SELECT count(*) FROM audit_outbox") == audit
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 2
    refuses(shop, "product_not_found", lambda: admin.deactivate_product(shop, ADMIN, 99))
    refuses(shop, "not_admin", lambda: admin.deactivate_product(shop, CUSTOMER, PRODUCT))


# ------------------------------------------------------------------ stock

def reserved_and_sold(conn: Connection) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """Three units: one free, one reserved by a pending order, one sold on a paid order."""
    free, reserved, sold = make_stock(conn, PRODUCT, 3)
    make_user(conn, 4)
    make_order(conn, CUSTOMER, [reserved])
    paid = make_order(conn, 4, [sold])
    conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now() WHERE id = :o"),
                 {"o": paid})
    conn.execute(text("UPDATE product_stocks SET is_sold = true WHERE id = :s"), {"s": sold})
    return free, reserved, sold


def test_add_stock_lines(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("INSERT INTO product_stocks (product_id, content) VALUES (:p, 'OLD')"),
                     {"p": PRODUCT})
    result = units.add_stock_lines(shop, ADMIN, PRODUCT, ["A", " B ", "", "OLD", "A", "C\nD"])
    assert (result.added, result.duplicates_skipped, result.blank_skipped) == (4, 2, 1)
    assert sorted(scalar_list(shop, "SELECT content FROM product_stocks")) == [
        "A", "B", "C", "D", "OLD"]
    again = units.add_stock_lines(shop, ADMIN, PRODUCT, ["A", "B"])
    assert again.added == 0
    refuses(shop, "not_admin", lambda: units.add_stock_lines(shop, CUSTOMER, PRODUCT, ["Z"]))
    refuses(shop, "product_not_found", lambda: units.add_stock_lines(shop, ADMIN, 99, ["Z"]))
    refuses(shop, "stock_line_too_long",
            lambda: units.add_stock_lines(shop, ADMIN, PRODUCT, ["Z", "x" * 5000]))


def scalar_list(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql)).scalars())


def test_delete_stock_unit(shop: Engine) -> None:
    with shop.begin() as conn:
        free, reserved, sold = reserved_and_sold(conn)
    refuses(shop, "stock_unit_in_use", lambda: units.delete_stock_unit(shop, ADMIN, reserved))
    refuses(shop, "stock_unit_in_use", lambda: units.delete_stock_unit(shop, ADMIN, str(sold)))
    refuses(shop, "not_admin", lambda: units.delete_stock_unit(shop, CUSTOMER, free))
    assert units.delete_stock_unit(shop, ADMIN, str(free)) == units.DeletedUnit(free, PRODUCT)
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE id = :s", s=free) == 0
    refuses(shop, "stock_unit_not_found", lambda: units.delete_stock_unit(shop, ADMIN, free))
    refuses(shop, "stock_unit_not_found", lambda: units.delete_stock_unit(shop, ADMIN, "nope"))


def test_a_released_unit_cannot_be_deleted(shop: Engine) -> None:
    with shop.begin() as conn:
        (unit,) = make_stock(conn, PRODUCT, 1)
        order = make_order(conn, CUSTOMER, [unit])
        # What the order service does on expiry: the item moves to history, the unit is freed.
        conn.execute(text("INSERT INTO released_order_items (id, order_id, product_id, stock_id,"
                          " price_per_unit) SELECT id, order_id, product_id, stock_id,"
                          " price_per_unit FROM order_items WHERE order_id = :o"), {"o": order})
        conn.execute(text("DELETE FROM order_items WHERE order_id = :o"), {"o": order})
        conn.execute(text("UPDATE product_stocks SET order_id = NULL WHERE id = :s"), {"s": unit})
        conn.execute(text("UPDATE orders SET status = 'expired' WHERE id = :o"), {"o": order})
    refuses(shop, "stock_unit_has_history", lambda: units.delete_stock_unit(shop, ADMIN, unit))
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "t:dall:1").deleted == 0


def test_delete_all_unsold_keeps_reserved_and_sold(shop: Engine) -> None:
    with shop.begin() as conn:
        free, reserved, sold = reserved_and_sold(conn)
        extra = make_stock(conn, PRODUCT, 4)  # contents repeat KEY-1..; fine for this test
    refuses(shop, "not_admin",
            lambda: units.delete_all_unsold_once(shop, CUSTOMER, PRODUCT, "t:dall:2"))
    refuses(shop, "product_not_found",
            lambda: units.delete_all_unsold_once(shop, ADMIN, 99, "t:dall:3"))
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "t:dall:4").deleted == 1 + len(extra)
    assert sorted(scalar_list(shop, "SELECT id FROM product_stocks")) == sorted([reserved, sold])
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "t:dall:5").deleted == 0


def test_one_delallstock_confirmation_deletes_once(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 3)
    refuses(shop, "not_admin",
            lambda: units.delete_all_unsold_once(shop, CUSTOMER, PRODUCT, "dall:t:1"))
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "dall:t:1") == \
        units.AllDeleted(deleted=3, repeated=False, left=0)
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 2)  # stock that came after the confirmation ran
    # The same confirmation again: what it did then, the units free now, nothing deleted.
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "dall:t:1") == \
        units.AllDeleted(deleted=3, repeated=True, left=2)
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 2
    # A new confirmation is a new intent.
    assert units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "dall:t:2") == \
        units.AllDeleted(deleted=2, repeated=False, left=0)


def test_a_twin_press_in_flight_rolls_its_delete_back(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 2)
    outcome: list[units.AllDeleted] = []
    # The twin press: it has deleted and claimed the key but not committed yet.
    with shop.connect() as twin:
        twin.execute(text("INSERT INTO idempotency_keys (key, scope, result)"
                          " VALUES ('dall:t:9', 'delallstock', '{\"count\": 5}')"))
        thread = threading.Thread(target=lambda: outcome.append(
            units.delete_all_unsold_once(shop, ADMIN, PRODUCT, "dall:t:9")))
        thread.start()
        deadline = time.monotonic() + 20
        while lock_waiters(shop) < 1 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition: the press waits on the twin's key
        assert lock_waiters(shop) == 1
        twin.commit()
    thread.join(timeout=60)
    assert outcome == [units.AllDeleted(deleted=5, repeated=True, left=2)]
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 2  # its delete rolled back


def test_export_unsold_streams_free_units_only(shop: Engine) -> None:
    with shop.begin() as conn:
        reserved_and_sold(conn)
        conn.execute(text("INSERT INTO product_stocks (product_id, content, created_at)"
                          " SELECT :p, 'EXP-' || g, now() + g * interval '1 second'"
                          " FROM generate_series(1, 2500) g"), {"p": PRODUCT})
    exported = units.export_unsold(shop, PRODUCT, actor_id=ADMIN)
    first = next(exported)
    rest = list(exported)
    assert [first, *rest] == ["KEY-1"] + [f"EXP-{g}" for g in range(1, 2501)]
    with pytest.raises(ShopError) as info:
        units.export_unsold(shop, PRODUCT, actor_id=CUSTOMER)  # refused before any iteration
    assert info.value.code == "not_admin"
    with pytest.raises(ShopError):
        units.export_unsold(shop, 99, actor_id=ADMIN)


# ------------------------------------------------------------------ users

def test_set_ban(shop: Engine) -> None:
    assert admin.set_ban(shop, ADMIN, CUSTOMER, True) == admin.UserView(
        CUSTOMER, "customer", True, True)
    assert admin.set_ban(shop, ADMIN, CUSTOMER, True).changed is False
    assert scalar(shop, "SELECT is_banned FROM users WHERE id = :u", u=CUSTOMER) is True
    assert admin.set_ban(shop, ADMIN, CUSTOMER, False).is_banned is False
    refuses(shop, "cannot_ban_self", lambda: admin.set_ban(shop, ADMIN, ADMIN, True))
    refuses(shop, "user_not_found", lambda: admin.set_ban(shop, ADMIN, 999, True))
    refuses(shop, "not_admin", lambda: admin.set_ban(shop, CUSTOMER, ADMIN, True))


def test_set_role_and_last_admin(shop: Engine) -> None:
    assert admin.set_role(shop, ADMIN, CUSTOMER, "reseller").member_status == "reseller"
    refuses(shop, "invalid_role", lambda: admin.set_role(shop, ADMIN, CUSTOMER, "owner"))
    refuses(shop, "last_admin", lambda: admin.set_role(shop, ADMIN, ADMIN, "customer"))
    refuses(shop, "not_admin", lambda: admin.set_role(shop, CUSTOMER, CUSTOMER, "admin"))
    refuses(shop, "user_not_found", lambda: admin.set_role(shop, ADMIN, 999, "admin"))
    assert admin.set_role(shop, ADMIN, CUSTOMER, "admin").changed is True
    assert admin.set_role(shop, ADMIN, ADMIN, "customer").member_status == "customer"
    refuses(shop, "last_admin", lambda: admin.set_role(shop, CUSTOMER, CUSTOMER, "customer"))


def lock_waiters(engine: Engine) -> int:
    """Backends of this database waiting on a lock."""
    count = scalar(engine, "SELECT count(*) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND wait_event_type = 'Lock'")
    assert isinstance(count, int)
    return count


def test_two_admins_demoting_themselves_at_once_leave_one(shop: Engine) -> None:
    add_admin(shop)
    outcomes: list[str] = []

    def demote(actor: int) -> None:
        try:
            admin.set_role(shop, actor, actor, "customer")
            outcomes.append("ok")
        except ShopError as exc:
            outcomes.append(exc.code)

    # Hold both admin rows so both demotions are in flight together before either can commit.
    with shop.connect() as holder:
        holder.execute(text("SELECT 1 FROM users WHERE id IN (:a, :b) FOR UPDATE"),
                       {"a": ADMIN, "b": ADMIN2})
        threads = [threading.Thread(target=demote, args=(a,)) for a in (ADMIN, ADMIN2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while lock_waiters(shop) < 2 and len(outcomes) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition, not waiting for luck
        holder.rollback()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["last_admin", "ok"]
    assert scalar(shop, "SELECT count(*) FROM users WHERE member_status = 'admin'") == 1


def test_adjust_balance_credit_debit_and_retry(shop: Engine) -> None:
    assert admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("50000"), "gift", "req-1") == 50000
    # The same request retried (e.g. a double tap) moves the balance once.
    assert admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("50000"), "gift", "req-1") == 50000
    assert admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("-20000"), "fix", "req-2") == 30000
    assert admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("-20000"), "fix", "req-2") == 30000
    with shop.connect() as conn:
        rows = conn.execute(text("SELECT amount, reason, reference_type, reference_id, actor_id,"
                                 " note FROM balance_ledger ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [
        (Decimal("50000"), "admin_credit", "admin", "req-1", ADMIN, "gift"),
        (Decimal("-20000"), "admin_debit", "admin", "req-2", ADMIN, "fix"),
    ]
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=CUSTOMER) == 30000
    assert ledger_matches(shop)


def test_adjust_balance_refusals_change_nothing(shop: Engine) -> None:
    admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("1000"), "seed", "seed")
    err = refuses(shop, "insufficient_balance",
                  lambda: admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("-1001"), "x", "r1"))
    assert err.params["balance"] == "1000.00"
    refuses(shop, "not_admin",
            lambda: admin.adjust_balance(shop, CUSTOMER, CUSTOMER, Decimal("5"), "x", "r2"))
    refuses(shop, "user_not_found",
            lambda: admin.adjust_balance(shop, ADMIN, 999, Decimal("5"), "x", "r3"))
    bad_amounts: list[Any] = [Decimal("0"), Decimal("1.5"), 2.0]
    for bad in bad_amounts:
        def call(bad: Any = bad) -> Decimal:
            return admin.adjust_balance(shop, ADMIN, CUSTOMER, bad, "x", "r4")
        refuses(shop, "invalid_amount", call)
    refuses(shop, "invalid_request_id",
            lambda: admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("5"), "x", ""))
    # A request id already used for another user or amount is a bug upstream, not a retry.
    refuses(shop, "request_id_reused",
            lambda: admin.adjust_balance(shop, ADMIN, ADMIN, Decimal("1000"), "x", "seed"))
    refuses(shop, "request_id_reused",
            lambda: admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("999"), "x", "seed"))
    assert ledger_matches(shop)


def test_concurrent_retries_of_one_request_move_once(shop: Engine) -> None:
    barrier = threading.Barrier(4)
    results: list[Decimal] = []

    def go() -> None:
        barrier.wait()
        results.append(admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("7000"), "n", "dup"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [Decimal("7000")] * 4
    assert scalar(shop, "SELECT count(*) FROM balance_ledger") == 1
    assert ledger_matches(shop)


def test_user_info(shop: Engine) -> None:
    with shop.begin() as conn:
        free, reserved, sold = reserved_and_sold(conn)
    admin.adjust_balance(shop, ADMIN, CUSTOMER, Decimal("12000"), "x", "info")
    info = admin.user_info(shop, CUSTOMER, actor_id=ADMIN)
    assert info["user_id"] == CUSTOMER
    assert info["role"] == "customer"
    assert info["balance"] == Decimal("12000")
    assert info["orders"] == {"pending": 1, "paid": 0, "expired": 0, "cancelled": 0}
    assert admin.user_info(shop, 4, actor_id=ADMIN)["orders"]["paid"] == 1
    refuses(shop, "user_not_found", lambda: admin.user_info(shop, 999, actor_id=ADMIN))
    refuses(shop, "not_admin", lambda: admin.user_info(shop, ADMIN, actor_id=CUSTOMER))
