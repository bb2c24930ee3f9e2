"""Unit of work: one transaction per use case; leaving the block without commit rolls back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from quickcart.db.sql import Statement, Tx, run

_PENDING = "quickcart.flush_before_commit"  # key in Session.info


class Flushable(Protocol):
    """Something that writes what it buffered into the session's transaction."""

    def flush(self) -> None:
        """Write the buffered rows."""


def flush_before_commit(session: Tx, buffer: Flushable) -> None:
    """Have `UnitOfWork.commit` flush `buffer` (e.g. collected outbox rows) before it commits."""
    session.info.setdefault(_PENDING, []).append(buffer)


def actor_statement(actor_id: int | None, actor_type: str = "system",
                    context: dict[str, Any] | None = None) -> Statement:
    """The SQL (and its parameters) that names the actor for the audit triggers; callers may
    send it in front of their first statement to save a round trip."""
    return (
        "SELECT set_config('quickcart.actor_id', :aid, true),"
        " set_config('quickcart.actor_type', :atype, true),"
        " set_config('quickcart.audit_context', :ctx, true)",
        {
            "aid": "" if actor_id is None else str(actor_id),
            "atype": actor_type,
            "ctx": "" if context is None else json.dumps(context, default=str),
        },
    )


S = TypeVar("S", Session, Connection)


class UnitOfWork(Generic[S]):
    """A session (or a bare connection) bound to one transaction, with the audit actor set for
    its triggers."""

    def __init__(self, session: S) -> None:
        self.session: S = session
        self._committed = False

    def set_actor(self, actor_id: int | None, actor_type: str = "system",
                  context: dict[str, Any] | None = None) -> None:
        """Tell the audit triggers who acts in this transaction (SET LOCAL: ends with it)."""
        statement, params = actor_statement(actor_id, actor_type, context)
        run(self.session, statement, params)

    def commit(self) -> None:
        """Flush what was buffered for this transaction (outbox rows), then commit it once."""
        for buffer in self.session.info.pop(_PENDING, []):
            buffer.flush()
        self.session.commit()
        self._committed = True

    @property
    def committed(self) -> bool:
        """Whether commit() succeeded."""
        return self._committed


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[UnitOfWork[Session]]:
    """Open a transaction; it commits only through `uow.commit()`, otherwise rolls back."""
    session = Session(bind=engine, expire_on_commit=False, autoflush=True)
    uow = UnitOfWork(session)
    try:
        yield uow
    finally:
        if not uow.committed:
            session.rollback()
        session.close()


@contextmanager
def connection_unit_of_work(engine: Engine) -> Iterator[UnitOfWork[Connection]]:
    """`unit_of_work` on a bare connection, for the purchase path, whose statements all go
    through `run` or a text `execute`: opening and committing an ORM session was about a
    tenth of an orders worker's CPU. Same contract: commits only through `uow.commit()`."""
    conn = engine.connect()
    # Begun explicitly: `run` bypasses SQLAlchemy's autobegin, and a Connection with no
    # transaction begun would take `commit()` as a no-op.
    conn.begin()
    uow = UnitOfWork(conn)
    try:
        yield uow
    finally:
        if not uow.committed:
            conn.rollback()
        conn.close()
