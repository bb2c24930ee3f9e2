"""State of the Telegram Bot API simulator: its chats plus what a simulated user does in their
private chat or a group (send, upload, edit, press a button) and the chat transcripts the web
page and tests read."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sandbox.telegram_chats import SimChats
from sandbox.telegram_markup import command_entities
from sandbox.telegram_models import JSON, SimMessage

__all__ = ["JSON", "SimState"]


class SimState(SimChats):
    """The simulator's state with the user-side actions and transcript views. Each action is
    in the user's private chat unless ``chat_id`` names a group they are a member of."""

    # ------------------------------------------------------------------ user actions
    def _user_message(self, user_id: int, chat_id: int | None,
                      **fields: Any) -> tuple[JSON, int | None]:
        chat = self.acting_chat(user_id, chat_id)
        reply_to = fields.pop("reply_to_message_id", None)
        reply_to = None if reply_to is None else int(reply_to)
        if reply_to is not None and self.find_message(chat, reply_to) is None:
            raise KeyError(f"message {reply_to} not found in chat {chat}")
        msg = self.new_message(chat, from_bot=False, sender_id=int(user_id),
                               reply_to_message_id=reply_to, **fields)
        if chat == user_id:
            self.unopened.discard(user_id)  # writing to the bot opens the chat for the bot
        if msg.text is not None:
            self._maybe_hide_one_time_keyboard(chat, msg.text)
        payload = self.message_json(msg)
        return payload, self._deliver("message", msg, payload)

    def _deliver(self, kind: str, msg: SimMessage, payload: JSON) -> int | None:
        """Queue the update of a user's message; None (the message is only shown in the
        chat) when privacy mode keeps it from the bot."""
        if not self.reaches_bot(msg):
            self.touch()
            return None
        return self.push_update(kind, payload)

    def _maybe_hide_one_time_keyboard(self, chat_id: int, text: str) -> None:
        markup = self.reply_keyboards.get(chat_id)
        if not markup or not markup.get("one_time_keyboard"):
            return
        labels = {b.get("text") for row in markup.get("keyboard", []) for b in row}
        if text in labels:
            self.reply_keyboards[chat_id] = None

    def send_text(self, user_id: int, text: str, reply_to_message_id: int | None = None,
                  chat_id: int | None = None) -> JSON:
        """Inject a text message from a user; return {"message", "update_id"} (update_id None:
        privacy mode kept a group message from the bot)."""
        if not text:
            raise ValueError("text must not be empty")
        with self.cond:
            payload, uid = self._user_message(
                user_id, chat_id, text=text, entities=command_entities(text),
                reply_to_message_id=reply_to_message_id,
            )
            return {"message": payload, "update_id": uid}

    def send_upload(self, user_id: int, kind: str, data: bytes, filename: str,
                    mime_type: str | None = None, caption: str | None = None,
                    chat_id: int | None = None) -> JSON:
        """Inject a document or photo upload from a user; return {"message", "update_id"}."""
        with self.cond:
            self.acting_chat(user_id, chat_id)
            stored = self.store_file(kind, data, filename, mime_type)
            fields: JSON = {"caption": caption}
            if caption:
                fields["caption_entities"] = command_entities(caption)
            fields[kind] = stored
            payload, uid = self._user_message(user_id, chat_id, **fields)
            return {"message": payload, "update_id": uid}

    def edit_user_text(self, user_id: int, message_id: int, text: str,
                       chat_id: int | None = None) -> JSON:
        """Inject an edit of a user's earlier text message (an ``edited_message`` update)."""
        with self.cond:
            chat = self.acting_chat(user_id, chat_id)
            msg = self.find_message(chat, message_id)
            if msg is None or msg.sender_id != user_id or msg.from_bot or msg.text is None:
                raise KeyError(f"text message {message_id} of user {user_id} not found in chat"
                               f" {chat}")
            msg.text, msg.entities, msg.edit_date = text, command_entities(text), int(time.time())
            payload = self.message_json(msg)
            return {"message": payload, "update_id": self._deliver("edited_message", msg,
                                                                   payload)}

    def press_button(self, user_id: int, message_id: int, callback_data: str,
                     chat_id: int | None = None) -> JSON:
        """Inject a press on an inline button of a bot message; return the query and update."""
        with self.cond:
            chat = self.acting_chat(user_id, chat_id)
            user = self.user(user_id)
            msg = self.find_message(chat, message_id)
            if msg is None or not msg.from_bot:
                raise KeyError(f"bot message {message_id} not found in chat {chat}")
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
                "chat_instance": str(abs(hash((self.bot_id, chat))) % 10**18),
                "data": callback_data,
            }
            self.callback_queries[query_id] = {
                "chat_id": chat, "message_id": message_id, "data": callback_data,
                "answered": False, "time": time.time(),
            }
            label = next(
                (b.get("text") for row in rows for b in row
                 if b.get("callback_data") == callback_data), callback_data,
            )
            self.add_event(chat, {"type": "button_press", "message_id": message_id,
                                  "callback_data": callback_data, "text": label,
                                  "callback_query_id": query_id, "from_id": user_id})
            uid = self.push_update("callback_query", query)
            return {"callback_query_id": query_id, "update_id": uid, "callback_query": query}

    def add_event(self, chat_id: int, event: JSON) -> None:
        """Append a non-message event (button press, callback answer) to a chat's log."""
        event = {"time": time.time(), **event}
        log = self.events.setdefault(chat_id, [])
        log.append(event)
        del log[:-200]
        self.touch()

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
        """Return a chat's current messages (edits and deletions applied) plus UI state (a
        group's also lists its ``members``)."""
        with self.cond:
            if not self.chat_exists(chat_id):
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
                "opened": chat_id not in self.unopened,
                "members": [dict(self.users[uid]) for uid in self.groups[chat_id].member_ids]
                if chat_id in self.groups else None,
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
