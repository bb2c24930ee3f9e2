"""Keeping the Pakasir API key out of logs: the detail URL carries it in its query string.

httpx logs every request URL at INFO, so a filter on the ``httpx`` and ``httpcore`` loggers
rewrites ``api_key=...`` to ``api_key=***`` in their records; the client uses the same rewrite
on its own messages.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping

_API_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


def redact_query(text: str) -> str:
    """`text` with the value of every ``api_key=`` query parameter replaced by ``***``."""
    return _API_KEY_IN_QUERY.sub(r"\1***", text)


class _RedactApiKeyFilter(logging.Filter):
    """Scrub ``api_key=...`` from log records (httpx logs full request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message and arguments in place; never drops a record."""
        if isinstance(record.msg, str) and "api_key" in record.msg.lower():
            record.msg = redact_query(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _scrub(value) for key, value in record.args.items()}
        return True


def _scrub(value: object) -> object:
    text = str(value)
    return redact_query(text) if "api_key" in text.lower() else value


_redaction_lock = threading.Lock()
_redaction_installed = False


def install_httpx_log_redaction() -> None:
    """Add the redacting filter to httpx's and httpcore's loggers, once per process."""
    global _redaction_installed
    with _redaction_lock:
        if _redaction_installed:
            return
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(_RedactApiKeyFilter())
        _redaction_installed = True
