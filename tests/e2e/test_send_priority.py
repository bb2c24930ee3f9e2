"""The message pipe under Telegram's limits, through real workers: a delivery queued behind a
thousand broadcast copies goes within the next few send slots, and a worker killed in the middle
of a send sends nothing twice."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from celery import Celery
from sqlalchemy import text

from quickcart.adapters.rate_limit import SendClass
from quickcart.services import orders
from tests.conftest import delete_prefixed
from tests.e2e.conftest import Shop
from tests.support import CeleryProcess, wait_until

pytestmark = pytest.mark.timeout(240)

BROADCAST = 1000
AUDIENCE = 500_000  # first chat id of the broadcast's audience


def _broadcast_sent(shop: Shop, since: int = 0) -> list[dict[str, Any]]:
    return [c for c in shop.telegram.calls(method="sendMessage", since=since)
            if c["ok"] and int(c["params"]["chat_id"]) >= AUDIENCE]


@contextlib.contextmanager
def own_notify_worker(shop: Shop, tmp: Path, concurrency: int,
                      **env: str) -> Iterator[tuple[Celery, str, CeleryProcess]]:
    """A notify worker of its own on the shop's databases: its own key prefix (so the shop's
    worker never takes its messages, and its send buckets are its own) and settings `env`.
    Yields a client publishing to it, the prefix and the worker."""
    prefix = f"{shop.key_prefix}own{uuid.uuid4().hex[:6]}:"
    worker = CeleryProcess({**shop.env, "REDIS_KEY_PREFIX": prefix, **env},
                           ["worker", "-Q", "notify", "-c", str(concurrency), "-P", "prefork",
                            "-n", f"own-{uuid.uuid4().hex[:6]}@%h", "--without-gossip",
                            "--without-mingle", "-l", "info"], tmp / "own-worker.log")
    client = Celery(broker=shop.redis_url)
    client.conf.broker_transport_options = {"global_keyprefix": prefix}
    worker.start()
    try:
        yield client, prefix, worker
    finally:
        worker.kill_hard()
        delete_prefixed(shop.redis_url, prefix)


def _paid_order(shop: Shop, buyer: int, product: int) -> int:
    """A balance purchase committed in-process; its outbox rows are left to the test (marked
    published, so the shop's relay never hands its delivery to the shop's own worker)."""
    result = orders.create_order(shop.main, orders.CreateOrder(
        user_id=buyer, product_id=product, quantity=1, payment_method="account_balance",
        idempotency_key=f"prio:{uuid.uuid4().hex}")).result
    assert result["status"] == "paid", result
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE outbox SET published_at = now() WHERE published_at IS NULL"))
    return int(result["order_id"])


def test_a_delivery_behind_1000_broadcast_copies_goes_within_a_few_slots(
        shop: Shop, tmp_path: Path) -> None:
    shop.telegram.set_rate_limit(True)  # Telegram's 30/s, 1/s per chat
    for uid in range(AUDIENCE, AUDIENCE + BROADCAST):
        shop.telegram.state.add_user(f"Warga {uid}", user_id=uid, language_code="id")
    buyer = shop.add_user(4001, balance=50_000)
    order_id = _paid_order(shop, buyer, shop.add_product(1, price=10_000, units=1))
    # 10 sends a second: a slot (100 ms) is longer than the delivery's own database work on
    # this shared machine, so what is counted below is slots lost to the broadcast.
    with own_notify_worker(shop, tmp_path, 4, TELEGRAM_RATE_PER_SECOND="10") as (client, _, _w):
        # A /broadcast's copies, all queued at once in the lowest class (issue 23's path).
        with client.producer_or_acquire() as producer:
            for uid in range(AUDIENCE, AUDIENCE + BROADCAST):
                client.send_task(
                    "quickcart.send_bulk_message", queue="notify", priority=int(SendClass.BULK),
                    producer=producer, kwargs={"chat_id": uid, "key": "broadcast.message",
                                               "params": {"text": "Promo!"},
                                               "once_key": f"prio-bc:{uid}"})
        wait_until(lambda: len(_broadcast_sent(shop)) >= 20, what="broadcast under way",
                   timeout=90)
        # The payment's commit publishes the delivery: now, behind ~980 queued copies.
        before = shop.telegram.last_call_seq()
        client.send_task("quickcart.deliver_order", queue="notify",
                         priority=int(SendClass.DELIVERY), kwargs={"order_id": order_id})
        delivery = shop.telegram.wait_for_call(
            "sendMessage", lambda c: c["ok"] and "KEY-1-1" in str(c["params"].get("text")),
            timeout=60, since=before)
        ahead = [c for c in _broadcast_sent(shop, since=before) if c["seq"] < delivery["seq"]]
        # One slot while a pool process (-c 4) finishes the copy it holds, at most one taken
        # by a copy that asked as the delivery started to wait; then the delivery's turn.
        assert len(ahead) <= 3, [c["params"]["chat_id"] for c in ahead]
        assert BROADCAST - len(_broadcast_sent(shop)) > 500  # most of the broadcast still queued


class _HangingTelegram(ThreadingHTTPServer):
    """Answers every Bot API call `ok`, except that it holds the first sendMessage's answer
    until released: the worker is then in the middle of a send Telegram already accepted."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.sent: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> _HangingTelegram:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()  # the held answer's thread ends first
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HangingTelegram

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path.endswith("/sendMessage"):
            with self.server.lock:
                self.server.sent.append(body)
                first = len(self.server.sent) == 1
            if first:
                self.server.release.wait(60)
        raw = json.dumps({"ok": True, "result": {"message_id": 1, "date": 0,
                                                 "chat": {"id": body.get("chat_id")}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
        pass


@pytest.fixture
def hanging_telegram() -> Iterator[_HangingTelegram]:
    with _HangingTelegram() as server:
        yield server


def test_a_worker_killed_mid_send_sends_nothing_twice(shop: Shop,
                                                      hanging_telegram: _HangingTelegram,
                                                      tmp_path: Path) -> None:
    # A notify worker of its own, talking to a Telegram that holds its first answer.
    with own_notify_worker(shop, tmp_path, 1, TELEGRAM_API_BASE_URL=hanging_telegram.url
                           ) as (client, prefix, worker):
        r = redis.Redis.from_url(shop.redis_url, decode_responses=True)
        task_id = client.send_task(
            "quickcart.send_message", queue="notify",
            kwargs={"chat_id": 77, "key": "broadcast.message", "params": {"text": "sekali"},
                    "once_key": "crash-mid-send"}).id
        wait_until(lambda: len(hanging_telegram.sent) == 1, what="the send reached Telegram",
                   timeout=90)
        assert worker.proc is not None
        [child] = psutil.Process(worker.proc.pid).children()
        child.send_signal(signal.SIGKILL)  # the crash: Telegram has it, the worker never knew
        # The message comes back (acks late, rejected on a lost worker) and runs again...
        wait_until(lambda: r.exists(f"{prefix}delivery:{task_id}"), what="task redelivered",
                   timeout=90)
        wait_until(lambda: r.hlen(f"{prefix}unacked") == 0 and r.llen(f"{prefix}notify") == 0,
                   what="the redelivered task finished", timeout=90)
        hanging_telegram.release.set()
        r.close()
    # ... and finds the message sent: nothing went twice.
    assert len(hanging_telegram.sent) == 1
    assert shop.q("SELECT count(*) FROM idempotency_keys WHERE key = 'crash-mid-send'") == 1


def test_a_flash_sale_under_telegrams_limits_keeps_its_invariants(shop: Shop) -> None:
    """Every buyer answered once (the key, or a polite "sold out"), nothing sold twice, and
    `quickcart check` clean, with the simulator refusing what Telegram would refuse."""
    from tests.e2e.test_order_engine import assert_clean, buy, delivered_contents

    shop.telegram.set_rate_limit(True)
    product = shop.add_product(1, price=10_000, units=6)
    buyers = [shop.add_user(1000 + i, balance=50_000) for i in range(60)]
    outcomes = shop.wait_intents([buy(shop, uid, product) for uid in buyers], timeout=120)
    assert sum(o["status"] == "paid" for o in outcomes) == 6
    assert sum(o.get("error") == "out_of_stock" for o in outcomes) == 54
    winners = {int(r.user_id) for r in shop.rows("SELECT user_id FROM orders"
                                                 " WHERE status = 'paid'")}

    def answered() -> dict[int, int]:
        got: dict[int, int] = {}
        for call in shop.telegram.calls(method="sendMessage"):
            chat = int(call["params"]["chat_id"])
            if call["ok"] and chat in buyers and chat not in winners:
                got[chat] = got.get(chat, 0) + 1
        return got

    wait_until(lambda: len(answered()) == 54, what="54 'sold out' answers", timeout=120)
    assert set(answered().values()) == {1}  # each refused buyer told once
    assert all("habis" in call["params"]["text"] for call in shop.telegram.calls(
        method="sendMessage") if call["ok"] and int(call["params"]["chat_id"]) not in winners
        and int(call["params"]["chat_id"]) in buyers)
    wait_until(lambda: len(delivered_contents(shop)) >= 6, what="6 deliveries", timeout=120)
    assert sorted(delivered_contents(shop)) == sorted(f"KEY-1-{i}" for i in range(1, 7))
    assert_clean(shop)
