"""The invariant checker: clean on a consistent shop, and each corruption (made by a superuser with
triggers switched off, the only way past the database's own rules) is reported under its rule."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, Engine, text

from quickcart.services.audit_shipping import ship_all
from quickcart.services.invariants import check_invariants

ALL_RULES = {
    "stock_conserved", "unit_in_one_order", "balance_equals_ledger",
    "paid_orders_delivered_once", "order_totals", "sold_count_matches", "vouchers",
    "one_pending_per_user", "every_change_audited", "audit_chain_intact",
    "replacements_and_refunds",
}


@dataclass(frozen=True)
class Shop:
    paid_order: int
    pending_order: int
    expired_order: int


def q(conn: Connection, sql: str, **params: object) -> object:
    result = conn.execute(text(sql), params)
    return result.scalar() if result.returns_rows else None


def make_user(conn: Connection, user_id: int) -> None:
    q(conn, "INSERT INTO users (id, name, bank_id) VALUES (:id, :n, :b)",
      id=user_id, n=f"user {user_id}", b=f"{100000 + user_id}")


def move_balance(conn: Connection, user_id: int, amount: int, reason: str, ref: str) -> None:
    """Balance first, then its ledger row (the trigger reads balance_after from the user)."""
    q(conn, "UPDATE users SET account_balance = account_balance + :a WHERE id = :u",
      a=amount, u=user_id)
    q(conn, "INSERT INTO balance_ledger (user_id, amount, reason, reference_type, reference_id)"
            " VALUES (:u, :a, :r, 'test', :ref)", u=user_id, a=amount, r=reason, ref=ref)


def open_order(conn: Connection, user_id: int, units: dict[int, int], *, discount: int = 0,
               fee: int = 0, method: str = "account_balance") -> int:
    """A pending order reserving `units` ({product_id: count}) of free stock at list price."""
    picked = [
        row
        for product_id, count in units.items()
        for row in conn.execute(text(
            "SELECT ps.id, ps.product_id, p.customer_price"
            " FROM product_stocks ps JOIN products p ON p.id = ps.product_id"
            " WHERE ps.product_id = :p AND ps.order_id IS NULL AND NOT ps.is_sold"
            " ORDER BY ps.created_at, ps.id LIMIT :n"), {"p": product_id, "n": count})
    ]
    assert len(picked) == sum(units.values())
    subtotal = sum(int(r.customer_price) for r in picked)
    order_id = int(conn.execute(text(
        "INSERT INTO orders (invoice_id, user_id, subtotal, voucher_discount, payment_fee,"
        " total_bill, payment_method) VALUES (:inv, :u, :s, :d, :f, :s - :d + :f, :m)"
        " RETURNING id"),
        {"inv": f"INV-{uuid.uuid4().hex[:12]}", "u": user_id, "s": subtotal, "d": discount,
         "f": fee, "m": method}).scalar_one())
    for r in picked:
        q(conn, "UPDATE product_stocks SET order_id = :o WHERE id = :s", o=order_id, s=r.id)
        q(conn, "INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                " VALUES (:o, :p, :s, :price)",
          o=order_id, p=r.product_id, s=r.id, price=r.customer_price)
    return order_id


def build_shop(engine: Engine) -> Shop:
    """A consistent shop: ledgered balance, stock, and one paid+delivered, one pending and one
    expired order, with vouchers on the paid and the pending order."""
    with engine.begin() as conn:
        for uid in (1, 2, 3):
            make_user(conn, uid)
        q(conn, "UPDATE users SET member_status = 'admin' WHERE id = 2")
        move_balance(conn, 1, 100000, "admin_credit", "grant-1")
        q(conn, "INSERT INTO products (id, name, customer_price) VALUES"
                " (1, 'Netflix', 10000), (2, 'Spotify', 5000)")
        q(conn, "INSERT INTO product_stocks (product_id, content)"
                " SELECT p, 'KEY-' || p || '-' || g"
                " FROM generate_series(1, 2) p, generate_series(1, 4) g")
        q(conn, "INSERT INTO vouchers (code, amount, created_by, expires_at) VALUES"
                " ('HEMAT1', 1000, 2, now() + interval '1 day'),"
                " ('HEMAT2', 1000, 2, now() + interval '1 day')")

    # Paid with balance, voucher used, delivered, sale recorded as a sold_count delta.
    with engine.begin() as conn:
        paid = open_order(conn, 1, {1: 2}, discount=1000)
        q(conn, "UPDATE vouchers SET order_id = :o WHERE code = 'HEMAT1'", o=paid)
    with engine.begin() as conn:
        move_balance(conn, 1, -19000, "purchase", f"order-{paid}")
        q(conn, "UPDATE product_stocks SET is_sold = true WHERE order_id = :o", o=paid)
        q(conn, "UPDATE orders SET status = 'paid', paid_at = now() - interval '5 minutes'"
                " WHERE id = :o", o=paid)
        q(conn, "UPDATE vouchers SET is_used = true, used_by = 1, used_at = now()"
                " WHERE order_id = :o", o=paid)
        q(conn, "INSERT INTO sold_count_deltas (product_id, quantity, order_id)"
                " VALUES (1, 2, :o)", o=paid)
    with engine.begin() as conn:
        q(conn, "UPDATE orders SET delivered_at = now() - interval '4 minutes',"
                " delivery_count = 1 WHERE id = :o", o=paid)

    # Expired: its items move to released_order_items and the units are free again.
    with engine.begin() as conn:
        expired = open_order(conn, 3, {2: 1}, fee=345, method="qris")
    with engine.begin() as conn:
        q(conn, "INSERT INTO released_order_items (id, order_id, product_id, stock_id,"
                " price_per_unit) SELECT id, order_id, product_id, stock_id, price_per_unit"
                " FROM order_items WHERE order_id = :o", o=expired)
        q(conn, "DELETE FROM order_items WHERE order_id = :o", o=expired)
        q(conn, "UPDATE product_stocks SET order_id = NULL WHERE order_id = :o", o=expired)
        q(conn, "UPDATE orders SET status = 'expired' WHERE id = :o", o=expired)

    # Pending: reserves units and holds the second voucher.
    with engine.begin() as conn:
        pending = open_order(conn, 1, {1: 2}, discount=1000, fee=413, method="qris")
        q(conn, "UPDATE vouchers SET order_id = :o WHERE code = 'HEMAT2'", o=pending)
    return Shop(paid_order=paid, pending_order=pending, expired_order=expired)


def corrupt(engine: Engine, sql: str, **params: object) -> None:
    """A superuser edit with every trigger (rules, FKs, audit capture) switched off."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(sql), params)


@pytest.fixture()
def shop(db: Engine, audit_engine: Engine) -> Shop:
    built = build_shop(db)
    ship_all(db, audit_engine)
    return built


def test_consistent_shop_is_clean(shop: Shop, db: Engine, audit_engine: Engine) -> None:
    report = check_invariants(db, audit_engine)
    assert report.ok, report.format()
    assert set(report.rules_checked) == ALL_RULES
    assert "all invariants hold" in report.format()


def test_clean_before_shipping_while_outbox_is_young(db: Engine, audit_engine: Engine) -> None:
    build_shop(db)
    report = check_invariants(db, audit_engine)
    assert report.ok, report.format()


CORRUPTIONS = {
    "balance_without_ledger": (
        "UPDATE users SET account_balance = account_balance + 1000 WHERE id = 1",
        {"balance_equals_ledger"}, "but the ledger sums to"),
    "unit_sold_on_pending_order": (
        "UPDATE product_stocks SET is_sold = true WHERE id ="
        " (SELECT min(id::text)::uuid FROM product_stocks WHERE order_id = :pending)",
        {"stock_conserved", "sold_count_matches"}, "sold, but its order"),
    "expired_order_unit_still_reserved": (
        "UPDATE product_stocks SET order_id = :expired WHERE id ="
        " (SELECT stock_id FROM released_order_items WHERE order_id = :expired)",
        {"stock_conserved"}, "still reserved by expired order"),
    "sold_count_off_by_one": (
        "UPDATE products SET sold_count = sold_count + 1 WHERE id = 1",
        {"sold_count_matches"}, "sold_count 1 + pending deltas 2 but 2 units are sold"),
    "paid_order_not_delivered": (
        "UPDATE orders SET delivered_at = NULL, delivery_count = 0 WHERE id = :paid",
        {"paid_orders_delivered_once"}, "is not delivered after 60 s"),
    "delivered_but_not_paid": (
        "UPDATE orders SET delivered_at = now(), delivery_count = 1 WHERE id = :expired",
        {"paid_orders_delivered_once"}, "is expired but marked delivered"),
    "subtotal_not_sum_of_items": (
        "UPDATE orders SET subtotal = subtotal + 1000, total_bill = total_bill + 1000"
        " WHERE id = :pending",
        {"order_totals"}, "but its items (live + released) sum to"),
    "item_moved_to_other_order": (
        "UPDATE order_items SET order_id = :pending WHERE id ="
        " (SELECT min(id) FROM order_items WHERE order_id = :paid)",
        {"unit_in_one_order", "stock_conserved", "order_totals"}, "but the unit is of product"),
    "voucher_used_on_pending_order": (
        "UPDATE vouchers SET is_used = true, used_by = 1, used_at = now()"
        " WHERE order_id = :pending",
        {"vouchers"}, "is used but its order"),
    "voucher_held_by_expired_order": (
        "UPDATE vouchers SET order_id = :expired WHERE order_id = :pending",
        {"vouchers"}, "which is expired"),
    "ledger_balance_after_wrong": (
        "UPDATE balance_ledger SET balance_after = balance_after + 1 WHERE id ="
        " (SELECT min(id) FROM balance_ledger)",
        {"balance_equals_ledger"}, "but the running sum is"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_each_corruption_is_reported_under_its_rule(shop: Shop, db: Engine,
                                                    audit_engine: Engine, case: str) -> None:
    sql, rules, detail = CORRUPTIONS[case]
    params = {"paid": shop.paid_order, "pending": shop.pending_order,
              "expired": shop.expired_order}
    corrupt(db, sql, **{k: v for k, v in params.items() if f":{k}" in sql})
    report = check_invariants(db, audit_engine)
    assert report.rules_violated() == rules, report.format()
    assert detail in report.format()


def test_delivery_grace_is_respected(shop: Shop, db: Engine, audit_engine: Engine) -> None:
    corrupt(db, "UPDATE orders SET delivered_at = NULL, delivery_count = 0, paid_at = now()"
                " WHERE id = :o", o=shop.paid_order)
    assert check_invariants(db, audit_engine, delivery_grace_seconds=600).ok
    late = check_invariants(db, audit_engine, delivery_grace_seconds=0)
    assert late.rules_violated() == {"paid_orders_delivered_once"}, late.format()
    assert f"order {shop.paid_order} " in late.violations[0].detail


def test_tampered_audit_row_is_reported(shop: Shop, db: Engine, audit_engine: Engine) -> None:
    with audit_engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        target = conn.execute(text(
            "UPDATE audit_logs SET after_state = jsonb_set(after_state, '{account_balance}',"
            " '999999.00') WHERE id = (SELECT min(id) FROM audit_logs WHERE entity_type = 'users')"
            " RETURNING id")).scalar()
    report = check_invariants(db, audit_engine)
    assert report.rules_violated() == {"audit_chain_intact"}, report.format()
    assert any(f"entry {target}:" in v.detail for v in report.violations)


def test_lost_audit_changes_are_reported(shop: Shop, db: Engine, audit_engine: Engine) -> None:
    with db.begin() as conn:
        q(conn, "INSERT INTO products (id, name, customer_price) VALUES (3, 'Canva', 3000)")
    # Young and unshipped: fine.
    assert check_invariants(db, audit_engine).ok
    # The same change, stuck in the outbox for a minute: shipping is not keeping up.
    corrupt(db, "UPDATE audit_outbox SET occurred_at = occurred_at - interval '1 minute'")
    stuck = check_invariants(db, audit_engine)
    assert stuck.rules_violated() == {"every_change_audited"}, stuck.format()
    assert "not shipped" in stuck.format()
    # The change vanished from the outbox without reaching the audit DB.
    corrupt(db, "DELETE FROM audit_outbox")
    lost = check_invariants(db, audit_engine)
    assert lost.rules_violated() == {"every_change_audited"}, lost.format()
    assert "products: 3 rows but only 2 creations recorded" in lost.format()


def test_details_are_capped(shop: Shop, db: Engine, audit_engine: Engine) -> None:
    corrupt(db, "UPDATE product_stocks SET order_id = :o WHERE order_id IS NULL",
            o=shop.expired_order)
    report = check_invariants(db, audit_engine, max_details=2)
    assert report.rules_violated() == {"stock_conserved"}
    details = [v.detail for v in report.violations]
    assert any(d.startswith("... more") for d in details)
    assert len(details) <= 3 * 3  # three queries, each at most cap + one "more" line
