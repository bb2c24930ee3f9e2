"""The broadcast sender (quickcart/services/broadcast.py) against real PostgreSQL with a fake
Bot API: everyone once, blocked users marked and skipped next time, a runner that dies
mid-send never causes a second copy, 429s come back later."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine, text

from quickcart.adapters.telegram_api import (
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramUnavailable,
    TelegramUnsure,
)
from quickcart.services import broadcast
from tests.conftest import scalar
from tests.integration.test_admin_services import ADMIN
from tests.integration.test_admin_services import shop as shop  # noqa: F401 - the fixture

USERS = range(100, 140)
BLOCKED = {103, 117, 131}
BANNED = {110}


class Died(BaseException):
    """A worker killed mid-send (not an Exception: nothing in the sender catches it)."""


@pytest.fixture()
def crowd(shop: Engine) -> Engine:
    with shop.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, bank_id) SELECT g, 'u' || g,"
                          " lpad(g::text, 6, '0') FROM unnest(CAST(:ids AS bigint[])) g"),
                     {"ids": list(USERS)})
        conn.execute(text("UPDATE users SET is_banned = true WHERE id = ANY(:b)"),
                     {"b": list(BANNED)})
    return shop


class FakeBot:
    """Records every message that reached a chat; blocked chats answer 403."""

    def __init__(self) -> None:
        self.got: Counter[int] = Counter()

    def __call__(self, chat_id: int, text_: str) -> None:
        assert "Promo" in text_
        if chat_id in BLOCKED:
            raise TelegramForbidden("Forbidden: bot was blocked by the user")
        self.got[chat_id] += 1


def run_all(engine: Engine, broadcast_id: int, runner: str, send: broadcast.Send,
            limit: int = 100) -> broadcast.Report:
    for _ in range(limit):
        done = broadcast.send_slice(engine, broadcast_id, runner, send, default_rate=1000)
        if done.finished is not None:
            return done.finished
        assert done.more
    raise AssertionError("the broadcast did not finish")


def test_everyone_once_blocked_marked_and_skipped_next_time(crowd: Engine) -> None:
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:1", "text", "Promo hari ini!")
    expected = {ADMIN, 3, *USERS} - BANNED  # the shop fixture's admin and customer too
    assert started.total == len(expected)
    assert broadcast.start(crowd, ADMIN, "t:b:1", "text", "Promo").created is False
    report = run_all(crowd, started.broadcast_id, "r1", bot)
    assert set(bot.got) == expected - BLOCKED and set(bot.got.values()) == {1}
    assert (report.sent, report.blocked, report.failed, report.unsure) == \
        (len(expected - BLOCKED), len(BLOCKED), 0, 0)
    assert scalar(crowd, "SELECT count(*) FROM users WHERE blocked_bot_at IS NOT NULL") == \
        len(BLOCKED)
    again = broadcast.start(crowd, ADMIN, "t:b:2", "text", "Promo lagi")
    assert again.total == len(expected - BLOCKED)
    # a finished broadcast sends nothing more, whoever runs it
    assert broadcast.send_slice(crowd, started.broadcast_id, "r9", bot).sent == 0


def test_a_runner_that_dies_mid_send_causes_no_second_copy(crowd: Engine) -> None:
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:3", "text", "Promo!")
    calls = 0

    def dies_on_the_fifth(chat_id: int, text_: str) -> None:
        nonlocal calls
        calls += 1
        bot(chat_id, text_)  # it reached the chat ...
        if calls == 5:
            raise Died  # ... and the worker died before recording it

    with pytest.raises(Died):
        broadcast.send_slice(crowd, started.broadcast_id, "dead", dies_on_the_fifth,
                             default_rate=1000)
    assert scalar(crowd, "SELECT count(*) FROM broadcast_recipients WHERE status = 'sending'") == 1
    # Another chain finds the lease held and leaves; once it lapses it takes over.
    assert broadcast.send_slice(crowd, started.broadcast_id, "other", bot).more is False
    assert broadcast.running(crowd) == []
    with crowd.begin() as conn:
        conn.execute(text("UPDATE broadcast_runners SET lease_until = now() - interval '1 s'"))
    assert broadcast.running(crowd) == [started.broadcast_id]
    report = run_all(crowd, started.broadcast_id, "other", bot)
    assert set(bot.got.values()) == {1}, "somebody got the broadcast twice"
    assert report.unsure == 1 and report.sent == len(bot.got)


def test_a_dead_slice_is_resumed_once_its_lease_lapses_and_429_comes_back(
        crowd: Engine) -> None:
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:4", "text", "Promo!")
    refused_once: set[int] = set()

    def flood(chat_id: int, text_: str) -> None:
        if chat_id == 120 and chat_id not in refused_once:
            refused_once.add(chat_id)
            raise TelegramRetryAfter(0, "Too Many Requests: retry after 0")
        if len(bot.got) == 10 and chat_id not in bot.got:
            bot(chat_id, text_)
            raise Died
        bot(chat_id, text_)

    with pytest.raises(Died):
        run_all(crowd, started.broadcast_id, "chain-1", flood)
    # Its message delivered again (same chain) does nothing while the dead slice's lease holds:
    # the holder might be alive, and two executions would send at once.
    assert broadcast.send_slice(crowd, started.broadcast_id, "chain-1", flood).more is False
    with crowd.begin() as conn:
        conn.execute(text("UPDATE broadcast_runners SET lease_until = now() - interval '1 s'"))
    report = run_all(crowd, started.broadcast_id, "chain-1", flood)
    assert 120 in refused_once and bot.got[120] == 1
    assert set(bot.got.values()) == {1}
    assert report.unsure == 1


def test_a_slice_message_delivered_twice_sends_once_at_a_time(crowd: Engine) -> None:
    """A broker may deliver one slice message twice (a restore after a stop, a visibility
    timeout). The second execution, even with the chain's token, does not start while the
    first sends: it would turn the first's in-flight addressee into 'unsure'."""
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:7", "text", "Promo!")
    twin: list[broadcast.Slice] = []

    def send(chat_id: int, text_: str) -> None:
        if not twin:  # the twin arrives while the first execution is mid-send
            twin.append(broadcast.send_slice(crowd, started.broadcast_id, "chain-1", bot,
                                             default_rate=1000))
        bot(chat_id, text_)

    first = broadcast.send_slice(crowd, started.broadcast_id, "chain-1", send,
                                 default_rate=1000)
    assert twin[0].sent == 0 and twin[0].more is False
    assert first.sent > 0
    report = first.finished or run_all(crowd, started.broadcast_id, "chain-1", bot)
    assert set(bot.got.values()) == {1} and report.unsure == 0


def test_a_worker_killed_while_waiting_for_its_turn_leaves_nobody_in_doubt(
        crowd: Engine) -> None:
    """The addressee is claimed after the wait for the send limits, just before the send: a
    worker that dies while it waits (most of a paced broadcast's time) has claimed nobody, so
    the next runner sends to everyone, once each, with nobody unsure."""
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:5", "text", "Promo!")
    turns = 0

    def dies_on_the_seventh_turn(chat_id: int) -> None:
        nonlocal turns
        turns += 1
        if turns == 7:
            raise Died

    with pytest.raises(Died):
        broadcast.send_slice(crowd, started.broadcast_id, "dead", bot, default_rate=1000,
                             pace=dies_on_the_seventh_turn)
    assert scalar(crowd, "SELECT count(*) FROM broadcast_recipients WHERE status = 'sending'") == 0
    with crowd.begin() as conn:
        conn.execute(text("UPDATE broadcast_runners SET lease_until = now() - interval '1 s'"))
    report = run_all(crowd, started.broadcast_id, "next", bot)
    assert set(bot.got.values()) == {1} and report.unsure == 0
    assert report.sent == len({ADMIN, 3, *USERS} - BANNED - BLOCKED)


def test_a_send_that_may_have_left_is_not_repeated_and_one_that_did_not_is(
        crowd: Engine) -> None:
    """No answer after the request left (TelegramUnsure): the addressee is 'unsure' and never
    sent again. A failure before it left (TelegramUnavailable): tried again later, once."""
    bot = FakeBot()
    started = broadcast.start(crowd, ADMIN, "t:b:6", "text", "Promo!")
    failed_once: set[int] = set()

    def flaky(chat_id: int, text_: str) -> None:
        if chat_id in (105, 106) and chat_id not in failed_once:
            failed_once.add(chat_id)
            if chat_id == 105:
                bot(chat_id, text_)  # it reached the chat; the answer was lost
                raise TelegramUnsure("sendMessage: RemoteDisconnected")
            raise TelegramUnavailable("sendMessage: ConnectionRefusedError")
        bot(chat_id, text_)

    for _ in range(100):
        done = broadcast.send_slice(crowd, started.broadcast_id, "r1", flaky, default_rate=1000)
        if done.finished is not None:
            break
        with crowd.begin() as conn:  # the 2 s retry delay, made due now
            conn.execute(text("UPDATE broadcast_recipients SET not_before = now()"
                              " WHERE not_before IS NOT NULL"))
    report = done.finished
    assert report is not None and failed_once == {105, 106}
    assert bot.got[105] == 1 and bot.got[106] == 1 and set(bot.got.values()) == {1}
    assert report.unsure == 1 and report.failed == 0
    assert scalar(crowd, "SELECT status FROM broadcast_recipients WHERE user_id = 105"
                  " AND broadcast_id = :b", b=started.broadcast_id) == "unsure"


def test_a_user_who_writes_again_is_reached_by_the_next_broadcast(crowd: Engine) -> None:
    from quickcart.services.registration import register_user

    run_all(crowd, broadcast.start(crowd, ADMIN, "t:b:3", "text", "Promo").broadcast_id, "r1",
            FakeBot())
    assert scalar(crowd, "SELECT blocked_bot_at IS NOT NULL FROM users WHERE id = 103")
    register_user(crowd, 103, "u103")  # /start after unblocking the bot
    assert scalar(crowd, "SELECT blocked_bot_at IS NULL FROM users WHERE id = 103")
    again = broadcast.start(crowd, ADMIN, "t:b:4", "text", "Promo lagi")
    assert again.total == len({ADMIN, 3, *USERS} - BANNED - (BLOCKED - {103}))
