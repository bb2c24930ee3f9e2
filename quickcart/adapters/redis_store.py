"""Redis keys of the seed's patterns that the workers use (the bot adds sessions and caches).

Every key the shop writes starts with REDIS_KEY_PREFIX (default `qc:`), so the shop can share
a Redis database with other apps. The data contract's patterns and the `*_KEY` constants are
key *names*; `prefixed(name)` is their Redis key. The builders here (`session_key`,
`stock_count_key`, ...) return Redis keys, and every function taking a `key` takes one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from quickcart.config import get_settings

EXPIRY_KEY = "queue:payment_expiry"


def prefixed(name: str) -> str:
    """The Redis key of the key name `name`: REDIS_KEY_PREFIX + name."""
    return get_settings().redis_key_prefix + name


def client(url: str) -> redis.Redis:
    """A client with short timeouts: Redis being down must fail fast, not hang a worker."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                decode_responses=True)


def schedule_expiry(r: redis.Redis, kind: str, row_id: int, at: float) -> None:
    """Put `kind:id` on the expiry set, due at unix time `at` (re-adding is harmless)."""
    r.zadd(prefixed(EXPIRY_KEY), {f"{kind}:{row_id}": at})


def due_expiries(
    r: redis.Redis, now: float | None = None, limit: int = 200
) -> list[tuple[str, int]]:
    """Members due by `now`, oldest first, as (kind, id)."""
    members = r.zrangebyscore(prefixed(EXPIRY_KEY), "-inf", now or time.time(), start=0,
                              num=limit)
    due = []
    for member in members:
        kind, _, raw_id = str(member).partition(":")
        if raw_id.isdigit():
            due.append((kind, int(raw_id)))
    return due


def forget_expiry(r: redis.Redis, kind: str, row_id: int) -> None:
    """Drop a member once its row was expired or settled."""
    r.zrem(prefixed(EXPIRY_KEY), f"{kind}:{row_id}")


def incr_with_ttl(r: redis.Redis, key: str, ttl_seconds: int) -> int:
    """Increment a counter and (re)arm its TTL atomically; returns the new count."""
    pipe = r.pipeline()
    pipe.incr(key)
    pipe.expire(key, ttl_seconds)
    count, _ = pipe.execute()
    return int(count)


# ---------------------------------------------------------------- bot: sessions, rate limits

SESSION_TTL_SECONDS = 24 * 3600


def session_key(user_id: int) -> str:
    """The Redis key of a user's multi-step session."""
    return prefixed(f"session:{user_id}")


def session_get(r: redis.Redis, user_id: int) -> dict[str, Any] | None:
    """The user's session, or None when absent or corrupt (a corrupt one is dropped)."""
    raw = r.get(session_key(user_id))
    if raw is None:
        return None
    try:
        data = json.loads(str(raw))
    except ValueError:
        r.delete(session_key(user_id))
        return None
    if not isinstance(data, dict):
        r.delete(session_key(user_id))
        return None
    return data


def session_set(r: redis.Redis, user_id: int, data: dict[str, Any]) -> None:
    """Replace the session (24 h TTL, re-armed on every write)."""
    r.set(session_key(user_id), json.dumps(data, default=str), ex=SESSION_TTL_SECONDS)


def session_update(
    r: redis.Redis, user_id: int,
    change: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    attempts: int = 10,
) -> dict[str, Any] | None:
    """Read-modify-write the session atomically (WATCH/MULTI, retried on a concurrent write).

    `change` gets the current session (None if absent or corrupt) and returns the new one, or
    None to delete it; returns what was stored.
    """
    key = session_key(user_id)
    for _ in range(attempts):
        with r.pipeline() as pipe:
            try:
                pipe.watch(key)
                raw = pipe.get(key)
                current: dict[str, Any] | None
                try:
                    loaded = json.loads(str(raw)) if raw is not None else None
                    current = loaded if isinstance(loaded, dict) else None
                except ValueError:
                    current = None
                new = change(current)
                pipe.multi()
                if new is None:
                    pipe.delete(key)
                else:
                    pipe.set(key, json.dumps(new, default=str), ex=SESSION_TTL_SECONDS)
                pipe.execute()
                return new
            except redis.WatchError:
                continue
    raise RuntimeError(f"session {user_id}: too many concurrent updates")


def session_clear(r: redis.Redis, user_id: int) -> None:
    """Forget the user's session."""
    r.delete(session_key(user_id))


_FIXED_WINDOW = ("local c = redis.call('INCR', KEYS[1])"
                 " if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end return c")


def rate_hit(r: redis.Redis, user_id: int, action: str, window_seconds: int = 60) -> int:
    """Count one `action` of `user_id` in a fixed window (`rate:{user_id}:{action}`).

    Unlike incr_with_ttl the TTL is armed only by the first hit, so a user who keeps sending
    is let through again when the window ends (a sliding TTL would lock them out for good).
    """
    return int(r.eval(_FIXED_WINDOW, 1, rate_key(user_id, action), window_seconds))


def rate_key(user_id: int, action: str) -> str:
    """The Redis key of `user_id`'s rate-limit window for `action`."""
    return prefixed(f"rate:{user_id}:{action}")


def once(r: redis.Redis, key: str, ttl_seconds: int) -> bool:
    """True the first time `key` is seen within `ttl_seconds` (SET NX)."""
    return bool(r.set(key, "1", nx=True, ex=ttl_seconds))


# ---------------------------------------------------------------- caches (data contract)
#
# Caches are read-through and best effort: a miss or a Redis error falls back to the database,
# writers delete the key after their commit, and the TTL bounds staleness when that delete is
# lost (Redis down, a crash between commit and invalidation).

STOCK_COUNT_TTL_SECONDS = 30
STATS_TTL_SECONDS = 60
PAGINATION_TTL_SECONDS = 10 * 60


def stats_users_key() -> str:
    """`stats:total_users`: the number of registered users (the welcome message's)."""
    return prefixed("stats:total_users")


def stats_transactions_key() -> str:
    """`stats:total_transactions`: the number of paid orders (the welcome message's)."""
    return prefixed("stats:total_transactions")


def stock_count_key(product_id: int) -> str:
    """`stock_count:{product_id}`: the product's free units (not sold, in no order)."""
    return prefixed(f"stock_count:{product_id}")


def cache_get_int(r: redis.Redis, key: str) -> int | None:
    """The cached integer, or None on a miss, a corrupt value or Redis being unreachable."""
    try:
        raw = r.get(key)
    except redis.RedisError:
        return None
    if raw is None:
        return None
    try:
        return int(str(raw))
    except ValueError:
        invalidate(r, key)
        return None


def cache_set_int(r: redis.Redis, key: str, value: int, ttl_seconds: int) -> bool:
    """Cache `value` for `ttl_seconds`; False (never an error) when Redis is unreachable."""
    try:
        r.set(key, int(value), ex=ttl_seconds)
    except redis.RedisError:
        return False
    return True


def invalidate(r: redis.Redis, *keys: str) -> bool:
    """Delete cache keys after a commit; False (never an error) when Redis is unreachable."""
    if not keys:
        return True
    try:
        r.delete(*keys)
    except redis.RedisError:
        return False
    return True


def stock_count_keys(product_ids: Iterable[int], *extra_keys: str) -> list[str]:
    """The stock-count keys of `product_ids`, and any `extra_keys` (e.g. a stats key)."""
    return [*{stock_count_key(p) for p in product_ids}, *extra_keys]


def invalidate_stock_counts(r: redis.Redis, product_ids: Iterable[int],
                            *extra_keys: str) -> bool:
    """Drop the stock counts of `product_ids` (and any `extra_keys`, e.g. a stats key)."""
    return invalidate(r, *stock_count_keys(product_ids, *extra_keys))


def pagination_key(user_id: int, context: str) -> str:
    """`pagination:{user_id}:{context}`: a list the user is paging through."""
    return prefixed(f"pagination:{user_id}:{context}")


def pagination_store(r: redis.Redis, user_id: int, context: str, items: list[Any],
                     page_size: int, page: int = 0,
                     ttl_seconds: int = PAGINATION_TTL_SECONDS) -> dict[str, Any]:
    """Store a freshly computed list as `{page, total_pages, page_size, items}`; returns it.

    A Redis error is swallowed: the caller still gets the state (it just will not be found
    by the next page's pagination_load, which then recomputes).
    """
    size = max(page_size, 1)
    total_pages = max(1, -(-len(items) // size))
    state = {"page": min(max(page, 0), total_pages - 1), "total_pages": total_pages,
             "page_size": size, "items": list(items)}
    with contextlib.suppress(redis.RedisError):
        r.set(pagination_key(user_id, context), json.dumps(state, default=str), ex=ttl_seconds)
    return state


def pagination_load(r: redis.Redis, user_id: int, context: str,
                    page: int | None = None) -> dict[str, Any] | None:
    """The stored list, moved to `page` (clamped, saved, TTL re-armed) when given.

    None when absent, expired, corrupt or Redis is unreachable: the caller recomputes.
    """
    key = pagination_key(user_id, context)
    try:
        raw = r.get(key)
    except redis.RedisError:
        return None
    if raw is None:
        return None
    try:
        state = json.loads(str(raw))
    except ValueError:
        state = None
    if (not isinstance(state, dict) or not isinstance(state.get("items"), list)
            or not isinstance(state.get("page_size"), int) or state["page_size"] < 1):
        invalidate(r, key)
        return None
    state["total_pages"] = max(1, -(-len(state["items"]) // state["page_size"]))
    if page is not None:
        state["page"] = min(max(page, 0), state["total_pages"] - 1)
        with contextlib.suppress(redis.RedisError):
            r.set(key, json.dumps(state, default=str), ex=PAGINATION_TTL_SECONDS)
    return state


def page_items(state: dict[str, Any]) -> list[Any]:
    """The items of the state's current page."""
    size = int(state["page_size"])
    start = int(state["page"]) * size
    return list(state["items"][start:start + size])
