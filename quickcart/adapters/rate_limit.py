"""Telegram's send limits, kept by every notify worker on every host together.

Telegram lets one bot send about 30 messages a second overall, 1 a second to one chat and 20 a
minute to one group, and answers 429 `retry_after` above that. The buckets are sliding-window
logs in Redis (pyrate-limiter's `RedisBucket`: one atomic Lua check-and-insert per bucket), so
the limits hold across processes and hosts; python-telegram-bot's own limiter is per process.
A slot is confirmed once taken (`_confirm`): two senders admitted to the same last slot within
a millisecond settle on one of them.

On top of the buckets sits a priority gate: a sender that found the global bucket full registers
itself as waiting under its class, and a sender of a lower class takes no global slot while one
of a higher class waits. So a broadcast can take at most the one slot it was already taking when
a delivery arrived (docs: ADR "Deliveries first under Telegram's limits"). Broadcasts also take
their slots evenly spread, one per 1/per_second at most (`bulk-pace`): in a window they filled
in a burst, a delivery would wait for the burst to age out of it, up to a second (ADR 0062).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar, cast

import redis
from pyrate_limiter import Duration, Rate, RateItem
from pyrate_limiter.buckets.redis_bucket import LuaScript, RedisBucket


class SendClass(IntEnum):
    """Who waits first in the message pipe. The values are kombu's Redis priority steps (0 is
    consumed first), so a task's class is also its message priority on the notify queue."""

    DELIVERY = 0  # paid goods, the payment QR and its receipt/expiry edits
    REPLY = 3  # answers to a shopper's own action (sold out, cancelled, paid deposit, ...)
    ADMIN = 6  # notices and digests to admins
    BULK = 9  # broadcasts and restock notices


# Methods that post a new message: the ones Telegram's flood limits count (and the simulator).
LIMITED_METHODS = frozenset({
    "sendMessage", "sendPhoto", "sendDocument", "sendVideo", "sendAudio", "sendAnimation",
    "sendVoice", "sendVideoNote", "sendSticker", "sendMediaGroup", "sendLocation",
    "sendContact", "sendPoll", "sendDice", "copyMessage", "forwardMessage",
})

F = TypeVar("F", bound=Callable[..., Any])
_current_class: ContextVar[SendClass] = ContextVar("send_class", default=SendClass.REPLY)


@contextlib.contextmanager
def sending_as(send_class: SendClass) -> Iterator[None]:
    """Sends made inside this block wait in the pipe as `send_class`."""
    token = _current_class.set(send_class)
    try:
        yield
    finally:
        _current_class.reset(token)


def sent_as(send_class: SendClass) -> Callable[[F], F]:
    """Decorate a function (a notify task) whose every send waits in the pipe as
    `send_class`."""
    def wrap(fun: F) -> F:
        @functools.wraps(fun)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with sending_as(send_class):
                return fun(*args, **kwargs)
        return cast(F, inner)
    return wrap


def current_class() -> SendClass:
    """The class of the sends made now (REPLY unless a task said otherwise)."""
    return _current_class.get()


@dataclass(frozen=True)
class Limits:
    """The send limits (settings TELEGRAM_RATE_*), and how long a send may wait in-process."""

    per_second: int = 30
    per_chat_per_second: int = 1
    per_group_per_minute: int = 20
    max_wait_seconds: float = 2.0

    @classmethod
    def from_settings(cls) -> Limits:
        """The limits configured in settings."""
        from quickcart.config import get_settings

        s = get_settings()
        return cls(s.telegram_rate_per_second, s.telegram_rate_per_chat_per_second,
                   s.telegram_rate_per_group_per_minute, s.telegram_send_max_wait_seconds)


class WaitTooLong(Exception):
    """A send would have to wait `retry_after` seconds, longer than the caller may block."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(f"send must wait {retry_after:.2f} s ({reason})")
        self.retry_after = retry_after


# Each window a little longer than Telegram's: a slot is taken a few milliseconds before its
# request reaches Telegram, and that lag varies from send to send; without the margin two sends
# to one chat a "second" apart by our clock arrive 0.99 s apart by Telegram's and get a 429.
# It costs 5 % of the global rate (28.6/s of 30).
GUARD_MS = 50
SECOND = Duration.SECOND.value + GUARD_MS
MINUTE = Duration.MINUTE.value + GUARD_MS
#: A broadcast's slots are at least this share of the average slot interval apart.
BULK_SPACING = 0.8


def _wait_ms(bucket: RedisBucket, now: int) -> int:
    """After a refused put: milliseconds until `bucket` has room (pyrate-limiter's figure)."""
    return max(1, int(cast(int, bucket.waiting(RateItem("send", now)))))


def _text(member: Any) -> str:
    """A sorted-set member as text, from a client with or without `decode_responses`."""
    return member.decode() if isinstance(member, bytes) else str(member)


def _now_ms() -> int:
    # Wall clock, not monotonic: the buckets are shared by processes on several hosts (whose
    # clocks NTP keeps within a few ms; pyrate-limiter's Redis buckets assume the same).
    return time.time_ns() // 1_000_000


class SendLimiter:
    """Shared global, per-chat and per-group buckets plus the priority gate, in one Redis."""

    _CHAT_BUCKETS_KEPT = 512  # bucket objects cached per process (each is just a key name)

    def __init__(self, client: redis.Redis, limits: Limits, key_prefix: str) -> None:
        self.limits = limits
        self._redis = client
        self._prefix = f"{key_prefix}tg:limit:"
        # The script's SHA1, computed here (no round trip at start); loaded on first use and
        # again after a Redis restart forgot it (`_put`).
        self._script = hashlib.sha1(LuaScript.PUT_ITEM.encode(), usedforsecurity=False).hexdigest()
        self._global = RedisBucket([Rate(limits.per_second, SECOND)], client,
                                   self._prefix + "global", self._script)
        # Broadcasts take global slots one at a time, spaced at least 0.8/per_second apart: no
        # bursts, so their slots in a window are spread and one leaves it about every
        # 1/per_second, and a higher class waits about one slot at most (a burst of 25 would
        # hold it back for a second). The 0.8 lets a sender whose own round trips take some of
        # the interval still reach the global limit, which then spaces them.
        self._bulk_pace = RedisBucket(
            [Rate(1, max(1, int(SECOND * BULK_SPACING / max(1, limits.per_second))))],
            client, self._prefix + "bulk-pace", self._script)
        self._chats: OrderedDict[int, RedisBucket] = OrderedDict()
        self._puts = 0
        self._untidy: tuple[RedisBucket, int] | None = None  # the last chat slot taken
        # Between two polls a yielding sender sleeps a third of a slot.
        self._poll = 1.0 / max(1, limits.per_second) / 3

    # ------------------------------------------------------------------ buckets
    def _chat_rates(self, chat_id: int) -> list[Rate]:
        # Negative ids are groups and channels: 20 a minute on top of the per-chat limit.
        rates = [Rate(self.limits.per_chat_per_second, SECOND)]
        if chat_id < 0:
            minute = Rate(self.limits.per_group_per_minute, MINUTE)
            # When the minute allows no more than the second, the second's limit never binds
            # (and pyrate-limiter refuses such a list).
            rates = [*rates, minute] if minute.limit > rates[0].limit else [minute]
        return rates

    def _chat_bucket(self, chat_id: int) -> RedisBucket:
        bucket = self._chats.get(chat_id)
        if bucket is None:
            bucket = RedisBucket(self._chat_rates(chat_id), self._redis,
                                 f"{self._prefix}chat:{chat_id}", self._script)
            self._chats[chat_id] = bucket
            if len(self._chats) > self._CHAT_BUCKETS_KEPT:
                self._chats.popitem(last=False)
        else:
            self._chats.move_to_end(chat_id)
        return bucket

    def _put(self, bucket: RedisBucket) -> tuple[str, int] | None:
        """Take one slot of `bucket` if it has room (atomic, in Redis): (our entry's name, its
        time), or None. The time is read just before the put: the check counts only entries up
        to it, so a stale one would miss a slot another sender took meanwhile."""
        name = uuid.uuid4().hex
        now = _now_ms()
        try:
            taken = bucket.put(RateItem(name, now))
        except redis.exceptions.NoScriptError:
            self._redis.script_load(LuaScript.PUT_ITEM)
            taken = bucket.put(RateItem(name, now))
        return (name, now) if taken else None

    def _confirm(self, slots: list[tuple[RedisBucket, str, int]]) -> bool:
        """Whether every slot just taken holds, else give them all back. Two senders whose
        clocks read a millisecond apart can both be admitted to the last slot (each check counts
        entries up to its own time): of the entries in a window, those first by (time, name)
        keep it, and a later one beyond the limit withdraws, so both see the same order."""
        pipe = self._redis.pipeline(transaction=False)
        checks = [(bucket, name, at, rate) for bucket, name, at in slots for rate in bucket.rates]
        for bucket, _name, at, rate in checks:
            pipe.zrangebyscore(bucket.bucket_key, at - rate.interval, "+inf", withscores=True)
        for (_bucket, name, _at, rate), entries in zip(checks, pipe.execute(), strict=True):
            ordered = sorted(entries, key=lambda e: (e[1], e[0]))
            mine = next((i for i, (member, _) in enumerate(ordered)
                         if _text(member).startswith(f"{name}:")), None)
            if mine is not None and mine >= rate.limit:
                for bucket, slot_name, at in slots:
                    self._give_back(bucket, slot_name, at)
                return False
        return True

    def _give_back(self, bucket: RedisBucket, name: str, at: int) -> None:
        """Remove our entry `name` (taken at `at`) from `bucket`."""
        mine = [_text(m) for m in self._redis.zrangebyscore(bucket.bucket_key, at, at)
                if _text(m).startswith(f"{name}:")]
        if mine:
            self._redis.zrem(bucket.bucket_key, *mine)

    def _look(self, chat_id: int, send_class: SendClass, now: int) -> tuple[int, bool]:
        """One round trip, taking nothing: (milliseconds until `chat_id` may receive again,
        whether a higher class than `send_class` waits for a global slot). The chat's wait is,
        per rate, when the `limit`-th newest entry leaves its window, and any 429 pause."""
        bucket = self._chat_bucket(chat_id)
        rates = bucket.rates
        higher = [c for c in SendClass if c < send_class]
        pipe = self._redis.pipeline(transaction=False)
        self._tidy(pipe, now)
        tidying = len(pipe)
        for rate in rates:
            pipe.zrange(bucket.bucket_key, -rate.limit, -rate.limit, withscores=True)
        pipe.pttl(f"{self._prefix}pause:{chat_id}")
        pipe.pttl(f"{self._prefix}pause:global")
        for c in higher:
            pipe.zcount(self._waiting_key(c), now, "+inf")
        replies = pipe.execute()[tidying:]
        entries, pauses, waiting = replies[:len(rates)], replies[len(rates):len(rates) + 2], \
            replies[len(rates) + 2:]
        wait = max(0, *(int(p) for p in pauses))
        for rate, entry in zip(rates, entries, strict=True):
            if entry:
                wait = max(wait, int(entry[0][1]) + rate.interval - now)
        return wait, any(int(n) for n in waiting)

    # ------------------------------------------------------------------ priority gate
    def _waiting_key(self, send_class: SendClass) -> str:
        return f"{self._prefix}waiting:{int(send_class)}"

    # ------------------------------------------------------------------ the one entry point
    def acquire(self, chat_id: int, send_class: SendClass, max_wait: float) -> float:
        """Block until one message to `chat_id` fits every limit, and take its slots; returns
        the seconds waited. Raises WaitTooLong (taking nothing) when that would exceed
        `max_wait`. A lower class takes no global slot while a higher class waits for one."""
        started = time.monotonic()
        deadline = started + max(0.0, max_wait)
        member = uuid.uuid4().hex
        waiting = False
        try:
            while True:
                now = _now_ms()
                wait_ms, higher_waiting = self._look(chat_id, send_class, now)
                reason = "chat"
                paced: tuple[str, int] | None = None
                if wait_ms <= 0:
                    if higher_waiting:
                        wait_ms, reason = max(1, int(self._poll * 1000)), "priority"
                    elif send_class == SendClass.BULK and \
                            (paced := self._put(self._bulk_pace)) is None:
                        wait_ms, reason = _wait_ms(self._bulk_pace, _now_ms()), "pace"
                    elif (global_slot := self._put(self._global)) is not None:
                        bucket = self._chat_bucket(chat_id)
                        chat_slot = self._put(bucket)
                        slots = [(self._global, *global_slot)]
                        if paced is not None:
                            slots.append((self._bulk_pace, *paced))
                        if chat_slot is not None:
                            slots.append((bucket, *chat_slot))
                            if self._confirm(slots):
                                self._untidy = (bucket, chat_slot[1])
                                return time.monotonic() - started
                            wait_ms, reason = max(1, int(self._poll * 1000)), "race"
                        else:
                            # Another sender took this chat's slot since the check: the global
                            # (and pace) slots are given back, and this one waits.
                            for taken, name, at in slots:
                                self._give_back(taken, name, at)
                            wait_ms = _wait_ms(bucket, _now_ms())
                    else:
                        if paced is not None:
                            self._give_back(self._bulk_pace, *paced)
                        wait_ms = _wait_ms(self._global, now)
                        reason, waiting = "global", True
                        # (Re)registered with an expiry: a killed sender stops gating others.
                        self._redis.zadd(self._waiting_key(send_class),
                                         {member: now + wait_ms + int(max_wait * 1000) + 1000})
                if waiting and reason == "chat":
                    self._redis.zrem(self._waiting_key(send_class), member)
                    waiting = False
                remaining = deadline - time.monotonic()
                if wait_ms / 1000 > remaining:
                    raise WaitTooLong(max(wait_ms / 1000, self._poll), reason)
                time.sleep(wait_ms / 1000)
        finally:
            if waiting:
                with contextlib.suppress(redis.RedisError):
                    self._redis.zrem(self._waiting_key(send_class), member)

    def _tidy(self, pipe: redis.client.Pipeline, now: int) -> None:
        """Queue on `pipe` the clean-up of the last slot taken: drop entries older than the
        windows (the Lua check only counts inside them), let an idle chat's key expire with its
        window. Sent with the next acquire's first round trip, never between a slot and its
        send (that lag is what GUARD_MS covers)."""
        if self._untidy is None:
            return
        bucket, taken = self._untidy
        self._untidy = None
        window = bucket.rates[-1].interval  # rates are kept sorted: the longest is last
        pipe.zremrangebyscore(bucket.bucket_key, 0, taken - window)
        pipe.pexpire(bucket.bucket_key, window + 1000)
        self._puts += 1
        if self._puts % 64 == 0:
            pipe.zremrangebyscore(self._global.bucket_key, 0, now - SECOND)
            pipe.zremrangebyscore(self._bulk_pace.bucket_key, 0, now - SECOND)
            for send_class in SendClass:
                pipe.zremrangebyscore(self._waiting_key(send_class), 0, now)

    def pause(self, chat_id: int | None, seconds: float) -> None:
        """Telegram answered 429 `retry_after`: no worker sends to `chat_id` (None: to anyone)
        for that long."""
        target = "global" if chat_id is None else str(chat_id)
        self._redis.set(f"{self._prefix}pause:{target}", "1", px=max(1, int(seconds * 1000)))
