"""The bot's own sends ("⏳ Diproses…", a screen, a refusal) inside the workers' shared limits.

The workers send through one set of Redis buckets (quickcart/adapters/rate_limit.py): 30
messages a second overall, one a second per chat, 20 a minute per group. The bot process posts
too, directly, in answer to what a person just did; outside those buckets its messages could
push the workers' over Telegram's limit (a 429 for a delivery) or arrive as a 429 themselves.
Here every message-posting call of the bot takes its slots as a reply to a shopper's own action
(SendClass.REPLY: after deliveries, before admin notices and broadcasts), and a 429 pauses the
chat for every sender, as a worker's does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import redis
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from quickcart.adapters.rate_limit import (
    LIMITED_METHODS,
    Limits,
    SendClass,
    SendLimiter,
    WaitTooLong,
)

#: A person is waiting: past the limiter's longest wait, the message goes anyway (at worst
#: Telegram answers 429 and the error handler apologises) after at most this long.
MAX_EXTRA_WAIT_SECONDS = 3.0
#: Messages a second the bot may send to one chat in answer to its person's own action (/start's
#: welcome and its keyboard, a screen and its refusal). Telegram allows short bursts over its
#: 1/s per chat; the workers, sending on their own, keep to 1/s in the same bucket (each sender
#: checks the shared log against its own rate).
REPLY_BURST_PER_CHAT = 3


class SharedSendLimits(BaseRateLimiter[None]):
    """python-telegram-bot's rate limiter hook, backed by the workers' shared buckets."""

    def __init__(self, client: redis.Redis, limits: Limits, key_prefix: str) -> None:
        self._client = client
        self._limits = dataclasses.replace(
            limits, per_chat_per_second=max(limits.per_chat_per_second, REPLY_BURST_PER_CHAT))
        self._prefix = key_prefix
        # A SendLimiter keeps per-sender state (its last slot, to tidy): one per thread.
        self._local = threading.local()

    def _limiter(self) -> SendLimiter:
        limiter = getattr(self._local, "limiter", None)
        if limiter is None:
            limiter = self._local.limiter = SendLimiter(self._client, self._limits, self._prefix)
        return limiter

    async def initialize(self) -> None:
        """Nothing to open: the Redis client is the bot runtime's."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        """Take the message's slots (waiting off the event loop), then post; a 429 pauses the
        chat for every sender and is raised to the caller."""
        chat_id = _chat_of(data) if endpoint in LIMITED_METHODS else None
        if chat_id is not None:
            await self._take_turn(chat_id)
        try:
            return await callback(*args, **kwargs)
        except RetryAfter as exc:
            retry = exc.retry_after
            seconds = retry.total_seconds() if hasattr(retry, "total_seconds") else float(retry)
            await asyncio.to_thread(self._limiter().pause, chat_id, seconds)
            raise

    async def _take_turn(self, chat_id: int) -> None:
        limiter = self._limiter
        try:
            await asyncio.to_thread(lambda: limiter().acquire(
                chat_id, SendClass.REPLY, self._limits.max_wait_seconds))
        except WaitTooLong as exc:
            await asyncio.sleep(min(exc.retry_after, MAX_EXTRA_WAIT_SECONDS))
        except redis.RedisError:
            pass  # Redis is down: the person still gets an answer (Telegram limits it)


def _chat_of(data: dict[str, Any]) -> int | None:
    chat = data.get("chat_id")
    text = str(chat)
    return int(text) if text.lstrip("-").isdigit() else None
