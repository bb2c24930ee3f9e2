"""Publishing outbox rows to the broker. Not transaction-safe by nature (a broker call cannot
join a database transaction), hence the `_unsafe` names: callers publish only what is already
committed, and the beat relay re-publishes whatever a crash left behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from quickcart.adapters import redis_store
from quickcart.db import outbox
from workers import push, runtime
from workers.app import app


def _built(messages: Sequence[outbox.OutboxMessage]) -> list[push.TaskMessage]:
    # Consumers are idempotent on the outbox id (a kwarg). The task id names the outbox row for
    # Flower but is unique per publish: a redelivery keeps it (the poison counter counts those),
    # while outbox ids that start again (a restored database) never inherit old counts.
    return [
        push.TaskMessage(message.topic, {**message.payload, "outbox_id": message.id},
                         message.queue, task_id=f"outbox-{message.id}-{uuid.uuid4().hex[:12]}",
                         headers={"correlation_id": message.correlation_id}
                         if message.correlation_id else None)
        for message in messages
    ]


def _send(messages: Sequence[outbox.OutboxMessage]) -> None:
    push.publish_unsafe(app, _built(messages))


def publish_committed_unsafe(messages: Iterable[outbox.OutboxMessage],
                             drop_cache_keys: Sequence[str] = ()) -> int:
    """Publish these committed outbox rows now (the relay catches them if this fails), and
    drop the cache keys the commit made stale (best effort: the caches' TTL bounds a lost
    drop)."""
    if drop_cache_keys:
        redis_store.invalidate(runtime.redis_client(), *drop_cache_keys)
    message_list = list(messages)
    if not message_list:
        return 0
    return outbox.publish_now(runtime.engine(), _send, message_list)


# Set in the broker's Redis by the relay. Redis keeps nothing on disk, so its absence means the
# broker restarted empty (or is new): every message it held is gone.
BROKER_MARK = "quickcart:broker:mark"


def broker_lost_queues_unsafe() -> bool:
    """Whether the broker's mark is missing: it restarted empty (or is new) since
    `mark_broker_unsafe`, so every message it held is gone."""
    return not runtime.broker_client().exists(redis_store.prefixed(BROKER_MARK))


def mark_broker_unsafe() -> None:
    """Set the mark, once what only the broker held has been re-queued (a re-queue that failed
    leaves it unset, so the next relay tries again)."""
    runtime.broker_client().set(redis_store.prefixed(BROKER_MARK), "1")


def relay_pending_unsafe(min_age_seconds: float = 2.0, limit: int = 500) -> int:
    """Publish every committed, unpublished row older than `min_age_seconds`."""
    return outbox.relay(runtime.engine(), _send, limit=limit, min_age_seconds=min_age_seconds)
