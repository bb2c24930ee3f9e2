"""Who is in which chat of the Telegram Bot API simulator, and how chats and messages look on
the wire: simulated users (their private chat id is their user id), group chats (negative ids,
supergroups -100…, with their members), the bot's privacy mode in groups, and the Bot API Chat,
User and Message objects."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sandbox.telegram_models import JSON, KnownUser, SimGroup, SimMessage, parse_group_id
from sandbox.telegram_store import SimStore

# A /command, with the bot it is addressed to captured (telegram_markup's pattern).
_COMMAND = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@([A-Za-z0-9_]{3,32}))?")


class SimChats(SimStore):
    """The simulator's users and group chats on top of the store."""

    def __init__(self, token: str, bot_name: str = "QuickCart Sandbox Bot",
                 bot_username: str = "quickcart_sandbox_bot",
                 users: Iterable[KnownUser] = ()) -> None:
        super().__init__(token, bot_name, bot_username)
        self.add_known_users(users)

    # ------------------------------------------------------------------ basics
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
        """Return the Bot API Chat object of a private or group chat."""
        if chat_id in self.groups:
            return self.groups[chat_id].chat_json()
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

    # ------------------------------------------------------------------ wire objects
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

    # ------------------------------------------------------------------ groups
    def add_group(self, title: str, member_ids: Iterable[int], chat_id: int | None = None,
                  chat_type: str | None = None) -> JSON:
        """Create (or replace) a group chat the bot is in, with simulated users as members;
        return it as {id, type, title, member_ids}. ``chat_id`` defaults to a new supergroup
        id (-100…); ``chat_type`` to "supergroup" for such ids, else "group"."""
        with self.cond:
            members = [int(self.user(uid)["id"]) for uid in member_ids]
            if chat_id is None:
                chat_id = -1_001_000_000_001
                while chat_id in self.groups:
                    chat_id -= 1
            chat_id = parse_group_id(chat_id)
            kind = chat_type or ("supergroup" if str(chat_id).startswith("-100") else "group")
            if kind not in ("group", "supergroup"):
                raise ValueError(f"group type must be 'group' or 'supergroup', got {kind!r}")
            group = SimGroup(chat_id, title.strip() or f"Group {chat_id}", kind,
                             list(dict.fromkeys(members)))
            self.groups[chat_id] = group
            self.messages.setdefault(chat_id, {})
            self.touch()
            return group.as_json()

    def list_groups(self) -> list[JSON]:
        """Return all group chats as {id, type, title, member_ids}."""
        with self.cond:
            return [g.as_json() for g in self.groups.values()]

    def chat_exists(self, chat_id: int) -> bool:
        """Whether the chat is a simulated user's private chat or a group the bot is in."""
        return chat_id in self.users or chat_id in self.groups

    def acting_chat(self, user_id: int, chat_id: int | None) -> int:
        """The chat a user acts in: their private chat (``chat_id`` None or their id) or a
        group they are a member of; KeyError for an unknown user or chat, ValueError for a
        group they are not in."""
        self.user(user_id)
        if chat_id is None or int(chat_id) == int(user_id):
            return int(user_id)
        group = self.groups.get(int(chat_id))
        if group is None:
            raise KeyError(f"unknown chat {chat_id}")
        if int(user_id) not in group.member_ids:
            raise ValueError(f"user {user_id} is not a member of group {chat_id}")
        return group.id

    def reaches_bot(self, msg: SimMessage) -> bool:
        """Privacy mode, on for bots by default: in a group the bot gets only commands (for it,
        or for no bot in particular), messages mentioning it and replies to its own messages;
        it gets everything in a private chat."""
        if msg.chat_id not in self.groups or self.bot_user["can_read_all_group_messages"]:
            return True
        if msg.reply_to_message_id is not None:
            target = self.find_message(msg.chat_id, msg.reply_to_message_id)
            if target is not None and target.from_bot:
                return True
        text = msg.text if msg.text is not None else msg.caption or ""
        name = str(self.bot_user["username"]).lower()
        if f"@{name}" in text.lower():
            return True
        return any(m.group(1) is None or m.group(1).lower() == name
                   for m in _COMMAND.finditer(text))
