"""Risk rules, the review queue and the admin action audit against real PostgreSQL: what each
verdict writes, holds and refuses, under concurrency too, and what the audit DB then shows."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from quickcart.db import locks
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services import (
    admin_audit,
    delivery,
    fraud,
    fraud_settings,
    invariants,
    orders,
    payments,
    review,
)
from quickcart.services.audit_shipping import ship_all
from tests.conftest import scalar
from tests.integration.test_db_rules import make_product, make_stock

BUYER = 41
ADMIN = 42
CHEAP, DEAR = 30, 31  # Rp5.000 and Rp600.000


@dataclass
class Completed:
    """The gateway's word: paid."""

    status: str = "completed"
    is_completed: bool = True


class PaidGateway:
    """A gateway that confirms every transaction."""

    def transaction_detail(self, order_id: str, amount: Decimal) -> Completed:
        return Completed()

    def create_qris(self, order_id: str, amount: Decimal) -> Any:
        raise NotImplementedError

    def cancel(self, order_id: str, amount: Decimal) -> None:
        return None


def add_user(conn: Any, user_id: int, *, balance: int = 0, age_hours: float = 24 * 30,
             role: str = "customer") -> None:
    conn.execute(text("INSERT INTO users (id, name, bank_id, member_status, created_at)"
                      " VALUES (:id, :n, :b, :r, now() - make_interval(secs => :age))"),
                 {"id": user_id, "n": f"user {user_id}", "b": f"{200000 + user_id}", "r": role,
                  "age": age_hours * 3600})
    if balance:
        conn.execute(text("UPDATE users SET account_balance = :a WHERE id = :u"),
                     {"a": balance, "u": user_id})
        conn.execute(text("INSERT INTO balance_ledger (user_id, amount, reason, reference_type,"
                          " reference_id) VALUES (:u, :a, 'deposit', 'test', :r)"),
                     {"u": user_id, "a": balance, "r": f"seed-{user_id}"})


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """An old account with Rp2.000.000, an admin, a cheap and a dear product with stock."""
    with db.begin() as conn:
        add_user(conn, BUYER, balance=2_000_000)
        add_user(conn, ADMIN, role="admin")
        make_product(conn, CHEAP, 5000)
        make_stock(conn, CHEAP, 30)
        make_product(conn, DEAR, 600_000)
        make_stock(conn, DEAR, 3)
    return db


def buy(engine: Engine, product: int = CHEAP, method: str = "account_balance",
        user: int = BUYER) -> orders.Outcome:
    return orders.create_order(engine, orders.CreateOrder(
        user_id=user, product_id=product, quantity=1, payment_method=method,
        idempotency_key=f"test:{uuid.uuid4().hex}"))


def test_a_clean_purchase_writes_no_assessment(shop: Engine) -> None:
    assert buy(shop).result["status"] == "paid"
    assert scalar(shop, "SELECT count(*) FROM risk_assessments") == 0


def test_twenty_parallel_payments_cannot_slip_past_the_velocity_rule(shop: Engine) -> None:
    """Rp5.000 each: the 6th..9th are flagged (velocity), from the 10th on structuring joins
    velocity (30 + 60 = 90): blocked before payment. Exactly 9 are paid whatever the timing:
    every evaluation counted the ones before it, under the buyer's row lock."""
    results: list[dict[str, Any]] = []
    start = threading.Barrier(20)

    def one() -> None:
        start.wait()
        results.append(buy(shop).result)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["status"] for r in results) == ["paid"] * 9 + ["rejected"] * 11
    assert {r.get("error") for r in results if r["status"] == "rejected"} == {"risk_blocked"}
    with shop.connect() as conn:
        flagged = conn.execute(text(
            "SELECT outcome, count(*) FROM risk_assessments GROUP BY outcome")).all()
    assert dict((r[0], r[1]) for r in flagged) == {"flag": 4, "block": 11}
    assert scalar(shop, "SELECT count(*) FROM orders WHERE status = 'paid'") == 9


def test_new_account_buying_over_500000_is_held_then_approved_and_delivered(
        shop: Engine) -> None:
    with shop.begin() as conn:
        add_user(conn, 50, balance=700_000, age_hours=1)
    outcome = buy(shop, DEAR, user=50)
    assert outcome.result["status"] == "paid"
    order_id = outcome.result["order_id"]
    item = scalar(shop, "SELECT row_to_json(r)::text FROM risk_reviews r WHERE order_id = :o",
                  o=order_id)
    assert item is not None and '"status":"open"' in str(item) and "new_account" in str(item)
    # Held: the normal delivery claims nothing, the sweep skips it, `check` calls it fine.
    assert delivery.claim_delivery(shop, order_id) is None
    assert order_id not in delivery.undelivered_orders(shop, grace_seconds=0)
    topics = [m.topic for m in outcome.outbox]
    assert "quickcart.deliver_order" in topics
    with shop.connect() as conn:
        held_notes = conn.execute(text("SELECT payload->>'key' FROM outbox WHERE payload->>'key'"
                                       " LIKE 'review.%'")).scalars().all()
    assert sorted(held_notes) == ["review.held", "review.new_item"]
    # ... published by the order's own task after its commit, not seconds later by the sweep
    assert sorted(str(m.payload.get("key")) for m in outcome.outbox
                  if str(m.payload.get("key")).startswith("review.")) == \
        ["review.held", "review.new_item"]
    [queued] = review.queue(shop, ADMIN)
    assert queued.user_id == 50 and queued.score == 50 and queued.rules == ["new_account"]
    assert queued.priority == "medium"
    with pytest.raises(ShopError):
        review.queue(shop, BUYER)  # admins only
    done = review.decide(shop, ADMIN, queued.review_id, "approve")
    assert done.changed and done.status == "approved"
    assert [m.topic for m in done.outbox].count("quickcart.deliver_order") == 1
    payload = delivery.claim_delivery(shop, order_id)
    assert payload is not None and payload.contents
    # A stale button: the state, nothing changed.
    again = review.decide(shop, ADMIN, queued.review_id, "refund")
    assert not again.changed and again.status == "approved" and again.outbox == []


def test_rejected_held_payment_is_refunded_to_the_balance_and_units_return(
        shop: Engine, audit_engine: Engine) -> None:
    with shop.begin() as conn:
        add_user(conn, 51, balance=700_000, age_hours=2)
    order_id = buy(shop, DEAR, user=51).result["order_id"]
    free_before = scalar(shop, "SELECT count(*) FROM product_stocks WHERE product_id = :p"
                               " AND order_id IS NULL", p=DEAR)
    review_id = scalar(shop, "SELECT id FROM risk_reviews WHERE order_id = :o", o=order_id)
    done = review.decide(shop, ADMIN, int(str(review_id)), "refund", "Pembayaran tidak wajar")
    assert done.status == "refunded"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = 51") == 700_000
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE product_id = :p"
                        " AND order_id IS NULL", p=DEAR) == int(str(free_before)) + 1
    with shop.connect() as conn:
        said = conn.execute(text("SELECT payload FROM outbox WHERE payload->>'key'"
                                 " = 'review.refunded'")).scalar_one()
    assert said["params"]["reason"] == "Pembayaran tidak wajar"
    ship_all(shop, audit_engine)
    report = invariants.check_invariants(shop, audit_engine, delivery_grace_seconds=0)
    assert report.ok, report.format()
    invoice = str(scalar(shop, "SELECT invoice_id FROM orders WHERE id = :o", o=order_id))
    entries = admin_audit.query(shop, audit_engine, invoice, 20)
    decision = [e for e in entries if e.action == "review_refunded"]
    assert decision and decision[0].actor_id == ADMIN and "new_account" in decision[0].summary


def test_structuring_blocks_before_payment_with_a_polite_refusal(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text(
            "INSERT INTO deposits (invoice_id, user_id, amount, payment_fee, total_bill,"
            " status, paid_at, expires_at) SELECT 'DPT' || g, :u, 9000, 0, 9000, 'pending',"
            " NULL, now() + interval '1 hour' FROM generate_series(1, 1) g"), {"u": BUYER})
        conn.execute(text("UPDATE deposits SET status = 'paid', paid_at = now()"))
    for _ in range(8):
        assert buy(shop).result["status"] == "paid"
    refused = buy(shop)  # 10th small payment in the hour, and the 10th payment: 60 + 30
    assert refused.result == {"status": "rejected", "error": "risk_blocked", "params": {}}
    with shop.connect() as conn:
        message = conn.execute(text("SELECT payload->>'key' FROM outbox ORDER BY id DESC"
                                    " LIMIT 1")).scalar_one()
    assert message == "error.risk_blocked"


def test_the_master_switch_and_settings_are_audited(shop: Engine,
                                                    audit_engine: Engine) -> None:
    with pytest.raises(ShopError):
        fraud_settings.set_setting(shop, BUYER, "enabled", "0")
    with pytest.raises(ShopError):
        fraud_settings.set_setting(shop, ADMIN, "band_block", "abc")
    with pytest.raises(ShopError):
        fraud_settings.set_setting(shop, ADMIN, "no_such_rule", "1")
    change = fraud_settings.set_setting(shop, ADMIN, "enabled", "off")
    assert (change.before, change.after) == ("1", "0")
    for _ in range(12):
        assert buy(shop).result["status"] == "paid"
    assert scalar(shop, "SELECT count(*) FROM risk_assessments") == 0
    ship_all(shop, audit_engine)
    actor = scalar(audit_engine, "SELECT actor_id FROM audit_logs WHERE entity_type ="
                                 " 'fraud_settings' AND entity_id = 'enabled'")
    assert actor == ADMIN


def test_held_deposit_waits_uncredited_until_approved(shop: Engine) -> None:
    with shop.begin() as conn:
        add_user(conn, 52)
    created = payments.create_deposit(shop, 52, 1_000_000, f"dep:{uuid.uuid4().hex}")
    assert created.result["status"] == "pending"  # large: review, not block, before payment
    confirmed = payments.confirm_payment(shop, PaidGateway(), created.result["invoice_id"])
    assert confirmed.result["outcome"] == "held"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = 52") == 0
    review_id = int(str(scalar(shop, "SELECT id FROM risk_reviews WHERE user_id = 52")))
    review.decide(shop, ADMIN, review_id, "approve")
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = 52") == 1_000_000


def test_reminders_go_once_per_period(shop: Engine) -> None:
    with shop.begin() as conn:
        add_user(conn, 53, balance=700_000, age_hours=1)
    buy(shop, DEAR, user=53)
    assert review.remind(shop) == []
    with shop.begin() as conn:
        conn.execute(text("UPDATE risk_reviews SET notified_at = now() - interval '31 minutes'"))
    first = review.remind(shop)
    assert [m.topic for m in first] == ["quickcart.notify_admins"]
    assert review.remind(shop) == []


def test_admin_commands_are_audited_with_masked_arguments_and_attempts_alert_once(
        shop: Engine, audit_engine: Engine) -> None:
    key = f"tg:{uuid.uuid4().hex}"
    args = {"actor_id": ADMIN, "product_id": CHEAP, "lines": "akun1:pass1",
            "text": "login bob:hunter2 now", "idempotency_key": key}
    assert admin_audit.command_started(shop, f"cmd:{key}", ADMIN, "exportstock", args)
    assert not admin_audit.command_started(shop, f"cmd:{key}", ADMIN, "exportstock", args)
    assert admin_audit.command_finished(shop, f"cmd:{key}", "done", {"count": 30})
    assert not admin_audit.command_finished(shop, f"cmd:{key}", "failed")
    alerts = [admin_audit.record_attempt(shop, f"tg:a{i}", BUYER, "exportstock").alerted
              for i in range(8)]
    assert alerts == [False] * 5 + [True, False, False]
    assert not admin_audit.record_attempt(shop, "tg:a0", BUYER, "exportstock").recorded
    ship_all(shop, audit_engine)
    by_admin = admin_audit.query(shop, audit_engine, str(ADMIN), 10)
    assert [e.action for e in by_admin][:2] == ["command_done", "command_started"]
    assert "hunter2" not in by_admin[1].summary and "pass1" not in by_admin[1].summary
    assert '"count": 30' in by_admin[0].summary
    about_product = admin_audit.query(shop, audit_engine, str(CHEAP), 10)
    assert len(about_product) == 2  # what admins did about product 30
    by_user = admin_audit.query(shop, audit_engine, str(BUYER), 50)
    assert sum(e.action == "unauthorized_attempt" for e in by_user) == 8
    with pytest.raises(ShopError):
        admin_audit.query(shop, audit_engine, "'; DROP", 5)


def test_rules_read_under_the_lock_at_confirmation_too(shop: Engine) -> None:
    """A QRIS order screened clean at creation is held when the money arrives and the
    account's history has changed meanwhile (the large rule only looks at the amount)."""
    with shop.begin() as conn:
        add_user(conn, 54, age_hours=48)
    with shop.begin() as conn:
        conn.execute(text("UPDATE products SET customer_price = 1000000 WHERE id = :p"),
                     {"p": DEAR})
    created = buy(shop, DEAR, method="qris", user=54)
    assert created.result["status"] == "pending"
    with unit_of_work(shop) as uow:
        locks.lock_user(uow.session, 54)
        facts, settings = fraud.read_facts(uow.session, 54, Decimal(1_000_000), external=True)
    assert fraud.evaluate(facts, settings).outcome == "review"
    done = payments.confirm_payment(shop, PaidGateway(), created.result["invoice_id"])
    assert done.result["outcome"] == "held"
    order_id = created.result["order_id"]
    assert scalar(shop, "SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert delivery.claim_delivery(shop, order_id) is None
    with shop.connect() as conn:
        stages = conn.execute(text("SELECT stage FROM risk_assessments WHERE user_id = 54"
                                   " ORDER BY id")).scalars().all()
    assert stages == ["create", "confirm"]


def test_reseller_promoted_today_is_flagged(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'reseller' WHERE id = :u"),
                     {"u": BUYER})
        since = conn.execute(text("SELECT reseller_since FROM users WHERE id = :u"),
                             {"u": BUYER}).scalar()
    assert since is not None and since > datetime.now(UTC) - timedelta(minutes=5)
    assert buy(shop).result["status"] == "paid"
    assert scalar(shop, "SELECT rules::text FROM risk_assessments") == \
        '[{"rule": "escalation", "score": 35, "action": "flag"}]'
