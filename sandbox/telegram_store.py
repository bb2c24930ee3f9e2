"""Thread-safe core of the Telegram Bot API simulator's state: the lock, the stored messages,
files, the update queue and the record of Bot API calls (who is in which chat, and how chats
and messages look on the wire: sandbox/telegram_chats.py)."""

from __future__ import annotations

import json
import mimetypes
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sandbox.telegram_markup import image_size
from sandbox.telegram_models import (
    DEFAULT_UPDATE_TYPES,
    JSON,
    KnownUser,
    SimGroup,
    SimMessage,
    StoredFile,
)

MAX_CALLS = 20_000


class SimStore:
    """All simulator state behind one lock; ``version`` bumps (and notifies) on every change."""

    def __init__(self, token: str, bot_name: str = "QuickCart Sandbox Bot",
                 bot_username: str = "quickcart_sandbox_bot") -> None:
        self.token = token
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 7_000_000_001
        self.bot_user: JSON = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.cond = threading.Condition(threading.RLock())
        self.version = 0
        self.closing = False
        self._next_update_id = 1
        self._next_call_seq = 1
        self._next_user_id = 100_001
        self.known_users: dict[int, KnownUser] = {}
        self._reset_data()

    # ------------------------------------------------------------------ basics
    def _reset_data(self) -> None:
        self.users: dict[int, JSON] = {}
        self.groups: dict[int, SimGroup] = {}  # group chats by their (negative) chat id
        self.blocked: set[int] = set()
        self.unopened: set[int] = set()  # users who never wrote to the bot: it cannot reach them
        self.messages: dict[int, dict[int, SimMessage]] = {}
        self.next_message_id: dict[int, int] = {}
        self.reply_keyboards: dict[int, JSON | None] = {}
        self.chat_actions: dict[int, JSON] = {}
        self.events: dict[int, list[JSON]] = {}
        self.updates: list[JSON] = []
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, JSON] = {}
        self.calls: deque[JSON] = deque(maxlen=MAX_CALLS)
        self.commands: dict[str, list[JSON]] = {}
        self.webhook: JSON = {"url": ""}
        self.webhook_active = threading.Event()  # set while a webhook URL is set
        self.allowed_updates: set[str] = set(DEFAULT_UPDATE_TYPES)
        self.poll_generation = 0
        self.rate_limit: JSON = {
            "enabled": False, "per_chat_per_second": 1, "global_per_second": 30,
            "per_group_per_minute": 20, "answered_429": 0,
        }
        self.sent_times: deque[tuple[float, int]] = deque()

    def touch(self) -> None:
        """Mark state as changed and wake every waiter (caller holds the lock)."""
        self.version += 1
        self.cond.notify_all()

    def set_rate_limit(self, enabled: bool = True, per_chat_per_second: int | None = None,
                       global_per_second: int | None = None,
                       per_group_per_minute: int | None = None) -> JSON:
        """Switch Telegram-like flood limits (429 with retry_after); None keeps a limit as is.
        `answered_429` counts the calls refused since the limits were last set."""
        with self.cond:
            cfg = self.rate_limit
            cfg["enabled"] = enabled
            cfg["answered_429"] = 0
            for key, value in (("per_chat_per_second", per_chat_per_second),
                               ("global_per_second", global_per_second),
                               ("per_group_per_minute", per_group_per_minute)):
                if value is not None:
                    cfg[key] = max(1, int(value))
            self.sent_times.clear()
            self.touch()
            return dict(cfg)

    def close(self) -> None:
        """Wake every blocked long-poll so the server can shut down promptly."""
        with self.cond:
            self.closing = True
            self.touch()

    def wait_until(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block until ``predicate()`` (called under the lock) is truthy; return it or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closing:
                    return None
                self.cond.wait(min(remaining, 0.5))

    # ------------------------------------------------------------------ messages
    def new_message(self, chat_id: int, from_bot: bool, sender_id: int | None = None,
                    **fields: Any) -> SimMessage:
        """Store a new message in a chat (caller holds the lock); a user's message is from
        ``sender_id`` (default: the private chat's user)."""
        mid = self.next_message_id.get(chat_id, 1)
        self.next_message_id[chat_id] = mid + 1
        msg = SimMessage(
            chat_id=chat_id,
            message_id=mid,
            sender_id=self.bot_id if from_bot else sender_id or chat_id,
            from_bot=from_bot,
            date=int(time.time()),
            **fields,
        )
        self.messages.setdefault(chat_id, {})[mid] = msg
        return msg

    def find_message(self, chat_id: int, message_id: int) -> SimMessage | None:
        """Return a live (not deleted) message or None."""
        msg = self.messages.get(chat_id, {}).get(message_id)
        return None if msg is None or msg.deleted else msg

    # ------------------------------------------------------------------ files
    def store_file(self, kind: str, data: bytes, file_name: str | None,
                   mime_type: str | None) -> StoredFile:
        """Register file bytes and return the StoredFile (caller holds the lock)."""
        n = len(self.files) + 1
        prefix = "AgACAgIAAxk" if kind == "photo" else "BQACAgIAAxk"
        file_id = prefix + secrets.token_urlsafe(24)
        unique = "AQAD" + secrets.token_hex(6)
        if mime_type in (None, "", "application/octet-stream") and file_name:
            mime_type = mimetypes.guess_type(file_name)[0] or mime_type
        ext = ""
        if file_name and "." in file_name:
            ext = file_name.rsplit(".", 1)[1].lower()
        elif kind == "photo":
            ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        folder = "photos" if kind == "photo" else "documents"
        path = f"{folder}/file_{n}" + (f".{ext}" if ext else "")
        stored = StoredFile(file_id, unique, kind, data, file_name, mime_type, path)
        if kind == "photo":
            stored.width, stored.height = image_size(data) or (320, 320)
        self.files[file_id] = stored
        self.files_by_path[path] = stored
        return stored

    def file_url(self, stored: StoredFile) -> str:
        """Return the token-free control-API URL of a file (for transcripts and the web page)."""
        return f"/sandbox/files/{stored.file_id}"

    # ------------------------------------------------------------------ updates
    def push_update(self, kind: str, payload: JSON) -> int:
        """Queue an Update of the given type (caller holds the lock); return its update_id."""
        update_id = self._next_update_id
        self._next_update_id += 1
        if kind in self.allowed_updates:
            self.updates.append({"update_id": update_id, kind: payload})
        self.touch()
        return update_id

    def pending_updates(self) -> list[JSON]:
        """Return updates not yet confirmed by getUpdates."""
        with self.cond:
            return json.loads(json.dumps(self.updates))

    # ------------------------------------------------------------------ calls
    def record_call(self, method: str, params: JSON, files: list[JSON], started: float,
                    result: JSON) -> JSON:
        """Record one Bot API call and its outcome; return the record."""
        with self.cond:
            rec: JSON = {
                "seq": self._next_call_seq,
                "time": started,
                "duration": round(time.time() - started, 4),
                "method": method,
                "params": params,
                "files": files,
                "ok": bool(result.get("ok")),
            }
            if not result.get("ok"):
                rec["error_code"] = result.get("error_code")
                rec["description"] = result.get("description")
            self._next_call_seq += 1
            self.calls.append(rec)
            self.touch()
            return rec

    def list_calls(self, method: str | None = None, chat_id: int | str | None = None,
                   since: int = 0) -> list[JSON]:
        """Return recorded calls, optionally filtered by method, chat_id and seq > since."""
        with self.cond:
            out = []
            for rec in self.calls:
                if rec["seq"] <= since:
                    continue
                if method and rec["method"].lower() != method.lower():
                    continue
                if chat_id is not None and str(rec["params"].get("chat_id")) != str(chat_id):
                    continue
                out.append(rec)
            return out

    def last_call_seq(self) -> int:
        """Return the seq of the latest recorded call (0 if none)."""
        with self.cond:
            return self._next_call_seq - 1

