"""Beat's housekeeping checks never say "nothing to do" while their task would act: each check
against its task's own query, on the same rows, before and after the work is done, and on a row
in each branch of the task's filter (a check narrower than its task fails there)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from quickcart.db import outbox
from quickcart.services import delivery, digest, housekeeping, orders, payments
from tests.integration.test_db_rules import make_order, make_product, make_stock, make_user


def check(engine: Engine, probe: Callable[[Connection], bool]) -> bool:
    with engine.connect() as conn:
        return probe(conn)


def pending_order(db: Engine, user_id: int = 1, method: str = "account_balance") -> int:
    with db.begin() as conn:
        make_user(conn, user_id)
        if not conn.execute(text("SELECT 1 FROM products WHERE id = 1")).first():
            make_product(conn, 1)
        return make_order(conn, user_id, make_stock(conn, 1), method=method)


def pending_deposit(db: Engine, user_id: int = 1) -> int:
    with db.begin() as conn:
        make_user(conn, user_id)
        return int(conn.execute(text(
            "INSERT INTO deposits (user_id, invoice_id, amount, total_bill, status,"
            " expires_at) VALUES (:u, 'DEP-1', 10000, 10000, 'pending',"
            " now() + interval '1 hour') RETURNING id"), {"u": user_id}).scalar_one())


def test_every_check_is_quiet_on_an_empty_shop(db: Engine) -> None:
    probes: list[Callable[[Connection], bool]] = [
        lambda c: housekeeping.outbox_unpublished(c, 0), housekeeping.overdue_pending,
        housekeeping.audit_unshipped, housekeeping.sold_deltas,
        lambda c: housekeeping.undelivered_paid(c, 0), lambda c: housekeeping.reconcilable(c, 0),
        lambda c: housekeeping.outbox_purgeable(c, 0),
        lambda c: housekeeping.order_activity_since(c, datetime.now(UTC) - timedelta(days=1)),
        housekeeping.low_stock_changes, housekeeping.orphaned_broadcasts,
        housekeeping.open_reviews,
    ]
    assert [check(db, probe) for probe in probes] == [False] * len(probes)


def test_outbox_check_matches_what_the_relay_leases(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO outbox (topic, queue, payload)"
                          " VALUES ('t', 'default', '{}')"))
    # Younger than the grace: the relay leaves it to its publisher, and so does the check.
    assert not check(db, lambda c: housekeeping.outbox_unpublished(c, 3600))
    assert outbox.lease(db, min_age_seconds=3600) == []
    assert check(db, lambda c: housekeeping.outbox_unpublished(c, 0))
    leased = outbox.lease(db, min_age_seconds=0)
    assert len(leased) == 1
    # Leased by a relay that is publishing it: not another relay's work until the lease ends.
    assert not check(db, lambda c: housekeeping.outbox_unpublished(c, 0))
    with db.begin() as conn:
        conn.execute(text("UPDATE outbox SET leased_until = now() - interval '1 second'"))
    assert check(db, lambda c: housekeeping.outbox_unpublished(c, 0))
    outbox.mark_published(db, [leased[0].id])
    assert not check(db, lambda c: housekeeping.outbox_unpublished(c, 0))
    with db.begin() as conn:
        conn.execute(text("UPDATE outbox SET published_at = now() - interval '25 hours'"))
    assert check(db, lambda c: housekeeping.outbox_purgeable(c, 24))
    assert outbox.purge_published(db, older_than_hours=24) == 1
    assert not check(db, lambda c: housekeeping.outbox_purgeable(c, 24))


@pytest.mark.parametrize("kind", ["order", "deposit"])
def test_expiry_check_matches_the_sweep(db: Engine, kind: str) -> None:
    if kind == "order":
        row_id = pending_order(db)
        table, due = "orders", lambda: orders.due_orders(db)
    else:
        row_id = pending_deposit(db)
        table, due = "deposits", lambda: payments.due_deposits(db)
    assert not check(db, housekeeping.overdue_pending) and due() == []
    with db.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET expires_at = now() - interval '1 second'"  # noqa: S608
                          " WHERE id = :i"), {"i": row_id})
    assert check(db, housekeeping.overdue_pending) and due() == [row_id]


def test_reconcile_check_covers_both_reconciliation_queries(db: Engine) -> None:
    order_id = pending_order(db, method="qris")
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET created_at = now() - interval '2 minutes'"
                          " WHERE id = :o"), {"o": order_id})
    # No QR yet: reconciliation would restart it.
    assert payments.pending_without_qr(db, older_than_seconds=60) == [("order", order_id)]
    assert check(db, lambda c: housekeeping.reconcilable(c, 60))
    assert not check(db, lambda c: housekeeping.reconcilable(c, 3600))
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET payment_number = 'QR' WHERE id = :o"),
                     {"o": order_id})
    # With a QR: reconciliation would ask the gateway about it.
    assert payments.pending_for_reconciliation(db, older_than_seconds=60)
    assert check(db, lambda c: housekeeping.reconcilable(c, 60))


def test_redelivery_and_rollup_checks_match_their_sweeps(db: Engine) -> None:
    order_id = pending_order(db)
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now() - interval"
                          " '1 minute' WHERE id = :o"), {"o": order_id})
        conn.execute(text("INSERT INTO sold_count_deltas (product_id, quantity) VALUES (1, 1)"))
    assert delivery.undelivered_orders(db, grace_seconds=30) == [order_id]
    assert check(db, lambda c: housekeeping.undelivered_paid(c, 30))
    assert not check(db, lambda c: housekeeping.undelivered_paid(c, 3600))
    assert check(db, housekeeping.sold_deltas)
    assert orders.rollup_sold_counts(db) == 1
    assert not check(db, housekeeping.sold_deltas)
    # Every write above was captured for the audit database.
    assert check(db, housekeeping.audit_unshipped)


def paid_order(db: Engine) -> int:
    """An order paid a minute ago, never delivered nor claimed."""
    order_id = pending_order(db)
    with db.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now() - interval"
                          " '1 minute' WHERE id = :o"), {"o": order_id})
    return order_id


def review(conn: Connection, order_id: int, status: str) -> None:
    """A risk review of `order_id` in `status` (decided by user 1 unless open)."""
    assessment = conn.execute(text(
        "INSERT INTO risk_assessments (user_id, payment_kind, stage, order_id, amount, score,"
        " rules, outcome) VALUES (1, 'order', 'confirm', :o, 10000, 80, '[]', 'review')"
        " RETURNING id"), {"o": order_id}).scalar_one()
    conn.execute(text(
        "INSERT INTO risk_reviews (assessment_id, user_id, payment_kind, order_id, amount, score,"
        " rules, band, status, decided_by) VALUES (:a, 1, 'order', :o, 10000, 80, '[]',"
        " 'review', :s, CASE WHEN :s = 'open' THEN NULL ELSE 1 END)"),
        {"a": assessment, "o": order_id, "s": status})


@pytest.mark.parametrize(("change", "review_status", "due"), [
    ("", None, True),
    ("delivery_claimed_until = now() - interval '1 second'", None, True),
    ("delivery_claimed_until = now() + interval '1 minute'", None, False),
    ("paid_at = now() - interval '10 seconds'", None, False),
    ("delivered_at = now()", None, False),
    ("", "approved", True),
    ("", "open", False),
    ("", "kept", False),
], ids=["unclaimed", "claim-lapsed", "claimed", "in-grace", "delivered", "review-approved",
        "review-open", "review-kept"])
def test_redelivery_check_agrees_with_the_sweep_on_each_condition(
        db: Engine, change: str, review_status: str | None, due: bool) -> None:
    order_id = paid_order(db)
    with db.begin() as conn:
        if change:
            conn.execute(text(f"UPDATE orders SET {change} WHERE id = :o"), {"o": order_id})  # noqa: S608
        if review_status:
            review(conn, order_id, review_status)
    assert (delivery.undelivered_orders(db, grace_seconds=30) == [order_id]) is due
    assert check(db, lambda c: housekeeping.undelivered_paid(c, 30)) is due


@pytest.mark.parametrize(("kind", "method", "qr", "age_seconds", "due"), [
    ("order", "qris", None, 120, True),
    ("order", "qris", "QR", 120, True),
    ("order", "account_balance", None, 120, False),
    ("order", "qris", "QR", 10, False),
    ("order", "qris", None, 10, False),
    ("deposit", None, None, 120, True),
    ("deposit", None, "QR", 120, True),
    ("deposit", None, "QR", 10, False),
    ("deposit", None, None, 10, False),
], ids=["order-no-qr", "order-qr", "order-balance", "order-qr-young", "order-no-qr-young",
        "deposit-no-qr", "deposit-qr", "deposit-qr-young", "deposit-no-qr-young"])
def test_reconcile_check_agrees_with_reconciliation_on_each_branch(
        db: Engine, kind: str, method: str | None, qr: str | None, age_seconds: int,
        due: bool) -> None:
    row_id = pending_order(db, method=str(method)) if kind == "order" else pending_deposit(db)
    with db.begin() as conn:
        conn.execute(text(f"UPDATE {kind}s SET payment_number = :qr,"  # noqa: S608
                          " created_at = now() - make_interval(secs => :a) WHERE id = :i"),
                     {"qr": qr, "a": age_seconds, "i": row_id})
    found = (payments.pending_for_reconciliation(db, older_than_seconds=60)
             + payments.pending_without_qr(db, older_than_seconds=60))
    assert bool(found) is due
    assert check(db, lambda c: housekeeping.reconcilable(c, 60)) is due


def test_expiry_check_reads_the_sweeps_clock(db: Engine) -> None:
    row_id = pending_order(db)
    later = datetime.now(UTC) + timedelta(hours=2)  # past the order's expires_at
    assert orders.due_orders(db, now=later) == [row_id]
    assert check(db, lambda c: housekeeping.overdue_pending(c, now=later))
    assert not check(db, housekeeping.overdue_pending) and orders.due_orders(db) == []


@pytest.mark.parametrize("change", [
    "status = 'paid', paid_at = now()",
    "status = 'expired', expires_at = now() - interval '1 second'",
    "created_at = now(), payment_method = 'qris', payment_fee = 0",
    "",
], ids=["paid", "expired", "created-qris", "nothing"])
def test_digest_check_agrees_with_the_digest_on_each_count(db: Engine, change: str) -> None:
    order_id = pending_order(db)
    with db.begin() as conn:
        # Created an hour before the window, so only `change` brings it into the window.
        conn.execute(text("UPDATE orders SET created_at = now() - interval '1 hour'"
                          " WHERE id = :o"), {"o": order_id})
        if change:
            conn.execute(text(f"UPDATE orders SET {change} WHERE id = :o"), {"o": order_id})  # noqa: S608
    since = datetime.now(UTC) - timedelta(minutes=1)
    sales = digest.sales_between(db, since, datetime.now(UTC) + timedelta(seconds=1))
    assert sales.empty is (change == "")
    assert check(db, lambda c: housekeeping.order_activity_since(c, since)) is (change != "")


def test_digest_check_sees_activity_after_the_window_start(db: Engine) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    pending_order(db)
    assert check(db, lambda c: housekeeping.order_activity_since(c, before))
    assert not check(db, lambda c: housekeeping.order_activity_since(
        c, datetime.now(UTC) + timedelta(seconds=5)))


def test_low_stock_check_matches_the_alert_sweep(db: Engine) -> None:
    from quickcart.services import stock_admin

    with db.begin() as conn:
        make_product(conn, 1)
        make_stock(conn, 1, 3)  # at or below the default threshold (5)
    assert check(db, housekeeping.low_stock_changes)
    assert len(stock_admin.check_low_stock(db)) == 1
    assert not check(db, housekeeping.low_stock_changes)  # alerted once per crossing
    with db.begin() as conn:
        make_stock(conn, 1, 10)
    assert check(db, housekeeping.low_stock_changes)  # back above: the alert is cleared
    assert stock_admin.check_low_stock(db) == []
    assert not check(db, housekeeping.low_stock_changes)


@pytest.mark.parametrize("change", ["is_active = false", "low_stock_threshold = 0"],
                         ids=["inactive", "no-threshold"])
def test_low_stock_check_ignores_the_products_the_sweep_ignores(db: Engine, change: str) -> None:
    from quickcart.services import stock_admin

    with db.begin() as conn:
        make_product(conn, 1)
        make_stock(conn, 1, 3)
        conn.execute(text(f"UPDATE products SET {change} WHERE id = 1"))  # noqa: S608
    assert not check(db, housekeeping.low_stock_changes)
    assert stock_admin.check_low_stock(db) == []


def test_broadcast_check_matches_the_resume_sweep(db: Engine) -> None:
    from quickcart.services import broadcast

    with db.begin() as conn:
        make_user(conn, 1)
        broadcast_id = conn.execute(text(
            "INSERT INTO broadcasts (intent_key, created_by, message_kind, body)"
            " VALUES ('k', 1, 'text', 'hi') RETURNING id")).scalar_one()
    assert broadcast.running(db) == [broadcast_id]
    assert check(db, housekeeping.orphaned_broadcasts)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO broadcast_runners (broadcast_id, runner, lease_until)"
                          " VALUES (:b, 'r', now() + interval '1 minute')"), {"b": broadcast_id})
    assert broadcast.running(db) == [] and not check(db, housekeeping.orphaned_broadcasts)


def test_every_beat_entry_is_checked_unless_its_run_is_the_check() -> None:
    from workers import beat
    from workers.app import app

    tasks = {str(entry["task"]) for entry in app.conf.beat_schedule.values()}
    assert tasks - set(beat.CHECKS) == set(beat.ALWAYS_SENT), \
        "a beat entry without a check in workers/beat.py runs (and logs) even when idle"


def test_a_failing_check_sends_the_task_and_warns_once(caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import beat

    calls: list[str] = []

    def broken() -> bool:
        calls.append("x")
        raise ConnectionError("database down")

    monkeypatch.setitem(beat.CHECKS, "quickcart.probe", broken)
    scheduler: Any = beat.HousekeepingScheduler.__new__(beat.HousekeepingScheduler)
    scheduler._failing = set()
    entry = SimpleNamespace(name="probe", task="quickcart.probe")
    with caplog.at_level(logging.WARNING, logger="workers.beat"):
        assert scheduler.has_work(entry) and scheduler.has_work(entry)
    assert len(calls) == 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    monkeypatch.setitem(beat.CHECKS, "quickcart.probe", lambda: False)
    assert not scheduler.has_work(entry)
    assert "probe" not in scheduler._failing
