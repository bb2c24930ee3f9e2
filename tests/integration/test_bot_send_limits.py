"""The bot process's own sends take their slots in the workers' shared Telegram buckets
(bot/send_limits.py), against a real Redis: a message counts in the global and the chat's
bucket, an edit or getUpdates does not, and Telegram's 429 pauses the chat for every sender."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import redis
from telegram.error import RetryAfter

from bot.send_limits import SharedSendLimits
from quickcart.adapters.rate_limit import Limits, SendClass, SendLimiter, WaitTooLong

pytestmark = pytest.mark.timeout(60)


def _post(limits: SharedSendLimits, endpoint: str, data: dict[str, Any],
          answer: Any = True) -> Any:
    async def callback() -> Any:
        if isinstance(answer, BaseException):
            raise answer
        return answer
    return asyncio.run(limits.process_request(callback, (), {}, endpoint, data, None))


def test_the_bots_messages_count_in_the_shared_buckets(r: redis.Redis, prefix: str) -> None:
    """Two answers to one action go at once (a short burst, as Telegram allows in a private
    chat); both count, so a worker's next message to that chat waits its turn."""
    # No waiting allowed: a send that had to wait would go without a slot (one entry, not two).
    limits = SharedSendLimits(r, Limits(max_wait_seconds=0.0), prefix)
    assert _post(limits, "sendMessage", {"chat_id": 7, "text": "⏳ Diproses…"}) is True
    assert _post(limits, "sendMessage", {"chat_id": "7", "text": "Menu"}) is True
    assert r.zcard(f"{prefix}tg:limit:chat:7") == 2
    assert r.zcard(f"{prefix}tg:limit:global") == 2
    with pytest.raises(WaitTooLong):  # a worker keeps to 1/s in the chat the bot just used
        SendLimiter(r, Limits(), prefix).acquire(7, SendClass.DELIVERY, max_wait=0.0)
    # Edits and polling are not what Telegram's flood limits count: no slot.
    _post(limits, "editMessageText", {"chat_id": 7, "message_id": 1, "text": "x"})
    _post(limits, "getUpdates", {"timeout": 10})
    assert r.zcard(f"{prefix}tg:limit:global") == 2


def test_a_429_to_the_bot_pauses_the_chat_for_every_sender(r: redis.Redis, prefix: str) -> None:
    limits = SharedSendLimits(r, Limits(), prefix)
    with pytest.raises(RetryAfter):
        _post(limits, "sendMessage", {"chat_id": 8, "text": "x"},
              RetryAfter(timedelta(seconds=30)))
    assert 0 < r.pttl(f"{prefix}tg:limit:pause:8") <= 30_000
