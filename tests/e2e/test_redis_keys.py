"""Every Redis key the shop writes starts with REDIS_KEY_PREFIX (here the default, `qc:`), so the
shop can share a Redis database with other apps: a slice of the whole shop (bot, workers, beat,
webhook API, Celery's own queues, bindings and remote control) runs on a Redis server of its
own, and every key found there afterwards carries the prefix."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from sandbox.serving import WaitTimeout
from tests.conftest import TestUrls
from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop, running_e2e_shop
from tests.e2e.test_bot import has_button, make_admin, open_product, press, said
from tests.e2e.test_order_engine import buy
from tests.e2e.test_payments_api import pay, qris_order
from tests.faults.conftest import RedisServer
from tests.support import wait_until

pytestmark = pytest.mark.slow

PREFIX = "qc:"
bot = base.bot  # the bot-process fixture of tests/e2e/test_bot.py, on this module's `shop`


@pytest.fixture(scope="module")
def prefixed_shop(test_urls: TestUrls,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A shop under the default prefix on a private `redis-server`: nothing else writes there,
    so every key on it is the shop's."""
    server = RedisServer(tmp_path_factory.mktemp("redis-keys")).start()
    try:
        with running_e2e_shop(test_urls, tmp_path_factory.mktemp("shop-keys"),
                              redis_url=server.url, key_prefix=PREFIX) as shop:
            yield shop
    finally:
        server.stop()


@pytest.fixture()
def shop(prefixed_shop: Shop) -> Shop:
    """This module's shop (the `bot` fixture runs the bot against it)."""
    return prefixed_shop


def test_every_key_the_shop_writes_starts_with_the_prefix(shop: Shop, bot: Any) -> None:
    shop.start_api()
    shop.add_product(1, price=10000, units=3)
    shop.add_product(2, price=20000, units=3)
    admin = make_admin(shop, 9101)
    buyer = shop.add_user(5101, balance=50000)
    banned = shop.add_user(5103)

    # The bot: welcome stats, a paged list, a product page (its stock count), rate limits.
    shop.telegram.send_command(buyer, "start")
    welcome = said(shop, buyer, "Selamat datang")
    press(shop, buyer, welcome, "c:all:0", has_button("c:p:1"))
    open_product(shop, buyer, 1)

    # Intents as the bot sends them: a purchase with balance (the orders queue; stock-count and
    # stats caches dropped by the worker); QRIS through the gateway, the QR photo and the
    # webhook API, to payment and delivery; another QRIS order left pending keeps its entry on
    # the Redis expiry set.
    [paid] = shop.wait_intents([buy(shop, buyer, 1)])
    assert paid["status"] == "paid", paid
    order_id, invoice, _ = qris_order(shop, buyer, 2)
    pay(shop, invoice)
    wait_until(lambda: shop.q("SELECT delivered_at FROM orders WHERE id = :o", o=order_id),
               what="QRIS order paid and delivered", timeout=60)
    qris_order(shop, buyer, 2)

    # A ban, and the banned user's one notice.
    shop.telegram.send_command(admin, "ban", str(banned))
    said(shop, admin, "diblokir")
    shop.telegram.send_command(banned, "start")
    said(shop, banned, "Akun Anda diblokir")

    # Housekeeping that keeps its state in Redis (beat sends the relay by itself).
    shop.send("quickcart.health_monitor")
    shop.send("quickcart.admin_sales_digest")
    r = redis.Redis.from_url(shop.redis_url, decode_responses=True)
    try:
        expected = {PREFIX + name for name in (
            "health:last", "digest:sales:until", "quickcart:broker:mark",
            "queue:payment_expiry", f"banned_notice:{banned}",
            "_kombu.binding.celery.pidbox", "_kombu.binding.default")}
        keys: set[str] = set()

        def all_written() -> bool:
            keys.clear()
            keys.update(r.scan_iter(count=1000))
            return expected <= keys

        with contextlib.suppress(WaitTimeout):
            wait_until(all_written, what="the shop's keys", timeout=90, interval=0.5)
        unprefixed = sorted(k for k in keys if not k.startswith(PREFIX))
        assert not unprefixed, f"Redis keys written without {PREFIX!r}: {unprefixed}"
        assert expected <= keys, f"missing {sorted(expected - keys)} in {sorted(keys)}"
        for kind in ("rate:", "pagination:"):
            assert any(k.startswith(PREFIX + kind) for k in keys), (kind, sorted(keys))
        # ...and nothing went to another database of the server.
        db = r.connection_pool.connection_kwargs.get("db", 0)
        assert set(r.info("keyspace")) == {f"db{db}"}
    finally:
        r.close()
