"""The base of every QuickCart task: transient errors retried with backoff, poison capped."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import DBAPIError, OperationalError

from quickcart.adapters import intent_journal, redis_store
from quickcart.adapters.pakasir import GatewayUnavailableError
from quickcart.adapters.telegram_api import TelegramRetryAfter, TelegramUnavailable
from workers import runtime

log = logging.getLogger(__name__)

# Errors worth retrying: the database or Redis restarting, the gateway or Telegram briefly down.
TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    GatewayUnavailableError,
    TelegramUnavailable,
    # A publish through kombu (workers.push) that found the broker down after its retries.
    KombuOperationalError,
)
# A message delivered this many times (each a worker crash or lost ack) is poison: park it.
MAX_DELIVERIES = 5
DEAD_LETTER_KEY = "queue:dead_letter"


def _transient_db_error(exc: BaseException) -> bool:
    """Deadlock / serialization failure / lost connection: safe to run again from scratch."""
    if isinstance(exc, DBAPIError):
        code = getattr(getattr(exc, "orig", None), "pgcode", None)
        return bool(exc.connection_invalidated or code in {"40001", "40P01", "57P01", "57P03"})
    return False


class QuickCartTask(Task):
    """Counts deliveries per task id (crash loops stop at MAX_DELIVERIES) and retries transient
    failures with exponential backoff; business refusals are results, never exceptions."""

    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = 8

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        task_id = self.request.id
        if task_id and not self.request.called_directly and _redelivered(self.request):
            # Only a message that came back (its worker died, or its ack was lost) is counted:
            # the first delivery costs no Redis round trip, and it is the +1.
            try:
                seen = 1 + redis_store.incr_with_ttl(
                    runtime.redis_client(), redis_store.prefixed(f"delivery:{task_id}"),
                    24 * 3600)
            except redis.RedisError:
                seen = 1  # counting is a safeguard; Redis trouble must not stop the work
            if seen > MAX_DELIVERIES + self.request.retries:
                log.error("task %s %s delivered %s times: parked as poison", self.name,
                          task_id, seen)
                with contextlib.suppress(redis.RedisError):
                    runtime.redis_client().rpush(redis_store.prefixed(DEAD_LETTER_KEY),
                                                 f"{self.name}:{task_id}")
                return {"status": "poison", "deliveries": seen}
        try:
            result = self.run(*args, **kwargs)
        except TelegramRetryAfter as exc:
            # Flood control, Telegram's 429 or our own send limits' longer wait
            # (quickcart.adapters.rate_limit): come back when a send is allowed. The notify
            # tasks handle it themselves; this covers every other task that answers in a chat.
            raise self.retry(exc=exc, countdown=exc.retry_after) from exc
        except TRANSIENT as exc:
            raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
        except DBAPIError as exc:
            if _transient_db_error(exc):
                raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
            raise
        key = intent_journal.journaled_key(self.name, kwargs)
        if key is not None:
            # Ran to an outcome (recorded under the key): beat's sweep need not send it again.
            # Best effort: a journal entry left behind is dropped by the sweep, which finds the
            # key claimed.
            with contextlib.suppress(redis.RedisError):
                intent_journal.forget(runtime.redis_client(), key)
        return result


def _redelivered(request: Any) -> bool:
    """kombu marks a message it puts back in the queue (a rejected task of a killed pool child,
    or an unacknowledged one restored after the visibility timeout) as redelivered."""
    info = getattr(request, "delivery_info", None) or {}
    return bool(info.get("redelivered"))


def _backoff(retries: int) -> float:
    return float(min(30, 0.5 * (2 ** retries)))
