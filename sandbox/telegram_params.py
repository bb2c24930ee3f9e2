"""Bot API request parameters for the simulator: typed access to values that arrive as JSON or
form strings, and the validation of reply markup and formatted text as Telegram does it."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from sandbox.telegram_markup import ParseError, parse_text, utf16_len
from sandbox.telegram_models import JSON, bad_request

Upload = tuple[str, bytes, str]  # filename, content, content type

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

    def markup(self, inline_only: bool = False) -> JSON | None:
        """Return the validated ``reply_markup`` (None if absent); 400 like Telegram if bad."""
        markup = self.get_json("reply_markup", "reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = _rows(markup, "inline_keyboard", "InlineKeyboardMarkup")
            for row in rows:
                for button in row:
                    check_inline_button(button)
            return {"inline_keyboard": rows}
        if inline_only:
            raise bad_request("inline keyboard expected")
        if "keyboard" in markup:
            rows = _rows(markup, "keyboard", "ReplyKeyboardMarkup")
            norm = [[b if isinstance(b, dict) else {"text": str(b)} for b in row] for row in rows]
            if any(not b.get("text") for row in norm for b in row):
                raise bad_request("can't parse keyboard button: Text must be non-empty")
            return {**markup, "keyboard": norm}
        if markup.get("remove_keyboard") or markup.get("force_reply"):
            return markup
        raise bad_request("can't parse reply keyboard markup JSON object")

    def formatted(self, key: str, entities_key: str, limit: int,
                  too_long: str) -> tuple[str, list[JSON]]:
        """Return a text parameter parsed per ``parse_mode`` and its entities; 400 if bad."""
        raw = self.get_str(key) or ""
        try:
            text, entities = parse_text(raw, self.get_str("parse_mode"))
        except ParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        if not self.get_str("parse_mode") and self.has(entities_key):
            entities = self.get_json(entities_key) or []
        if utf16_len(text) > limit:
            raise bad_request(too_long)
        return text, entities


def normalized_params(raw: JSON) -> JSON:
    """Decode JSON-string fields of a form request so recorded calls are easy to inspect."""
    out: JSON = {}
    for key, value in raw.items():
        if key in JSON_FIELDS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


def _rows(markup: JSON, key: str, type_name: str) -> list[list[Any]]:
    rows = markup[key]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise bad_request(f'field "{key}" of the {type_name} must be an Array of Arrays')
    return rows


def check_inline_button(button: Any) -> None:
    """Raise a 400 like Telegram unless ``button`` is a valid inline keyboard button."""
    if not isinstance(button, dict) or not button.get("text"):
        raise bad_request("can't parse inline keyboard button: Text must be non-empty")
    present = [k for k in _INLINE_ACTIONS if k in button]
    if not present:
        raise bad_request("can't parse inline keyboard button: Text buttons are unallowed "
                          "in the inline keyboard")
    data = button.get("callback_data")
    if data is not None and not (1 <= len(str(data).encode()) <= 64):
        raise bad_request("BUTTON_DATA_INVALID")
