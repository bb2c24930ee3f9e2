"""One SQLAlchemy engine per database URL per process (Celery forks get their own)."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine

from quickcart.config import normalize_database_url

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def get_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True) -> Engine:
    """The engine for `url` in this process; a forked child never reuses its parent's pool.

    `pre_ping=False` skips the liveness round trip on every checkout; only for callers that
    retry a whole unit of work when a pooled connection turns out dead (Celery tasks)."""
    if not url.startswith("postgresql+"):  # postgres:// and postgresql:// as tools write them
        url = normalize_database_url(url)
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=10,
                pool_pre_ping=pre_ping,
                pool_recycle=1800,
                connect_args={"application_name": "quickcart"},
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every pool this process opened (tests, worker shutdown)."""
    with _lock:
        for (pid, _url), engine in list(_engines.items()):
            if pid == os.getpid():
                engine.dispose()
        _engines.clear()
