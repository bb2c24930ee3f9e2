"""JSON POSTs over kept-alive HTTP/1.1 connections, on the standard library's `http.client`.

The Bot API client sends every message through this: 130 µs of CPU a request, where httpx (its
URL model, header and cookie handling, transport layers and h11 state machine) took 385 µs
(docs/adr/0043-bot-api-on-http-client.md). Uploads and downloads, which are rare,
stay on httpx.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from urllib.parse import urlsplit


class HttpFailure(Exception):
    """The request failed on the network or its response was not HTTP. `maybe_sent` says
    whether it may have reached the server: False when it failed before the whole request was
    written (nothing was sent, trying again is safe), True once it had been written (the
    server may have acted on it: a caller that cannot act twice must treat it as unknown)."""

    def __init__(self, name: str, maybe_sent: bool) -> None:
        super().__init__(name)
        self.maybe_sent = maybe_sent


class JsonPoster:
    """POSTs JSON bodies to one origin, reusing idle connections; safe to share between threads
    (a connection serves one request at a time, and is kept only after a complete response)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path  # requests append their path to it as it is
        self._timeout = timeout
        self._tls = ssl.create_default_context() if self._https else None
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of POST `path` (appended to the base URL's path) with a JSON body."""
        conn = self._take()
        try:
            # A request that fails while being written is incomplete, and a server never acts
            # on an incomplete request: nothing was sent.
            conn.request("POST", self._prefix + path, body,
                         {"Content-Type": "application/json", "Accept": "application/json"})
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise HttpFailure(type(exc).__name__, maybe_sent=False) from exc
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise HttpFailure(type(exc).__name__, maybe_sent=True) from exc
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return response.status, data

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if not _dropped(conn):
                return conn
            conn.close()

    def _new(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                               context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server: readable while idle means EOF (or
    bytes nobody asked for), either way unusable. Checked before reuse, as urllib3 does."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
