"""The Telegram Bot API simulator's control API: the ``/sandbox/*`` JSON endpoints that tests
and the web chat page drive it with.

Users and group chats are created here; a user then sends, uploads, edits and presses buttons
in their private chat, or, with ``chat_id``, in a group they are a member of. Transcripts,
recorded calls, pending updates and waits read what happened; flood limits and reset set it up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from sandbox.telegram_models import KnownUser, parse_group_id, parse_user_id
from sandbox.telegram_state import JSON, SimState

__all__ = ["add_control_routes", "wait_bot_message"]

T = TypeVar("T")

Upload = tuple[bytes, str, str | None, str | None, Any]  # data, name, mime, caption, chat_id


# ---------------------------------------------------------------------- request parsing
async def _upload_from_request(request: Request, kind: str) -> Upload:
    """Read an injected upload: multipart ``file`` (+caption, chat_id) or JSON with
    base64/text content."""
    ctype = request.headers.get("content-type", "").lower()
    if "multipart/form-data" in ctype:
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "multipart field 'file' is required")
        caption = form.get("caption")
        return (await upload.read(), upload.filename or f"{kind}.bin", upload.content_type,
                caption if isinstance(caption, str) and caption else None, form.get("chat_id"))
    body = await _json_body(request)
    if "content_base64" in body:
        data = base64.b64decode(body["content_base64"])
    elif "content_text" in body:
        data = str(body["content_text"]).encode()
    else:
        raise HTTPException(400, "content_base64 or content_text is required")
    default_name = "photo.png" if kind == "photo" else "file.txt"
    return (data, str(body.get("filename") or default_name), body.get("mime_type"),
            body.get("caption"), body.get("chat_id"))


async def _json_body(request: Request) -> JSON:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "invalid JSON body") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "JSON object expected")
    return data


def _valid(parse: Callable[[Any], T], value: Any) -> T:
    """``parse(value)``, its ValueError answered as a 400 that says what is wrong."""
    try:
        return parse(value)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _chat(value: Any) -> int | None:
    """The optional ``chat_id`` a user acts in (absent: their private chat)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if not text.lstrip("-").isdigit():
        raise HTTPException(400, f"chat_id must be a whole number, got {text!r}")
    return int(text)


@contextlib.contextmanager
def _as_http() -> Iterator[None]:
    """An unknown user, chat or message is a 404; a request that cannot be done a 400."""
    try:
        yield
    except KeyError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _text_predicate(contains: str | None, regex: str | None) -> Callable[[JSON], bool]:
    pattern = re.compile(regex) if regex else None

    def check(msg: JSON) -> bool:
        content = msg.get("text") or msg.get("caption") or ""
        if contains is not None and contains not in content:
            return False
        return not (pattern is not None and not pattern.search(content))

    return check


# ---------------------------------------------------------------------- routes
def add_control_routes(app: FastAPI, st: SimState) -> None:
    """Register the ``/sandbox/*`` control endpoints on `app`."""

    def _user_or_404(user_id: int) -> None:
        try:
            st.user(user_id)
        except KeyError:
            raise HTTPException(404, f"unknown user {user_id}") from None

    @app.get("/sandbox/info")
    def info() -> JSON:
        with st.cond:
            return {
                "bot": dict(st.bot_user),
                "webhook": dict(st.webhook),
                "rate_limit": dict(st.rate_limit),
                "pending_updates": len(st.updates),
                "users": len(st.users),
                "groups": len(st.groups),
                "calls": st.last_call_seq(),
                "commands": st.commands.get(json.dumps([{"type": "default"}, ""],
                                                       sort_keys=True), []),
            }

    @app.get("/sandbox/users")
    def users() -> list[JSON]:
        return st.list_users()

    @app.post("/sandbox/users")
    async def create_user(request: Request) -> JSON:
        body = await _json_body(request)
        uid = body.get("id")
        return st.add_user(
            first_name=str(body.get("first_name") or "Tester"),
            user_id=_valid(parse_user_id, uid) if uid not in (None, "") else None,
            username=body.get("username") or None,
            language_code=body.get("language_code") or "en",
            last_name=body.get("last_name") or None,
            opened=bool(body.get("opened", True)),
        )

    @app.post("/sandbox/known-users")
    async def add_known_users(request: Request) -> list[JSON]:
        """What ``--user ID:NAME[:USERNAME]`` does: users the shop knows, kept across reset."""
        specs = (await _json_body(request)).get("users")
        if not isinstance(specs, list):
            raise HTTPException(400, 'expected {"users": ["ID:NAME[:USERNAME]", ...]}')
        return st.add_known_users([_valid(KnownUser.parse, str(spec)) for spec in specs])

    @app.get("/sandbox/groups")
    def groups() -> list[JSON]:
        return st.list_groups()

    @app.post("/sandbox/groups")
    async def create_group(request: Request) -> JSON:
        """A group chat the bot is in: {title, member_ids, id?, type?}; the same id again
        replaces its title and members."""
        body = await _json_body(request)
        members = body.get("member_ids") or []
        if not isinstance(members, list):
            raise HTTPException(400, "member_ids must be a list of user ids")
        gid = body.get("id")
        with _as_http():
            return st.add_group(str(body.get("title") or ""),
                                [_valid(parse_user_id, m) for m in members],
                                _valid(parse_group_id, gid) if gid not in (None, "") else None,
                                body.get("type") or None)

    @app.post("/sandbox/users/{user_id}/block")
    async def block_user(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        st.set_blocked(user_id, bool(body.get("blocked", True)))
        return {"ok": True}

    @app.post("/sandbox/users/{user_id}/messages")
    async def inject_text(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        text = str(body.get("text") or "")
        if not text:
            raise HTTPException(400, "text is required")
        with _as_http():
            return st.send_text(user_id, text, body.get("reply_to_message_id"),
                                _chat(body.get("chat_id")))

    @app.post("/sandbox/users/{user_id}/commands")
    async def inject_command(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        command = str(body.get("command") or "").lstrip("/")
        if not command:
            raise HTTPException(400, "command is required")
        args = str(body.get("args") or "")
        with _as_http():
            return st.send_text(user_id, f"/{command} {args}".strip(),
                                chat_id=_chat(body.get("chat_id")))

    async def inject_upload(user_id: int, kind: str, request: Request) -> JSON:
        _user_or_404(user_id)
        data, name, mime, caption, chat_id = await _upload_from_request(request, kind)
        if not data:
            raise HTTPException(400, "empty files cannot be sent")
        with _as_http():
            return st.send_upload(user_id, kind, data, name, mime, caption, _chat(chat_id))

    @app.post("/sandbox/users/{user_id}/documents")
    async def inject_document(user_id: int, request: Request) -> JSON:
        return await inject_upload(user_id, "document", request)

    @app.post("/sandbox/users/{user_id}/photos")
    async def inject_photo(user_id: int, request: Request) -> JSON:
        return await inject_upload(user_id, "photo", request)

    @app.post("/sandbox/users/{user_id}/callbacks")
    async def inject_callback(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        with _as_http():
            return st.press_button(user_id, int(body["message_id"]), str(body["callback_data"]),
                                   _chat(body.get("chat_id")))

    @app.post("/sandbox/users/{user_id}/edits")
    async def inject_edit(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        with _as_http():
            return st.edit_user_text(user_id, int(body["message_id"]), str(body["text"]),
                                     _chat(body.get("chat_id")))

    @app.get("/sandbox/calls")
    def calls(method: str | None = None, chat_id: str | None = None, since: int = 0) -> JSON:
        return {"calls": st.list_calls(method, chat_id, since), "last_seq": st.last_call_seq()}

    @app.get("/sandbox/updates")
    def updates() -> list[JSON]:
        return st.pending_updates()

    @app.get("/sandbox/chats/{chat_id}/transcript")
    def transcript(chat_id: int, since_message_id: int = 0, after_version: int = -1,
                   timeout: float = 0.0) -> JSON:
        if after_version >= 0 and timeout > 0:
            st.wait_until(lambda: st.version > after_version, min(timeout, 30.0))
        with _as_http():
            return st.transcript(chat_id, since_message_id)

    @app.get("/sandbox/chats/{chat_id}/wait")
    def wait(chat_id: int, contains: str | None = None, regex: str | None = None,
             after_message_id: int = 0, timeout: float = 10.0) -> JSONResponse:
        check = _text_predicate(contains, regex)
        found = wait_bot_message(st, chat_id, check, min(timeout, 60.0), after_message_id)
        if found is None:
            return JSONResponse({"detail": "timeout waiting for bot message"}, status_code=408)
        return JSONResponse(found)

    @app.post("/sandbox/rate-limit")
    async def rate_limit(request: Request) -> JSON:
        body = await _json_body(request)
        return st.set_rate_limit(bool(body.get("enabled", True)),
                                 body.get("per_chat_per_second"), body.get("global_per_second"),
                                 body.get("per_group_per_minute"))

    @app.post("/sandbox/reset")
    def reset() -> JSON:
        st.reset()
        return {"ok": True}

    @app.get("/sandbox/files/{file_id}")
    def sandbox_file(file_id: str, download: bool = False) -> Response:
        with st.cond:
            stored = st.files.get(file_id)
        if stored is None:
            raise HTTPException(404, "unknown file")
        headers = {}
        if stored.file_name:
            disposition = "attachment" if download else "inline"
            headers["Content-Disposition"] = (
                f"{disposition}; filename*=UTF-8''{quote(stored.file_name, safe='')}"
            )
        return Response(stored.data, media_type=stored.mime_type or "application/octet-stream",
                        headers=headers)


def wait_bot_message(st: SimState, chat_id: int, predicate: Callable[[JSON], bool],
                     timeout: float, after_message_id: int = 0) -> JSON | None:
    """Wait until a live bot message (current content) in ``chat_id`` satisfies ``predicate``."""

    def probe() -> JSON | None:
        for msg in st.bot_messages(chat_id):
            if msg["message_id"] > after_message_id and predicate(msg):
                return msg
        return None

    result: JSON | None = st.wait_until(probe, timeout)
    return result
