"""Structured logs (structlog, JSON by default) with a correlation id per intent.

Secrets, API keys, stock content and full personal data are never logged: known-sensitive keys
are masked before rendering, whatever a caller passes.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset({
    "api_key", "token", "password", "secret", "content", "contents", "payment_number",
    "email", "whatsapp_number", "authorization", "telegram_bot_token", "pakasir_api_key",
})


def _mask(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SENSITIVE_KEYS:
            event[key] = "***"
    return event


def configure_logging(json_logs: bool = True, level: str = "INFO") -> None:
    """Route stdlib and structlog records through one renderer (JSON lines or console)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json_logs
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs full URLs (Pakasir's status query carries the API key): keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def new_correlation_id() -> str:
    """A fresh id for an intent that has none yet."""
    return uuid.uuid4().hex


def current_correlation_id() -> str | None:
    """The correlation id bound to this context (a task, a request), if any."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return str(value) if value else None


def bind_correlation_id(correlation_id: str | None, **extra: Any) -> str:
    """Bind an id (a new one when None) and extra fields to every log line of this context."""
    cid = correlation_id or new_correlation_id()
    structlog.contextvars.bind_contextvars(correlation_id=cid, **extra)
    return cid


def clear_context() -> None:
    """Forget the bound context (end of a task or request)."""
    structlog.contextvars.clear_contextvars()
