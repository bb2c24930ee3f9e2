"""Issue 23's broadcast acceptance: 2,000 shoppers, 100 of whom blocked the bot; the notify
worker is stopped in the middle of the broadcast, and a new one takes over. Nobody receives it
twice; the 100 are marked blocked; the admin's one status message ends as the report.

Stopped as `systemctl stop` or a deploy does (SIGTERM, Celery's warm shutdown), exactly 1,900
receive it, once each. Killed with `kill -9`, the same, except that a send in flight at that
instant either reached Telegram or not, and nothing can tell which (Telegram has no idempotent
send): that one addressee is 'unsure', never sent again, and reported. The addressee is claimed
only after the wait for the send limits, just before the request is written, so that happens
only when the kill lands in that sub-millisecond gap (docs/adr/0065). Telegram's flood limits
are off in the simulator and raised in the workers: the test measures correctness, not pace."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import text

from quickcart.services import broadcast
from tests.faults.conftest import FaultShop
from tests.support import wait_until

pytestmark = pytest.mark.slow

USERS = 2000
BLOCKED = set(range(1001, 2001, 10))  # 100 of them
ADMIN = 1
TEXT = "Promo kilat hari ini"


def _message_counts(shop: FaultShop) -> Counter[int]:
    """How many copies of the broadcast each chat received, as the simulator recorded."""
    counts: Counter[int] = Counter()
    for call in shop.telegram.calls(method="sendMessage"):
        params = call.get("params") or {}
        if call.get("ok") and TEXT in str(params.get("text", "")):
            counts[int(params["chat_id"])] += 1
    return counts


@pytest.mark.parametrize("stop", ["sigterm", "kill -9"])
def test_broadcast_survives_a_stopped_worker_without_duplicates(fshop: FaultShop,
                                                                 stop: str) -> None:
    shop = fshop
    shop.telegram.set_rate_limit(False)
    # The workers' own shared limits (issue 25's sender) raised far above the load, for speed.
    shop.env["TELEGRAM_RATE_PER_SECOND"] = "100000"
    try:
        with shop.main.begin() as conn:
            conn.execute(text(
                "INSERT INTO users (id, name, bank_id) SELECT g, 'Pembeli ' || g,"
                " lpad(g::text, 6, '0') FROM generate_series(1, :n) g"), {"n": USERS})
            conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :a"),
                         {"a": ADMIN})
        for uid in range(1, USERS + 1):
            shop.telegram.add_user(f"Pembeli {uid}", user_id=uid, language_code="id")
        for uid in BLOCKED:
            shop.telegram.block(uid)
        shop.start_group_workers()

        started = broadcast.start(shop.main, ADMIN, "t:fault:broadcast", "text", TEXT,
                                  rate_per_second=1000)
        assert started.total == USERS
        shop.client.send_task("quickcart.broadcast_slice", queue="notify", kwargs={
            "broadcast_id": started.broadcast_id, "runner": "first-chain"})

        def done_count() -> int:
            return int(shop.q("SELECT count(*) FROM broadcast_recipients WHERE broadcast_id = :b"
                              " AND status <> 'pending'", b=started.broadcast_id))

        wait_until(lambda: done_count() >= 400, what="a fifth of the broadcast sent",
                   timeout=120)
        if stop == "sigterm":  # warm shutdown: the slice in hand finishes, the next waits
            shop.group_workers["notify"].stop()
            shop.start_group("notify")
        else:
            shop.kill_group("notify")  # kill -9 mid-broadcast, a fresh worker takes over
        assert done_count() < USERS, "the stop came too late to test anything"

        wait_until(lambda: shop.q("SELECT status FROM broadcasts WHERE id = :b",
                                  b=started.broadcast_id) == "done",
                   what="broadcast finished after the kill", timeout=240, interval=1)
        counts = _message_counts(shop)
        assert max(counts.values()) == 1, "somebody received the broadcast twice"
        assert not set(counts) & BLOCKED
        statuses = dict(shop.rows("SELECT status, count(*) FROM broadcast_recipients"
                                  " WHERE broadcast_id = :b GROUP BY status",
                                  b=started.broadcast_id))
        assert statuses.get("blocked") == len(BLOCKED)
        assert shop.q("SELECT count(*) FROM users WHERE blocked_bot_at IS NOT NULL") == \
            len(BLOCKED)
        # At most once: an addressee whose send was in flight at the kill is never sent again
        # ('unsure'); the simulator tells whether that send had reached Telegram before the kill.
        unsure = [int(r[0]) for r in shop.rows(
            "SELECT user_id FROM broadcast_recipients WHERE broadcast_id = :b"
            " AND status = 'unsure'", b=started.broadcast_id)]
        lost = [uid for uid in unsure if counts[uid] == 0]
        print(f"broadcast stop={stop}: unsure={len(unsure)} lost={len(lost)}")  # for ADR 0065
        if stop == "sigterm":
            assert unsure == [] and len(counts) == 1900  # exactly 1,900, once each
        else:
            # One runner per broadcast sends one message at a time: at most one in flight.
            assert len(unsure) <= 1
            assert set(lost) <= set(unsure)
            assert len(counts) == 1900 - len(lost)  # nobody twice; only that one may miss it
        report = shop.rows("SELECT sent, failed, blocked FROM broadcasts WHERE id = :b",
                           b=started.broadcast_id)[0]
        assert tuple(report) == (1900, 0, 100)
        # The admin's status message, shown at the first progress step and edited since,
        # ends as the report (across the stop).
        reports = [m for m in shop.telegram.bot_messages(ADMIN)
                   if "Siaran selesai" in str(m.get("text"))]
        assert len(reports) == 1 and "1900 terkirim, 0 gagal, 100 memblokir bot" in \
            str(reports[0]["text"])
    finally:
        shop.env.pop("TELEGRAM_RATE_PER_SECOND", None)
        for worker in shop.group_workers.values():
            worker.kill_hard()
        shop.group_workers.clear()

