"""The workers' Bot API client over real sockets: kept-alive connections, a server that drops
one, Telegram's answers mapped to the exceptions the tasks act on, and the line between a
failure before the request left (safe to send again) and one after (Telegram may have it)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from quickcart.adapters.rate_limit import Limits, SendLimiter
from quickcart.adapters.telegram_api import (
    BotApi,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramUnavailable,
    TelegramUnsure,
)
from sandbox.serving import wait_until

pytestmark = pytest.mark.timeout(60)
TOKEN = "123:SECRET-token"


class FakeTelegram(ThreadingHTTPServer):
    """Answers each POST with the next queued (status, body, then drop the connection)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: list[tuple[int, bytes, bool]] = []
        self.connections = 0
        self.closed = 0
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def answer(self, status: int, body: Any, drop: bool = False) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self.lock:
            self.answers.append((status, raw, drop))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the answer says drop
    server: FakeTelegram

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.closed += 1

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.paths.append(self.path)
            status, body, drop = (self.server.answers.pop(0) if self.server.answers
                                  else (200, b'{"ok": true, "result": {"message_id": 1}}', False))
        if status == 0:  # it acted on the request, then the connection broke before the answer
            self.close_connection = True
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # A drop closes the connection without saying so (a keep-alive timeout, a restart):
        # the client only finds out when it next takes the connection.
        self.close_connection = drop

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_messages_share_one_kept_alive_connection(telegram: FakeTelegram) -> None:
    api = BotApi(telegram.url, TOKEN)
    assert [api.send_message(7, f"pesan {i}") for i in range(5)] == [1] * 5
    assert telegram.connections == 1
    assert telegram.paths == [f"/bot{TOKEN}/sendMessage"] * 5
    api.close()


def test_a_connection_the_server_dropped_is_replaced_before_use(
        telegram: FakeTelegram) -> None:
    api = BotApi(telegram.url, TOKEN)
    telegram.answer(200, {"ok": True, "result": {"message_id": 11}}, drop=True)
    assert api.send_message(7, "satu") == 11
    wait_until(lambda: telegram.closed == 1, what="the server closing its side", timeout=10)
    assert api.send_message(7, "dua") == 1  # not a failure: a new connection
    assert telegram.connections == 2
    api.close()


def test_telegram_answers_become_the_exceptions_tasks_act_on(telegram: FakeTelegram) -> None:
    api = BotApi(telegram.url, TOKEN)
    telegram.answer(429, {"ok": False, "error_code": 429, "description": "Too Many Requests",
                          "parameters": {"retry_after": 3}})
    with pytest.raises(TelegramRetryAfter) as flood:
        api.send_message(7, "x")
    assert flood.value.retry_after == 3
    telegram.answer(403, {"ok": False, "error_code": 403,
                          "description": "Forbidden: bot was blocked by the user"})
    with pytest.raises(TelegramForbidden):
        api.send_message(7, "x")
    telegram.answer(502, b"<html>Bad Gateway</html>")
    with pytest.raises(TelegramUnavailable, match="HTTP 502"):
        api.send_message(7, "x")
    assert api.send_message(7, "x") == 1  # the connection still serves after each refusal
    assert telegram.connections == 1
    api.close()


def test_a_proxy_in_the_environment_is_honoured(telegram: FakeTelegram,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A shop behind HTTPS_PROXY (or ALL_PROXY) reaches Telegram through it, unless NO_PROXY
    names the host: the calls then go through httpx, which reads those variables."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("ALL_PROXY", dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(TelegramUnavailable):
        BotApi(telegram.url, TOKEN, timeout=5).send_message(7, "lewat proxy")
    assert telegram.connections == 0  # it went to the (dead) proxy, not straight to Telegram
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert BotApi(telegram.url, TOKEN, timeout=5).send_message(7, "langsung") == 1
    assert telegram.connections == 1


def test_a_base_url_without_a_scheme_fails_each_call_not_the_worker() -> None:
    """A mistyped TELEGRAM_API_BASE_URL must not stop a worker from starting (it builds its
    client before the first task): each call is refused as unavailable instead."""
    api = BotApi("api.telegram.org", TOKEN)
    with pytest.raises(TelegramUnavailable) as failure:
        api.send_message(7, "x")
    assert "SECRET" not in str(failure.value)


def test_an_unreachable_server_is_transient_and_the_token_stays_out_of_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    api = BotApi(f"http://127.0.0.1:{port}", TOKEN, timeout=5)
    with pytest.raises(TelegramUnavailable) as failure:
        api.send_message(7, "x")
    assert "SECRET" not in str(failure.value) and "sendMessage" in str(failure.value)


def test_a_request_that_left_and_got_no_answer_is_unsure_and_a_refused_one_is_not(
        telegram: FakeTelegram) -> None:
    """Telegram has no idempotent send: after the request was written, a broken connection or
    a 5xx leaves it unknown whether the message went out (TelegramUnsure); a connection that
    was never made sent nothing (TelegramUnavailable, safe to try again)."""
    api = BotApi(telegram.url, TOKEN)
    telegram.answer(0, b"")
    with pytest.raises(TelegramUnsure):
        api.send_message(7, "x")
    assert len(telegram.paths) == 1  # it had reached the server
    telegram.answer(500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
    with pytest.raises(TelegramUnsure):
        api.send_message(7, "x")
    api.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TelegramUnavailable) as refused:
        BotApi(f"http://127.0.0.1:{port}", TOKEN, timeout=5).send_message(7, "x")
    assert not isinstance(refused.value, TelegramUnsure)


@pytest.fixture
def limiter(r: redis.Redis, prefix: str) -> SendLimiter:
    """The shared send limits on this test's own key prefix."""
    return SendLimiter(r, Limits(per_chat_per_second=100), prefix)


def test_a_send_once_is_never_posted_twice_and_a_delivery_is_retried(
        telegram: FakeTelegram, limiter: SendLimiter) -> None:
    """The sender retries transient failures in process. After an unsure one, a broadcast's
    send (`once`) stops at once, so nobody gets it twice; a delivery tries again, since a key
    shown twice is better than a key lost."""
    api = BotApi(telegram.url, TOKEN, limiter=limiter)
    telegram.answer(0, b"")
    with pytest.raises(TelegramUnsure):
        api.call("sendMessage", {"chat_id": 7, "text": "promo"}, once=True)
    assert len(telegram.paths) == 1
    telegram.answer(0, b"")
    assert api.send_message(7, "kunci") == 1  # the second attempt answered
    assert len(telegram.paths) == 3
    # `paced`: the turn taken just before is this call's; it still posts once.
    api.take_turn(7)
    api.close()
    telegram.answer(0, b"")
    with pytest.raises(TelegramUnsure):
        api.call("sendMessage", {"chat_id": 7, "text": "promo"}, once=True, paced=True)
    assert len(telegram.paths) == 4
    api.close()
