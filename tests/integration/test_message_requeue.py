"""notifications.requeue_unsent_messages on real PostgreSQL: after the broker lost its queues,
exactly the published messages that no consumer claimed go back to the relay (catalog messages,
admin notices, QR photos and their edits; the rest have sweeps of their own)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from quickcart.services import notifications, topics
from tests.conftest import TestUrls, worker_runtime
from workers.tasks import notify


def _outbox(db: Engine, topic: str, published: bool, age_hours: float = 0) -> int:
    with db.begin() as conn:
        return int(conn.execute(text(
            "INSERT INTO outbox (topic, queue, payload, created_at, published_at)"
            " VALUES (:t, 'notify', '{}', now() - make_interval(hours => :a),"
            " CASE WHEN :p THEN now() END) RETURNING id"),
            {"t": topic, "p": published, "a": age_hours}).scalar_one())


def test_only_unclaimed_published_messages_are_requeued(db: Engine) -> None:
    lost = _outbox(db, "quickcart.send_message", published=True)
    sent = _outbox(db, "quickcart.send_message", published=True)
    waiting = _outbox(db, "quickcart.send_message", published=False)
    delivery = _outbox(db, "quickcart.deliver_order", published=True)  # has its own sweep
    old = _outbox(db, "quickcart.send_message", published=True, age_hours=30)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'message')"),
                     {"k": f"outbox:{sent}"})

    assert notifications.requeue_unsent_messages(db) == 1
    with db.connect() as conn:
        unpublished = set(conn.execute(text(
            "SELECT id FROM outbox WHERE published_at IS NULL")).scalars())
    assert unpublished == {lost, waiting}
    assert {sent, delivery, old}.isdisjoint(unpublished)
    # Running it again changes nothing more (the lost row is now the relay's to publish).
    assert notifications.requeue_unsent_messages(db) == 0


@pytest.mark.parametrize("topic", [t for t, _q in (
    topics.SEND_MESSAGE, topics.SEND_PAYMENT_QR, topics.UPDATE_PAYMENT_QR,
    topics.NOTIFY_ADMINS)])
def test_every_message_without_a_sweep_of_its_own_is_requeued(db: Engine, topic: str) -> None:
    lost = _outbox(db, topic, published=True)
    sent = _outbox(db, topic, published=True)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'x')"),
                     {"k": f"outbox:{sent}"})
    assert notifications.requeue_unsent_messages(db) == 1
    with db.connect() as conn:
        assert set(conn.execute(text(
            "SELECT id FROM outbox WHERE published_at IS NULL")).scalars()) == {lost}


@pytest.fixture()
def task_env(monkeypatch: pytest.MonkeyPatch, test_urls: TestUrls,
             db: Engine) -> Iterator[list[Any]]:
    """The notify tasks against this session's databases, with their publishes captured."""
    with worker_runtime(monkeypatch, test_urls, ADMIN_IDS="4242,4343"):
        published: list[Any] = []
        monkeypatch.setattr(notify, "publish_committed_unsafe",
                            lambda messages: published.extend(messages))
        yield published


def test_an_admin_notice_fans_out_once_into_messages_of_their_own(
        task_env: list[Any], db: Engine) -> None:
    notice = _outbox(db, topics.NOTIFY_ADMINS[0], published=True)
    assert notify.notify_admins.run("admin.new_order", {"x": 1}, outbox_id=notice) == 2
    with db.connect() as conn:
        copies = conn.execute(text(
            "SELECT id, (payload->>'chat_id')::bigint AS chat FROM outbox WHERE topic = :t"),
            {"t": topics.SEND_NOTICE[0]}).all()
    assert sorted(c.chat for c in copies) == [4242, 4343]
    assert sorted(m.id for m in task_env) == sorted(c.id for c in copies)  # handed over
    # The fan-out committed with its copies, so a broker loss does not ask for it again,
    # and running it again queues nothing.
    assert notifications.requeue_unsent_messages(db) == 0
    assert notify.notify_admins.run("admin.new_order", {"x": 1}, outbox_id=notice) == 0
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE topic = :t"),
                            {"t": topics.SEND_NOTICE[0]}).scalar() == 2
    # The copies are catalog messages: published and lost with the broker, they come back.
    with db.begin() as conn:
        conn.execute(text("UPDATE outbox SET published_at = now() WHERE topic = :t"),
                     {"t": topics.SEND_NOTICE[0]})
    assert notifications.requeue_unsent_messages(db) == 2
