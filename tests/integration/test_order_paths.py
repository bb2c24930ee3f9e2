"""The purchase and delivery paths against real PostgreSQL: what one transaction writes, what a
refusal leaves behind, and who owns a delivery lease."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from quickcart.services import delivery, notifications, orders
from sandbox.serving import wait_until
from tests.conftest import scalar
from tests.integration.test_db_rules import credit, make_product, make_stock, make_user

BUYER = 7
PRODUCT = 20
PRICE = 10000


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """Buyer 7 with Rp25.000 (ledgered) and product 20 (Rp10.000) with 3 units."""
    with db.begin() as conn:
        make_user(conn, BUYER)
        credit(conn, BUYER, 25000, "seed")
        make_product(conn, PRODUCT, PRICE)
        make_stock(conn, PRODUCT, 3)
    return db


def buy(engine: Engine, quantity: int = 1, key: str | None = None,
        method: str = "account_balance") -> orders.Outcome:
    return orders.create_order(engine, orders.CreateOrder(
        user_id=BUYER, product_id=PRODUCT, quantity=quantity, payment_method=method,
        idempotency_key=key or f"test:{uuid.uuid4().hex}"))


def outbox_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, topic, queue, payload FROM outbox ORDER BY id")).all()]


def test_balance_purchase_writes_everything_in_one_transaction(shop: Engine) -> None:
    outcome = buy(shop, 2)
    assert outcome.result["status"] == "paid"
    order_id = outcome.result["order_id"]
    assert scalar(shop, "SELECT status FROM orders WHERE id = :o", o=order_id) == "paid"
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE order_id = :o AND is_sold",
                  o=order_id) == 2
    assert scalar(shop, "SELECT count(*) FROM order_items WHERE order_id = :o", o=order_id) == 2
    assert scalar(shop, "SELECT sum(quantity) FROM sold_count_deltas WHERE order_id = :o",
                  o=order_id) == 2
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 5000
    assert scalar(shop, "SELECT sum(amount) FROM balance_ledger WHERE user_id = :u",
                  u=BUYER) == 5000
    # the messages handed back for publishing are exactly the committed outbox rows
    stored = outbox_rows(shop)
    assert [(m.id, m.topic, m.queue, m.payload) for m in outcome.outbox] == stored
    assert [m.topic for m in outcome.outbox] == ["quickcart.deliver_order"]
    assert outcome.outbox[0].payload == {"order_id": order_id}
    # the same intent again changes nothing and answers the same
    again = buy(shop, 2, key=scalar(shop, "SELECT key FROM idempotency_keys"))  # type: ignore[arg-type]
    assert again.result == outcome.result and again.outbox == []
    assert scalar(shop, "SELECT count(*) FROM orders") == 1


@pytest.mark.parametrize(("quantity", "balance", "code"), [
    (4, 25000, "not_enough_stock"),
    (2, 15000, "insufficient_balance"),
])
def test_refusal_records_its_answer_and_changes_nothing_else(
        shop: Engine, quantity: int, balance: int, code: str) -> None:
    if balance != 25000:
        with shop.begin() as conn:
            credit(conn, BUYER, balance - 25000, "cut")
    key = f"test:{uuid.uuid4().hex}"
    outcome = buy(shop, quantity, key=key)
    assert outcome.result["error"] == code
    assert scalar(shop, "SELECT count(*) FROM orders") == 0
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL") == 0
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == balance
    assert scalar(shop, "SELECT result->>'error' FROM idempotency_keys WHERE key = :k",
                  k=key) == code
    [message] = outcome.outbox
    assert message.topic == "quickcart.send_message"
    assert message.payload["key"] == f"error.{code}"
    assert buy(shop, quantity, key=key).result == outcome.result
    assert len(outbox_rows(shop)) == 1


def test_second_pending_order_is_answered_with_the_first(shop: Engine) -> None:
    first = buy(shop, 1, method="qris")
    assert first.result["status"] == "pending"
    second = buy(shop, 1, method="qris")
    assert second.result["error"] == "pending_order_exists"
    assert second.result["params"]["invoice_id"] == first.result["invoice_id"]


def test_twins_of_one_intent_racing_make_one_order(shop: Engine) -> None:
    """Eight deliveries of one intent at once (real threads): one order, one debit, one
    delivery queued, and every twin answers with the winner's result."""
    key = f"test:{uuid.uuid4().hex}"
    gate = threading.Barrier(8)
    results: list[dict[str, Any]] = []

    def twin() -> None:
        gate.wait(timeout=10)
        results.append(buy(shop, 1, key=key).result)

    threads = [threading.Thread(target=twin) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8 and all(result == results[0] for result in results)
    assert results[0]["status"] == "paid"
    assert scalar(shop, "SELECT count(*) FROM orders") == 1
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 15000
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE is_sold") == 1
    assert [row[1] for row in outbox_rows(shop)] == ["quickcart.deliver_order"]


def test_a_twin_that_claims_the_key_first_wins_and_this_intent_writes_nothing(
        shop: Engine) -> None:
    """A twin of the intent holding its key uncommitted (here: another transaction) makes the
    purchase wait at its claim; when the twin commits, the purchase rolls back its order and
    answers with the twin's result."""
    key = f"test:{uuid.uuid4().hex}"
    twin_result = {"status": "paid", "order_id": 999, "by": "twin"}
    answer: list[orders.Outcome] = []
    with shop.connect() as twin:
        twin.execute(text("INSERT INTO idempotency_keys (key, scope, result)"
                          " VALUES (:k, 'create_order', CAST(:r AS jsonb))"),
                     {"k": key, "r": json.dumps(twin_result)})
        buyer = threading.Thread(target=lambda: answer.append(buy(shop, 1, key=key)))
        buyer.start()
        # The purchase has done its work and waits on the twin's key (the only lock held).
        wait_until(lambda: scalar(
            shop, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()") == 1, what="the claim waiting", timeout=10)
        twin.commit()
        buyer.join(timeout=10)
    [outcome] = answer
    assert outcome.result == twin_result and outcome.outbox == []
    assert scalar(shop, "SELECT count(*) FROM orders") == 0
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL") == 0
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 25000
    assert outbox_rows(shop) == []


class Chat:
    """A messenger that records sends and can be told to fail the next one."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail_next = False

    def send_message(self, chat_id: int, text: str,
                     reply_markup: dict[str, Any] | None = None) -> int:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("telegram unreachable")
        self.sent.append(text)
        return len(self.sent)

    def send_photo(self, chat_id: int, png: bytes, caption: str,
                   reply_markup: dict[str, Any] | None = None) -> int:
        raise AssertionError("no photo expected")

    def send_document(self, chat_id: int, filename: str, data: bytes, caption: str) -> int:
        raise AssertionError("no document expected")


def test_delivery_lease_belongs_to_its_task(shop: Engine) -> None:
    order_id = buy(shop).result["order_id"]
    assert delivery.claim_delivery(shop, order_id, owner="task-a") is not None
    assert delivery.claim_delivery(shop, order_id, owner="task-b") is None  # a duplicate
    assert delivery.claim_delivery(shop, order_id, owner="task-a") is not None  # a retry
    assert not delivery.complete_delivery(shop, order_id, owner="task-b")
    assert delivery.complete_delivery(shop, order_id, owner="task-a")
    assert scalar(shop, "SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1


def test_delivery_claim_refuses_what_is_not_to_be_sent(shop: Engine) -> None:
    """Every condition of the one-statement claim: paid, the buyer's, not yet delivered (unless
    re-sent), not leased to another task (unless the lease lapsed)."""
    pending = buy(shop, method="qris").result["order_id"]
    assert delivery.claim_delivery(shop, pending, owner="t") is None  # not paid
    orders.expire_order(shop, pending, status="cancelled", reason="user", actor_id=BUYER)
    order_id = buy(shop, quantity=2).result["order_id"]
    assert delivery.claim_delivery(shop, order_id, requester_id=BUYER + 1, owner="t") is None
    payload = delivery.claim_delivery(shop, order_id, requester_id=BUYER, owner="task-a")
    assert payload is not None and payload.chat_id == BUYER and len(payload.contents) == 2
    assert payload.language == "id"  # the buyer never chose one: the shop's default
    assert delivery.complete_delivery(shop, order_id, owner="task-a")
    assert delivery.claim_delivery(shop, order_id, owner="task-b") is None  # delivered
    assert delivery.claim_delivery(shop, order_id, resend=True, owner="task-b") is not None
    with shop.begin() as conn:  # task-b died holding the lease; it lapses
        conn.execute(text("UPDATE orders SET delivery_claimed_until = now() - interval '1 s'"
                          " WHERE id = :o"), {"o": order_id})
    assert delivery.claim_delivery(shop, order_id, resend=True, owner="task-c") is not None
    assert scalar(shop, "SELECT delivery_claimed_by FROM orders WHERE id = :o",
                  o=order_id) == "task-c"


def test_concurrent_delivery_claims_lease_it_once(shop: Engine) -> None:
    """Eight threads claim the same delivery at once: exactly one gets the lease."""
    import threading

    order_id = buy(shop).result["order_id"]
    gate = threading.Barrier(8)
    won: list[str] = []

    def claim(owner: str) -> None:
        gate.wait()
        if delivery.claim_delivery(shop, order_id, owner=owner) is not None:
            won.append(owner)

    threads = [threading.Thread(target=claim, args=(f"task-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1
    assert scalar(shop, "SELECT delivery_claimed_by FROM orders WHERE id = :o",
                  o=order_id) == won[0]


def test_failed_send_is_retried_at_once_by_the_same_task(shop: Engine) -> None:
    order_id = buy(shop).result["order_id"]
    chat = Chat()
    chat.fail_next = True
    with pytest.raises(ConnectionError):
        notifications.deliver_order(shop, chat, order_id, owner="task-a")
    assert notifications.deliver_order(shop, chat, order_id, owner="task-a")
    assert len(chat.sent) == 1
    assert scalar(shop, "SELECT delivered_at IS NOT NULL FROM orders WHERE id = :o",
                  o=order_id) is True


def test_a_send_whose_record_failed_is_never_sent_again(
        shop: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    order_id = buy(shop).result["order_id"]
    chat = Chat()
    real = delivery.complete_delivery

    def blip(*_: Any, **__: Any) -> bool:
        raise OperationalError("UPDATE orders", {}, Exception("server closed the connection"))

    monkeypatch.setattr(delivery, "complete_delivery", blip)
    with pytest.raises(notifications.SentNotRecorded):
        notifications.deliver_order(shop, chat, order_id, owner="task-a")
    monkeypatch.setattr(delivery, "complete_delivery", real)
    # the retry (same task id, sent=True) records without sending; a duplicate task sends nothing
    assert notifications.deliver_order(shop, chat, order_id, owner="task-a", already_sent=True)
    assert not notifications.deliver_order(shop, chat, order_id, owner="task-b")
    assert len(chat.sent) == 1
    assert scalar(shop, "SELECT delivery_count FROM orders WHERE id = :o", o=order_id) == 1
    assert scalar(shop, "SELECT delivery_claimed_by FROM orders WHERE id = :o",
                  o=order_id) is None


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def test_handing_out_a_unit_reads_only_the_rows_it_takes(db: Engine) -> None:
    """One import gives a product thousands of units with the same created_at; the hand-out
    query must still read just the first free ones from its index, not sort them all."""
    with db.begin() as conn:
        make_product(conn, PRODUCT, PRICE)
        conn.execute(text(
            "INSERT INTO product_stocks (product_id, content)"
            " SELECT :p, 'KEY-' || g FROM generate_series(1, 20000) g"), {"p": PRODUCT})
        conn.execute(text("ANALYZE product_stocks"))
    with db.begin() as conn:
        plan = conn.execute(text(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM product_stocks"
            " WHERE product_id = :p AND NOT is_sold AND order_id IS NULL"
            " ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"), {"p": PRODUCT}).scalar_one()
    nodes = _plan_nodes(plan[0]["Plan"])
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")], nodes
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    assert scans and all(n["Actual Rows"] <= 1 for n in scans), scans
