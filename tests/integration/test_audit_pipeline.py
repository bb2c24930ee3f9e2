"""Audit pipeline: triggers capture into audit_outbox, shipping moves each change into the audit
DB exactly once with a linear SHA-256 chain, and verification catches tampering."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from sqlalchemy import Connection, Engine, text

from quickcart.services.audit_shipping import (
    ship_all,
    ship_audit_batch,
    ship_audit_batch_result,
)
from quickcart.services.audit_verify import format_report, verify_audit_chain
from tests.conftest import scalar


class Crash(Exception):
    """Raised by a hook to stop a batch at a given step, as a killed worker would."""


def crash_at(step: str):
    def hook(reached: str) -> None:
        if reached == step:
            raise Crash(step)
    return hook


def make_user(conn: Connection, user_id: int, name: str = "Budi", email: str | None = None) -> None:
    conn.execute(
        text("INSERT INTO users (id, name, username, email, bank_id)"
             " VALUES (:id, :n, :u, :e, :b)"),
        {"id": user_id, "n": name, "u": f"user{user_id}", "e": email, "b": f"{100000 + user_id}"},
    )


def make_changes(engine: Engine) -> None:
    """A user, a product and stock, changed by a user actor with a context (numbers, unicode)."""
    with engine.begin() as conn:
        conn.execute(text(
            "SELECT set_config('quickcart.actor_id', '7', true),"
            " set_config('quickcart.actor_type', 'admin', true),"
            " set_config('quickcart.audit_context', :ctx, true)"),
            {"ctx": json.dumps({"ip": "10.0.0.1", "rate": 0.007, "big": 12345678901234.5,
                                "note": "héllo ✓", "nested": {"b": [1, 2.50, None]}})})
        make_user(conn, 7, email="budi@example.com")
        conn.execute(text("INSERT INTO products (id, name, customer_price, reseller_price)"
                          " VALUES (1, 'Netflix 1 bulan', 25000, 22500.00)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT 1, 'SECRET-KEY-' || g FROM generate_series(1, 5) g"))
        conn.execute(text("UPDATE products SET customer_price = 27000 WHERE id = 1"))


def column(engine: Engine, sql: str, **params: object) -> list:
    """One column of a query, on a connection closed straight after (no lock left behind)."""
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).scalars())


def count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def outbox_count(engine: Engine) -> int:
    return count(engine, "SELECT count(*) FROM audit_outbox")


def audit_count(audit: Engine) -> int:
    return count(audit, "SELECT count(*) FROM audit_logs")


def tamper(audit: Engine, sql: str, **params: object) -> None:
    """What a superuser can do: switch off the append-only triggers and edit the log."""
    with audit.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql), params)


def test_changes_are_shipped_once_with_a_valid_chain(db: Engine, audit_engine: Engine) -> None:
    make_changes(db)
    source_ids = sorted(column(db, "SELECT id FROM audit_outbox"))
    assert len(source_ids) == 1 + 1 + 5 + 1

    assert ship_all(db, audit_engine) == len(source_ids)

    assert outbox_count(db) == 0
    with audit_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT source_id, entity_type, action, actor_id, actor_type, after_state, context,"
            " prev_checksum, checksum FROM audit_logs ORDER BY id")).all()
    assert sorted(r.source_id for r in rows) == source_ids
    assert rows[0].prev_checksum is None
    assert all(r.prev_checksum == p.checksum for p, r in zip(rows, rows[1:], strict=False))
    stock = [r for r in rows if r.entity_type == "product_stocks"]
    assert len(stock) == 5
    # Licence keys never reach the audit DB, only their hash.
    assert all(r.after_state["content"].startswith("sha256:") for r in stock)
    assert all(r.actor_id == 7 and r.actor_type == "admin" for r in rows)
    assert rows[0].context["note"] == "héllo ✓"

    report = verify_audit_chain(audit_engine)
    assert report.ok, format_report(report)
    assert report.checked == len(source_ids)

    # A second run finds nothing: nothing new in the audit DB.
    assert ship_all(db, audit_engine) == 0
    assert audit_count(audit_engine) == len(source_ids)


def test_unknown_actor_type_is_shipped_as_system_not_stuck(db: Engine,
                                                           audit_engine: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('quickcart.actor_type', 'robot', true)"))
        make_user(conn, 1)
    assert ship_all(db, audit_engine) == 1
    with audit_engine.connect() as conn:
        row = conn.execute(text("SELECT actor_type, context FROM audit_logs")).one()
    assert row.actor_type == "system"
    assert row.context == {"claimed_actor_type": "robot"}
    assert verify_audit_chain(audit_engine).ok


def test_concurrent_shippers_ship_each_row_once_in_one_chain(db: Engine,
                                                              audit_engine: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES (1, 'p', 1000)"))
    for _ in range(4):  # separate transactions, so the outbox grows in several commits
        with db.begin() as conn:
            conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                              " SELECT 1, md5(random()::text) FROM generate_series(1, 500)"))
    expected = set(column(db, "SELECT id FROM audit_outbox"))
    assert len(expected) == 2001

    barrier = threading.Barrier(4)
    moved: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            moved.append(ship_all(db, audit_engine, batch=37))
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    # Shippers stop at their first short batch, so a straggler may be left: ship it.
    moved.append(ship_all(db, audit_engine))

    assert sum(moved) == len(expected)
    assert outbox_count(db) == 0
    with audit_engine.connect() as conn:
        shipped = conn.execute(text("SELECT source_id FROM audit_logs")).scalars().all()
        forks = conn.execute(text(
            "SELECT count(*) FROM (SELECT prev_checksum FROM audit_logs"
            " GROUP BY prev_checksum HAVING count(*) > 1) f")).scalar()
    assert len(shipped) == len(expected)
    assert set(shipped) == expected
    assert forks == 0
    report = verify_audit_chain(audit_engine, batch_size=100)
    assert report.ok, format_report(report)
    assert report.checked == len(expected)


@pytest.mark.parametrize("step", ["claimed", "audit_inserted", "audit_committed",
                                  "outbox_deleted"])
def test_crash_at_any_step_then_reship_has_no_duplicates(db: Engine, audit_engine: Engine,
                                                         step: str) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES (1, 'p', 1000)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT 1, 'K' || g FROM generate_series(1, 29) g"))
    total = outbox_count(db)
    assert total == 30

    with pytest.raises(Crash):
        ship_audit_batch_result(db, audit_engine, limit=10, hook=crash_at(step))

    # Before the audit commit nothing is there; after it, the batch is there but still queued.
    in_audit = 10 if step in ("audit_committed", "outbox_deleted") else 0
    assert audit_count(audit_engine) == in_audit
    assert outbox_count(db) == total

    first = ship_audit_batch_result(db, audit_engine, limit=10)
    assert first.taken == 10
    assert first.appended == 10 - in_audit
    assert ship_all(db, audit_engine, batch=10) == total - 10

    assert outbox_count(db) == 0
    assert audit_count(audit_engine) == total
    assert scalar(audit_engine, "SELECT count(DISTINCT source_id) FROM audit_logs") == total
    report = verify_audit_chain(audit_engine)
    assert report.ok, format_report(report)


def test_ship_batch_respects_limit_and_order(db: Engine, audit_engine: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES (1, 'p', 1000)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT 1, 'K' || g FROM generate_series(1, 9) g"))
    oldest = column(db, "SELECT id FROM audit_outbox ORDER BY id")[:4]
    assert ship_audit_batch(db, audit_engine, limit=4) == 4
    shipped = column(audit_engine, "SELECT source_id FROM audit_logs ORDER BY id")
    assert shipped == oldest
    assert outbox_count(db) == 6


@pytest.fixture()
def shipped_log(db: Engine, audit_engine: Engine) -> list[int]:
    """Audit entries from make_changes, shipped; returns their ids in chain order."""
    make_changes(db)
    ship_all(db, audit_engine)
    ids = column(audit_engine, "SELECT id FROM audit_logs ORDER BY id")
    assert verify_audit_chain(audit_engine).ok
    return list(ids)


def problems_of(audit: Engine) -> dict[int, str]:
    report = verify_audit_chain(audit)
    return {p.entry_id: p.reason for p in report.problems}


def test_tampered_content_is_detected(shipped_log: list[int], audit_engine: Engine) -> None:
    target = shipped_log[3]
    tamper(audit_engine,
           "UPDATE audit_logs SET after_state = after_state || '{\"is_sold\": true}'"
           " WHERE id = :id", id=target)
    problems = problems_of(audit_engine)
    assert list(problems) == [target]
    assert "content" in problems[target]


def test_numeric_retyping_is_detected(shipped_log: list[int], audit_engine: Engine) -> None:
    product = scalar(audit_engine, "SELECT id FROM audit_logs"
                     " WHERE entity_type = 'products' AND action = 'create'")
    tamper(audit_engine,
           "UPDATE audit_logs SET after_state = jsonb_set(after_state, '{customer_price}',"
           " '2500.00') WHERE id = :id", id=product)
    assert list(problems_of(audit_engine)) == [product]


def test_deleted_entries_are_detected(shipped_log: list[int], audit_engine: Engine) -> None:
    middle = shipped_log[4]
    tamper(audit_engine, "DELETE FROM audit_logs WHERE id = :id", id=middle)
    problems = problems_of(audit_engine)
    assert list(problems) == [shipped_log[5]]
    assert "link" in problems[shipped_log[5]]

    tamper(audit_engine, "DELETE FROM audit_logs WHERE id = :id", id=shipped_log[0])
    assert shipped_log[1] in problems_of(audit_engine)


def test_rehashed_entry_breaks_the_next_link(shipped_log: list[int],
                                             audit_engine: Engine) -> None:
    """A forger who also recomputes the entry's own hashes is caught by the entry after it."""
    from quickcart.services.audit_shipping import chain_checksum

    target = shipped_log[2]
    tamper(audit_engine,
           "UPDATE audit_logs SET content_hash = repeat('a', 64) WHERE id = :id", id=target)
    prev = scalar(audit_engine, "SELECT prev_checksum FROM audit_logs WHERE id = :id", id=target)
    tamper(audit_engine, "UPDATE audit_logs SET checksum = :c WHERE id = :id",
           c=chain_checksum(str(prev), "a" * 64), id=target)
    problems = problems_of(audit_engine)
    assert target in problems  # its content no longer matches the forged content hash
    assert shipped_log[3] in problems  # and the next entry links to the old checksum


def test_anonymisation_keeps_the_chain_verifying(db: Engine, audit_engine: Engine) -> None:
    with db.begin() as conn:
        make_user(conn, 42, name="Siti Rahma", email="siti@example.com")
        make_user(conn, 43, name="Other")
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('quickcart.actor_id', '42', true),"
                          " set_config('quickcart.actor_type', 'user', true)"))
        conn.execute(text("UPDATE users SET language = 'en' WHERE id = 42"))
    ship_all(db, audit_engine)

    with audit_engine.begin() as conn:
        changed = conn.execute(text("SELECT anonymise_audit_subject(42)")).scalar()
    assert changed == 2
    dump = json.dumps(scalar(audit_engine, "SELECT json_agg(after_state) FROM audit_logs"
                             " WHERE entity_id = '42'"))
    assert "Siti" not in dump and "siti@example.com" not in dump

    report = verify_audit_chain(audit_engine)
    assert report.ok, format_report(report)
    assert report.anonymised == 2
    assert report.checked == 3


def captured(engine: Engine, entity: str) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT action, actor_id, before_state, after_state FROM audit_outbox"
            " WHERE entity_type = :e ORDER BY id"), {"e": entity}))


def hashed(key: str) -> str:
    """A licence key as the audit copy carries it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def test_capture_records_real_changes_redacted_and_skips_bookkeeping(db: Engine) -> None:
    make_changes(db)
    with db.begin() as conn:
        conn.execute(text("SELECT set_config('quickcart.actor_id', '7', true),"
                          " set_config('quickcart.actor_type', 'user', true)"))
        stock = conn.execute(text("SELECT id FROM product_stocks WHERE content = 'SECRET-KEY-1'"
                                  )).scalar_one()
        oid = conn.execute(text(
            "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method,"
            " payment_number) VALUES ('INV-A', 7, 27000, 27000, 'qris', '0002010102') RETURNING id"
        )).scalar_one()
        conn.execute(text("UPDATE product_stocks SET order_id = :o WHERE id = :s"),
                     {"o": oid, "s": stock})
        conn.execute(text("INSERT INTO order_items (order_id, product_id, stock_id,"
                          " price_per_unit) VALUES (:o, 1, :s, 27000)"), {"o": oid, "s": stock})
    before = {e: len(captured(db, e)) for e in ("orders", "product_stocks", "order_items")}
    with db.begin() as conn:
        # Bookkeeping only: a delivery lease taken and given back, a touch of updated_at.
        conn.execute(text("UPDATE orders SET delivery_claimed_until = now(),"
                          " delivery_claimed_by = 'w1' WHERE id = :o"), {"o": oid})
        conn.execute(text("UPDATE orders SET delivery_claimed_until = NULL,"
                          " delivery_claimed_by = NULL WHERE id = :o"), {"o": oid})
        conn.execute(text("UPDATE product_stocks SET updated_at = now() WHERE id = :s"),
                     {"s": stock})
    assert {e: len(captured(db, e)) for e in before} == before
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now(),"
                          " amount_paid = 27000, payment_number = NULL WHERE id = :o"), {"o": oid})
        conn.execute(text("UPDATE product_stocks SET is_sold = true WHERE id = :s"), {"s": stock})
        conn.execute(text("DELETE FROM product_stocks WHERE content = 'SECRET-KEY-2'"))
    orders = captured(db, "orders")
    created, paid = orders[0], orders[-1]
    assert created.action == "create" and created.actor_id == 7
    # The gateway's payment number is never in an image; everything else is.
    assert "payment_number" not in created.after_state
    assert created.after_state["invoice_id"] == "INV-A"
    assert (paid.action, paid.before_state["status"], paid.after_state["status"]) == (
        "update", "pending", "paid")
    assert "payment_number" not in paid.before_state
    *_, sold, removed = captured(db, "product_stocks")
    assert sold.before_state["content"] == sold.after_state["content"] == hashed("SECRET-KEY-1")
    assert (sold.before_state["is_sold"], sold.after_state["is_sold"]) == (False, True)
    assert sold.after_state["order_id"] == oid
    assert (removed.action, removed.after_state) == ("delete", None)
    assert removed.before_state["content"] == hashed("SECRET-KEY-2")
