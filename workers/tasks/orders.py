"""Orders queue: shoppers' purchase intents."""

from __future__ import annotations

import logging
from typing import Any

from quickcart.adapters import redis_store
from quickcart.services import cart, catalog, orders
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe

log = logging.getLogger(__name__)


@app.task(base=QuickCartTask, name="quickcart.create_order")
def create_order(user_id: int, product_id: int, quantity: int, payment_method: str,
                 idempotency_key: str, voucher_code: str | None = None,
                 lines: list[list[int]] | None = None, expected_total: str | None = None,
                 reply_to: int | None = None, from_cart: bool = False) -> dict[str, Any]:
    """Create (and for balance, pay) an order of one product or of the cart's `lines`;
    idempotent on `idempotency_key`. A cart's order is remembered on the cart (emptied once
    paid: now for balance, when the QRIS payment lands otherwise)."""
    outcome = orders.create_order(runtime.engine(), orders.CreateOrder(
        user_id=user_id, product_id=product_id, quantity=quantity,
        payment_method=payment_method, idempotency_key=idempotency_key,
        voucher_code=voucher_code,
        lines=tuple((int(p), int(q)) for p, q in lines) if lines is not None else None,
        expected_total=expected_total, reply_to=reply_to))
    status = outcome.result.get("status")
    # The reservation moved the products' free units (and a balance payment the paid count);
    # a refusal moved nothing.
    moved = [int(line["product_id"]) for line in outcome.result.get("lines", [])]
    stale = (redis_store.stock_count_keys(moved or [product_id],
                                          redis_store.stats_transactions_key())
             if status in ("pending", "paid") else [])
    publish_committed_unsafe(outcome.outbox, drop_cache_keys=stale)
    if from_cart and status in ("pending", "paid"):
        # Best effort after the commit: a lost write only leaves the cart for the shopper.
        try:
            r = runtime.redis_client()
            if status == "paid":
                cart.clear(r, user_id)
            else:
                cart.remember_order(r, user_id, int(outcome.result["order_id"]))
        except Exception:  # noqa: BLE001 - the order is committed; the cart is a convenience
            log.warning("cart of user %s not updated after order", user_id, exc_info=True)
    return outcome.result


@app.task(base=QuickCartTask, name="quickcart.cancel_order")
def cancel_order(user_id: int, order_id: int | None = None,
                 idempotency_key: str | None = None) -> dict[str, Any]:
    """Cancel the shopper's pending order; a settled order is left alone (idempotent by state)."""
    outcome = orders.cancel_own_order(runtime.engine(), user_id, order_id)
    publish_committed_unsafe(outcome.outbox)
    if outcome.result.get("changed"):
        invalidate_order_caches(order_id, outcome.result.get("invoice_id"))
    return outcome.result


def invalidate_order_caches(order_id: int | None, invoice_id: str | None) -> bool:
    """After an order's units were released: drop its products' stock counts and the paid
    count. Never raises (a database or Redis hiccup only leaves the TTL to expire them)."""
    try:
        product_ids = catalog.order_product_ids(runtime.engine(), order_id=order_id,
                                                invoice_id=invoice_id)
        return redis_store.invalidate_stock_counts(runtime.redis_client(), product_ids,
                                                   redis_store.stats_transactions_key())
    except Exception:  # a cache side effect must not fail the committed task
        return False
