"""Helpers that queue side effects in the caller's transaction (outbox rows, never direct I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from quickcart.db import outbox
from quickcart.db.sql import Tx
from quickcart.db.uow import flush_before_commit
from quickcart.services import topics


class Effects:
    """Collects a use case's side effects and writes them as outbox rows in one INSERT.

    `UnitOfWork.commit` flushes every Effects of its session before committing, so the rows
    commit with the change; `messages` then holds them for the task to publish after commit.
    """

    def __init__(self, session: Tx) -> None:
        self.session = session
        self._pending: list[tuple[str, str, dict[str, Any]]] = []
        self.messages: list[outbox.OutboxMessage] = []
        flush_before_commit(session, self)

    def add(self, topic: tuple[str, str], payload: dict[str, Any]) -> None:
        """Queue task `topic` with `payload` in this transaction (written at flush)."""
        name, queue = topic
        self._pending.append((name, queue, payload))

    def flush(self) -> None:
        """Write the queued rows (one statement); the unit of work calls this before commit."""
        if self._pending:
            self.messages.extend(outbox.add_many(self.session, self._pending))
            self._pending = []

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Hand over the queued rows for the caller to write in a statement of its own
        (`outbox.add_many_statement`); the caller then sets `messages` to what it stored."""
        pending, self._pending = self._pending, []
        return pending

    def message(self, user_id: int, key: str, **params: Any) -> None:
        """Queue a catalog message to one user (rendered in their language by the notify worker)."""
        self.add(topics.SEND_MESSAGE, {"chat_id": user_id, "key": key, "params": params})

    def notice(self, chat_id: int, key: str, params: dict[str, Any]) -> None:
        """Queue one admin chat's copy of a catalog notice (`params` a dict: a notice's own
        parameters may be named like this method's)."""
        self.add(topics.SEND_NOTICE, {"chat_id": chat_id, "key": key, "params": params})

    def admins(self, key: str, **params: Any) -> None:
        """Queue a catalog message to every admin and admin group."""
        self.add(topics.NOTIFY_ADMINS, {"key": key, "params": params})

    def schedule_expiry(self, kind: str, row_id: int, at: datetime) -> None:
        """Put a pending order/deposit on the Redis expiry set once this commits."""
        self.add(topics.SCHEDULE_EXPIRY, {"kind": kind, "id": row_id, "at": at.timestamp()})
