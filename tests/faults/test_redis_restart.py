"""Redis (broker, expiry set, counters) restarted mid-load with nothing kept on disk.

The shop runs on a private `redis-server --save "" --appendonly no`; killing it loses every
queued and unacknowledged message. What was committed in PostgreSQL must still complete (outbox
relay, reconciliation, stuck-delivery and expiry sweeps); intents lost before any commit are
re-sent by the bot with the same idempotency keys and take effect exactly once.
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal

import pytest
from kombu import Consumer, Exchange, Queue
from kombu.common import ignore_errors

from tests.conftest import TestUrls as Urls
from tests.faults.conftest import RedisServer, running_shop
from tests.faults.helpers import (
    assert_clean,
    assert_delivered_once,
    intent,
    qris_pending,
    wait_all_outcomes,
)
from tests.support import wait_until

pytestmark = pytest.mark.slow


def _lost_side_effects(shop) -> list[str]:
    """Committed outbox rows whose effect never happened (after the sweeps had their chance)."""
    problems = []
    for row in shop.rows("SELECT o.id, o.invoice_id FROM orders o WHERE o.status = 'pending'"
                         " AND o.payment_number IS NULL"):
        problems.append(f"order {row.id} ({row.invoice_id}) pending without its QRIS"
                        " (start_qris_payment message lost)")
    for row in shop.rows("SELECT d.id, d.invoice_id FROM deposits d WHERE d.status = 'pending'"
                         " AND d.payment_number IS NULL"):
        problems.append(f"deposit {row.id} ({row.invoice_id}) pending without its QRIS"
                        " (start_qris_payment message lost)")
    for row in shop.rows("SELECT id, invoice_id FROM orders WHERE status = 'paid'"
                         " AND delivered_at IS NULL"):
        problems.append(f"order {row.id} ({row.invoice_id}) paid, not delivered")
    for row in shop.rows("SELECT id, invoice_id FROM payment_events WHERE processed_at IS NULL"):
        problems.append(f"payment event {row.id} ({row.invoice_id}) never processed")
    for row in shop.rows("SELECT id, topic FROM outbox WHERE published_at IS NULL"):
        problems.append(f"outbox {row.id} {row.topic} never published")
    # A message to a shopper is sent when its consumer claimed the outbox row's once key.
    for row in shop.rows("SELECT o.id, o.payload->>'key' AS key FROM outbox o"
                         " WHERE o.topic IN ('quickcart.send_message', 'quickcart.send_notice')"
                         " AND NOT EXISTS"
                         " (SELECT 1 FROM idempotency_keys k WHERE k.key = 'outbox:' || o.id)"):
        problems.append(f"outbox {row.id} message {row.key} never sent")
    return problems


def _worker_report(shop) -> str:
    """Whether the worker is still running, and the end of its log as of now."""
    proc = shop.worker.proc
    state = ("running" if proc is not None and proc.poll() is None
             else f"EXITED with {proc.returncode if proc is not None else None}")
    return f"worker {state}; log tail:\n{shop.worker.log_tail(40)}"


def test_redis_restart_mid_load(test_urls: Urls, tmp_path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        with running_shop(test_urls.server_url, server.url, tmp_path / "shop") as shop:
            _scenario(shop, server)
    finally:
        server.stop()


def _scenario(shop, server: RedisServer) -> None:
    plenty = shop.add_product(1, price=10000, units=50)
    qris_product = shop.add_product(2, price=20000, units=20)
    buyers = [shop.add_user(1000 + i, balance=10000) for i in range(20)]
    payers = [shop.add_user(2000 + i) for i in range(3)]
    openers = [shop.add_user(2100 + i) for i in range(3)]
    depositors = [shop.add_user(2200 + i) for i in range(2)]
    paying = [qris_pending(shop, u, qris_product) for u in payers]

    balance_keys = [f"flt:r:bal:{u}" for u in buyers]
    qris_keys = [f"flt:r:qris:{u}" for u in openers]
    deposit_keys = [f"flt:r:dep:{u}" for u in depositors]

    def send_all() -> None:
        for user, key in zip(buyers, balance_keys, strict=True):
            intent(shop, user, plenty, key=key)
        for user, key in zip(openers, qris_keys, strict=True):
            intent(shop, user, qris_product, method="qris", key=key)
        for user, key in zip(depositors, deposit_keys, strict=True):
            shop.send("quickcart.create_deposit", user_id=user, amount="50000",
                      idempotency_key=key)

    # Mid-load: the shoppers pay, intents flow, and Redis dies with all of it in memory.
    for _order_id, invoice in paying:
        shop.pakasir.post(f"/sandbox/transactions/{invoice}/mark-paid")
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    send_all()
    time.sleep(0.4)
    done_before = shop.q("SELECT count(*) FROM idempotency_keys WHERE key LIKE 'flt:r:%'"
                         " AND result IS NOT NULL")
    server.restart(down_seconds=2.0)
    print(f"Redis killed with {done_before}/{len(balance_keys) + 5} intents committed")

    # The bot re-sends every intent it has no answer for (here: all, same keys).
    send_all()
    keys = balance_keys + qris_keys + deposit_keys
    try:
        results = wait_all_outcomes(shop, keys, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_worker_report(shop)}") from None

    # Each intent exactly one effect.
    assert all(results[k]["status"] == "paid" for k in balance_keys), results
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'purchase'") == 20
    assert all(shop.q("SELECT account_balance FROM users WHERE id = :u", u=u) == 0
               for u in buyers)
    assert all(results[k]["status"] == "pending" for k in qris_keys + deposit_keys), results
    assert shop.q("SELECT count(*) FROM orders WHERE user_id = ANY(:u)", u=openers) == 3
    assert shop.q("SELECT count(*) FROM deposits") == 2

    # Every committed intent completes: the paid QRIS orders are settled (reconciliation if
    # the confirmation was lost), every paid order is delivered, every pending one has its QR.
    paid_ids = [o for o, _ in paying]
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE id = ANY(:o)"
                              " AND status = 'paid'", o=paid_ids) == 3,
               what="3 QRIS payments settled after the restart", timeout=90, interval=0.5)
    try:
        wait_until(lambda: not _lost_side_effects(shop), what="every committed effect",
                   timeout=100, interval=1.0)
    except AssertionError:
        problems = _lost_side_effects(shop)
        raise AssertionError("committed effects lost with Redis:\n  " + "\n  ".join(problems)
                             + "\n" + _worker_report(shop)) from None

    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 23
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 23
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'pending'") == 3
    assert shop.q("SELECT count(*) FROM deposits WHERE status = 'pending'"
                  " AND payment_number IS NOT NULL") == 2
    assert shop.q("SELECT sum(account_balance) FROM users") == Decimal(0)
    assert_clean(shop)
    assert_delivered_once(shop)
    # The same worker rode out the restart (it reconnected instead of stopping).
    assert shop.worker.proc is not None and shop.worker.proc.poll() is None, _worker_report(shop)
    assert "Unrecoverable error" not in shop.worker.log_path.read_text(errors="replace"), \
        _worker_report(shop)


def test_consumer_connection_closes_cleanly_after_broker_loss(tmp_path) -> None:
    """The close sequence of a worker whose broker died, on the app's own broker transport.

    Celery's consumer (`on_connection_error_after_connected`) runs `Connection.collect()` then
    `Connection.close()`. With stock kombu, when the consumer channel still holds unacknowledged
    deliveries and its close was cut short during `collect()` (here: a BRPOP in flight, and the
    remote-control fanout channel failing first), the second close dereferences the detached
    transport and raises AttributeError: the worker logs "Unrecoverable error" and stops
    consuming, so every intent sent after the restart waits forever. It must close like any
    other broken connection (only connection errors, which Celery ignores) and reconnect.
    """
    from workers.app import app  # loads celeryconfig: the broker transport the workers use

    server = RedisServer(tmp_path / "redis").start()
    conn = app.connection_for_read(server.url)
    try:
        tasks = Queue("orders", Exchange("orders"), "orders")
        with app.connection_for_write(server.url) as publisher:
            producer = publisher.Producer()
            for i in range(3):
                producer.publish({"i": i}, exchange="", routing_key="orders", declare=[tasks])
        delivered = []
        consumer = Consumer(conn.default_channel, [tasks],
                            callbacks=[lambda _body, message: delivered.append(message)])
        consumer.qos(prefetch_count=4)
        consumer.consume()
        control = conn.channel()  # like the worker's pidbox: an auto-delete fanout queue
        Consumer(control, [Queue("w1.pidbox", Exchange("pidbox", type="fanout"),
                                 auto_delete=True)], callbacks=[lambda *_: None]).consume()
        for _ in range(5):  # 3 deliveries left unacknowledged (acks_late), then a BRPOP waits
            with contextlib.suppress(TimeoutError):
                conn.drain_events(timeout=0.3)
        assert len(delivered) == 3
        assert conn.default_channel._in_poll, "a BRPOP should be in flight"

        server.kill()
        with contextlib.suppress(Exception):  # as Celery does: it ignores collect()'s errors
            conn.collect(socket_timeout=5.0)
        ignore_errors(conn, conn.close)  # raised AttributeError before the transport fix
    finally:
        server.stop()


def test_redis_lost_with_committed_effects_queued(test_urls: Urls, tmp_path) -> None:
    """The hard case for the outbox: intents committed, their side effects published (outbox
    rows marked published) and sitting in Redis because their consumers are down; then Redis
    dies. The relay re-publishes only unpublished rows, so what is left must be recovered by
    the sweeps, or the effect is lost."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        with running_shop(test_urls.server_url, server.url, tmp_path / "shop") as shop:
            plenty = shop.add_product(1, price=10000, units=10)
            qris_product = shop.add_product(2, price=20000, units=10)
            buyers = [shop.add_user(1000 + i, balance=10000) for i in range(5)]
            openers = [shop.add_user(2100 + i) for i in range(3)]
            depositors = [shop.add_user(2200 + i) for i in range(2)]
            broke = [shop.add_user(2300 + i) for i in range(3)]  # no balance: refused
            shop.start_group_workers()
            # The notify and payments workers are down (crashed) while orders flow.
            shop.stop_group("notify")
            shop.stop_group("payments")
            keys = []
            for user in buyers:
                keys.append(intent(shop, user, plenty, key=f"flt:q:bal:{user}"))
            for user in openers:
                keys.append(intent(shop, user, qris_product, method="qris",
                                   key=f"flt:q:qris:{user}"))
            # A refusal's whole effect is its message ("saldo tidak cukup"), queued for notify.
            refused = [intent(shop, user, plenty, key=f"flt:q:broke:{user}") for user in broke]
            shop.wait_intents(keys + refused, timeout=60)
            for user in depositors:
                key = f"flt:q:dep:{user}"
                # create_deposit runs on the payments queue: it is still queued (uncommitted)
                shop.send("quickcart.create_deposit", user_id=user, amount="50000",
                          idempotency_key=key)
                keys.append(key)
            wait_until(lambda: shop.q("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                       == 0, what="committed effects published", timeout=30)
            queued = shop.rows("SELECT topic, count(*) FROM outbox GROUP BY topic ORDER BY 1")
            print(f"published and queued when Redis dies: {queued}")

            server.restart(down_seconds=1.0)
            shop.start_group("notify")
            shop.start_group("payments")
            # The bot re-sends what it has no answer for (same keys): the deposits.
            for user in depositors:
                shop.send("quickcart.create_deposit", user_id=user, amount="50000",
                          idempotency_key=f"flt:q:dep:{user}")
            results = wait_all_outcomes(shop, keys, timeout=90, extra=shop.group_logs,
                                        logs=shop.group_log_paths())
            assert [results[k]["status"] for k in keys] == ["paid"] * 5 + ["pending"] * 5
            assert [r["error"] for r in wait_all_outcomes(shop, refused, timeout=5).values()] \
                == ["insufficient_balance"] * 3

            try:
                wait_until(lambda: not _lost_side_effects(shop), what="every committed effect",
                           timeout=100, interval=1.0)
            except AssertionError:
                problems = _lost_side_effects(shop)
                raise AssertionError(
                    "committed effects lost with Redis (published outbox rows whose messages"
                    " died in Redis are never re-published):\n  " + "\n  ".join(problems)
                ) from None
            assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 5
            assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'purchase'") == 5
            assert shop.q("SELECT count(*) FROM deposits") == 2
            assert_clean(shop)
            assert_delivered_once(shop)
            # Each refused shopper was told once, though the first copy died with Redis.
            def told(user: int) -> int:
                return sum(1 for c in shop.telegram.calls(method="sendMessage")
                           if c.get("ok") and int(c["params"]["chat_id"]) == user)

            wait_until(lambda: all(told(u) for u in broke), what="refusals told", timeout=30)
            assert [told(u) for u in broke] == [1, 1, 1]
    finally:
        server.stop()
