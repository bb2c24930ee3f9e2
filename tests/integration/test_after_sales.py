"""After-sales services against real PostgreSQL: refunds (cap, once, racing confirmations),
warranty replacement (stock conserved, the dead unit never free again), payment re-checks
through the webhook's path, support tickets (rate limit, states), and the checker."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from quickcart.domain.errors import ShopError
from quickcart.services import (
    delivery,
    order_lookup,
    order_tools,
    orders,
    refunds,
    support,
    warranty,
)
from quickcart.services.invariants import check_invariants
from quickcart.services.support import Incoming
from tests.conftest import scalar
from tests.integration.test_db_rules import (
    credit,
    make_admin,
    make_product,
    make_stock,
    make_user,
)

ADMIN = 900
BUYER = 7
PRODUCT = 20
PRICE = 30000


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """An admin, buyer 7 with Rp100.000 (ledgered), product 20 (Rp30.000) with 3 units."""
    with db.begin() as conn:
        make_admin(conn, ADMIN)
        make_user(conn, BUYER)
        credit(conn, BUYER, 100000, "seed")
        make_product(conn, PRODUCT, PRICE)
        make_stock(conn, PRODUCT, 3)
    return db


def paid_order(engine: Engine, quantity: int = 1, deliver: bool = True) -> dict[str, Any]:
    """A balance purchase (paid at once), delivered unless told otherwise."""
    result = orders.create_order(engine, orders.CreateOrder(
        user_id=BUYER, product_id=PRODUCT, quantity=quantity,
        payment_method="account_balance", idempotency_key=f"t:{uuid.uuid4().hex}")).result
    assert result["status"] == "paid", result
    if deliver:
        assert delivery.claim_delivery(engine, result["order_id"]) is not None
        assert delivery.complete_delivery(engine, result["order_id"])
    return result


def balance(engine: Engine) -> Decimal:
    return Decimal(str(scalar(engine, "SELECT account_balance FROM users WHERE id = :u",
                              u=BUYER)))


def assert_checker_clean(engine: Engine, audit: Engine) -> None:
    report = check_invariants(engine, audit, delivery_grace_seconds=600)
    assert report.ok, report.format()


# ------------------------------------------------------------------ refunds

def test_refund_is_proposed_then_paid_once_and_capped(shop: Engine, audit_engine: Engine) -> None:
    order = paid_order(shop)
    before = balance(shop)
    proposal = refunds.propose(shop, ADMIN, order["order_id"], "14000", "k1").result
    assert proposal["status"] == "proposed"
    assert balance(shop) == before  # a proposal moves no money
    assert refunds.propose(shop, ADMIN, order["order_id"], "14000", "k1").result == proposal

    paid = refunds.confirm(shop, ADMIN, proposal["refund_id"])
    assert paid.result["changed"] and balance(shop) == before + 14000
    assert [m.payload["key"] for m in paid.outbox] == ["refund.paid"]
    again = refunds.confirm(shop, ADMIN, proposal["refund_id"])
    assert again.result["status"] == "paid" and not again.result["changed"]
    assert again.outbox == []
    assert balance(shop) == before + 14000
    ledger = scalar(shop, "SELECT count(*) FROM balance_ledger WHERE reason = 'refund'"
                    " AND reference_type = 'order' AND reference_id = :r AND actor_id = :a",
                    r=f"{order['invoice_id']}#R{proposal['refund_id']}", a=ADMIN)
    assert ledger == 1

    # the rest, then nothing more: partial refunds add up to at most what was paid
    with pytest.raises(ShopError) as too_much:
        refunds.propose(shop, ADMIN, order["order_id"], "16001", "k2")
    assert too_much.value.code == "refund_too_large" and too_much.value.params["max"] == "16000"
    rest = refunds.propose(shop, ADMIN, order["order_id"], "16000", "k3").result
    refunds.confirm(shop, ADMIN, rest["refund_id"])
    assert balance(shop) == before + PRICE
    for amount, code in (("1", "refund_too_large"), ("-5000", "invalid_amount"),
                         ("0", "invalid_amount"), ("abc", "invalid_amount")):
        with pytest.raises(ShopError) as refused:
            refunds.propose(shop, ADMIN, order["order_id"], amount, f"k-{amount}")
        assert refused.value.code == code
    view = order_lookup.order_view(shop, order["order_id"])
    assert view is not None and view.refunded == PRICE and view.refundable == 0
    # audited with the admin as actor
    assert scalar(shop, "SELECT count(*) FROM audit_outbox WHERE entity_type = 'order_refunds'"
                  " AND actor_id = :a AND actor_type = 'admin'", a=ADMIN) >= 4
    assert_checker_clean(shop, audit_engine)


def test_two_proposals_racing_never_refund_more_than_paid(shop: Engine) -> None:
    order = paid_order(shop)
    first = refunds.propose(shop, ADMIN, order["order_id"], "20000", "a").result
    second = refunds.propose(shop, ADMIN, order["order_id"], "20000", "b").result
    outcomes: list[Any] = []

    def press(refund_id: int) -> None:
        try:
            outcomes.append(refunds.confirm(shop, ADMIN, refund_id).result["status"])
        except ShopError as refusal:
            outcomes.append(refusal.code)

    threads = [threading.Thread(target=press, args=(r,))
               for r in (first["refund_id"], second["refund_id"], first["refund_id"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whichever proposal locks the order first is paid (its second press answers "paid"
    # again); the other is refused: never both.
    assert sorted(outcomes) in (["paid", "paid", "refund_too_large"],
                                ["paid", "refund_too_large", "refund_too_large"])
    assert scalar(shop, "SELECT sum(amount) FROM order_refunds WHERE status = 'paid'") == 20000
    assert scalar(shop, "SELECT count(*) FROM balance_ledger WHERE reason = 'refund'") == 1


def test_refund_refusals(shop: Engine) -> None:
    with pytest.raises(ShopError) as unknown:
        refunds.propose(shop, ADMIN, 4242, "1000", "x")
    assert unknown.value.code == "order_not_found"
    order = paid_order(shop)
    with pytest.raises(ShopError) as not_admin:
        refunds.propose(shop, BUYER, order["order_id"], "1000", "y")
    assert not_admin.value.code == "not_admin"
    proposal = refunds.propose(shop, ADMIN, order["order_id"], "1000", "z").result
    assert refunds.cancel(shop, ADMIN, proposal["refund_id"]).result["changed"]
    late = refunds.confirm(shop, ADMIN, proposal["refund_id"]).result
    assert late["status"] == "cancelled" and not late["changed"]
    assert scalar(shop, "SELECT count(*) FROM balance_ledger WHERE reason = 'refund'") == 0


def test_order_estimate_uses_paid_share_days_and_claims(shop: Engine) -> None:
    order = paid_order(shop)
    with shop.begin() as conn:
        conn.execute(text("UPDATE orders SET delivered_at = now() - interval '10 days 1 hour'"
                          " WHERE id = :o"), {"o": order["order_id"]})
    found = refunds.order_estimate(shop, order["order_id"])
    assert found.total == 14000 and found.suggested == 14000   # 30000 × 20/30 × 0.7
    with shop.begin() as conn:
        conn.execute(text("UPDATE order_items SET warranty_claims = 3 WHERE order_id = :o"),
                     {"o": order["order_id"]})
    assert refunds.order_estimate(shop, order["order_id"]).total == 10000
    with pytest.raises(ShopError) as bad:
        refunds.manual_estimate(shop, "30000", "-1", "0")
    assert bad.value.code == "invalid_refund_input"
    assert refunds.manual_estimate(shop, "30000", "10", "0").amount == 14000


def test_setformula_validates_and_is_audited(shop: Engine) -> None:
    before, after = refunds.set_formula(shop, ADMIN, "late", "0.65")
    assert before.late == Decimal("0.7") and after.late == Decimal("0.65")
    assert refunds.manual_estimate(shop, "30000", "10", "0").amount == 13000
    for name, value, code in (("late", "1.5", "formula_invalid"), ("late", "0", "formula_invalid"),
                              ("period", "0", "formula_invalid"), ("late", "x", "formula_invalid"),
                              ("nope", "0.5", "formula_unknown_setting")):
        with pytest.raises(ShopError) as refused:
            refunds.set_formula(shop, ADMIN, name, value)
        assert refused.value.code == code
    assert refunds.current_formula(shop).late == Decimal("0.65")
    with pytest.raises(ShopError):
        refunds.set_formula(shop, BUYER, "late", "0.5")
    row = scalar(shop, "SELECT before_state->>'late' || '>' || (after_state->>'late')"
                 " FROM audit_outbox WHERE entity_type = 'refund_formula' AND action = 'update'"
                 " AND actor_id = :a", a=ADMIN)
    assert row == "0.700>0.650"


# ------------------------------------------------------------------ warranty

def test_replacement_hands_out_a_free_unit_once(shop: Engine, audit_engine: Engine) -> None:
    order = paid_order(shop)
    item = scalar(shop, "SELECT id FROM order_items WHERE order_id = :o", o=order["order_id"])
    old = scalar(shop, "SELECT stock_id FROM order_items WHERE id = :i", i=item)
    outcome = warranty.replace_unit(shop, ADMIN, int(item), "w1")  # type: ignore[arg-type]
    assert outcome.result["status"] == "replaced"
    assert [m.topic for m in outcome.outbox] == ["quickcart.deliver_replacement"]
    new = scalar(shop, "SELECT stock_id FROM order_items WHERE id = :i", i=item)
    assert new != old
    # a twin press: the same answer, nothing more handed out
    assert warranty.replace_unit(shop, ADMIN, int(item), "w1").result == outcome.result  # type: ignore[arg-type]
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE is_sold") == 2
    assert scalar(shop, "SELECT warranty_claims FROM order_items WHERE id = :i", i=item) == 1
    # the dead unit stays sold on its order: never free, never sold again
    assert scalar(shop, "SELECT is_sold AND order_id = :o FROM product_stocks WHERE id = :s",
                  s=old, o=order["order_id"]) is True
    other = paid_order(shop)
    assert scalar(shop, "SELECT stock_id FROM order_items WHERE order_id = :o",
                  o=other["order_id"]) not in (old, new)
    view = warranty.replacement_view(shop, outcome.result["claim_id"])
    assert view is not None and view.content.startswith("KEY-")
    # the re-send sends the current (new) unit
    payload = delivery.claim_delivery(shop, order["order_id"], resend=True)
    assert payload is not None and payload.contents == [view.content]
    delivery.complete_delivery(shop, order["order_id"])
    audited = scalar(shop, "SELECT count(*) FROM audit_outbox WHERE entity_type ="
                     " 'warranty_claims' AND actor_id = :a", a=ADMIN)
    assert audited == 2  # created, then replaced
    # sold_count (rolled up) counts sales, not replacements
    orders.rollup_sold_counts(shop)
    assert scalar(shop, "SELECT sold_count FROM products WHERE id = :p", p=PRODUCT) == 2
    assert_checker_clean(shop, audit_engine)


def test_no_free_stock_keeps_the_claim_open_then_a_refund_settles_it(
        shop: Engine, audit_engine: Engine) -> None:
    order = paid_order(shop, quantity=3)
    item = int(scalar(shop, "SELECT min(id) FROM order_items"))  # type: ignore[arg-type]
    first = warranty.replace_unit(shop, ADMIN, item, "n1")
    assert first.result["status"] == "open"
    assert [m.payload["key"] for m in first.outbox] == ["warranty.no_stock"]
    again = warranty.replace_unit(shop, ADMIN, item, "n2")  # another press, still no stock
    assert again.result["status"] == "open" and again.result["claim_id"] == first.result[
        "claim_id"]
    assert scalar(shop, "SELECT warranty_claims FROM order_items WHERE id = :i", i=item) == 1
    proposal = refunds.propose(shop, ADMIN, order["order_id"], "5000", "r").result
    refunds.confirm(shop, ADMIN, proposal["refund_id"])
    assert scalar(shop, "SELECT status FROM warranty_claims") == "refunded"
    assert_checker_clean(shop, audit_engine)


def test_replacement_refusals(shop: Engine) -> None:
    order = paid_order(shop, deliver=False)
    item = int(scalar(shop, "SELECT id FROM order_items"))  # type: ignore[arg-type]
    for actor, item_id, code in ((ADMIN, item, "order_not_delivered"),
                                 (ADMIN, 999999, "unit_not_in_order"),
                                 (BUYER, item, "not_admin")):
        with pytest.raises(ShopError) as refused:
            warranty.replace_unit(shop, actor, item_id, f"x{actor}{item_id}")
        assert refused.value.code == code
    assert scalar(shop, "SELECT count(*) FROM warranty_claims") == 0
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE is_sold") == 1
    assert scalar(shop, "SELECT status FROM orders WHERE id = :o", o=order["order_id"]) == "paid"


def test_checker_notices_a_replacement_gone_wrong(shop: Engine, audit_engine: Engine) -> None:
    paid_order(shop)
    item = int(scalar(shop, "SELECT id FROM order_items"))  # type: ignore[arg-type]
    warranty.replace_unit(shop, ADMIN, item, "w")
    with shop.begin() as conn:  # a hand edit puts the dead unit back on the line
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE order_items SET stock_id = (SELECT old_stock_id FROM"
                          " warranty_claims) WHERE id = :i"), {"i": item})
    report = check_invariants(shop, audit_engine, delivery_grace_seconds=600)
    assert "replacements_and_refunds" in report.rules_violated(), report.format()


# ------------------------------------------------------------------ re-send, re-check

@dataclass
class FakeTransaction:
    status: str

    @property
    def is_completed(self) -> bool:
        return self.status == "completed"


class FakeGateway:
    """The gateway's word, as a test sets it; counts the questions."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.asked: list[tuple[str, Decimal]] = []

    def create_qris(self, order_id: str, amount: Decimal) -> Any:
        raise NotImplementedError

    def transaction_detail(self, order_id: str, amount: Decimal) -> FakeTransaction:
        self.asked.append((order_id, amount))
        return FakeTransaction(self.status)

    def cancel(self, order_id: str, amount: Decimal) -> None:
        return None


def pending_qris_order(engine: Engine) -> dict[str, Any]:
    result = orders.create_order(engine, orders.CreateOrder(
        user_id=BUYER, product_id=PRODUCT, quantity=1, payment_method="qris",
        idempotency_key=f"q:{uuid.uuid4().hex}")).result
    assert result["status"] == "pending", result
    return result


def test_recheck_pays_only_on_the_gateways_word(shop: Engine, audit_engine: Engine) -> None:
    order = pending_qris_order(shop)
    forged = order_tools.recheck_payment(shop, FakeGateway("pending"), ADMIN,
                                         order["order_id"], "c1")
    assert forged.result["outcome"] == "not_paid"
    assert scalar(shop, "SELECT status FROM orders WHERE id = :o", o=order["order_id"]) \
        == "pending"
    gateway = FakeGateway("completed")
    paid = order_tools.recheck_payment(shop, gateway, ADMIN, order["order_id"], "c2")
    assert paid.result["outcome"] == "paid"
    assert gateway.asked == [(order["invoice_id"], Decimal(order["total_bill"])
                              - Decimal(order["payment_fee"]))]
    assert "quickcart.deliver_order" in [m.topic for m in paid.outbox]
    again = order_tools.recheck_payment(shop, gateway, ADMIN, order["order_id"], "c3")
    assert again.result["outcome"] == "already_paid" and len(gateway.asked) == 1
    assert scalar(shop, "SELECT actor_id FROM audit_outbox WHERE entity_type = 'orders'"
                  " AND after_state->>'status' = 'paid' AND before_state->>'status' = 'pending'"
                  ) == ADMIN
    assert scalar(shop, "SELECT string_agg(outcome, ',' ORDER BY id) FROM order_actions") \
        == "not_paid,paid,already_paid"
    assert_checker_clean(shop, audit_engine)


def test_recheck_after_expiry_credits_the_balance(shop: Engine) -> None:
    order = pending_qris_order(shop)
    orders.expire_order(shop, order["order_id"], force=True)
    before = balance(shop)
    outcome = order_tools.recheck_payment(shop, FakeGateway("completed"), ADMIN,
                                          order["order_id"], "e1")
    assert outcome.result["outcome"] == "credited_late"
    assert balance(shop) > before
    assert order_tools.recheck_payment(shop, FakeGateway("completed"), ADMIN,
                                       order["order_id"], "e2").result["outcome"] \
        == "already_credited"


def test_resend_queues_the_same_units_once_per_press(shop: Engine) -> None:
    order = paid_order(shop)
    first = order_tools.resend_delivery(shop, ADMIN, order["order_id"], "p1")
    assert first.result["status"] == "queued"
    assert [(m.topic, m.payload) for m in first.outbox] == [
        ("quickcart.deliver_order", {"order_id": order["order_id"], "resend": True})]
    twin = order_tools.resend_delivery(shop, ADMIN, order["order_id"], "p1")
    assert twin.result["status"] == "duplicate" and twin.outbox == []
    assert scalar(shop, "SELECT count(*) FROM order_actions WHERE action = 'resend'") == 1
    pending = pending_qris_order(shop)
    with pytest.raises(ShopError) as refused:
        order_tools.resend_delivery(shop, ADMIN, pending["order_id"], "p2")
    assert refused.value.code == "order_not_paid"


# ------------------------------------------------------------------ support

def test_ticket_states_and_rate_limit(shop: Engine) -> None:
    order = paid_order(shop)
    opened = support.open_ticket(shop, BUYER, Incoming("kunci mati", "photo-1"), "s1",
                                 order["order_id"])
    ticket = opened.result["ticket_id"]
    assert sorted(m.topic for m in opened.outbox) == ["quickcart.send_message",
                                                      "quickcart.support_fan_out"]
    assert support.open_ticket(shop, BUYER, Incoming("kunci mati", "photo-1"), "s1").result \
        == opened.result
    view = support.message_view(shop, opened.result["message_id"])
    assert view.invoice_id == order["invoice_id"] and view.photo_file_id == "photo-1"

    support.record_relay(shop, ADMIN, 555, ticket)
    assert support.ticket_of_reply(shop, ADMIN, 555) == ticket
    answered = support.admin_answer(shop, ADMIN, ticket, Incoming("sudah kami cek"), "a1")
    assert [m.topic for m in answered.outbox] == ["quickcart.support_relay"]
    assert scalar(shop, "SELECT status FROM support_tickets") == "answered"
    with pytest.raises(ShopError):
        support.admin_answer(shop, BUYER, ticket, Incoming("saya admin"), "a2")
    # a whitelisted admin group's member answers as the group (not a registered admin)
    group = support.admin_answer(shop, 424242, ticket, Incoming("dari grup"), "g1",
                                 from_admin_group=True)
    assert group.result["status"] == "answered"
    support.shopper_follow_up(shop, BUYER, ticket, Incoming("masih mati"), "f1")
    assert scalar(shop, "SELECT status FROM support_tickets") == "open"

    closed = support.close_ticket(shop, ADMIN, ticket)
    assert closed.result["changed"] and [m.payload["key"] for m in closed.outbox] == [
        "support.ticket_closed"]
    assert not support.close_ticket(shop, ADMIN, ticket).result["changed"]
    with pytest.raises(ShopError) as after_close:
        support.shopper_follow_up(shop, BUYER, ticket, Incoming("halo?"), "f2")
    assert after_close.value.code == "ticket_closed"

    # 5 messages in 10 minutes (2 so far), then a polite refusal that writes nothing
    for n in range(3):
        support.open_ticket(shop, BUYER, Incoming(f"pesan {n}"), f"r{n}")
    with pytest.raises(ShopError) as limited:
        support.open_ticket(shop, BUYER, Incoming("lagi"), "r9")
    assert limited.value.code == "support_rate_limited"
    assert scalar(shop, "SELECT count(*) FROM support_messages WHERE direction = 'shopper'") == 5
    with pytest.raises(ShopError) as empty:
        support.open_ticket(shop, BUYER, Incoming("   "), "e")
    assert empty.value.code == "support_empty"


def test_a_ticket_about_someone_elses_order_names_no_order(shop: Engine) -> None:
    order = paid_order(shop)
    with shop.begin() as conn:
        make_user(conn, 8)
    result = support.open_ticket(shop, 8, Incoming("tolong"), "o1", order["order_id"]).result
    assert scalar(shop, "SELECT order_id FROM support_tickets WHERE id = :t",
                  t=result["ticket_id"]) is None


def test_checker_notices_a_refund_without_its_ledger_credit(shop: Engine,
                                                           audit_engine: Engine) -> None:
    order = paid_order(shop)
    with shop.begin() as conn:  # a hand edit marks a refund paid that was never credited
        conn.execute(text("INSERT INTO order_refunds (order_id, user_id, amount, status,"
                          " proposed_by, decided_by, decided_at)"
                          " VALUES (:o, :u, 5000, 'paid', :a, :a, now())"),
                     {"o": order["order_id"], "u": BUYER, "a": ADMIN})
    report = check_invariants(shop, audit_engine, delivery_grace_seconds=600)
    assert report.rules_violated() == {"replacements_and_refunds"}, report.format()
    assert "ledger credit missing" in report.format()
