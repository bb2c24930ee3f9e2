"""Data types of the Telegram Bot API simulator: errors, stored files and chat messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    """A message in a chat (private or group), sent by a user (``sender_id``) or the bot."""

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


MAX_USER_ID = 2**52  # Telegram user ids fit in 52 bits


def parse_user_id(value: object) -> int:
    """Return ``value`` as a Telegram user id or raise ValueError saying what is wrong."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < MAX_USER_ID:
        raise ValueError(f"user id must be a positive whole number, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class KnownUser:
    """A user the shop already knows: listed in the web chat before they ever write to the bot."""

    id: int
    name: str
    username: str | None = None

    @classmethod
    def parse(cls, spec: str) -> KnownUser:
        """Parse ``ID:NAME`` or ``ID:NAME:USERNAME`` (``900002:Budi Demo:budi_demo``); an empty
        NAME becomes ``User <ID>`` (Telegram needs one), an empty USERNAME means none."""
        parts = [part.strip() for part in spec.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"expected ID:NAME or ID:NAME:USERNAME (e.g. 900002:Budi Demo), "
                             f"got {spec!r}")
        user_id = parse_user_id(parts[0])
        username = parts[2].lstrip("@") if len(parts) == 3 else ""
        return cls(user_id, parts[1] or f"User {user_id}", username or None)

    def names(self) -> tuple[str, str | None]:
        """Split the name into Telegram's first_name and last_name."""
        first, _, last = self.name.partition(" ")
        return first, last.strip() or None


SUPERGROUP_IDS = -1_000_000_000_000  # supergroup chat ids are -100 followed by ten digits


def parse_group_id(value: object) -> int:
    """Return ``value`` as a group chat id (negative, like Telegram's) or raise ValueError."""
    text = str(value).strip()
    digits = text[1:] if text.startswith("-") else ""
    if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) < MAX_USER_ID:
        raise ValueError(f"group chat id must be a negative whole number (supergroups: -100…),"
                         f" got {text!r}")
    return -int(digits)


@dataclass
class SimGroup:
    """A group chat the bot is in: a negative id, a title and the simulated users in it."""

    id: int
    title: str
    type: str  # "group" or "supergroup"
    member_ids: list[int]

    def chat_json(self) -> JSON:
        """Return the Bot API Chat object of the group."""
        return {"id": self.id, "type": self.type, "title": self.title}

    def as_json(self) -> JSON:
        """Return the group as the control API shows it: its Chat object and member ids."""
        return {**self.chat_json(), "member_ids": list(self.member_ids)}
