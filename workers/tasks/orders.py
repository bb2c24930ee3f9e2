"""Orders queue: shoppers' purchase intents."""

from __future__ import annotations

from typing import Any

from quickcart.adapters import redis_store
from quickcart.services import catalog, orders
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import publish_committed_unsafe


@app.task(base=QuickCartTask, name="quickcart.create_order")
def create_order(user_id: int, product_id: int, quantity: int, payment_method: str,
                 idempotency_key: str, voucher_code: str | None = None) -> dict[str, Any]:
    """Create (and for balance, pay) an order; idempotent on `idempotency_key`."""
    outcome = orders.create_order(runtime.engine(), orders.CreateOrder(
        user_id=user_id, product_id=product_id, quantity=quantity,
        payment_method=payment_method, idempotency_key=idempotency_key,
        voucher_code=voucher_code))
    # The reservation moved the product's free units (and a balance payment the paid count);
    # a refusal moved nothing.
    stale = (redis_store.stock_count_keys([product_id], redis_store.STATS_TRANSACTIONS_KEY)
             if outcome.result.get("status") in ("pending", "paid") else [])
    publish_committed_unsafe(outcome.outbox, drop_cache_keys=stale)
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
                                                   redis_store.STATS_TRANSACTIONS_KEY)
    except Exception:  # a cache side effect must not fail the committed task
        return False
