"""Multi-step flows in Redis (`session:{user_id}`, JSON, 24 h TTL, atomic updates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telegram.ext import ContextTypes

from bot.runtime import rt
from quickcart.adapters import redis_store

Session = dict[str, Any]


async def get(context: ContextTypes.DEFAULT_TYPE, user_id: int) -> Session | None:
    """The user's session; None when absent, expired or corrupt."""
    r = rt(context)
    return await r.call(redis_store.session_get, r.redis, user_id)


async def start(context: ContextTypes.DEFAULT_TYPE, user_id: int, flow: str,
                **fields: Any) -> Session:
    """Begin a flow, replacing whatever session was there."""
    data: Session = {"flow": flow, **fields}
    r = rt(context)
    await r.call(redis_store.session_set, r.redis, user_id, data)
    return data


async def update(context: ContextTypes.DEFAULT_TYPE, user_id: int,
                 change: Callable[[Session | None], Session | None]) -> Session | None:
    """Atomically read-modify-write the session (None from `change` deletes it)."""
    r = rt(context)
    return await r.call(redis_store.session_update, r.redis, user_id, change)


async def clear(context: ContextTypes.DEFAULT_TYPE, user_id: int) -> None:
    """End any flow."""
    r = rt(context)
    await r.call(redis_store.session_clear, r.redis, user_id)
