"""The rate-limit-aware sender (quickcart.adapters.rate_limit + BotApi) against the Telegram
simulator with its flood limits on and the session's real Redis: Telegram's 429 `retry_after`
is honoured, one chat never gets more than its limit from several workers at once, groups keep
their per-minute limit, and a lower class takes no slot a higher class is waiting for."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from quickcart.adapters.rate_limit import Limits, SendClass, SendLimiter, WaitTooLong, sending_as
from quickcart.adapters.telegram_api import BotApi, SendLater, TelegramRetryAfter
from sandbox.telegram import TelegramSimulator
from tests.conftest import TestUrls, worker_runtime
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)


def _api(sim: TelegramSimulator, r: redis.Redis, prefix: str, **limits: Any) -> BotApi:
    """One worker's sender: its own limiter object on the shared Redis buckets."""
    return BotApi(sim.base_url, sim.token, limiter=SendLimiter(r, Limits(**limits), prefix))


def _accepted(sim: TelegramSimulator, chat_id: int) -> list[dict[str, Any]]:
    return [c for c in sim.calls(method="sendMessage", chat_id=chat_id) if c["ok"]]


def _refused(sim: TelegramSimulator) -> list[dict[str, Any]]:
    return [c for c in sim.calls() if not c["ok"] and c.get("error_code") == 429]


def test_telegram_429_retry_after_is_waited_out(sim: TelegramSimulator, r: redis.Redis,
                                                prefix: str) -> None:
    # Telegram is stricter than our settings (2/s against our 100/s): its 429 governs.
    sim.set_rate_limit(True, per_chat_per_second=1, global_per_second=2)
    chats = [sim.add_user(f"U{i}", user_id=700 + i)["id"] for i in range(3)]
    api = _api(sim, r, prefix, per_second=100, max_wait_seconds=5.0)
    for n, chat in enumerate(chats):
        api.send_message(chat, f"pesan {n}")
    [refusal] = _refused(sim)
    retry_after = int(refusal["description"].rsplit(" ", 1)[1])  # "… retry after N"
    assert int(refusal["params"]["chat_id"]) == chats[2]
    [sent] = _accepted(sim, chats[2])
    # The retry came only after Telegram's retry_after (by the simulator's own clock).
    assert sent["time"] >= refusal["time"] + retry_after
    assert [len(_accepted(sim, c)) for c in chats] == [1, 1, 1]


def test_a_429_longer_than_a_worker_holds_goes_back_to_the_task(
        sim: TelegramSimulator, r: redis.Redis, prefix: str) -> None:
    sim.set_rate_limit(True, per_chat_per_second=1, global_per_second=30)
    chat = sim.add_user("Ani", user_id=801)["id"]
    first, other_worker = (_api(sim, r, prefix, per_chat_per_second=5, max_wait_seconds=0.3)
                           for _ in range(2))
    first.send_message(chat, "satu")
    with pytest.raises(TelegramRetryAfter) as refused:
        first.send_message(chat, "dua")  # Telegram: 1/s to one chat; retry_after 1 > 0.3
    assert refused.value.retry_after >= 1
    calls_before = len(sim.calls())
    # Every worker now holds back from that chat until Telegram allows again, without asking.
    with pytest.raises(SendLater):
        other_worker.send_message(chat, "tiga")
    assert len(sim.calls()) == calls_before
    assert [c["params"]["text"] for c in _accepted(sim, chat)] == ["satu"]


def test_per_chat_limit_holds_under_a_burst_to_one_chat(sim: TelegramSimulator, r: redis.Redis,
                                                        prefix: str) -> None:
    sim.set_rate_limit(True, per_chat_per_second=1, global_per_second=30)
    chat = sim.add_user("Budi", user_id=901)["id"]
    texts = [f"pesan {i}" for i in range(6)]
    errors: list[BaseException] = []

    def worker(mine: list[str]) -> None:
        api = _api(sim, r, prefix, max_wait_seconds=15.0)  # a worker of its own
        try:
            for text in mine:
                api.send_message(chat, text)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(texts[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    sent = _accepted(sim, chat)
    assert sorted(c["params"]["text"] for c in sent) == texts  # each once, none lost
    assert _refused(sim) == []  # the limiter kept the limit: Telegram never had to refuse
    times = [c["time"] for c in sent]
    assert all(b - a >= 0.95 for a, b in zip(times, times[1:], strict=False))


def test_groups_get_twenty_a_minute(r: redis.Redis, prefix: str) -> None:
    limiter = SendLimiter(r, Limits(per_chat_per_second=100, per_group_per_minute=20), prefix)
    group = -100123
    for _ in range(20):
        limiter.acquire(group, SendClass.ADMIN, max_wait=1.0)
    with pytest.raises(WaitTooLong) as wait:
        limiter.acquire(group, SendClass.ADMIN, max_wait=1.0)
    assert wait.value.retry_after > 50  # the minute's window, not a second's
    limiter.acquire(-100124, SendClass.ADMIN, max_wait=0.0)  # another group is not held up


def test_a_lower_class_takes_no_slot_a_higher_class_waits_for(r: redis.Redis,
                                                              prefix: str) -> None:
    limiter = SendLimiter(r, Limits(per_second=5), prefix)
    for chat in range(5):  # the global bucket is full for about a second
        limiter.acquire(1000 + chat, SendClass.ADMIN, max_wait=0.0)
    order: list[str] = []
    lock = threading.Lock()

    def send(name: str, send_class: SendClass, chat: int) -> None:
        limiter_of_worker = SendLimiter(r, Limits(per_second=5), prefix)
        limiter_of_worker.acquire(chat, send_class, max_wait=10.0)
        with lock:
            order.append(name)

    delivery = threading.Thread(target=send, args=("delivery", SendClass.DELIVERY, 2001))
    delivery.start()
    # The broadcast senders start once the delivery waits for the full bucket.
    wait_until(lambda: r.zcard(f"{prefix}tg:limit:waiting:0") > 0, what="delivery waiting",
               timeout=10)
    bulk = [threading.Thread(target=send, args=(f"bulk{i}", SendClass.BULK, 3000 + i))
            for i in range(4)]
    for t in bulk:
        t.start()
    for t in [delivery, *bulk]:
        t.join(timeout=30)
    assert order[0] == "delivery"
    assert sorted(order[1:]) == [f"bulk{i}" for i in range(4)]


def test_a_broadcast_takes_its_slots_evenly_so_a_delivery_waits_one_slot_at_most(
        r: redis.Redis, prefix: str) -> None:
    """A broadcast cannot take the window's slots in a burst: one slot per 1/per_second (here
    2 a second: one per 0.525 s). Right after its slot, the next broadcast send must wait while
    a delivery takes the free one at once; a window filled in a burst would hold a delivery back
    until the burst aged out of it."""
    limiter = SendLimiter(r, Limits(per_second=2), prefix)
    limiter.acquire(1001, SendClass.BULK, max_wait=0.0)
    with pytest.raises(WaitTooLong, match="pace"):
        limiter.acquire(1002, SendClass.BULK, max_wait=0.0)
    limiter.acquire(2001, SendClass.DELIVERY, max_wait=0.0)  # the other slot, at once
    assert r.zcard(f"{prefix}tg:limit:global") == 2  # the refused broadcast send took none


def test_send_class_follows_the_block() -> None:
    from quickcart.adapters.rate_limit import current_class

    assert current_class() == SendClass.REPLY
    with sending_as(SendClass.BULK):
        assert current_class() == SendClass.BULK
    assert current_class() == SendClass.REPLY


def test_notify_messages_are_popped_class_by_class(monkeypatch: pytest.MonkeyPatch,
                                                   test_urls: TestUrls, db: Any) -> None:
    """Published in the worst order, the notify queue still hands a worker the delivery first,
    then the reply, the admin notice, and the broadcast copy last (kombu's priority lists,
    popped as a worker pops them)."""
    from kombu import Connection
    from sqlalchemy.orm import Session

    from quickcart.db import outbox
    from quickcart.services import topics
    from tests.conftest import TEST_KEY_PREFIX
    from workers.publish import publish_committed_unsafe

    message = {"chat_id": 1, "key": "broadcast.message", "params": {"text": "x"}}
    published = [(topics.SEND_BULK_MESSAGE, message), (topics.SEND_NOTICE, message),
                 (topics.SEND_MESSAGE, message), (topics.DELIVER_ORDER, {"order_id": 1})]
    with worker_runtime(monkeypatch, test_urls):
        with Session(db) as session:
            rows = outbox.add_many(session, [(name, queue, payload)
                                             for (name, queue), payload in published])
            session.commit()
        publish_committed_unsafe(rows)
        popped = []
        with Connection(test_urls.redis_url,
                        transport_options={"global_keyprefix": TEST_KEY_PREFIX}) as conn:
            queue = conn.SimpleQueue("notify")
            try:
                for _ in published:
                    got = queue.get(timeout=5)
                    popped.append(got.headers["task"])
                    got.ack()
            finally:
                queue.close()
    assert popped == ["quickcart.deliver_order", "quickcart.send_message",
                      "quickcart.send_notice", "quickcart.send_bulk_message"]
