"""Business refusals: a code the message catalog turns into polite text, plus its parameters."""

from __future__ import annotations

from typing import Any


class ShopError(Exception):
    """A request the shop refuses; nothing was changed. `code` keys the message catalog."""

    def __init__(self, code: str, /, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored as an intent's recorded outcome."""
        return {"status": "rejected", "error": self.code, "params": self.params}
