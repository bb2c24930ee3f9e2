"""schemathesis against the webhook API's own OpenAPI schema (the running API process).

Valid and invalid bodies (positive and negative generation), each also re-aimed at a real
pending invoice of the right project, must never get a 5xx and must change nothing but the
audit trail of refusals: no payment event, no outbox row, no order touched, unless the body is a
legitimate notification of that invoice (then exactly one event, however often it came).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from sqlalchemy import text

from tests.e2e.conftest import PROJECT
from tests.faults.conftest import FaultShop
from tests.faults.helpers import qris_pending
from tests.support import wait_until

pytestmark = pytest.mark.slow

EXAMPLES = 150
TIME_BUDGET = 50.0


def _state(shop: FaultShop) -> dict[str, Any]:
    return {
        "orders": shop.rows("SELECT id, status, total_bill, payment_fee, payment_number,"
                            " amount_paid FROM orders ORDER BY id"),
        "events": shop.rows("SELECT dedup_key, invoice_id, amount FROM payment_events"
                            " ORDER BY id"),
        "outbox": shop.rows("SELECT topic, payload FROM outbox ORDER BY id"),
        "ledger": shop.q("SELECT count(*) FROM balance_ledger"),
        "stock": shop.rows("SELECT id, order_id, is_sold FROM product_stocks ORDER BY id"),
    }


def test_fuzzed_webhooks_no_5xx_no_state_change(fshop: FaultShop) -> None:
    shop = fshop
    api = shop.start_api()
    product = shop.add_product(31, price=20000, units=2)
    # Two units are below the default low-stock threshold: beat's sweep would queue an admin
    # notice at any moment, which is not the fuzzer's doing. This product never alerts.
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE products SET low_stock_threshold = 0 WHERE id = :p"),
                     {"p": product})
    user = shop.add_user(31000)
    order_id, invoice = qris_pending(shop, user, product)
    payable = int(shop.q("SELECT total_bill - payment_fee FROM orders WHERE id = :o",
                         o=order_id))
    # The QR photo and admin notices are out: the outbox is quiet before the snapshot.
    wait_until(lambda: not shop.q("SELECT count(*) FROM outbox WHERE published_at IS NULL"),
               what="the outbox published", timeout=30)
    before = _state(shop)

    schema = schemathesis.openapi.from_url(api + "/openapi.json")
    operation = schema["/webhooks/pakasir"]["POST"]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))
    server_errors: list[str] = []
    legit: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIME_BUDGET
    http = httpx.Client(timeout=20)

    def post(body: Any, raw: bytes | None = None) -> None:
        if raw is not None:
            response = http.post(api + "/webhooks/pakasir", content=raw,
                                 headers={"content-type": "application/json"})
        else:
            response = http.post(api + "/webhooks/pakasir", json=body)
        if response.status_code >= 500:
            server_errors.append(f"{response.status_code} for {body!r}: {response.text[:200]}")
        elif response.status_code == 200:
            legit.append(body)

    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(base_url=api, timeout=20)
        if response.status_code >= 500:
            server_errors.append(f"{response.status_code} for {case.body!r}:"
                                 f" {response.text[:200]}")
        elif response.status_code == 200:
            legit.append(case.body)
        # The same body aimed at a real invoice of our project: gets past the first checks.
        if isinstance(case.body, dict):
            post({**case.body, "order_id": invoice, "project": PROJECT})

    fuzz()
    http.close()

    after = _state(shop)
    assert after["orders"] == before["orders"]
    assert after["stock"] == before["stock"]
    assert after["ledger"] == before["ledger"]
    # Only a body naming our invoice, project and exact amount may become an event (one per
    # distinct notification), each with its one confirmation queued.
    new_events = after["events"][len(before["events"]):]
    assert after["events"][:len(before["events"])] == before["events"]
    for event in new_events:
        assert (event.invoice_id, int(event.amount)) == (invoice, payable), event
    accepted = [b for b in legit if isinstance(b, dict) and b.get("order_id") == invoice
                and b.get("project") == PROJECT and b.get("amount") == payable]
    assert len(legit) == len(accepted), [b for b in legit if b not in accepted][:5]
    new_outbox = after["outbox"][len(before["outbox"]):]
    assert after["outbox"][:len(before["outbox"])] == before["outbox"]
    assert all(row.topic == "quickcart.confirm_payment" for row in new_outbox), new_outbox
    assert len(new_outbox) == len(new_events)
    # Last, so a failure here means the state checks above held.
    assert not server_errors, (f"{len(server_errors)} server error(s):\n"
                               + "\n".join(server_errors[:10]))
    print(f"fuzzed {EXAMPLES} schema cases (x2); {len(new_events)} legitimate events")


@pytest.mark.parametrize("field", ["order_id", "project", "payment_method", "completed_at"])
def test_nul_character_in_a_refused_webhook_is_not_a_server_error(fshop: FaultShop,
                                                                 field: str) -> None:
    """The minimal form of what the fuzzer finds: a NUL (U+0000) in any string of a webhook
    that is refused. PostgreSQL's jsonb and text cannot hold U+0000, so auditing the refusal
    must not store it verbatim."""
    api = fshop.start_api()
    body = {"amount": 1000, "order_id": "QC000000UNKNOWN", "project": PROJECT,
            "status": "completed", "payment_method": "qris",
            "completed_at": "2026-11-25T08:00:00+07:00"}
    body[field] = body[field][:4] + "\u0000" + body[field][4:]
    response = httpx.post(api + "/webhooks/pakasir", json=body, timeout=10)
    assert response.status_code < 500, (response.status_code, response.text)
    assert fshop.q("SELECT count(*) FROM payment_events") == 0
