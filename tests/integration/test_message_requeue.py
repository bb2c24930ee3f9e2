"""notifications.requeue_unsent_messages on real PostgreSQL: after the broker lost its queues,
exactly the published catalog messages that no consumer claimed go back to the relay."""

from __future__ import annotations

from sqlalchemy import Engine, text

from quickcart.services import notifications


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
