"""Bot API method implementations of the simulator, operating on a SimState."""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from sandbox.telegram_markup import ParseError, parse_text, utf16_len
from sandbox.telegram_state import (
    DEFAULT_UPDATE_TYPES,
    JSON,
    ApiError,
    SimMessage,
    SimState,
    StoredFile,
    bad_request,
)

Upload = tuple[str, bytes, str]  # filename, content, content type

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
RATE_LIMITED_METHODS = {"sendmessage", "sendphoto", "senddocument"}
CHAT_ACTIONS = {
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note",
    "upload_video_note",
}
JSON_FIELDS = {
    "reply_markup", "entities", "caption_entities", "reply_parameters", "commands", "scope",
    "allowed_updates", "link_preview_options",
}
_INLINE_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)


class Params:
    """Typed access to Bot API parameters that may arrive as JSON values or form strings."""

    def __init__(self, raw: JSON, uploads: dict[str, Upload]) -> None:
        self.raw = raw
        self.uploads = uploads

    def has(self, name: str) -> bool:
        """Return True if the parameter is present and not null."""
        return self.raw.get(name) is not None

    def get_str(self, name: str) -> str | None:
        """Return a parameter as string (None if absent)."""
        value = self.raw.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def get_int(self, name: str) -> int | None:
        """Return a parameter as int (None if absent); 400 if not an integer."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_float(self, name: str) -> float | None:
        """Return a parameter as float (None if absent)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        """Return a parameter as bool (False if absent)."""
        value = self.raw.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def get_json(self, name: str, what: str | None = None) -> Any:
        """Return a JSON-typed parameter, decoding it if it came as a string."""
        value = self.raw.get(name)
        if isinstance(value, str):
            if value == "":
                return None
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what or name} JSON object") from None
        return value


def normalized_params(raw: JSON) -> JSON:
    """Decode JSON-string fields of a form request so recorded calls are easy to inspect."""
    out: JSON = {}
    for key, value in raw.items():
        if key in JSON_FIELDS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


class BotApi:
    """Dispatches Bot API method calls against the shared SimState."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.methods: dict[str, Callable[[Params], Any]] = {}
        for attr in dir(self):
            if attr.startswith("m_"):
                self.methods[attr[2:].lower()] = getattr(self, attr)
        self.canonical = {attr[2:].lower(): attr[2:] for attr in dir(self) if attr.startswith("m_")}

    # ------------------------------------------------------------------ entry point
    def call(self, token: str, method: str, raw: JSON, uploads: dict[str, Upload]) -> JSON:
        """Run one Bot API call; always return the Telegram JSON body (ok or error)."""
        started = time.time()
        files = [
            {"field": k, "filename": fn, "size": len(data), "mime_type": ct}
            for k, (fn, data, ct) in uploads.items()
        ]
        name = self.canonical.get(method.lower(), method)
        try:
            if token != self.state.token:
                raise ApiError(401, "Unauthorized")
            fn = self.methods.get(method.lower())
            if fn is None:
                raise ApiError(404, "Not Found")
            params = Params(raw, uploads)
            self._prefetch_urls(params)
            with self.state.cond:
                self._check_rate_limit(method.lower(), params)
                result = fn(params)
                body: JSON = {"ok": True, "result": result}
        except ApiError as exc:
            body = exc.body()
        if token == self.state.token:
            self.state.record_call(name, normalized_params(raw), files, started, body)
        return body

    def _prefetch_urls(self, p: Params) -> None:
        for key in ("photo", "document"):
            value = p.raw.get(key)
            if isinstance(value, str) and re.match(r"https?://", value):
                try:
                    resp = httpx.get(value, timeout=5.0, follow_redirects=True)
                    resp.raise_for_status()
                except httpx.HTTPError:
                    raise bad_request("wrong file identifier/HTTP URL specified") from None
                fname = value.rstrip("/").rsplit("/", 1)[-1] or key
                ctype = resp.headers.get("content-type", "application/octet-stream")
                p.uploads[key] = (fname, resp.content, ctype.split(";")[0])

    def _check_rate_limit(self, method: str, p: Params) -> None:
        cfg = self.state.rate_limit
        if not cfg["enabled"] or method not in RATE_LIMITED_METHODS:
            return
        now = time.monotonic()
        sent = self.state.sent_times
        while sent and now - sent[0][0] >= 1.0:
            sent.popleft()
        chat_id = p.get_int("chat_id")
        per_chat = [t for t, c in sent if c == chat_id]
        waits: list[float] = []
        if len(per_chat) >= int(cfg["per_chat_per_second"]):
            waits.append(per_chat[-int(cfg["per_chat_per_second"])] + 1.0 - now)
        if len(sent) >= int(cfg["global_per_second"]):
            waits.append(sent[-int(cfg["global_per_second"])][0] + 1.0 - now)
        if waits:
            retry = max(1, math.ceil(max(waits)))
            raise ApiError(429, f"Too Many Requests: retry after {retry}",
                           {"retry_after": retry})

    def _count_sent(self, chat_id: int) -> None:
        if self.state.rate_limit["enabled"]:
            self.state.sent_times.append((time.monotonic(), chat_id))

    # ------------------------------------------------------------------ helpers
    def _chat(self, p: Params, for_send: bool = True) -> int:
        if not p.has("chat_id") or p.get_str("chat_id") == "":
            raise bad_request("chat_id is empty")
        value = p.raw.get("chat_id")
        try:
            chat_id = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise bad_request("chat not found") from None
        if chat_id not in self.state.users:
            raise bad_request("chat not found")
        if for_send and chat_id in self.state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _markup(self, p: Params, inline_only: bool = False) -> JSON | None:
        markup = p.get_json("reply_markup", "reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise bad_request("field \"inline_keyboard\" of the InlineKeyboardMarkup "
                                  "must be an Array of Arrays")
            for row in rows:
                for button in row:
                    self._check_inline_button(button)
            return {"inline_keyboard": rows}
        if inline_only:
            raise bad_request("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise bad_request("field \"keyboard\" of the ReplyKeyboardMarkup must be an "
                                  "Array of Arrays")
            norm = [[b if isinstance(b, dict) else {"text": str(b)} for b in row] for row in rows]
            if any(not b.get("text") for row in norm for b in row):
                raise bad_request("can't parse keyboard button: Text must be non-empty")
            return {**markup, "keyboard": norm}
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return markup
        raise bad_request("can't parse reply keyboard markup JSON object")

    @staticmethod
    def _check_inline_button(button: Any) -> None:
        if not isinstance(button, dict) or not button.get("text"):
            raise bad_request("can't parse inline keyboard button: Text must be non-empty")
        present = [k for k in _INLINE_ACTIONS if k in button]
        if not present:
            raise bad_request("can't parse inline keyboard button: Text buttons are unallowed "
                              "in the inline keyboard")
        data = button.get("callback_data")
        if data is not None and not (1 <= len(str(data).encode()) <= 64):
            raise bad_request("BUTTON_DATA_INVALID")

    def _formatted(self, p: Params, key: str, entities_key: str, limit: int,
                   too_long: str) -> tuple[str, list[JSON]]:
        raw = p.get_str(key) or ""
        try:
            text, entities = parse_text(raw, p.get_str("parse_mode"))
        except ParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        if not p.get_str("parse_mode") and p.has(entities_key):
            entities = p.get_json(entities_key) or []
        if utf16_len(text) > limit:
            raise bad_request(too_long)
        return text, entities

    def _reply_to(self, p: Params, chat_id: int) -> int | None:
        target = p.get_int("reply_to_message_id")
        allow = p.get_bool("allow_sending_without_reply")
        params = p.get_json("reply_parameters")
        if isinstance(params, dict) and params.get("message_id") is not None:
            target = int(params["message_id"])
            allow = allow or bool(params.get("allow_sending_without_reply"))
        if target is None:
            return None
        if self.state.find_message(chat_id, target) is None:
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return target

    def _send(self, chat_id: int, p: Params, **fields: Any) -> JSON:
        st = self.state
        markup = self._markup(p)
        reply_to = self._reply_to(p, chat_id)
        msg = st.new_message(chat_id, from_bot=True, reply_markup=markup,
                             reply_to_message_id=reply_to, parse_mode=p.get_str("parse_mode"),
                             **fields)
        if markup is not None:
            if "keyboard" in markup:
                st.reply_keyboards[chat_id] = markup
            elif markup.get("remove_keyboard"):
                st.reply_keyboards[chat_id] = None
        st.chat_actions.pop(chat_id, None)
        self._count_sent(chat_id)
        st.touch()
        return st.message_json(msg)

    def _file_param(self, p: Params, key: str, kind: str) -> StoredFile:
        if key in p.uploads:
            fname, data, ctype = p.uploads[key]
            if not data:
                raise bad_request("file must be non-empty")
            return self.state.store_file(kind, data, fname or key, ctype)
        value = p.get_str(key)
        if not value:
            raise bad_request(f"there is no {key} in the request")
        if value.startswith("attach://"):
            raise bad_request(f"file {value} is not found in the request")
        stored = self.state.files.get(value)
        if stored is None:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise bad_request(
                f"can't use file of type {stored.kind.capitalize()} as {kind.capitalize()}"
            )
        return stored

    def _target(self, p: Params) -> SimMessage:
        if p.has("inline_message_id"):
            raise bad_request("inline messages are not supported by the sandbox")
        chat_id = self._chat(p, for_send=False)
        mid = p.get_int("message_id")
        if mid is None:
            raise bad_request("message identifier is not specified")
        msg = self.state.find_message(chat_id, mid)
        if msg is None:
            raise bad_request("message to edit not found")
        if not msg.from_bot:
            raise bad_request("message can't be edited")
        return msg

    def _edited(self, msg: SimMessage) -> JSON:
        msg.edit_date = int(time.time())
        self.state.touch()
        return self.state.message_json(msg)

    # ------------------------------------------------------------------ methods
    def m_getMe(self, p: Params) -> JSON:
        """Return the bot user."""
        return dict(self.state.bot_user)

    def m_logOut(self, p: Params) -> bool:
        """Accept logOut."""
        return True

    def m_close(self, p: Params) -> bool:
        """Accept close."""
        return True

    def m_getUpdates(self, p: Params) -> list[JSON]:
        """Return pending updates; offset confirms earlier ones; long-polls up to ``timeout``."""
        st = self.state
        if st.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = p.get_int("offset") or 0
        limit = p.get_int("limit") or 100
        limit = max(1, min(100, limit))
        timeout = max(0.0, min(50.0, p.get_float("timeout") or 0.0))
        allowed = p.get_json("allowed_updates")
        if isinstance(allowed, list):
            st.allowed_updates = set(allowed) if allowed else set(DEFAULT_UPDATE_TYPES)
        st.poll_generation += 1
        generation = st.poll_generation
        deadline = time.monotonic() + timeout

        def confirm() -> None:
            if offset > 0:
                st.updates = [u for u in st.updates if u["update_id"] >= offset]
            elif offset < 0:
                st.updates = st.updates[offset:]

        while True:
            confirm()
            if st.poll_generation != generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                    "that only one bot instance is running")
            if st.updates:
                return json.loads(json.dumps(st.updates[:limit]))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or st.closing:
                return []
            st.cond.wait(remaining)

    def m_setWebhook(self, p: Params) -> bool:
        """Set a webhook: pending updates are POSTed to it (sandbox.telegram_webhook) and
        getUpdates returns 409. Plain http is accepted, so a bot on loopback is reachable
        without the TLS proxy a real deployment puts in front of it."""
        url = p.get_str("url") or ""
        if url and not re.match(r"https?://", url):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.state.webhook = {
            "url": url,
            "secret_token": p.get_str("secret_token"),
            "max_connections": p.get_int("max_connections") or 40,
            "allowed_updates": p.get_json("allowed_updates"),
            "ip_address": p.get_str("ip_address"),
            "set_at": int(time.time()),
        }
        if url:
            self.state.webhook_active.set()
        else:
            self.state.webhook_active.clear()
        if p.get_bool("drop_pending_updates"):
            self.state.updates = []
        self.state.touch()
        return True

    def m_deleteWebhook(self, p: Params) -> bool:
        """Remove the webhook; ``drop_pending_updates`` clears the queue."""
        self.state.webhook = {"url": ""}
        self.state.webhook_active.clear()
        if p.get_bool("drop_pending_updates"):
            self.state.updates = []
        self.state.touch()
        return True

    def m_getWebhookInfo(self, p: Params) -> JSON:
        """Return WebhookInfo."""
        wh = self.state.webhook
        out: JSON = {
            "url": wh.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }
        if wh.get("url"):
            out["max_connections"] = wh.get("max_connections", 40)
            if wh.get("allowed_updates"):
                out["allowed_updates"] = wh["allowed_updates"]
            if wh.get("ip_address"):
                out["ip_address"] = wh["ip_address"]
            if wh.get("last_error_date"):
                out["last_error_date"] = wh["last_error_date"]
                out["last_error_message"] = wh.get("last_error_message", "")
        return out

    @staticmethod
    def _commands_key(p: Params) -> str:
        scope = p.get_json("scope") or {"type": "default"}
        return json.dumps([scope, p.get_str("language_code") or ""], sort_keys=True)

    def m_setMyCommands(self, p: Params) -> bool:
        """Store the command list for a scope / language."""
        commands = p.get_json("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        for cmd in commands:
            if not isinstance(cmd, dict):
                raise bad_request("can't parse BotCommand")
            name = str(cmd.get("command", ""))
            desc = str(cmd.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.state.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        self.state.touch()
        return True

    def m_getMyCommands(self, p: Params) -> list[JSON]:
        """Return the command list for a scope / language."""
        return list(self.state.commands.get(self._commands_key(p), []))

    def m_deleteMyCommands(self, p: Params) -> bool:
        """Delete the command list for a scope / language."""
        self.state.commands.pop(self._commands_key(p), None)
        self.state.touch()
        return True

    def m_getChat(self, p: Params) -> JSON:
        """Return a ChatFullInfo for a private chat."""
        chat_id = self._chat(p, for_send=False)
        return {**self.state.chat_json(chat_id), "accent_color_id": 0, "max_reaction_count": 11}

    def m_sendMessage(self, p: Params) -> JSON:
        """Send a text message."""
        chat_id = self._chat(p)
        if not (p.get_str("text") or "").strip():
            raise bad_request("message text is empty")
        text, entities = self._formatted(p, "text", "entities", 4096, "message is too long")
        if not text.strip():
            raise bad_request("message text is empty")
        return self._send(chat_id, p, text=text, entities=entities)

    def _send_media(self, p: Params, kind: str) -> JSON:
        chat_id = self._chat(p)
        stored = self._file_param(p, kind, kind)
        caption: str | None = None
        entities: list[JSON] = []
        if p.get_str("caption"):
            caption, entities = self._formatted(
                p, "caption", "caption_entities", 1024, "message caption is too long"
            )
        return self._send(chat_id, p, caption=caption, caption_entities=entities,
                          **{kind: stored})

    def m_sendPhoto(self, p: Params) -> JSON:
        """Send a photo (multipart upload, file_id or HTTP URL)."""
        return self._send_media(p, "photo")

    def m_sendDocument(self, p: Params) -> JSON:
        """Send a document (multipart upload, file_id or HTTP URL)."""
        return self._send_media(p, "document")

    def m_sendChatAction(self, p: Params) -> bool:
        """Record a chat action such as "typing" (shown for 5 s)."""
        chat_id = self._chat(p)
        action = p.get_str("action")
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self.state.chat_actions[chat_id] = {"action": action, "time": time.time()}
        self.state.touch()
        return True

    def m_editMessageText(self, p: Params) -> JSON:
        """Edit the text (and inline keyboard) of a bot message."""
        msg = self._target(p)
        if msg.text is None:
            raise bad_request("there is no text in the message to edit")
        if not (p.get_str("text") or "").strip():
            raise bad_request("message text is empty")
        text, entities = self._formatted(p, "text", "entities", 4096, "message is too long")
        markup = self._markup(p, inline_only=True)
        if (text, entities, markup) == (msg.text, msg.entities, msg.reply_markup):
            raise bad_request(NOT_MODIFIED)
        msg.text, msg.entities, msg.reply_markup = text, entities, markup
        msg.parse_mode = p.get_str("parse_mode")
        return self._edited(msg)

    def m_editMessageCaption(self, p: Params) -> JSON:
        """Edit the caption (and inline keyboard) of a bot media message."""
        msg = self._target(p)
        if msg.photo is None and msg.document is None:
            raise bad_request("there is no caption in the message to edit")
        caption: str | None = None
        entities: list[JSON] = []
        if p.get_str("caption"):
            caption, entities = self._formatted(
                p, "caption", "caption_entities", 1024, "message caption is too long"
            )
        markup = self._markup(p, inline_only=True)
        if (caption, entities, markup) == (msg.caption, msg.caption_entities, msg.reply_markup):
            raise bad_request(NOT_MODIFIED)
        msg.caption, msg.caption_entities, msg.reply_markup = caption, entities, markup
        return self._edited(msg)

    def m_editMessageReplyMarkup(self, p: Params) -> JSON:
        """Replace (or remove) the inline keyboard of a bot message."""
        msg = self._target(p)
        markup = self._markup(p, inline_only=True)
        if markup == msg.reply_markup or (markup is None and not msg.reply_markup):
            raise bad_request(NOT_MODIFIED)
        msg.reply_markup = markup
        return self._edited(msg)

    def m_deleteMessage(self, p: Params) -> bool:
        """Delete a message in a chat."""
        chat_id = self._chat(p, for_send=False)
        mid = p.get_int("message_id")
        msg = self.state.find_message(chat_id, mid) if mid is not None else None
        if msg is None:
            raise bad_request("message to delete not found")
        msg.deleted = True
        self.state.touch()
        return True

    def m_answerCallbackQuery(self, p: Params) -> bool:
        """Answer a callback query once (text / show_alert are shown in the web chat)."""
        qid = p.get_str("callback_query_id") or ""
        query = self.state.callback_queries.get(qid)
        if query is None or query["answered"]:
            raise bad_request("query is too old and response timeout expired or query ID is "
                              "invalid")
        text = p.get_str("text")
        if text and len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        query["answered"] = True
        self.state.add_event(query["chat_id"], {
            "type": "callback_answer", "callback_query_id": qid, "text": text,
            "show_alert": p.get_bool("show_alert"), "url": p.get_str("url"),
            "message_id": query["message_id"],
        })
        return True

    def m_getFile(self, p: Params) -> JSON:
        """Return a File with a ``file_path`` served under /file/bot<token>/<file_path>."""
        stored = self.state.files.get(p.get_str("file_id") or "")
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > 20 * 1024 * 1024:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }
