"""PostgreSQL restarted mid-load (a clean fast shutdown, then a `kill -9` of the postmaster).

An embedded PostgreSQL of the test's own (never the machine's shared server) under a private
Redis: tasks hitting the dead database fail with transient errors, retry with backoff, and
complete once it is back; nothing is half-applied (each purchase is one transaction).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from decimal import Decimal

import pytest

from quickcart.embedded import EmbeddedPostgres
from tests.faults.conftest import RedisServer, remove_tree, running_shop
from tests.faults.helpers import (
    assert_clean,
    assert_delivered_once,
    intent,
    qris_pending,
    wait_all_outcomes,
)
from tests.support import free_port, wait_until

pytestmark = pytest.mark.slow


def test_postgres_restarted_mid_load(tmp_path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    server_url = pg.start()
    redis_server = RedisServer(tmp_path / "redis").start()
    try:
        with running_shop(server_url, redis_server.url, tmp_path / "shop") as shop:
            _scenario(shop, pg)
    finally:
        redis_server.stop()
        with contextlib.suppress(Exception):
            pg.stop()
        pgdata = pg.pgdata
        if pgdata is not None and not str(pgdata).startswith(str(tmp_path)):
            remove_tree(pgdata.parent)


def _kill_postmaster(pg: EmbeddedPostgres) -> None:
    pid = (pg.pgdata / "postmaster.pid").read_text().splitlines()[0]
    os.kill(int(pid), signal.SIGKILL)


def _scenario(shop, pg: EmbeddedPostgres) -> None:
    plenty = shop.add_product(1, price=10000, units=60)
    qris_product = shop.add_product(2, price=20000, units=20)
    buyers = [shop.add_user(1000 + i, balance=20000) for i in range(20)]
    payers = [shop.add_user(2000 + i) for i in range(4)]
    depositors = [shop.add_user(2200 + i) for i in range(2)]
    paying = [qris_pending(shop, u, qris_product) for u in payers]
    for _order_id, invoice in paying:
        shop.pakasir.post(f"/sandbox/transactions/{invoice}/mark-paid")

    keys: list[str] = []
    first = [f"flt:pg:a:{u}" for u in buyers]
    second = [f"flt:pg:b:{u}" for u in buyers]
    deposits = [f"flt:pg:dep:{u}" for u in depositors]

    # Wave 1 flows; PostgreSQL is shut down (fast: sessions aborted) under it.
    for user, key in zip(buyers, first, strict=True):
        intent(shop, user, plenty, key=key)
    for _order_id, invoice in paying[:2]:
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    time.sleep(0.3)
    shop.main.dispose()
    shop.audit.dispose()
    pg.stop()
    time.sleep(3)
    pg.start()

    # Wave 2 flows; the postmaster is killed hard under it (crash recovery on restart).
    for user, key in zip(buyers, second, strict=True):
        intent(shop, user, plenty, key=key)
    for user, key in zip(depositors, deposits, strict=True):
        shop.send("quickcart.create_deposit", user_id=user, amount="30000", idempotency_key=key)
    for _order_id, invoice in paying[2:]:
        shop.send("quickcart.confirm_payment", invoice_id=invoice)
    time.sleep(0.3)
    _kill_postmaster(pg)
    time.sleep(3)
    pg.start()
    shop.main.dispose()
    shop.audit.dispose()

    keys = first + second + deposits
    results = wait_all_outcomes(shop, keys, timeout=150, extra=shop.worker.log_tail(30))
    assert all(results[k]["status"] == "paid" for k in first + second), \
        [(k, results[k]) for k in first + second if results[k]["status"] != "paid"][:5]
    assert all(results[k]["status"] == "pending" for k in deposits)

    paid_ids = [o for o, _ in paying]
    wait_until(lambda: shop.q("SELECT count(*) FROM orders WHERE id = ANY(:o)"
                              " AND status = 'paid'", o=paid_ids) == 4,
               what="4 QRIS confirmations after the restarts", timeout=120, interval=0.5)
    wait_until(lambda: shop.q("SELECT count(*) FROM deposits WHERE payment_number IS NOT NULL")
               == 2, what="deposit QRs", timeout=90, interval=0.5)

    # Nothing half-applied and nothing twice: exact counts.
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 40 + 4
    assert shop.q("SELECT count(*) FROM orders") == 40 + 4
    assert shop.q("SELECT count(*) FROM product_stocks WHERE is_sold") == 44
    assert shop.q("SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL"
                  " AND NOT is_sold") == 0
    assert shop.q("SELECT count(*) FROM balance_ledger WHERE reason = 'purchase'") == 40
    assert shop.q("SELECT sum(account_balance) FROM users") == Decimal(0)
    assert shop.q("SELECT count(*) FROM deposits WHERE status = 'pending'") == 2
    wait_until(lambda: shop.q("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
               what="outbox relayed", timeout=60, interval=0.5)
    assert_clean(shop)
    assert_delivered_once(shop)
