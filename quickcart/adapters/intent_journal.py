"""The shoppers' money intents in flight (create an order, a deposit), kept in Redis until they
have an outcome, so that a task message the broker lost is sent again.

A Celery message on Redis can vanish or stall: a worker killed between Redis handing it over
and kombu recording it as unacknowledged loses it, and one a killed worker had taken waits out
the visibility timeout (15 minutes) before it comes back. The shopper would be left with
"⏳ Diproses…". So the bot's send records the intent here (before the message goes out, removed
again if sending fails); the task forgets it once it has run; beat's sweep
(workers.tasks.intents) sends what is still here after `intent_resend_after_seconds` again with
the same idempotency key, so a duplicate changes nothing: the key is claimed in the transaction
that makes the order.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from quickcart.adapters.redis_store import prefixed

#: The tasks whose sends are journaled: a shopper's money intents, each claiming its key in PG.
JOURNALED_TASKS = frozenset({"quickcart.create_order", "quickcart.create_deposit"})
#: Sorted set: idempotency key -> when it was (last) sent, epoch seconds.
SENT_AT = "intents:sent_at"
#: Hash: idempotency key -> {"task", "kwargs", "attempts"} as JSON.
BODIES = "intents:body"


def journaled_key(task: str, kwargs: dict[str, Any]) -> str | None:
    """The idempotency key under which `task` with `kwargs` is journaled (None: it is not)."""
    key = kwargs.get("idempotency_key")
    return str(key) if task in JOURNALED_TASKS and key else None


def record(r: redis.Redis, key: str, task: str, kwargs: dict[str, Any], now: float) -> None:
    """Journal an intent about to be sent (a second send of the same key keeps the first body
    and moves its time)."""
    body = json.dumps({"task": task, "kwargs": kwargs, "attempts": 0})
    pipe = r.pipeline(transaction=True)
    pipe.hsetnx(prefixed(BODIES), key, body)
    pipe.zadd(prefixed(SENT_AT), {key: now})
    pipe.execute()


def forget(r: redis.Redis, key: str) -> None:
    """The intent has an outcome (or will never get one): nothing to send again."""
    pipe = r.pipeline(transaction=True)
    pipe.zrem(prefixed(SENT_AT), key)
    pipe.hdel(prefixed(BODIES), key)
    pipe.execute()


def any_sent_before(r: redis.Redis, cutoff: float) -> bool:
    """Whether an intent sent before `cutoff` is still open (beat's check: one command)."""
    return bool(r.zrangebyscore(prefixed(SENT_AT), "-inf", cutoff, start=0, num=1))


def sent_before(r: redis.Redis, cutoff: float,
                limit: int = 200) -> list[tuple[str, dict[str, Any]]]:
    """Open intents sent before `cutoff`, oldest first, with their bodies (a key without a body
    is forgotten on the way: it cannot be sent again)."""
    keys = [str(k) for k in r.zrangebyscore(prefixed(SENT_AT), "-inf", cutoff, start=0,
                                            num=limit)]
    if not keys:
        return []
    bodies = r.hmget(prefixed(BODIES), keys)
    found = []
    for key, body in zip(keys, bodies, strict=True):
        if body is None:
            forget(r, key)
        else:
            found.append((key, json.loads(body)))
    return found


def sent_again(r: redis.Redis, key: str, body: dict[str, Any], now: float) -> None:
    """Count one more send of `key`, at `now`."""
    pipe = r.pipeline(transaction=True)
    pipe.hset(prefixed(BODIES), key, json.dumps({**body, "attempts": body["attempts"] + 1}))
    pipe.zadd(prefixed(SENT_AT), {key: now})
    pipe.execute()
