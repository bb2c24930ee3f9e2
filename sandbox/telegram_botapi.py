"""Bot API method implementations of the simulator, operating on a SimState."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from sandbox.telegram_models import JSON, ApiError, SimMessage, StoredFile, bad_request
from sandbox.telegram_params import Params, Upload, normalized_params
from sandbox.telegram_setup import BotSetupMethods
from sandbox.telegram_state import SimState

__all__ = ["BotApi"]

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


class BotApi(BotSetupMethods):
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
        while sent and now - sent[0][0] >= 60.0:  # the longest window: a group's minute
            sent.popleft()
        chat_id = p.get_int("chat_id")
        last_second = [(t, c) for t, c in sent if now - t < 1.0]
        per_chat = [t for t, c in last_second if c == chat_id]
        waits: list[float] = []
        if len(per_chat) >= int(cfg["per_chat_per_second"]):
            waits.append(per_chat[-int(cfg["per_chat_per_second"])] + 1.0 - now)
        if len(last_second) >= int(cfg["global_per_second"]):
            waits.append(last_second[-int(cfg["global_per_second"])][0] + 1.0 - now)
        per_group = int(cfg.get("per_group_per_minute", 20))
        in_group = [t for t, c in sent if c == chat_id] if chat_id is not None and chat_id < 0 \
            else []
        if len(in_group) >= per_group:  # groups and channels have negative ids
            waits.append(in_group[-per_group] + 60.0 - now)
        if waits:
            cfg["answered_429"] = int(cfg.get("answered_429", 0)) + 1
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
        # A group the bot is not in, like a user who never wrote to it: Telegram says the same.
        if not self.state.chat_exists(chat_id) or chat_id in self.state.unopened:
            raise bad_request("chat not found")
        if for_send and chat_id in self.state.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

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
        markup = p.markup()
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

    # ------------------------------------------------------------------ chat methods
    def m_getChat(self, p: Params) -> JSON:
        """Return a ChatFullInfo for a private or group chat."""
        chat_id = self._chat(p, for_send=False)
        return {**self.state.chat_json(chat_id), "accent_color_id": 0, "max_reaction_count": 11}

    def m_sendMessage(self, p: Params) -> JSON:
        """Send a text message."""
        chat_id = self._chat(p)
        if not (p.get_str("text") or "").strip():
            raise bad_request("message text is empty")
        text, entities = p.formatted("text", "entities", 4096, "message is too long")
        if not text.strip():
            raise bad_request("message text is empty")
        return self._send(chat_id, p, text=text, entities=entities)

    @staticmethod
    def _caption(p: Params) -> tuple[str | None, list[JSON]]:
        if not p.get_str("caption"):
            return None, []
        return p.formatted("caption", "caption_entities", 1024, "message caption is too long")

    def _send_media(self, p: Params, kind: str) -> JSON:
        chat_id = self._chat(p)
        stored = self._file_param(p, kind, kind)
        caption, entities = self._caption(p)
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
        text, entities = p.formatted("text", "entities", 4096, "message is too long")
        markup = p.markup(inline_only=True)
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
        caption, entities = self._caption(p)
        markup = p.markup(inline_only=True)
        if (caption, entities, markup) == (msg.caption, msg.caption_entities, msg.reply_markup):
            raise bad_request(NOT_MODIFIED)
        msg.caption, msg.caption_entities, msg.reply_markup = caption, entities, markup
        return self._edited(msg)

    def m_editMessageReplyMarkup(self, p: Params) -> JSON:
        """Replace (or remove) the inline keyboard of a bot message."""
        msg = self._target(p)
        markup = p.markup(inline_only=True)
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
