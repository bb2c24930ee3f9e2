"""`quickcart.db.sql.run` on real PostgreSQL: the same rows, transaction, errors and connection
invalidation as `Session.execute`, which the purchase path relies on."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound, OperationalError
from sqlalchemy.orm import Session

from quickcart.db.sql import run, run_alone, run_script
from tests.conftest import scalar


def test_rows_read_like_sqlalchemy_rows(db: Engine) -> None:
    with Session(bind=db) as session:
        row = run(session, "SELECT CAST(:a AS numeric) AS amount, 'x%' AS pattern, :b AS b",
                  {"a": Decimal("1500"), "b": 7}).one()
        assert row.amount == Decimal("1500") and isinstance(row.amount, Decimal)
        assert row.pattern == "x%"  # a literal % survives the driver's pyformat escaping
        assert row[2] == 7 and row.b == 7
        # Repeated column names do not break the named tuple (SQLAlchemy allows them too).
        same = run(session, "SELECT set_config('qc.a', '1', true), set_config('qc.b', '2', true)")
        assert tuple(same.one()) == ("1", "2")
        assert run(session, "SELECT 1 WHERE false").first() is None
        assert run(session, "SELECT 1 WHERE false").scalar() is None
        assert run(session, "SELECT g FROM generate_series(1, 3) g").scalars() == [1, 2, 3]
        with pytest.raises(NoResultFound):
            run(session, "SELECT 1 WHERE false").one()
        with pytest.raises(MultipleResultsFound):
            run(session, "SELECT g FROM generate_series(1, 2) g").one()


def test_runs_in_the_sessions_transaction(db: Engine) -> None:
    with Session(bind=db) as session:
        run(session, "INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'test')", {"k": "a"})
        # The session's own execute sees the row: one connection, one transaction.
        assert session.execute(text("SELECT count(*) FROM idempotency_keys")).scalar() == 1
        session.rollback()
    assert scalar(db, "SELECT count(*) FROM idempotency_keys") == 0
    with Session(bind=db) as session:
        run(session, "INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'test')", {"k": "b"})
        session.commit()
    assert scalar(db, "SELECT count(*) FROM idempotency_keys") == 1


def test_errors_are_sqlalchemys(db: Engine) -> None:
    with Session(bind=db) as session:
        run(session, "INSERT INTO idempotency_keys (key, scope) VALUES ('k', 'test')")
        with pytest.raises(IntegrityError) as caught:
            run(session, "INSERT INTO idempotency_keys (key, scope) VALUES ('k', 'test')")
        assert caught.value.orig is not None
        assert getattr(caught.value.orig, "pgcode", None) == "23505"
        assert not caught.value.connection_invalidated
        session.rollback()
        assert run(session, "SELECT 1").scalar() == 1  # the connection is still usable


def test_a_lost_connection_is_invalidated_and_replaced(db: Engine) -> None:
    with Session(bind=db) as session:
        pid = run(session, "SELECT pg_backend_pid()").scalar()
        with db.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(OperationalError) as caught:
            run(session, "SELECT 1")
        # What the task retry policy keys on (workers/base.py _transient_db_error).
        assert caught.value.connection_invalidated
        session.rollback()
        # The pool hands out a new connection, not the dead one.
        assert run(session, "SELECT pg_backend_pid()").scalar() != pid


def test_cursor_events_still_fire(db: Engine) -> None:
    seen: list[str] = []

    def listen(conn: object, cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(db, "before_cursor_execute", listen)
    try:
        with Session(bind=db) as session:
            run(session, "SELECT :a", {"a": 1})
    finally:
        event.remove(db, "before_cursor_execute", listen)
    assert seen == ["SELECT %(a)s"]


def test_run_alone_maps_errors_and_replaces_a_lost_connection(db: Engine) -> None:
    """The pooled connection `run_alone` borrows without a SQLAlchemy Connection: errors are
    still SQLAlchemy's, and a dead backend is invalidated, not handed out again."""
    one = create_engine(db.url, pool_size=1, max_overflow=0)
    try:
        with pytest.raises(IntegrityError):
            run_alone(one, "INSERT INTO idempotency_keys (key, scope) VALUES ('k', 'test');"
                      " INSERT INTO idempotency_keys (key, scope) VALUES ('k', 'test')")
        assert scalar(db, "SELECT count(*) FROM idempotency_keys") == 0  # one implicit txn
        pid = run_alone(one, "SELECT pg_backend_pid()").scalar()
        with db.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(OperationalError) as caught:
            run_alone(one, "SELECT 1")
        assert caught.value.connection_invalidated
        assert run_alone(one, "SELECT pg_backend_pid()").scalar() != pid
    finally:
        one.dispose()


def test_a_script_runs_its_statements_in_order_in_one_transaction(db: Engine) -> None:
    with Session(bind=db) as session:
        last = run_script(session, [
            ("INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'test')", {"k": "s1"}),
            ("UPDATE idempotency_keys SET scope = :s WHERE key = :k", {"k": "s1", "s": "moved"}),
            ("SELECT scope FROM idempotency_keys WHERE key = :k", {"k": "s1"}),
        ])
        assert last.scalar() == "moved"  # the last statement's rows, after the others ran
        session.rollback()
    assert scalar(db, "SELECT count(*) FROM idempotency_keys") == 0
    with Session(bind=db) as session:
        # A failing statement fails the script; the statements before it do not stay.
        with pytest.raises(IntegrityError):
            run_script(session, [
                ("INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'test')", {"k": "s2"}),
                ("INSERT INTO idempotency_keys (key, scope) VALUES (:k, 'test')", {"k": "s2"}),
            ])
        session.rollback()
        # One name, two values, is a caller's mistake, refused before anything is sent.
        with pytest.raises(ValueError, match=":k"):
            run_script(session, [("SELECT :k", {"k": 1}), ("SELECT :k", {"k": 2})])
    assert scalar(db, "SELECT count(*) FROM idempotency_keys") == 0
