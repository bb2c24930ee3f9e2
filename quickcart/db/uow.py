"""Unit of work: one transaction per use case; leaving the block without commit rolls back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session


class UnitOfWork:
    """A session bound to one transaction, with the audit actor set for its triggers."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._committed = False

    def set_actor(self, actor_id: int | None, actor_type: str = "system",
                  context: dict[str, Any] | None = None) -> None:
        """Tell the audit triggers who acts in this transaction (SET LOCAL: ends with it)."""
        self.session.execute(
            text(
                "SELECT set_config('quickcart.actor_id', :aid, true),"
                " set_config('quickcart.actor_type', :atype, true),"
                " set_config('quickcart.audit_context', :ctx, true)"
            ),
            {
                "aid": "" if actor_id is None else str(actor_id),
                "atype": actor_type,
                "ctx": "" if context is None else json.dumps(context, default=str),
            },
        )

    def commit(self) -> None:
        """Commit the one transaction of this use case."""
        self.session.commit()
        self._committed = True

    @property
    def committed(self) -> bool:
        """Whether commit() succeeded."""
        return self._committed


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[UnitOfWork]:
    """Open a transaction; it commits only through `uow.commit()`, otherwise rolls back."""
    session = Session(bind=engine, expire_on_commit=False, autoflush=True)
    uow = UnitOfWork(session)
    try:
        yield uow
    finally:
        if not uow.committed:
            session.rollback()
        session.close()
