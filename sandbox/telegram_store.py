"""Thread-safe core of the Telegram Bot API simulator's state: the lock, users and chats,
messages, files, the update queue and the record of Bot API calls."""

from __future__ import annotations

import json
import mimetypes
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.telegram_markup import image_size
from sandbox.telegram_models import (
    DEFAULT_UPDATE_TYPES,
    JSON,
    KnownUser,
    SimMessage,
    StoredFile,
)

MAX_CALLS = 20_000


class SimStore:
    """All simulator state behind one lock; ``version`` bumps (and notifies) on every change."""

    def __init__(self, token: str, bot_name: str = "QuickCart Sandbox Bot",
                 bot_username: str = "quickcart_sandbox_bot",
                 users: Iterable[KnownUser] = ()) -> None:
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
        self.add_known_users(users)

    # ------------------------------------------------------------------ basics
    def _reset_data(self) -> None:
        self.users: dict[int, JSON] = {}
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

    def reset(self, keep_known_users: bool = True) -> None:
        """Forget users, chats, updates, files, calls and settings (update_id keeps counting);
        known users are configuration, like the token: listed again (chats empty) unless not
        ``keep_known_users``."""
        with self.cond:
            self._reset_data()
            if not keep_known_users:
                self.known_users.clear()
            for known in self.known_users.values():
                self._add_known(known)
            self.poll_generation += 1
            self.touch()

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

    # ------------------------------------------------------------------ users & chats
    def add_user(self, first_name: str, user_id: int | None = None, username: str | None = None,
                 language_code: str | None = "en", last_name: str | None = None,
                 opened: bool = True) -> JSON:
        """Create (or update) a simulated user; their private chat id equals the user id.

        ``opened=False``: the user has not written to the bot yet, so, as on Telegram, the bot
        gets "chat not found" when it writes to them until they send something.
        """
        with self.cond:
            if user_id is None:
                while self._next_user_id in self.users:
                    self._next_user_id += 1
                user_id = self._next_user_id
                self._next_user_id += 1
            user: JSON = {"id": int(user_id), "is_bot": False, "first_name": first_name}
            if last_name:
                user["last_name"] = last_name
            if username:
                user["username"] = username.lstrip("@")
            if language_code:
                user["language_code"] = language_code
            self.users[int(user_id)] = user
            self.messages.setdefault(int(user_id), {})
            if opened:
                self.unopened.discard(int(user_id))
            else:
                self.unopened.add(int(user_id))
            self.touch()
            return dict(user)

    def add_known_users(self, users: Iterable[KnownUser]) -> list[JSON]:
        """Register users the shop already knows (kept across reset); return their User objects."""
        with self.cond:
            added = []
            for known in users:
                self.known_users[known.id] = known
                added.append(self._add_known(known))
            return added

    def _add_known(self, known: KnownUser) -> JSON:
        # Opened: the shop knows a user because they wrote to the bot (registration happens on
        # first contact), and Telegram lets a bot write to such a user from then on.
        first, last = known.names()
        return self.add_user(first, known.id, known.username, last_name=last)

    def list_users(self) -> list[JSON]:
        """Return all simulated users."""
        with self.cond:
            return [dict(u) for u in self.users.values()]

    def set_blocked(self, user_id: int, blocked: bool) -> None:
        """Make the user block (or unblock) the bot: sends then fail with 403."""
        with self.cond:
            self.user(user_id)
            if blocked:
                self.blocked.add(user_id)
            else:
                self.blocked.discard(user_id)
            self.touch()

    def user(self, user_id: int) -> JSON:
        """Return a user or raise KeyError."""
        try:
            return self.users[int(user_id)]
        except (KeyError, ValueError):
            raise KeyError(f"unknown user {user_id}") from None

    def chat_json(self, chat_id: int) -> JSON:
        """Return the Bot API Chat object of a private chat."""
        user = self.users[chat_id]
        chat: JSON = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        return chat

    def sender_json(self, msg: SimMessage) -> JSON:
        """Return the Bot API User object for the sender of ``msg``."""
        if msg.from_bot:
            keep = ("id", "is_bot", "first_name", "username")
            return {k: self.bot_user[k] for k in keep}
        return dict(self.users[msg.sender_id])

    # ------------------------------------------------------------------ messages
    def new_message(self, chat_id: int, from_bot: bool, **fields: Any) -> SimMessage:
        """Store a new message in a chat (caller holds the lock)."""
        mid = self.next_message_id.get(chat_id, 1)
        self.next_message_id[chat_id] = mid + 1
        msg = SimMessage(
            chat_id=chat_id,
            message_id=mid,
            sender_id=self.bot_id if from_bot else chat_id,
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

    def message_json(self, msg: SimMessage, with_reply: bool = True) -> JSON:
        """Render a message as a Bot API Message object."""
        out: JSON = {
            "message_id": msg.message_id,
            "from": self.sender_json(msg),
            "chat": self.chat_json(msg.chat_id),
            "date": msg.date,
        }
        if msg.edit_date:
            out["edit_date"] = msg.edit_date
        if msg.text is not None:
            out["text"] = msg.text
            if msg.entities:
                out["entities"] = msg.entities
        if msg.photo is not None:
            out["photo"] = msg.photo.as_photo()
        if msg.document is not None:
            out["document"] = msg.document.as_document()
        if msg.caption is not None:
            out["caption"] = msg.caption
            if msg.caption_entities:
                out["caption_entities"] = msg.caption_entities
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            out["reply_markup"] = msg.reply_markup
        if with_reply and msg.reply_to_message_id is not None:
            target = self.messages.get(msg.chat_id, {}).get(msg.reply_to_message_id)
            if target is not None and not target.deleted:
                out["reply_to_message"] = self.message_json(target, with_reply=False)
        return out

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

