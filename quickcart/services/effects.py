"""Helpers that queue side effects in the caller's transaction (outbox rows, never direct I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from quickcart.db import outbox
from quickcart.services import topics


class Effects:
    """Collects the outbox ids a use case wrote, so its task can publish them after commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: list[int] = []

    def add(self, topic: tuple[str, str], payload: dict[str, Any]) -> None:
        """Queue task `topic` with `payload` in this transaction."""
        name, queue = topic
        self.ids.append(outbox.add(self.session, name, payload, queue))

    def message(self, user_id: int, key: str, **params: Any) -> None:
        """Queue a catalog message to one user (rendered in their language by the notify worker)."""
        self.add(topics.SEND_MESSAGE, {"chat_id": user_id, "key": key, "params": params})

    def admins(self, key: str, **params: Any) -> None:
        """Queue a catalog message to every admin and admin group."""
        self.add(topics.NOTIFY_ADMINS, {"key": key, "params": params})

    def schedule_expiry(self, kind: str, row_id: int, at: datetime) -> None:
        """Put a pending order/deposit on the Redis expiry set once this commits."""
        self.add(topics.SCHEDULE_EXPIRY, {"kind": kind, "id": row_id, "at": at.timestamp()})
