"""A small Bot API client for workers: the same wire format as Telegram's servers, so pointing
TELEGRAM_API_BASE_URL at the local simulator is the only difference offline. JSON calls (every
message) go over `json_http`'s kept-alive connections; uploads and downloads over httpx."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from quickcart.adapters.json_http import HttpFailure, JsonPoster
from quickcart.adapters.rate_limit import LIMITED_METHODS, SendLimiter, WaitTooLong, current_class


class TelegramError(Exception):
    """The Bot API refused a call (permanent unless a subclass says otherwise)."""


class TelegramRetryAfter(TelegramError):
    """Flood control: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float, description: str) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class SendLater(TelegramRetryAfter):
    """Our own limits (or a 429) ask for a longer wait than a worker holds a message: the
    task retries after `retry_after` seconds, like after Telegram's own 429."""


class TelegramForbidden(TelegramError):
    """The user blocked the bot or deleted their account: retrying is pointless."""


class TelegramUnavailable(TelegramError):
    """Network failure or a 5xx: transient."""


class TelegramUnsure(TelegramUnavailable):
    """The request was written but no answer came (a read timeout, a dropped connection, a
    5xx): Telegram may have acted on it. Sending again may deliver a message twice."""


class TelegramChatNotFound(TelegramError):
    """400 "chat not found": the user never opened the bot (or the id is wrong)."""


# Backoff between in-process attempts after a 5xx or a network failure; after the last one the
# error goes to the task, whose own retries back off further (workers.base).
UNAVAILABLE_BACKOFF = (0.2, 0.5, 1.0)


class BotApi:
    """Synchronous Bot API calls with Telegram's error semantics mapped to exceptions.

    With a `limiter`, every call is the rate-limit-aware sender: a message-posting method first
    takes its slots in the shared buckets (waiting as the current `SendClass`), a 429 pauses the
    chat for every worker and is waited out, and a 5xx or network failure is tried again with
    backoff, all within the limiter's `max_wait_seconds`; a longer wait raises SendLater."""

    def __init__(self, base_url: str, token: str, timeout: float = 15.0,
                 transport: httpx.BaseTransport | None = None,
                 limiter: SendLimiter | None = None) -> None:
        self._limiter = limiter
        self._url = f"{base_url.rstrip('/')}/bot{token}/"
        self._client = httpx.Client(timeout=timeout, transport=transport)
        # Every call goes through httpx when a test transport stands in for the network, when
        # the environment names a proxy for httpx to honour (HTTPS_PROXY, NO_PROXY, …), or when
        # the URL is not http(s): httpx then refuses each call as unavailable, as it always
        # did, instead of a worker failing to start.
        lean = (transport is None and urlsplit(self._url).scheme in ("http", "https")
                and not _behind_proxy(self._url))
        self._json = JsonPoster(self._url, timeout) if lean else None

    def __repr__(self) -> str:
        return "BotApi(<token hidden>)"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()
        if self._json is not None:
            self._json.close()

    def take_turn(self, chat_id: int) -> None:
        """Wait (as the current `SendClass`) until one message to `chat_id` fits the shared
        limits and take its slots, for a `call(..., paced=True)` that follows at once: a sender
        that records "sending" before a send waits first, so the record is never left behind
        by a wait. Raises SendLater when the wait would be longer than a worker holds."""
        if self._limiter is None:
            return
        try:
            self._limiter.acquire(chat_id, current_class(),
                                  self._limiter.limits.max_wait_seconds)
        except WaitTooLong as exc:
            raise SendLater(exc.retry_after, str(exc)) from None

    def call(self, method: str, data: dict[str, Any] | None = None,
             files: dict[str, tuple[str, bytes, str]] | None = None, *,
             once: bool = False, paced: bool = False) -> Any:
        """POST one method within the send limits; returns `result` or raises a TelegramError
        subclass (SendLater when the limits ask for a longer wait than a worker holds).

        A failure after which Telegram may have acted (TelegramUnsure) is tried again here,
        unless `once`: a sender that must never send twice gets it at once. A failure before
        the request left is always tried again. `paced`: `take_turn` took this call's first
        slots."""
        if self._limiter is None:
            return self._post(method, data, files)
        limiter = self._limiter
        deadline = time.monotonic() + limiter.limits.max_wait_seconds
        chat = (data or {}).get("chat_id")
        chat_id = int(chat) if isinstance(chat, int | str) and str(chat).lstrip("-").isdigit() \
            else None
        failures = 0
        skip_turn = paced
        while True:
            if skip_turn:
                skip_turn = False
            elif method in LIMITED_METHODS and chat_id is not None:
                try:
                    limiter.acquire(chat_id, current_class(), deadline - time.monotonic())
                except WaitTooLong as exc:
                    raise SendLater(exc.retry_after, str(exc)) from None
            try:
                return self._post(method, data, files)
            except SendLater:
                raise
            except TelegramRetryAfter as exc:
                # Every worker holds back from this chat (or from everyone, for a call with no
                # chat) until Telegram allows again; this one waits too if it may.
                limiter.pause(chat_id, exc.retry_after)
                if time.monotonic() + exc.retry_after > deadline:
                    raise
                time.sleep(exc.retry_after)
            except TelegramUnavailable as exc:
                if once and isinstance(exc, TelegramUnsure):
                    raise
                backoff = UNAVAILABLE_BACKOFF[min(failures, len(UNAVAILABLE_BACKOFF) - 1)]
                failures += 1
                if failures > len(UNAVAILABLE_BACKOFF) or time.monotonic() + backoff > deadline:
                    raise
                time.sleep(backoff)

    def _post(self, method: str, data: dict[str, Any] | None = None,
              files: dict[str, tuple[str, bytes, str]] | None = None) -> Any:
        """POST one method once; returns `result` or raises a TelegramError subclass."""
        try:
            if files:
                form = {k: (json.dumps(v) if isinstance(v, dict | list) else v)
                        for k, v in (data or {}).items() if v is not None}
                response = self._client.post(self._url + method, data=form, files=files)
                status, raw = response.status_code, response.content
            elif self._json is None:
                response = self._client.post(self._url + method, json=data or {})
                status, raw = response.status_code, response.content
            else:
                status, raw = self._json.post(method, json.dumps(data or {}).encode())
        except (httpx.HTTPError, HttpFailure) as exc:
            # The exception's name only: httpx's text holds the URL, and the URL the token.
            name = str(exc) if isinstance(exc, HttpFailure) else type(exc).__name__
            left = exc.maybe_sent if isinstance(exc, HttpFailure) else _httpx_maybe_sent(exc)
            raise (TelegramUnsure if left else TelegramUnavailable)(f"{method}: {name}") from exc
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise TelegramUnsure(f"{method}: HTTP {status}") from exc
        if body.get("ok"):
            return body.get("result")
        description = str(body.get("description", "unknown error"))
        code = int(body.get("error_code", status))
        if code == 429:
            retry = float((body.get("parameters") or {}).get("retry_after", 1))
            raise TelegramRetryAfter(retry, description)
        if code == 403:
            raise TelegramForbidden(description)
        if code >= 500:
            raise TelegramUnsure(description)  # an error after the request arrived
        if code == 400 and "chat not found" in description.lower():
            raise TelegramChatNotFound(f"{method}: {description}")
        raise TelegramError(f"{method}: {description}")

    def send_message(self, chat_id: int, text: str,
                     reply_markup: dict[str, Any] | None = None) -> int:
        """Send an HTML message; returns its message_id."""
        result = self.call("sendMessage", {"chat_id": chat_id, "text": text,
                                           "parse_mode": "HTML", "reply_markup": reply_markup})
        return int(result["message_id"])

    def send_photo(self, chat_id: int, png: bytes, caption: str,
                   reply_markup: dict[str, Any] | None = None) -> int:
        """Upload a PNG with an HTML caption; returns its message_id."""
        result = self.call(
            "sendPhoto",
            {"chat_id": chat_id, "caption": caption, "parse_mode": "HTML",
             "reply_markup": reply_markup},
            files={"photo": ("qris.png", png, "image/png")},
        )
        return int(result["message_id"])

    def send_document(self, chat_id: int, filename: str, data: bytes, caption: str) -> int:
        """Upload a file with an HTML caption; returns its message_id."""
        result = self.call(
            "sendDocument", {"chat_id": chat_id, "caption": caption, "parse_mode": "HTML"},
            files={"document": (filename, data, "text/plain")},
        )
        return int(result["message_id"])

    def download_file(self, file_id: str, dest: Path) -> None:
        """Stream a Telegram file to `dest` without holding it in memory."""
        info = self.call("getFile", {"file_id": file_id})
        url = self._url.replace("/bot", "/file/bot", 1) + str(info["file_path"])
        with self._client.stream("GET", url) as response:
            response.raise_for_status()
            with dest.open("wb") as out:
                for chunk in response.iter_bytes(1 << 16):
                    out.write(chunk)

    def edit_text(self, chat_id: int, message_id: int, text: str,
                  reply_markup: dict[str, Any] | None = None) -> None:
        """Replace a text message ("⏳ … sedang diproses" → its outcome)."""
        self.call("editMessageText", {"chat_id": chat_id, "message_id": message_id,
                                      "text": text, "parse_mode": "HTML",
                                      "reply_markup": reply_markup})

    def edit_caption(self, chat_id: int, message_id: int, caption: str,
                     reply_markup: dict[str, Any] | None = None) -> None:
        """Replace a photo's caption (QR → receipt / expiry notice)."""
        self.call("editMessageCaption", {"chat_id": chat_id, "message_id": message_id,
                                         "caption": caption, "parse_mode": "HTML",
                                         "reply_markup": reply_markup})


def _httpx_maybe_sent(exc: Exception) -> bool:
    """Whether an httpx failure may have come after the request reached the server (not: it
    could not connect, waited for a pooled connection, or failed while writing)."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                          | httpx.WriteError | httpx.WriteTimeout | httpx.UnsupportedProtocol)


def _behind_proxy(url: str) -> bool:
    """Whether the environment sends `url` through a proxy, as httpx reads it (`*_PROXY`,
    less `NO_PROXY`)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")
