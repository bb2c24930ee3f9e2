"""In-memory, thread-safe state of the Telegram Bot API simulator (users, chats, updates, files)."""

from __future__ import annotations

import json
import mimetypes
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.telegram_markup import command_entities, image_size

JSON = dict[str, Any]

DEFAULT_UPDATE_TYPES = {
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "callback_query",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_join_request",
}
MAX_CALLS = 20_000


class ApiError(Exception):
    """A Bot API error answer: HTTP status == error_code, Telegram-style description."""

    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSON:
        """Return the JSON body Telegram would send for this error."""
        out: JSON = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def bad_request(message: str) -> ApiError:
    """Build a 400 "Bad Request: ..." error."""
    return ApiError(400, f"Bad Request: {message}")


@dataclass
class StoredFile:
    """A file known to the simulator (uploaded by a user or by the bot)."""

    file_id: str
    file_unique_id: str
    kind: str  # "document" or "photo"
    data: bytes
    file_name: str | None
    mime_type: str | None
    file_path: str
    width: int = 0
    height: int = 0

    def as_document(self) -> JSON:
        """Return a Bot API Document object."""
        out: JSON = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }
        if self.file_name:
            out["file_name"] = self.file_name
        if self.mime_type:
            out["mime_type"] = self.mime_type
        return out

    def as_photo(self) -> list[JSON]:
        """Return a Bot API PhotoSize array (a single, original size)."""
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "file_size": len(self.data),
                "width": self.width,
                "height": self.height,
            }
        ]


@dataclass
class SimMessage:
    """A message in a private chat, sent either by the user or by the bot."""

    chat_id: int
    message_id: int
    sender_id: int
    from_bot: bool
    date: int
    text: str | None = None
    entities: list[JSON] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[JSON] = field(default_factory=list)
    parse_mode: str | None = None
    photo: StoredFile | None = None
    document: StoredFile | None = None
    reply_markup: JSON | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False


class SimState:
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
        self._reset_data()

    # ------------------------------------------------------------------ basics
    def _reset_data(self) -> None:
        self.users: dict[int, JSON] = {}
        self.blocked: set[int] = set()
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
        }
        self.sent_times: deque[tuple[float, int]] = deque()

    def touch(self) -> None:
        """Mark state as changed and wake every waiter (caller holds the lock)."""
        self.version += 1
        self.cond.notify_all()

    def reset(self) -> None:
        """Forget users, chats, updates, files, calls and settings (update_id keeps counting)."""
        with self.cond:
            self._reset_data()
            self.poll_generation += 1
            self.touch()

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
                 language_code: str | None = "en", last_name: str | None = None) -> JSON:
        """Create (or update) a simulated user; their private chat id equals the user id."""
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
            self.touch()
            return dict(user)

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

    def _user_message(self, user_id: int, **fields: Any) -> tuple[JSON, int]:
        self.user(user_id)
        reply_to = fields.pop("reply_to_message_id", None)
        if reply_to is not None and self.find_message(user_id, int(reply_to)) is None:
            raise KeyError(f"message {reply_to} not found in chat {user_id}")
        msg = self.new_message(user_id, from_bot=False, reply_to_message_id=reply_to, **fields)
        if msg.text is not None:
            self._maybe_hide_one_time_keyboard(user_id, msg.text)
        payload = self.message_json(msg)
        return payload, self.push_update("message", payload)

    def _maybe_hide_one_time_keyboard(self, chat_id: int, text: str) -> None:
        markup = self.reply_keyboards.get(chat_id)
        if not markup or not markup.get("one_time_keyboard"):
            return
        labels = {b.get("text") for row in markup.get("keyboard", []) for b in row}
        if text in labels:
            self.reply_keyboards[chat_id] = None

    def send_text(self, user_id: int, text: str, reply_to_message_id: int | None = None) -> JSON:
        """Inject a text message from a user; return {"message", "update_id"}."""
        if not text:
            raise ValueError("text must not be empty")
        with self.cond:
            payload, uid = self._user_message(
                user_id, text=text, entities=command_entities(text),
                reply_to_message_id=reply_to_message_id,
            )
            return {"message": payload, "update_id": uid}

    def send_upload(self, user_id: int, kind: str, data: bytes, filename: str,
                    mime_type: str | None = None, caption: str | None = None) -> JSON:
        """Inject a document or photo upload from a user; return {"message", "update_id"}."""
        with self.cond:
            self.user(user_id)
            stored = self.store_file(kind, data, filename, mime_type)
            fields: JSON = {"caption": caption}
            if caption:
                fields["caption_entities"] = command_entities(caption)
            fields[kind] = stored
            payload, uid = self._user_message(user_id, **fields)
            return {"message": payload, "update_id": uid}

    def edit_user_text(self, user_id: int, message_id: int, text: str) -> JSON:
        """Inject an edit of a user's earlier text message (an ``edited_message`` update)."""
        with self.cond:
            msg = self.find_message(user_id, message_id)
            if msg is None or msg.from_bot or msg.text is None:
                raise KeyError(f"user text message {message_id} not found in chat {user_id}")
            msg.text, msg.entities, msg.edit_date = text, command_entities(text), int(time.time())
            payload = self.message_json(msg)
            return {"message": payload, "update_id": self.push_update("edited_message", payload)}

    def press_button(self, user_id: int, message_id: int, callback_data: str) -> JSON:
        """Inject a press on an inline button of a bot message; return the query and update."""
        with self.cond:
            user = self.user(user_id)
            msg = self.find_message(user_id, message_id)
            if msg is None or not msg.from_bot:
                raise KeyError(f"bot message {message_id} not found in chat {user_id}")
            rows = (msg.reply_markup or {}).get("inline_keyboard", [])
            datas = [b.get("callback_data") for row in rows for b in row]
            if callback_data not in datas:
                raise ValueError(
                    f"message {message_id} has no inline button with callback_data "
                    f"{callback_data!r} (has {datas})"
                )
            query_id = str(secrets.randbits(62))
            query: JSON = {
                "id": query_id,
                "from": dict(user),
                "message": self.message_json(msg),
                "chat_instance": str(abs(hash((self.bot_id, user_id))) % 10**18),
                "data": callback_data,
            }
            self.callback_queries[query_id] = {
                "chat_id": user_id, "message_id": message_id, "data": callback_data,
                "answered": False, "time": time.time(),
            }
            label = next(
                (b.get("text") for row in rows for b in row
                 if b.get("callback_data") == callback_data), callback_data,
            )
            self.add_event(user_id, {"type": "button_press", "message_id": message_id,
                                     "callback_data": callback_data, "text": label,
                                     "callback_query_id": query_id})
            uid = self.push_update("callback_query", query)
            return {"callback_query_id": query_id, "update_id": uid, "callback_query": query}

    def add_event(self, chat_id: int, event: JSON) -> None:
        """Append a non-message event (button press, callback answer) to a chat's log."""
        event = {"time": time.time(), **event}
        log = self.events.setdefault(chat_id, [])
        log.append(event)
        del log[:-200]
        self.touch()

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

    # ------------------------------------------------------------------ transcript
    def transcript_message(self, msg: SimMessage) -> JSON:
        """Render a message for transcripts / the web chat (current content, token-free links)."""
        out: JSON = {
            "message_id": msg.message_id,
            "from_bot": msg.from_bot,
            "sender": self.sender_json(msg),
            "date": msg.date,
            "edit_date": msg.edit_date,
            "text": msg.text,
            "entities": msg.entities,
            "caption": msg.caption,
            "caption_entities": msg.caption_entities,
            "parse_mode": msg.parse_mode,
            "reply_markup": msg.reply_markup,
            "reply_to_message_id": msg.reply_to_message_id,
            "photo": None,
            "document": None,
        }
        if msg.photo is not None:
            p = msg.photo
            out["photo"] = {"file_id": p.file_id, "width": p.width, "height": p.height,
                            "file_size": len(p.data), "url": self.file_url(p)}
        if msg.document is not None:
            d = msg.document
            out["document"] = {**d.as_document(), "url": self.file_url(d)}
        return out

    def transcript(self, chat_id: int, since_message_id: int = 0) -> JSON:
        """Return a chat's current messages (edits and deletions applied) plus UI state."""
        with self.cond:
            if chat_id not in self.users:
                raise KeyError(f"unknown chat {chat_id}")
            msgs = [
                self.transcript_message(m)
                for mid, m in sorted(self.messages.get(chat_id, {}).items())
                if not m.deleted and mid > since_message_id
            ]
            action = self.chat_actions.get(chat_id)
            if action and time.time() - action["time"] > 5:
                action = None
            return {
                "chat": self.chat_json(chat_id),
                "messages": msgs,
                "reply_keyboard": self.reply_keyboards.get(chat_id),
                "chat_action": action,
                "events": list(self.events.get(chat_id, [])),
                "blocked": chat_id in self.blocked,
                "version": self.version,
            }

    def bot_messages(self, chat_id: int) -> list[JSON]:
        """Return the live bot messages of a chat in transcript form."""
        with self.cond:
            return [
                self.transcript_message(m)
                for _, m in sorted(self.messages.get(chat_id, {}).items())
                if m.from_bot and not m.deleted
            ]
