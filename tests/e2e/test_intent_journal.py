"""A shopper's money intent whose task message the broker lost is sent again by beat, with the
same key, and takes effect once (quickcart.adapters.intent_journal, workers.tasks.intents).

The loss is made as it happens: the bot's send journals the intent and the message never
reaches a worker (a worker killed while Redis hands it over). Real worker, beat and bot."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from quickcart.adapters import intent_journal
from quickcart.config import get_settings
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot, press, said, to_payment  # noqa: F401
from tests.support import wait_until

pytestmark = pytest.mark.slow

#: Longer than a beat tick of the sweep (15 s) plus the resend's own run.
RESEND_WAIT = 60


@contextlib.contextmanager
def shop_keys(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """A client of the shop's Redis, with this process's key prefix set to the shop's."""
    monkeypatch.setenv("REDIS_KEY_PREFIX", shop.key_prefix)
    get_settings.cache_clear()
    client = redis.Redis.from_url(shop.redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()
        monkeypatch.undo()
        get_settings.cache_clear()


def journal(r: redis.Redis) -> dict[str, float]:
    """The open intents: key -> sent at."""
    return {str(k): float(s) for k, s in r.zrange(
        get_settings().redis_key_prefix + intent_journal.SENT_AT, 0, -1, withscores=True)}


def order_intent(user_id: int, product_id: int, key: str) -> dict[str, Any]:
    """A balance purchase's arguments as the bot sends them."""
    return {"user_id": user_id, "product_id": product_id, "quantity": 1,
            "payment_method": "account_balance", "idempotency_key": key, "voucher_code": None}


def outcome(shop: Shop, key: str) -> Any:
    return shop.q("SELECT result FROM idempotency_keys WHERE key = :k", k=key)


def test_a_lost_intent_is_sent_again_and_takes_effect_once(
        shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    shop.add_product(61, price=10000, units=3)
    lost = shop.add_user(6101, balance=30000)
    settled = shop.add_user(6102, balance=30000)
    with shop_keys(shop, monkeypatch) as r:
        # Lost: journaled by the bot's send a while ago, the message never reached a worker.
        old = time.time() - 3600
        intent_journal.record(r, "ij:lost", "quickcart.create_order",
                              order_intent(lost, 61, "ij:lost"), old)
        # Settled: it ran (its key claimed), but the worker died before forgetting it.
        shop.send("quickcart.create_order", **order_intent(settled, 61, "ij:settled"))
        shop.wait_intents(["ij:settled"])
        intent_journal.record(r, "ij:settled", "quickcart.create_order",
                              order_intent(settled, 61, "ij:settled"), old)

        wait_until(lambda: journal(r) == {}, what="the sweep emptying the journal",
                   timeout=RESEND_WAIT)
        assert outcome(shop, "ij:lost")["status"] == "paid"
        # Each intent took effect once: one order each, one debit each.
        for user in (lost, settled):
            assert shop.q("SELECT count(*) FROM orders WHERE user_id = :u", u=user) == 1
            assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=user) == 20000
        said(shop, lost, "KEY-61-")  # and the shopper got the key


def test_the_bots_send_journals_and_the_task_forgets(
        shop: Shop, bot: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    shop.add_product(62, price=10000, units=3)
    uid = shop.add_user(6201, balance=30000)
    payment = to_payment(shop, uid, 62)
    with shop_keys(shop, monkeypatch) as r:
        shop.worker.stop()  # the intent waits in the queue: its journal entry can be seen
        try:
            press(shop, uid, payment, "k:pb", lambda m: "diproses" in m.get("text", ""))
            bodies = r.hgetall(get_settings().redis_key_prefix + intent_journal.BODIES)
            mine = {k: json.loads(v) for k, v in bodies.items()
                    if json.loads(v)["kwargs"]["user_id"] == uid}
            assert [(b["task"], b["attempts"]) for b in mine.values()] == [
                ("quickcart.create_order", 0)]
            [key] = mine
            assert key in journal(r) and mine[key]["kwargs"]["idempotency_key"] == key
        finally:
            shop.restart_worker()
        said(shop, uid, "KEY-62-")
        # The task forgot it once it ran: nothing left for the sweep to send again.
        wait_until(lambda: key not in journal(r), what="the intent forgotten", timeout=10)
        assert shop.q("SELECT count(*) FROM orders WHERE user_id = :u", u=uid) == 1
