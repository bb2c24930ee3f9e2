"""Text formatting helpers for the Bot API simulator: parse_mode parsing, entities, images."""

from __future__ import annotations

import re
import struct
from typing import Any

Entity = dict[str, Any]


class ParseError(ValueError):
    """Raised when a formatted text cannot be parsed (Telegram: "can't parse entities")."""


def utf16_len(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units (Telegram entity units)."""
    return len(text.encode("utf-16-le")) // 2


_COMMAND_RE = re.compile(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def command_entities(text: str) -> list[Entity]:
    """Return ``bot_command`` entities for every /command in ``text``, like Telegram does."""
    entities: list[Entity] = []
    for match in _COMMAND_RE.finditer(text):
        entities.append(
            {
                "type": "bot_command",
                "offset": utf16_len(text[: match.start()]),
                "length": utf16_len(match.group(0)),
            }
        )
    return entities


class _Builder:
    """Accumulates plain text and entities with UTF-16 offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.entities: list[Entity] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        if self.length > start:
            length = self.length - start
            self.entities.append({"type": kind, "offset": start, "length": length, **extra})

    def result(self) -> tuple[str, list[Entity]]:
        ents = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), ents


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_ATTR_RE = re.compile(r"""([A-Za-z_][\w-]*)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_CHARREF_RE = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|lt|gt|amp|quot);")


def parse_html(text: str) -> tuple[str, list[Entity]]:
    """Parse Telegram-flavoured HTML into plain text and entities; raise ParseError if invalid."""
    out = _Builder()
    stack: list[tuple[str, int, dict[str, str]]] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "<":
            end = text.find(">", i)
            if end == -1:
                raise ParseError(f"Unclosed start tag at byte offset {_byte_offset(text, i)}")
            inner = text[i + 1 : end].strip()
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not stack:
                    raise ParseError(
                        f"Unexpected end tag at byte offset {_byte_offset(text, i)}"
                    )
                top, start, attrs = stack.pop()
                if name != top:
                    raise ParseError(
                        f'Unmatched end tag at byte offset {_byte_offset(text, i)}, '
                        f'expected "</{top}>", found "</{name}>"'
                    )
                _close_html(out, top, start, attrs, stack)
            else:
                name_match = re.match(r"[A-Za-z][\w-]*", inner)
                name = name_match.group(0).lower() if name_match else ""
                if name not in _HTML_TAGS:
                    raise ParseError(
                        f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, i)}'
                    )
                attrs = {
                    m.group(1).lower(): (m.group(2) or "").strip("\"'")
                    for m in _ATTR_RE.finditer(inner[len(name) :])
                }
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise ParseError(
                        f'Tag "span" must have class "tg-spoiler" at byte offset '
                        f"{_byte_offset(text, i)}"
                    )
                stack.append((name, out.length, attrs))
            i = end + 1
        elif ch == "&":
            m = _CHARREF_RE.match(text, i)
            if m:
                ref = m.group(1)
                if ref.startswith("#x") or ref.startswith("#X"):
                    out.add(chr(int(ref[2:], 16)))
                elif ref.startswith("#"):
                    out.add(chr(int(ref[1:])))
                else:
                    out.add({"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[ref])
                i = m.end()
            else:
                out.add("&")
                i += 1
        else:
            j = i
            while j < n and text[j] not in "<&":
                j += 1
            out.add(text[i:j])
            i = j
    if stack:
        raise ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _close_html(
    out: _Builder,
    tag: str,
    start: int,
    attrs: dict[str, str],
    stack: list[tuple[str, int, dict[str, str]]],
) -> None:
    kind = _HTML_TAGS[tag]
    if tag == "a":
        href = attrs.get("href", "")
        if href.startswith("tg://user?id="):
            out.entity("text_mention", start, user={"id": int(href.split("=", 1)[1] or 0)})
        else:
            out.entity("text_link", start, url=href)
    elif tag == "code" and stack and stack[-1][0] == "pre":
        lang = attrs.get("class", "")
        if lang.startswith("language-"):
            stack[-1][2]["language"] = lang[len("language-") :]
        else:
            out.entity("code", start)
    elif tag == "pre":
        if attrs.get("language"):
            out.entity("pre", start, language=attrs["language"])
        else:
            out.entity("pre", start)
    elif tag == "blockquote" and "expandable" in attrs:
        out.entity("expandable_blockquote", start)
    elif tag == "tg-emoji":
        out.entity("custom_emoji", start, custom_emoji_id=attrs.get("emoji-id", ""))
    else:
        out.entity(kind, start)


_MDV2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_MD_NAMES = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}


def parse_markdown(text: str, v2: bool) -> tuple[str, list[Entity]]:
    """Parse MarkdownV2 (``v2``) or legacy Markdown into plain text and entities."""
    out = _Builder()
    stack: list[tuple[str, int, int]] = []  # marker, utf16 start, source index
    i = 0
    n = len(text)
    line_start = True
    quote_start: int | None = None
    while i < n:
        ch = text[i]
        if v2 and line_start and ch == ">":
            quote_start = out.length
            i += 1
            line_start = False
            continue
        line_start = False
        if ch == "\\" and i + 1 < n and (v2 or text[i + 1] in "_*`["):
            nxt = text[i + 1]
            if v2 and not 0 < ord(nxt) < 127:
                raise ParseError(f"Character '{nxt}' can't be escaped")
            out.add(nxt)
            i += 2
            continue
        if ch == "`":
            fence = "```" if text.startswith("```", i) else "`"
            i = _parse_code(text, i, fence, out, v2)
            continue
        marker = ""
        if ch == "*":
            marker = "*"
        elif ch == "_":
            marker = "__" if v2 and text.startswith("__", i) else "_"
        elif v2 and ch == "~":
            marker = "~"
        elif v2 and text.startswith("||", i):
            marker = "||"
        if marker:
            if stack and stack[-1][0] == marker:
                _, start, _src = stack.pop()
                out.entity(_MD_NAMES[marker], start)
            elif any(m == marker for m, _, _ in stack):
                raise ParseError(
                    f"Can't find end of {_MD_NAMES[marker].capitalize()} entity at byte offset "
                    f"{_byte_offset(text, i)}"
                )
            else:
                stack.append((marker, out.length, i))
            i += len(marker)
            continue
        if ch == "[":
            stack.append(("[", out.length, i))
            i += 1
            continue
        if ch == "]" and stack and stack[-1][0] == "[":
            _, start, src = stack.pop()
            if not text.startswith("(", i + 1):
                if v2:
                    raise ParseError("Character ']' is reserved and must be escaped with the "
                                     "preceding '\\'")
                out.entity("text_link", start, url="")
                i += 1
                continue
            j = i + 2
            url: list[str] = []
            while j < n and text[j] != ")":
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                url.append(text[j])
                j += 1
            if j >= n:
                raise ParseError(
                    f"Can't find end of a url at byte offset {_byte_offset(text, src)}"
                )
            out.entity("text_link", start, url="".join(url))
            i = j + 1
            continue
        if v2 and ch in _MDV2_RESERVED:
            raise ParseError(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        if ch == "\n":
            if quote_start is not None:
                out.entity("blockquote", quote_start)
                quote_start = None
            line_start = True
        out.add(ch)
        i += 1
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    if stack:
        marker, _, src = stack[-1]
        if v2:
            name = "TextUrl" if marker == "[" else _MD_NAMES[marker].capitalize()
            raise ParseError(
                f"Can't find end of {name} entity at byte offset {_byte_offset(text, src)}"
            )
        raise ParseError(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, src)}"
        )
    return out.result()


def _parse_code(text: str, i: int, fence: str, out: _Builder, v2: bool) -> int:
    n = len(text)
    j = i + len(fence)
    language = ""
    if fence == "```":
        nl = text.find("\n", j)
        first = text[j:nl] if nl != -1 else ""
        if nl != -1 and first and re.fullmatch(r"[\w+#-]+", first):
            language = first
            j = nl + 1
    start = out.length
    buf: list[str] = []
    while j < n:
        if v2 and text[j] == "\\" and j + 1 < n:
            buf.append(text[j + 1])
            j += 2
            continue
        if text.startswith(fence, j):
            out.add("".join(buf))
            if fence == "`":
                out.entity("code", start)
            elif language:
                out.entity("pre", start, language=language)
            else:
                out.entity("pre", start)
            return j + len(fence)
        buf.append(text[j])
        j += 1
    kind = "Code" if fence == "`" else "Pre"
    if v2:
        raise ParseError(f"Can't find end of {kind} entity at byte offset {_byte_offset(text, i)}")
    offset = _byte_offset(text, i)
    raise ParseError(f"Can't find end of the entity starting at byte offset {offset}")


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[Entity]]:
    """Apply a Bot API ``parse_mode`` ("HTML", "MarkdownV2", "Markdown" or none) to ``text``."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return parse_html(text)
    if mode == "markdownv2":
        return parse_markdown(text, v2=True)
    if mode == "markdown":
        return parse_markdown(text, v2=False)
    if mode:
        raise ParseError(f"Unsupported parse_mode {parse_mode!r}")
    return text, []


def image_size(data: bytes) -> tuple[int, int] | None:
    """Return (width, height) of a PNG, GIF or JPEG image, or None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = struct.unpack("<HH", data[6:10])
        return int(w), int(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h)
            i += 2 + seg_len
    return None
