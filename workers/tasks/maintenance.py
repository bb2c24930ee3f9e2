"""Beat-driven housekeeping: the outbox relay, sold_count roll-up, stuck deliveries."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from quickcart.adapters import redis_store
from quickcart.adapters.rate_limit import SendClass, sending_as
from quickcart.config import get_settings
from quickcart.db import outbox
from quickcart.i18n import N_plural
from quickcart.messages import render
from quickcart.services import delivery, digest, notifications, orders
from workers import housekeeping, runtime
from workers.app import app
from workers.base import QuickCartTask
from workers.publish import broker_lost_queues_unsafe, mark_broker_unsafe, relay_pending_unsafe

# Housekeeping ticks that did nothing log at DEBUG (and beat's checks, workers.beat, read the
# thresholds below so they never skip a run that would have found work).
housekeeping.install()

#: A committed row is the committing process' to publish for this long (its push after commit);
#: only then does the relay take it for a lost publish.
RELAY_MIN_AGE_SECONDS = 2.0
#: Paid orders undelivered for this long are re-sent (a worker died mid-delivery).
REDELIVER_GRACE_SECONDS = 30
#: Published outbox rows are dropped after this many hours.
PURGE_AFTER_HOURS = 24


@app.task(base=QuickCartTask, name="quickcart.relay_outbox")
def relay_outbox() -> int:
    """Publish committed side effects their own task did not (crash, Redis down); after the
    broker restarted empty, first re-send the messages that died queued in it: catalog
    messages, admin notices, QR photos and their receipt edits (the other effects have sweeps
    of their own: deliveries, QRIS, expiry, reconciliation)."""
    if broker_lost_queues_unsafe():
        notifications.requeue_unsent_messages(runtime.engine())
        mark_broker_unsafe()  # only after the re-queue committed
    return relay_pending_unsafe(min_age_seconds=RELAY_MIN_AGE_SECONDS)


@app.task(base=QuickCartTask, name="quickcart.rollup_sold_counts")
def rollup_sold_counts() -> int:
    """Fold per-sale deltas into products.sold_count (no hot row on the purchase path)."""
    return orders.rollup_sold_counts(runtime.engine())


@app.task(base=QuickCartTask, name="quickcart.redeliver_stuck")
def redeliver_stuck() -> int:
    """Re-send paid orders whose delivery never completed (worker died mid-send)."""
    stuck = delivery.undelivered_orders(runtime.engine(), grace_seconds=REDELIVER_GRACE_SECONDS)
    for order_id in stuck:
        app.send_task("quickcart.deliver_order", kwargs={"order_id": order_id}, queue="notify")
    return len(stuck)


@app.task(base=QuickCartTask, name="quickcart.purge_outbox")
def purge_outbox() -> int:
    """Drop outbox rows published more than a day ago."""
    return outbox.purge_published(runtime.engine(), older_than_hours=PURGE_AFTER_HOURS)


HEALTH_KEY = "health:last"
DIGEST_KEY = "digest:sales:until"
# Orders are counted a little after the fact, so a transaction that set paid_at just before
# a window closed has committed by the time the window is read.
DIGEST_LAG_SECONDS = 10


@app.task(base=QuickCartTask, name="quickcart.admin_sales_digest")
def admin_sales_digest() -> dict[str, int]:
    """Tell admins what sold since the last digest, one message each (beat, every
    ADMIN_DIGEST_SECONDS). The window end lives in Redis and one run at a time moves it, so
    windows never overlap; each admin's copy is sent at most once per window."""
    r = runtime.redis_client()
    until_key = redis_store.prefixed(DIGEST_KEY)
    if not redis_store.once(r, f"{until_key}:running", 120):
        return {"sent": 0}
    try:
        until = datetime.now(UTC) - timedelta(seconds=DIGEST_LAG_SECONDS)
        last = r.get(until_key)
        r.set(until_key, str(until.timestamp()))
        if last is None:
            return {"sent": 0}  # the first window starts now, not at the beginning of time
        since = datetime.fromtimestamp(float(last), UTC)
        sales = digest.sales_between(runtime.engine(), since, until)
        if sales.empty:
            return {"sent": 0}
        params = sales.params(notifications.format_time)
        chats = notifications.admin_chat_ids(runtime.engine())
        for chat_id in chats:
            # An admin notice: sent in the admins' class (after shoppers' replies).
            app.send_task("quickcart.send_notice", queue="notify", kwargs={
                "chat_id": chat_id, "key": N_plural("admin.sales_digest", "paid"), "params": params,
                "once_key": f"digest:{int(until.timestamp())}:{chat_id}"})
        return {"sent": len(chats), "paid": sales.paid}
    finally:
        r.delete(f"{until_key}:running")


@app.task(base=QuickCartTask, name="quickcart.health_monitor")
def health_monitor() -> dict[str, bool]:
    """Every minute: check the database, Redis and the gateway; tell admins on Telegram when
    one starts or stops failing. Sent directly, not through the outbox: the database may be
    what is down. (With Redis down this task cannot run at all; /health shows that.)"""
    checks = {"database": _ok(lambda: _select_one()), "redis": _ok(
        lambda: runtime.redis_client().ping()), "gateway": _ok(_gateway_reachable)}
    # The last state lives in Redis: beat hands this task to any pool process of any worker.
    last: dict[str, str] = {}
    with contextlib.suppress(Exception):
        health_key = redis_store.prefixed(HEALTH_KEY)
        last = runtime.redis_client().hgetall(health_key)  # type: ignore[assignment]
        runtime.redis_client().hset(health_key, mapping={k: str(int(v))
                                                         for k, v in checks.items()})
    changed = {k: v for k, v in checks.items() if last.get(k, "1") != str(int(v))}
    if changed:
        text = render("admin.health_changed", "id", changes=", ".join(
            f"{name}: {'OK' if ok else 'DOWN'}" for name, ok in changed.items()))
        settings = get_settings()
        for chat_id in {*settings.admin_ids, *settings.admin_group_ids}:
            # alerting must not crash the monitor; an admin notice waits as one
            with contextlib.suppress(Exception), sending_as(SendClass.ADMIN):
                runtime.messenger().send_message(chat_id, text)
    return checks


def _ok(probe: Callable[[], object]) -> bool:
    try:
        probe()
    except Exception:  # noqa: BLE001 - a failing dependency is the answer, not an error
        return False
    return True


def _select_one() -> None:
    with runtime.engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _gateway_reachable() -> None:
    httpx.get(get_settings().pakasir_base_url, timeout=5.0)
