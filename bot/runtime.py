"""The bot process's shared resources (engine, Redis, settings) and thread offloading.

Handlers are async; database reads, Redis calls and broker sends are synchronous, so they run
in worker threads via `call`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from sqlalchemy import Engine
from telegram.ext import ContextTypes

from quickcart.config import Settings
from quickcart.messages import render
from quickcart.services.account import Viewer

T = TypeVar("T")


@dataclass
class BotRuntime:
    """What every handler needs, built once by bot.app.build_application."""

    settings: Settings
    engine: Engine
    redis: redis.Redis

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking function (a read, a Redis call) off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def enqueue(self, task: str, /, **kwargs: Any) -> str:
        """Send a Celery task by name (workers/enqueue.py); returns the task id."""
        from workers.enqueue import enqueue

        return await asyncio.to_thread(lambda: enqueue(task, **kwargs))


def rt(context: ContextTypes.DEFAULT_TYPE) -> BotRuntime:
    """The runtime stored in bot_data."""
    value = context.bot_data["runtime"]
    assert isinstance(value, BotRuntime)
    return value


def viewer(context: ContextTypes.DEFAULT_TYPE) -> Viewer:
    """The sender of the current update, as the gate found them."""
    value = context.user_data.get("viewer") if context.user_data is not None else None
    assert isinstance(value, Viewer), "gate did not run"
    return value


def lang(context: ContextTypes.DEFAULT_TYPE) -> str:
    """The sender's language (Indonesian when unknown)."""
    value = context.user_data.get("viewer") if context.user_data is not None else None
    return value.language if isinstance(value, Viewer) else "id"


def t(context: ContextTypes.DEFAULT_TYPE, key: str, **params: Any) -> str:
    """Render a catalog message in the sender's language."""
    return render(key, lang(context), **params)


def intent_key(update_id: int) -> str:
    """The idempotency key of the intent an update carries."""
    return f"tg:{update_id}"
