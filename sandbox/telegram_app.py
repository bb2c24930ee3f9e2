"""HTTP face of the Telegram Bot API simulator: the Bot API wire format, the web chat page, and
the ``/sandbox/...`` control API that tests and the page drive (sandbox/telegram_control.py)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sandbox.telegram_botapi import BotApi
from sandbox.telegram_control import add_control_routes, wait_bot_message
from sandbox.telegram_params import Upload
from sandbox.telegram_state import JSON, SimState

__all__ = ["DEFAULT_TOKEN", "create_app", "wait_bot_message"]

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

    add_control_routes(app, st)
    return app
