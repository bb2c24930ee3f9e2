"""Logs are JSON lines carrying the intent's correlation id, with secrets masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from quickcart.logs import bind_correlation_id, clear_context, configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give the next test what it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    httpx_level = logging.getLogger("httpx").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)
    structlog.reset_defaults()


def test_json_lines_carry_correlation_id_and_mask_secrets(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_logs=True, level="INFO")
    try:
        cid = bind_correlation_id("intent-42", task="quickcart.create_order")
        structlog.get_logger("test").info("delivered", content="KEY-SECRET-1",
                                          api_key="pk_live_x", order_id=7)
        logging.getLogger("plain").warning("stdlib record")
    finally:
        clear_context()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    first, second = lines[-2], lines[-1]
    assert first["correlation_id"] == cid == "intent-42"
    assert first["task"] == "quickcart.create_order" and first["order_id"] == 7
    assert first["content"] == "***" and first["api_key"] == "***"
    assert "KEY-SECRET-1" not in json.dumps(lines)
    assert second["event"] == "stdlib record" and second["correlation_id"] == "intent-42"
