"""HTTP face of the Telegram Bot API simulator: the Bot API wire format, the ``/sandbox/...``
control API that tests and the web chat page drive, and the page itself."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sandbox.telegram_botapi import BotApi
from sandbox.telegram_models import KnownUser, parse_user_id
from sandbox.telegram_params import Upload
from sandbox.telegram_state import JSON, SimState

__all__ = ["DEFAULT_TOKEN", "create_app", "wait_bot_message"]

T = TypeVar("T")

DEFAULT_TOKEN = "123456789:SANDBOX-quickcart-test-token"  # noqa: S105 - fake sandbox token
STATIC_DIR = Path(__file__).resolve().parent / "static"


# ---------------------------------------------------------------------- request parsing
async def _read_params(request: Request) -> tuple[JSON, dict[str, Upload]] | JSON:
    """Collect query, JSON, urlencoded and multipart parameters (or an error body)."""
    raw: JSON = dict(request.query_params)
    uploads: dict[str, Upload] = {}
    ctype = request.headers.get("content-type", "").lower()
    if "application/json" in ctype:
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                return {"ok": False, "error_code": 400,
                        "description": "Bad Request: can't parse JSON encoded request body"}
            if not isinstance(data, dict):
                return {"ok": False, "error_code": 400,
                        "description": "Bad Request: JSON object expected"}
            raw.update(data)
    elif "multipart/form-data" in ctype or "application/x-www-form-urlencoded" in ctype:
        form = await request.form(max_files=50, max_fields=500)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read()
                uploads[key] = (value.filename or key, content,
                                value.content_type or "application/octet-stream")
            else:
                raw[key] = value
    return raw, uploads


async def _upload_from_request(request: Request, kind: str) -> tuple[bytes, str, str | None,
                                                                      str | None]:
    """Read an injected upload: multipart ``file`` (+caption) or JSON with base64/text content."""
    ctype = request.headers.get("content-type", "").lower()
    if "multipart/form-data" in ctype:
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "multipart field 'file' is required")
        caption = form.get("caption")
        return (await upload.read(), upload.filename or f"{kind}.bin", upload.content_type,
                caption if isinstance(caption, str) and caption else None)
    body = await _json_body(request)
    if "content_base64" in body:
        data = base64.b64decode(body["content_base64"])
    elif "content_text" in body:
        data = str(body["content_text"]).encode()
    else:
        raise HTTPException(400, "content_base64 or content_text is required")
    default_name = "photo.png" if kind == "photo" else "file.txt"
    return data, str(body.get("filename") or default_name), body.get("mime_type"), body.get(
        "caption")


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


def _text_predicate(contains: str | None, regex: str | None) -> Callable[[JSON], bool]:
    pattern = re.compile(regex) if regex else None

    def check(msg: JSON) -> bool:
        content = msg.get("text") or msg.get("caption") or ""
        if contains is not None and contains not in content:
            return False
        return not (pattern is not None and not pattern.search(content))

    return check


# ---------------------------------------------------------------------- app factory
# Methods that only read or change the simulator's state: run on the event loop, not a worker
# thread. The thread hop was two fifths of the simulator's CPU per message, which the shop's
# benchmarks pay on the same two cores as the shop (real Telegram runs elsewhere). The others
# can block: getUpdates long-polls, and a file parameter may be a URL to fetch.
_QUICK_METHODS = frozenset({
    "getMe", "getChat", "sendMessage", "sendChatAction", "editMessageText",
    "editMessageCaption", "editMessageReplyMarkup", "deleteMessage", "answerCallbackQuery",
})


def create_app(token: str = DEFAULT_TOKEN, state: SimState | None = None) -> FastAPI:
    """Build the simulator FastAPI app (Bot API + /sandbox control API + web chat)."""
    st = state or SimState(token)
    api = BotApi(st)
    app = FastAPI(title="QuickCart Telegram Bot API simulator", docs_url="/sandbox/docs",
                  openapi_url="/sandbox/openapi.json", redoc_url=None)
    app.state.sim = st
    app.state.api = api

    # ------------------------------------------------------------ Bot API wire format
    @app.api_route("/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_method(token: str, method: str, request: Request) -> JSONResponse:
        parsed = await _read_params(request)
        if isinstance(parsed, dict):
            return JSONResponse(parsed, status_code=int(parsed["error_code"]))
        raw, uploads = parsed
        if method in _QUICK_METHODS and not uploads:
            body = api.call(token, method, raw, uploads)
        else:
            body = await run_in_threadpool(api.call, token, method, raw, uploads)
        status = 200 if body.get("ok") else int(body["error_code"])
        return JSONResponse(body, status_code=status)

    @app.get("/file/bot{token}/{file_path:path}")
    def bot_file(token: str, file_path: str) -> Response:
        if token != st.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"},
                                status_code=401)
        with st.cond:
            stored = st.files_by_path.get(file_path)
        if stored is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"},
                                status_code=404)
        return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")

    # ------------------------------------------------------------ web chat
    @app.get("/", response_class=HTMLResponse)
    def chat_page() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "chat.html").read_text(encoding="utf-8"))

    # ------------------------------------------------------------ control API
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
        try:
            return st.send_text(user_id, text, body.get("reply_to_message_id"))
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.post("/sandbox/users/{user_id}/commands")
    async def inject_command(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        command = str(body.get("command") or "").lstrip("/")
        if not command:
            raise HTTPException(400, "command is required")
        args = str(body.get("args") or "")
        return st.send_text(user_id, f"/{command} {args}".strip())

    async def inject_upload(user_id: int, kind: str, request: Request) -> JSON:
        _user_or_404(user_id)
        data, name, mime, caption = await _upload_from_request(request, kind)
        if not data:
            raise HTTPException(400, "empty files cannot be sent")
        return st.send_upload(user_id, kind, data, name, mime, caption)

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
        try:
            return st.press_button(user_id, int(body["message_id"]), str(body["callback_data"]))
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/sandbox/users/{user_id}/edits")
    async def inject_edit(user_id: int, request: Request) -> JSON:
        body = await _json_body(request)
        _user_or_404(user_id)
        try:
            return st.edit_user_text(user_id, int(body["message_id"]), str(body["text"]))
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None

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
        try:
            return st.transcript(chat_id, since_message_id)
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from None

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

    return app


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
