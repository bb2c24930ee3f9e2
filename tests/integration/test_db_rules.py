"""Every business rule of the seed is enforced by PostgreSQL: each test tries to break one and
checks that the database itself refuses, naming the rule that stopped it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import scalar


def refused(engine: Engine, work: Callable[[Connection], object]) -> DBAPIError:
    """Run `work` in one transaction (committing) and return the database's refusal."""
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        work(conn)
    return info.value


def rule_of(error: DBAPIError) -> str:
    """The constraint/trigger name PostgreSQL reported, else its message."""
    diag = getattr(error.orig, "diag", None)
    return (getattr(diag, "constraint_name", None) or str(error.orig)).strip()


def make_user(conn: Connection, user_id: int = 1, bank_id: str | None = None) -> int:
    conn.execute(
        text("INSERT INTO users (id, name, bank_id) VALUES (:id, :n, :b)"),
        {"id": user_id, "n": f"user {user_id}", "b": bank_id or f"{100000 + user_id}"},
    )
    return user_id


def make_admin(conn: Connection, user_id: int = 1) -> int:
    """A registered user with the admin role."""
    make_user(conn, user_id)
    conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :u"), {"u": user_id})
    return user_id


def make_product(conn: Connection, product_id: int = 1, price: int = 10000) -> int:
    conn.execute(
        text("INSERT INTO products (id, name, customer_price) VALUES (:id, :n, :p)"),
        {"id": product_id, "n": f"product {product_id}", "p": price},
    )
    return product_id


def make_stock(conn: Connection, product_id: int = 1, n: int = 1) -> list[uuid.UUID]:
    return list(
        conn.execute(
            text(
                "INSERT INTO product_stocks (product_id, content)"
                " SELECT :p, 'KEY-' || g FROM generate_series(1, :n) g RETURNING id"
            ),
            {"p": product_id, "n": n},
        ).scalars()
    )


def make_order(
    conn: Connection, user_id: int, stock_ids: list[uuid.UUID], price: int = 10000,
    invoice: str | None = None, method: str = "account_balance",
) -> int:
    """A pending order holding `stock_ids`, its totals consistent."""
    subtotal = price * len(stock_ids)
    order_id = conn.execute(
        text(
            "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method)"
            " VALUES (:inv, :u, :s, :s, :m) RETURNING id"
        ),
        {"inv": invoice or f"INV-{uuid.uuid4().hex[:12]}", "u": user_id, "s": subtotal,
         "m": method},
    ).scalar_one()
    for sid in stock_ids:
        conn.execute(text("UPDATE product_stocks SET order_id = :o WHERE id = :s"),
                     {"o": order_id, "s": sid})
        conn.execute(
            text("INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                 " SELECT :o, product_id, id, :p FROM product_stocks WHERE id = :s"),
            {"o": order_id, "s": sid, "p": price},
        )
    return order_id


def credit(conn: Connection, user_id: int, amount: int, ref: str | None = None) -> None:
    """A balance change done right: balance first, then its ledger row."""
    conn.execute(text("UPDATE users SET account_balance = account_balance + :a WHERE id = :u"),
                 {"a": amount, "u": user_id})
    conn.execute(
        text("INSERT INTO balance_ledger (user_id, amount, reason, reference_type, reference_id)"
             " VALUES (:u, :a, :r, 'test', :ref)"),
        {"u": user_id, "a": amount, "r": "admin_credit" if amount > 0 else "admin_debit",
         "ref": ref},
    )


# ------------------------------------------------------------------ balances and ledger

def test_balance_cannot_go_negative(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        credit(conn, 1, 5000)
    err = refused(db, lambda c: credit(c, 1, -5001))
    assert rule_of(err) == "users_balance_non_negative"
    assert scalar(db, "SELECT account_balance FROM users WHERE id = 1") == 5000


def test_balance_must_equal_ledger_sum(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        credit(conn, 1, 7000)
    err = refused(db, lambda c: c.execute(text("UPDATE users SET account_balance = 9000")))
    assert rule_of(err) == "users_balance_matches_ledger"
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO balance_ledger (user_id, amount, reason) VALUES (1, 100, 'refund')")))
    assert rule_of(err) == "users_balance_matches_ledger"
    assert scalar(db, "SELECT account_balance FROM users WHERE id = 1") == 7000
    assert scalar(db, "SELECT balance_after FROM balance_ledger WHERE user_id = 1") == 7000


def test_each_ledger_row_continues_its_users_chain(db: Engine) -> None:
    """The check is constant-time by induction: every row must leave the balance the row before
    it left plus its amount. Two moves written out of step (both balance updates first, then
    both rows) sum right but are refused, and so is the rule's violation on any earlier user."""
    with db.begin() as conn:
        make_user(conn)
        make_user(conn, 2)
        credit(conn, 1, 7000)
        for i in range(50):  # a user with a long history: the check still sees only its tail
            credit(conn, 2, 100 + i, ref=f"r{i}")

    def out_of_step(c: Connection) -> None:
        c.execute(text("UPDATE users SET account_balance = account_balance + 150 WHERE id = 1"))
        for amount, ref in ((100, "a"), (50, "b")):
            c.execute(text("INSERT INTO balance_ledger (user_id, amount, reason, reference_type,"
                           " reference_id) VALUES (1, :a, 'refund', 'test', :r)"),
                      {"a": amount, "r": ref})

    err = refused(db, out_of_step)
    assert rule_of(err) == "users_balance_matches_ledger"
    assert "not 7000.00 + 100.00" in str(err.orig)
    with db.begin() as conn:  # the right order is accepted, on the long history as well
        credit(conn, 1, 100, ref="a")
        credit(conn, 1, 50, ref="b")
        credit(conn, 2, -1000, ref="d")
    assert scalar(db, "SELECT account_balance FROM users WHERE id = 1") == 7150
    assert scalar(db, "SELECT account_balance FROM users WHERE id = 2") == \
        scalar(db, "SELECT sum(amount) FROM balance_ledger WHERE user_id = 2")


def test_ledger_is_append_only(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        credit(conn, 1, 1000)
    for sql in ("UPDATE balance_ledger SET amount = 2000", "DELETE FROM balance_ledger",
                "TRUNCATE balance_ledger CASCADE"):
        err = refused(db, lambda c, s=sql: c.execute(text(s)))
        assert "append-only" in str(err.orig)
    assert scalar(db, "SELECT count(*) FROM balance_ledger") == 1


def test_same_reference_moves_a_balance_once(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        credit(conn, 1, 1000, ref="deposit-42")
    err = refused(db, lambda c: credit(c, 1, 1000, ref="deposit-42"))
    assert rule_of(err) == "uq_balance_ledger_reference"


def test_amounts_are_whole_rupiah(db: Engine) -> None:
    err = refused(db, lambda c: make_product(c, 1, price=0))
    assert rule_of(err) == "products_customer_price_positive"
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO products (id, name, customer_price) VALUES (2, 'x', 100.50)")))
    assert rule_of(err) == "products_customer_price_positive"


# ------------------------------------------------------------------ orders

def test_one_pending_order_per_user(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        stock = make_stock(conn, n=2)
        make_order(conn, 1, stock[:1])
    err = refused(db, lambda c: make_order(c, 1, stock[1:]))
    assert rule_of(err) == "uq_orders_one_pending_per_user"
    # Once the first order is settled, a new pending order is allowed.
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now()"))
        make_order(conn, 1, stock[1:])
    assert scalar(db, "SELECT count(*) FROM orders WHERE status = 'pending'") == 1


def test_stock_unit_in_at_most_one_order(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn, 1)
        make_user(conn, 2)
        make_product(conn)
        stock = make_stock(conn, n=1)
        first = make_order(conn, 1, stock)

    def second_order_same_unit(c: Connection) -> None:
        oid = c.execute(text(
            "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method)"
            " VALUES ('INV-TWO', 2, 10000, 10000, 'qris') RETURNING id")).scalar_one()
        c.execute(text("INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                       " VALUES (:o, 1, :s, 10000)"), {"o": oid, "s": stock[0]})

    err = refused(db, second_order_same_unit)
    # The unit is reserved for the first order, so the composite key refuses the second one
    # (and the unique stock_id index would refuse it even if the reservation were moved).
    assert rule_of(err) in {"fk_order_items_stock_assignment", "idx_order_items_stock_id"}

    def duplicate_item_same_order(c: Connection) -> None:
        c.execute(text("INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                       " VALUES (:o, 1, :s, 10000)"), {"o": first, "s": stock[0]})

    err = refused(db, duplicate_item_same_order)
    assert rule_of(err) == "idx_order_items_stock_id"
    assert scalar(db, "SELECT count(*) FROM order_items") == 1


def test_sold_unit_must_belong_to_an_order(db: Engine) -> None:
    with db.begin() as conn:
        make_product(conn)
        make_stock(conn)
    err = refused(db, lambda c: c.execute(text("UPDATE product_stocks SET is_sold = true")))
    assert rule_of(err) == "product_stocks_sold_has_order"


@pytest.mark.parametrize(
    "start,target,allowed",
    [
        ("pending", "paid", True),
        ("pending", "expired", True),
        ("pending", "cancelled", True),
        ("paid", "pending", False),
        ("paid", "expired", False),
        ("expired", "paid", False),
        ("cancelled", "pending", False),
        ("expired", "cancelled", False),
    ],
)
def test_order_status_state_machine(db: Engine, start: str, target: str, allowed: bool) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        oid = make_order(conn, 1, make_stock(conn))
        if start != "pending":
            conn.execute(text("UPDATE orders SET status = :s, paid_at = now() WHERE id = :o"),
                         {"s": start, "o": oid})

    def move(c: Connection) -> None:
        c.execute(text("UPDATE orders SET status = :s, paid_at = now() WHERE id = :o"),
                  {"s": target, "o": oid})

    if allowed:
        with db.begin() as conn:
            move(conn)
        assert scalar(db, "SELECT status FROM orders WHERE id = :o", o=oid) == target
    else:
        err = refused(db, move)
        assert rule_of(err) == "orders_status_transition"
        assert scalar(db, "SELECT status FROM orders WHERE id = :o", o=oid) == start


@pytest.mark.parametrize(
    ("method", "status", "paid_at"),
    [
        ("qris", "paid", "now()"),  # owed to the gateway: paid only from pending
        ("account_balance", "paid", "NULL"),  # paid without saying when
        ("account_balance", "expired", "NULL"),
        ("account_balance", "cancelled", "NULL"),
    ],
)
def test_order_must_start_pending(db: Engine, method: str, status: str, paid_at: str) -> None:
    with db.begin() as conn:
        make_user(conn)
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method, status,"
        f" paid_at) VALUES ('INV-P', 1, 100, 100, :m, :s, {paid_at})"),
        {"m": method, "s": status}))
    assert rule_of(err) == "orders_status_transition"
    assert scalar(db, "SELECT count(*) FROM orders") == 0


def test_a_balance_order_may_be_born_paid(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        [stock] = make_stock(conn)
        oid = conn.execute(text(
            "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method,"
            " status, paid_at, amount_paid) VALUES ('INV-B', 1, 10000, 10000,"
            " 'account_balance', 'paid', now(), 10000) RETURNING id")).scalar_one()
        conn.execute(text("UPDATE product_stocks SET order_id = :o, is_sold = true"
                          " WHERE id = :s"), {"o": oid, "s": stock})
        conn.execute(text("INSERT INTO order_items (order_id, product_id, stock_id,"
                          " price_per_unit) VALUES (:o, 1, :s, 10000)"), {"o": oid, "s": stock})
    assert scalar(db, "SELECT status FROM orders WHERE id = :o", o=oid) == "paid"
    # Born paid, it is as settled as one paid from pending: it can never be pending again.
    err = refused(db, lambda c: c.execute(text(
        "UPDATE orders SET status = 'pending' WHERE id = :o"), {"o": oid}))
    assert rule_of(err) == "orders_status_transition"


def test_a_deposit_must_start_pending(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO deposits (invoice_id, user_id, amount, payment_fee, total_bill, status,"
        " paid_at) VALUES ('DEP-P', 1, 10000, 0, 10000, 'paid', now())")))
    assert rule_of(err) == "deposits_status_transition"


def test_total_bill_must_add_up(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO orders (invoice_id, user_id, subtotal, voucher_discount, payment_fee,"
        " total_bill, payment_method) VALUES ('INV-T', 1, 10000, 1000, 380, 9000, 'qris')")))
    assert rule_of(err) == "orders_total_bill_matches"
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO orders (invoice_id, user_id, subtotal, voucher_discount, total_bill,"
        " payment_method) VALUES ('INV-D', 1, 1000, 2000, -1000, 'account_balance')")))
    assert rule_of(err) == "orders_discount_within_subtotal"


def test_subtotal_must_equal_items_at_commit(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        stock = make_stock(conn, n=2)
    # An order whose items do not add up to its subtotal is refused at COMMIT (deferred).
    err = refused(db, lambda c: make_order(c, 1, stock, price=10000) and c.execute(text(
        "UPDATE orders SET subtotal = 25000, total_bill = 25000")))
    assert rule_of(err) == "orders_subtotal_matches_items"
    # Removing an item without fixing the subtotal is refused too.
    with db.begin() as conn:
        oid = make_order(conn, 1, stock)
    err = refused(db, lambda c: c.execute(text("DELETE FROM order_items WHERE id = "
                                                "(SELECT min(id) FROM order_items)")))
    assert rule_of(err) == "orders_subtotal_matches_items"
    assert scalar(db, "SELECT count(*) FROM order_items WHERE order_id = :o", o=oid) == 2


def test_settled_bill_is_frozen(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        oid = make_order(conn, 1, make_stock(conn))
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now()"))
    err = refused(db, lambda c: c.execute(text(
        "UPDATE orders SET payment_fee = 100, total_bill = total_bill + 100 WHERE id = :o"),
        {"o": oid}))
    assert "orders_status_transition" in rule_of(err)


def test_updated_at_is_maintained(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        conn.execute(text("UPDATE users SET created_at = now() - interval '1 day',"
                          " updated_at = now() - interval '1 day'"))
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET name = 'renamed'"))
    assert scalar(db, "SELECT updated_at > created_at FROM users") is True


# ------------------------------------------------------------------ vouchers and deposits

def test_voucher_rules(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO vouchers (code, amount, created_by, expires_at)"
        " VALUES ('ABCD1234', 500, 1, now() + interval '1 day')")))
    assert rule_of(err) == "vouchers_amount_range"
    err = refused(db, lambda c: c.execute(text(
        "INSERT INTO vouchers (code, amount, created_by, expires_at, is_used)"
        " VALUES ('ABCD1234', 5000, 1, now() + interval '1 day', true)")))
    assert rule_of(err) == "vouchers_used_is_complete"


def test_one_pending_deposit_per_user(db: Engine) -> None:
    def deposit(c: Connection, invoice: str) -> None:
        c.execute(text("INSERT INTO deposits (invoice_id, user_id, amount, payment_fee, total_bill)"
                       " VALUES (:i, 1, 10000, 380, 10380)"), {"i": invoice})

    with db.begin() as conn:
        make_user(conn)
        deposit(conn, "DEP-1")
    err = refused(db, lambda c: deposit(c, "DEP-2"))
    assert rule_of(err) == "uq_deposits_one_pending_per_user"
    err = refused(db, lambda c: c.execute(text(
        "UPDATE deposits SET status = 'paid', paid_at = now(), total_bill = 1")))
    assert rule_of(err) == "deposits_total_bill_matches"


# ------------------------------------------------------------------ audit capture and audit DB

def test_changes_are_captured_in_the_audit_outbox(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('quickcart.actor_id', '77', true),"
                          " set_config('quickcart.actor_type', 'admin', true)"))
        make_product(conn)
        make_stock(conn)
        conn.execute(text("UPDATE products SET name = 'renamed'"))
    with db.connect() as conn:
        rows = {(r.entity_type, r.action): r
                for r in conn.execute(text("SELECT * FROM audit_outbox")).all()}
    assert ("products", "create") in rows and ("products", "update") in rows
    update = rows[("products", "update")]
    assert update.before_state["name"] == "product 1" and update.after_state["name"] == "renamed"
    assert update.actor_id == 77 and update.actor_type == "admin"
    stock = rows[("product_stocks", "create")]
    assert stock.after_state["content"].startswith("sha256:"), "licence keys never reach audit"


def test_audit_logs_are_append_only(audit_engine: Engine, db: Engine) -> None:
    with audit_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_logs (actor_id, actor_type, entity_type, entity_id, action,"
            " after_state) VALUES (5, 'user', 'users', '5', 'create',"
            " '{\"name\": \"Budi\", \"email\": \"b@x.id\"}')"))
    for sql in ("UPDATE audit_logs SET action = 'delete'", "DELETE FROM audit_logs",
                "TRUNCATE audit_logs"):
        err = refused(audit_engine, lambda c, s=sql: c.execute(text(s)))
        assert "append-only" in str(err.orig)
    # Setting the switch by hand does not allow rewriting the record itself.
    err = refused(audit_engine, lambda c: (
        c.execute(text("SELECT set_config('quickcart.audit_anonymise', 'on', true)")),
        c.execute(text("UPDATE audit_logs SET action = 'x', anonymised_at = now()")),
    ))
    assert "append-only" in str(err.orig)
    # The one documented way: anonymisation of a data subject.
    with audit_engine.begin() as conn:
        changed = conn.execute(text("SELECT anonymise_audit_subject(5)")).scalar()
    assert changed == 1
    state = scalar(audit_engine, "SELECT after_state FROM audit_logs")
    assert state == {"name": "[erased]", "email": "[erased]"}
    assert scalar(audit_engine, "SELECT action FROM audit_logs") == "create"


# ------------------------------------------------------------------ races on real connections

def _race(n: int, work: Callable[[int], None]) -> list[BaseException | None]:
    """Run `work(i)` on n threads released together; returns each one's exception or None."""
    barrier = threading.Barrier(n)
    outcomes: list[BaseException | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def test_race_for_the_last_pending_order_slot(db: Engine) -> None:
    with db.begin() as conn:
        make_user(conn)
        make_product(conn)
        stock = make_stock(conn, n=8)

    def attempt(i: int) -> None:
        with db.begin() as conn:
            make_order(conn, 1, [stock[i]], invoice=f"RACE-{i}")

    outcomes = _race(8, attempt)
    assert sum(o is None for o in outcomes) == 1
    assert all(rule_of(o) == "uq_orders_one_pending_per_user"  # type: ignore[arg-type]
               for o in outcomes if o is not None)
    assert scalar(db, "SELECT count(*) FROM orders") == 1


def test_race_for_the_same_stock_row(db: Engine) -> None:
    with db.begin() as conn:
        for uid in range(1, 9):
            make_user(conn, uid)
        make_product(conn)
        make_stock(conn, n=1)
    got: list[object] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        with db.begin() as conn:
            unit = conn.execute(text(
                "SELECT id FROM product_stocks WHERE product_id = 1 AND NOT is_sold"
                " AND order_id IS NULL ORDER BY created_at, id LIMIT 1"
                " FOR UPDATE SKIP LOCKED")).scalar()
            if unit is None:
                return
            make_order(conn, i + 1, [unit], invoice=f"UNIT-{i}")
            with lock:
                got.append(unit)

    outcomes = _race(8, attempt)
    assert outcomes == [None] * 8
    assert len(got) == 1
    assert scalar(db, "SELECT count(*) FROM order_items") == 1

    # Without SKIP LOCKED, a naive second claim of the same unit is still refused by the DB.
    def naive(i: int) -> None:
        with db.begin() as conn:
            make_order(conn, i + 2, [got[0]], invoice=f"NAIVE-{i}")  # type: ignore[list-item]

    outcomes = _race(2, naive)
    assert all(o is not None for o in outcomes)
    assert scalar(db, "SELECT count(*) FROM order_items") == 1


def test_stock_is_vacuumed_after_a_fixed_share_of_sales(db: Engine) -> None:
    """Sold units leave dead entries at the head of the hand-out index that every purchase's
    scan walks: product_stocks is vacuumed after ~1% of it changed, not the default 20%."""
    found = scalar(db, "SELECT reloptions FROM pg_class WHERE relname = 'product_stocks'")
    options = set(found) if isinstance(found, list) else set()
    assert {"autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_threshold=1000"} <= options
