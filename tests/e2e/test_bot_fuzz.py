"""Bot input fuzzing (hypothesis) against the real bot process: random text, huge and negative
numbers, unicode, injection strings and oversized files into every text, command and document
handler. Each input gets an answer in the chat, no business state changes, and no handler
fails (the bot's global error handler logs `update … failed` when one does).

Button presses are not fuzzed: Telegram only delivers the callback data of a button the bot
itself sent (the simulator checks this too)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import QUEUES as QUEUE_NAMES
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot, make_admin  # noqa: F401 - `bot` is the bot process fixture
from tests.support import wait_until

pytestmark = pytest.mark.slow

SHOPPERS = tuple(range(7100, 7112))  # the gate allows 10 messages a minute per shopper
ADMIN = 7199
PRODUCT = 1
INJECTION = (
    "'; DROP TABLE users; --", "1 OR 1=1", "1; UPDATE users SET account_balance = 10^9",
    "<script>alert(1)</script>", "<b>bold</b> *md* _x_ [l](http://x)", "{{7*7}}",
    "${jndi:ldap://127.0.0.1/x}", "../../etc/passwd", "%s%s%n%x", "\u202eRTL\u202c",
    "🛒" * 200, "ａｂｃ１２３", "9" * 400, "-0", "1e309", "NaN", "0x1F", "١٢٣",
)
# Numbers no shopper, product or amount here has: negative, zero, or absurdly large.
BAD_NUMBERS = st.one_of(st.integers(max_value=0),
                        st.integers(min_value=10**9, max_value=10**40)).map(str)
GARBAGE = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFFF), max_size=60),
    st.sampled_from(INJECTION),
    BAD_NUMBERS,
).map(lambda s: s.replace("\x00", "")).filter(lambda s: s.strip() != "")
SHOP_COMMANDS = ("start", "menu", "stock", "lang", "export", "buy", "help", "addstock", "add",
                 "editbalance", "ban")
# Admin commands whose argument is an id or amount: with the numbers above none can match a
# real row, so each must be refused politely (broadcast, pm and giveaway would legitimately act).
ADMIN_ID_COMMANDS = ("del", "addstock", "delstock", "delallstock", "exportstock", "ban",
                     "unban", "addreseller", "rmress", "addadmin", "rmadmin", "editbalance",
                     "info", "priceress")
FILES = st.one_of(st.binary(max_size=4096),
                  st.sampled_from([b"", b"\x00" * 2048, b"KEY-" * 20000, bytes(range(256)) * 8]))

INPUTS = st.one_of(
    st.tuples(st.just("text"), GARBAGE),
    st.tuples(st.just("command"), st.sampled_from(SHOP_COMMANDS), GARBAGE),
    st.tuples(st.just("document"), FILES, st.sampled_from(["keys.txt", "a.exe", "x" * 120])),
    st.tuples(st.just("admin"), st.sampled_from(ADMIN_ID_COMMANDS),
              st.one_of(BAD_NUMBERS, st.sampled_from(INJECTION),
                        st.tuples(BAD_NUMBERS, GARBAGE).map(" ".join),
                        st.tuples(BAD_NUMBERS, GARBAGE).map("|".join))),
    st.tuples(st.just("admin_document"), FILES,
              st.one_of(st.just(""), BAD_NUMBERS.map(lambda n: f"/addstock {n}"))),
)

BUSINESS_STATE = (
    "SELECT count(*) FROM orders", "SELECT count(*) FROM deposits",
    "SELECT count(*) FROM balance_ledger", "SELECT coalesce(sum(account_balance), 0) FROM users",
    "SELECT count(*) FROM users", "SELECT count(*) FROM users WHERE is_banned",
    "SELECT string_agg(id || ':' || member_status, ',' ORDER BY id) FROM users",
    "SELECT count(*) FROM products",
    "SELECT string_agg(id || ':' || customer_price || ':' || is_active, ',' ORDER BY id)"
    " FROM products",
    "SELECT count(*) FROM product_stocks", "SELECT count(*) FROM product_stocks WHERE is_sold",
    "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL",
    "SELECT count(*) FROM vouchers",
)


def _state(shop: Shop) -> list[Any]:
    return [shop.q(sql) for sql in BUSINESS_STATE]


ANSWERS = ("sendMessage", "editMessageText", "editMessageCaption", "sendDocument", "sendPhoto")


def _answered(shop: Shop, chat_id: int, since: int) -> None:
    """Wait for the bot's answer to the input sent after call `since`: a message to that chat
    (sent, edited or a file), never silence."""
    wait_until(lambda: any(c["method"] in ANSWERS and c.get("ok")
                           for c in shop.telegram.calls(chat_id=chat_id, since=since)),
               what=f"the bot's answer in chat {chat_id}", timeout=30)


def _queues_idle(shop: Shop) -> bool:
    """Every task the inputs caused has run: no queued message, none unacknowledged."""
    r = redis.Redis.from_url(shop.redis_url)
    try:
        queued = sum(int(r.llen(shop.key(q))) for q in QUEUE_NAMES.split(","))
        return queued == 0 and int(r.hlen(shop.key("unacked"))) == 0
    finally:
        r.close()


@pytest.mark.usefixtures("bot")
def test_fuzzed_input_gets_a_polite_answer_and_changes_nothing(shop: Shop) -> None:
    shop.add_product(PRODUCT, price=5000, units=3)
    for uid in SHOPPERS:
        shop.add_user(uid, balance=20000)
    make_admin(shop, ADMIN)
    for uid in (*SHOPPERS, ADMIN):
        since = shop.telegram.last_call_seq()
        shop.telegram.send_command(uid, "start")
        _answered(shop, uid, since)
    log_path = shop.tmp / "bot.log"
    log_start = log_path.stat().st_size
    before = _state(shop)
    shoppers = itertools.cycle(SHOPPERS)
    sent: list[tuple[Any, ...]] = []

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(step=INPUTS)
    def one_input(step: tuple[Any, ...]) -> None:
        kind = step[0]
        uid = ADMIN if kind.startswith("admin") else next(shoppers)
        since = shop.telegram.last_call_seq()
        if kind == "text":
            shop.telegram.send_text(uid, step[1])
        elif kind in ("command", "admin"):
            shop.telegram.send_command(uid, step[1], step[2])
        else:
            shop.telegram.send_document(uid, step[1], step[2] if kind == "document"
                                        else "keys.txt",
                                        caption=step[2] if kind == "admin_document" else None)
        sent.append(step)
        _answered(shop, uid, since)

    one_input()
    shop.telegram.wait_until_consumed(timeout=30)
    wait_until(lambda: _queues_idle(shop), what="the tasks the inputs caused", timeout=60)
    assert len(sent) >= 40
    assert {step[0] for step in sent} == {"text", "command", "document", "admin",
                                          "admin_document"}, "every kind of input was sent"
    with log_path.open("rb") as f:
        f.seek(log_start)
        log = f.read().decode(errors="replace")
    assert "failed" not in log and "Traceback" not in log, log[-3000:]
    for uid in (*SHOPPERS, ADMIN):
        for message in shop.telegram.bot_messages(uid):
            text = str(message.get("text") or message.get("caption") or "")
            assert "Traceback" not in text and "Exception" not in text, text
    assert _state(shop) == before
