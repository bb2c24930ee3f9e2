"""Integration tests for the local Telegram Bot API simulator (sandbox/telegram.py)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
from fastapi import FastAPI, Request, Response
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from sandbox.serving import ServedApp, free_port, wait_until
from sandbox.telegram import KnownUser, TelegramSimulator, build_parser

pytestmark = pytest.mark.timeout(60)


def call(client: httpx.Client, sim: TelegramSimulator, method: str,
         **kwargs: Any) -> httpx.Response:
    return client.post(f"/bot{sim.token}/{method}", **kwargs)


def qr_png(payload: str) -> bytes:
    buf = io.BytesIO()
    segno.make(payload, error="m").save(buf, kind="png", scale=4)
    return buf.getvalue()


# --------------------------------------------------------------------------- PTB bot under test
async def start_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    keyboard = InlineKeyboardMarkup(
        [
            [InlineKeyboardButton("Browse catalog", callback_data="catalog")],
            [InlineKeyboardButton("Help", callback_data="help"),
             InlineKeyboardButton("Site", url="https://example.com")],
        ]
    )
    await update.message.reply_text("<b>Welcome</b> to QuickCart!", parse_mode="HTML",
                                    reply_markup=keyboard)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer(f"Opening {query.data}")
    await query.edit_message_text(f"You chose {query.data}")


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.message
    assert message is not None and message.document is not None
    tg_file = await message.document.get_file()
    data = await tg_file.download_as_bytearray()
    lines = len(bytes(data).decode().splitlines())
    await message.reply_text(f"{message.document.file_name}: {lines} lines")


async def qr_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await context.bot.send_chat_action(update.message.chat_id, "upload_photo")
    await update.message.reply_photo(qr_png("QRIS:ORDER-42"), caption="Pay with QRIS")


async def menu_cmd(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    await update.message.reply_text(
        "Menu:", reply_markup=ReplyKeyboardMarkup([["Catalog", "Help"]], resize_keyboard=True)
    )


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.text is not None
    await update.message.reply_text(f"echo: {update.message.text}",
                                    reply_markup=ReplyKeyboardRemove())


class BotRunner:
    """Runs a real PTB Application (polling) in its own thread and event loop."""

    def __init__(self, app: Application) -> None:  # type: ignore[type-arg]
        self.app = app
        self.errors: list[BaseException] = []
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert context.error is not None
        self.errors.append(context.error)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.app.add_error_handler(self._on_error)
        try:
            async with self.app:
                await self.app.start()
                assert self.app.updater is not None
                await self.app.updater.start_polling(poll_interval=0.0, timeout=1)
                self._started.set()
                await self._stop.wait()
                await self.app.updater.stop()
                await self.app.stop()
        except BaseException as exc:  # surfaced by start()/stop()
            self.errors.append(exc)
            self._started.set()

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(15), "PTB application did not start"
        assert not self.errors, self.errors

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive(), "PTB application did not stop"


@pytest.fixture
def bot(sim: TelegramSimulator) -> Iterator[BotRunner]:
    app = (
        ApplicationBuilder()
        .token(sim.token)
        .base_url(sim.bot_base_url)
        .base_file_url(sim.file_base_url)
        .build()
    )
    app.add_handler(CommandHandler("start", start_cmd))
    app.add_handler(CommandHandler("qr", qr_cmd))
    app.add_handler(CommandHandler("menu", menu_cmd))
    app.add_handler(CallbackQueryHandler(on_button))
    app.add_handler(MessageHandler(filters.Document.ALL, on_document))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    runner = BotRunner(app)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
    assert not runner.errors, runner.errors


# --------------------------------------------------------------------------- end to end
def test_ptb_application_end_to_end(sim: TelegramSimulator, bot: BotRunner,
                                     client: httpx.Client) -> None:
    alice = sim.add_user("Alice", username="alice")
    uid = alice["id"]

    # /start -> HTML text with inline keyboard
    sim.send_command(uid, "start")
    welcome = sim.wait_for_bot_message(uid, lambda m: "Welcome" in (m["text"] or ""), timeout=10)
    assert welcome["text"] == "Welcome to QuickCart!"
    assert welcome["entities"] == [{"type": "bold", "offset": 0, "length": 7}]
    buttons = welcome["reply_markup"]["inline_keyboard"]
    assert buttons[0][0] == {"text": "Browse catalog", "callback_data": "catalog"}

    # inline button press -> callback query -> answer + edit of the same message
    mid = welcome["message_id"]
    sim.press_button(uid, mid, "catalog")
    edited = sim.wait_for_bot_message(
        uid, lambda m: m["message_id"] == mid and m["text"] == "You chose catalog", timeout=10
    )
    assert edited["edit_date"] is not None
    assert edited["reply_markup"] is None  # editMessageText without markup drops the keyboard
    answer = sim.wait_for_call("answerCallbackQuery", timeout=5)
    assert answer["ok"] and answer["params"]["text"] == "Opening catalog"
    with pytest.raises(ValueError):
        sim.press_button(uid, mid, "catalog")  # keyboard is gone now

    # document upload -> bot downloads it via getFile + file URL -> replies line count
    sim.send_document(uid, b"CODE-1\nCODE-2\nCODE-3\n", "codes.txt", mime_type="text/plain")
    reply = sim.wait_for_bot_message(uid, lambda m: "lines" in (m["text"] or ""), timeout=10)
    assert reply["text"] == "codes.txt: 3 lines"
    get_file = sim.calls(method="getFile")
    assert len(get_file) == 1 and get_file[0]["ok"]

    # photo: the bot uploads a PNG (multipart) with a caption
    sim.send_command(uid, "qr")
    photo_msg = sim.wait_for_bot_message(uid, lambda m: m["photo"] is not None, timeout=10)
    assert photo_msg["caption"] == "Pay with QRIS"
    png = client.get(photo_msg["photo"]["url"])
    assert png.status_code == 200 and png.content == qr_png("QRIS:ORDER-42")
    assert photo_msg["photo"]["width"] == photo_msg["photo"]["height"] > 0
    send_photo = sim.calls(method="sendPhoto", chat_id=uid)
    assert send_photo[0]["files"][0]["field"] == "photo"
    assert sim.calls(method="sendChatAction")[0]["params"]["action"] == "upload_photo"

    # reply keyboard: shown in the transcript; pressing it is just a text message
    sim.send_command(uid, "menu")
    sim.wait_for_bot_message(uid, lambda m: m["text"] == "Menu:", timeout=10)
    assert sim.transcript(uid)["reply_keyboard"]["keyboard"] == [
        [{"text": "Catalog"}, {"text": "Help"}]
    ]
    sim.send_text(uid, "Help")
    sim.wait_for_bot_message(uid, lambda m: m["text"] == "echo: Help", timeout=10)
    assert sim.transcript(uid)["reply_keyboard"] is None  # removed by ReplyKeyboardRemove

    # the transcript reflects the whole conversation with edits applied
    sim.wait_until_consumed(timeout=5)
    transcript = sim.transcript(uid)
    summary = [(m["from_bot"], m["text"] or m["caption"] or m["document"]["file_name"])
               for m in transcript["messages"]]
    assert summary == [
        (False, "/start"),
        (True, "You chose catalog"),
        (False, "codes.txt"),
        (True, "codes.txt: 3 lines"),
        (False, "/qr"),
        (True, "Pay with QRIS"),
        (False, "/menu"),
        (True, "Menu:"),
        (False, "Help"),
        (True, "echo: Help"),
    ]
    events = [e["type"] for e in transcript["events"]]
    assert events == ["button_press", "callback_answer"]
    assert all(c["ok"] for c in sim.calls() if c["method"] != "getUpdates")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
def test_ptb_retry_after_on_rate_limit(sim: TelegramSimulator) -> None:
    from telegram import Bot

    uid = sim.add_user("Rita")["id"]
    sim.set_rate_limit(True)

    async def scenario() -> None:
        async with Bot(sim.token, base_url=sim.bot_base_url,
                       base_file_url=sim.file_base_url) as tg:
            with pytest.raises(BadRequest, match="Message text is empty"):
                await tg.send_message(uid, " ")
            sent = await tg.send_message(uid, "first")
            assert sent.text == "first" and sent.chat.id == uid
            with pytest.raises(RetryAfter, match="Retry in 1 seconds"):
                await tg.send_message(uid, "second")

    asyncio.run(scenario())


# --------------------------------------------------------------------------- wire-level behaviour
def test_wire_errors(sim: TelegramSimulator, client: httpx.Client) -> None:
    uid = sim.add_user("Bob")["id"]

    r = client.post("/bot999:WRONG/getMe")
    assert r.status_code == 401
    assert r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}

    r = call(client, sim, "noSuchMethod")
    assert r.status_code == 404
    assert r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}

    r = call(client, sim, "sendMessage", json={"chat_id": uid, "text": ""})
    assert r.status_code == 400
    assert r.json() == {"ok": False, "error_code": 400,
                        "description": "Bad Request: message text is empty"}

    r = call(client, sim, "sendMessage", json={"chat_id": 424242, "text": "hi"})
    assert r.json()["description"] == "Bad Request: chat not found"

    r = call(client, sim, "sendMessage",
             json={"chat_id": uid, "text": "<b>oops", "parse_mode": "HTML"})
    assert r.status_code == 400
    assert r.json()["description"].startswith("Bad Request: can't parse entities")

    r = call(client, sim, "sendMessage",
             json={"chat_id": uid, "text": "Total 5.00", "parse_mode": "MarkdownV2"})
    assert "Character '.' is reserved" in r.json()["description"]

    sent = call(client, sim, "sendMessage", json={"chat_id": uid, "text": "Price: 10"}).json()
    assert sent["ok"]
    mid = sent["result"]["message_id"]
    r = call(client, sim, "editMessageText",
             json={"chat_id": uid, "message_id": mid, "text": "Price: 10"})
    assert r.status_code == 400
    assert r.json()["description"].startswith("Bad Request: message is not modified")
    r = call(client, sim, "editMessageText",
             json={"chat_id": uid, "message_id": mid, "text": "Price: 12"})
    assert r.json()["result"]["text"] == "Price: 12" and "edit_date" in r.json()["result"]
    r = call(client, sim, "editMessageText",
             json={"chat_id": uid, "message_id": 9999, "text": "x"})
    assert r.json()["description"] == "Bad Request: message to edit not found"

    r = call(client, sim, "answerCallbackQuery", json={"callback_query_id": "nope"})
    assert r.status_code == 400

    r = call(client, sim, "sendMessage", json={
        "chat_id": uid, "text": "bad kb",
        "reply_markup": {"inline_keyboard": [[{"text": "no action"}]]}})
    assert "Text buttons are unallowed" in r.json()["description"]

    sim.block(uid)
    r = call(client, sim, "sendMessage", json={"chat_id": uid, "text": "hello?"})
    assert r.status_code == 403
    assert r.json()["description"] == "Forbidden: bot was blocked by the user"

    failed = [c for c in sim.calls() if not c["ok"]]
    assert {c["error_code"] for c in failed} == {400, 403, 404}  # 401 calls are not recorded


def test_wire_formats_and_methods(sim: TelegramSimulator, client: httpx.Client) -> None:
    uid = sim.add_user("Carol", username="carol")["id"]

    me = client.get(f"/bot{sim.token}/getMe").json()["result"]
    assert me["is_bot"] is True and me["id"] == int(sim.token.split(":")[0])

    # form-urlencoded, reply_markup arrives as a JSON string
    kb = {"inline_keyboard": [[{"text": "Buy", "callback_data": "buy:1"}]]}
    r = call(client, sim, "sendMessage",
             data={"chat_id": str(uid), "text": "Item 1", "reply_markup": json.dumps(kb)})
    msg = r.json()["result"]
    assert msg["reply_markup"] == kb
    assert msg["chat"] == {"id": uid, "type": "private", "first_name": "Carol",
                           "username": "carol"}
    assert msg["from"]["is_bot"] is True

    # reply keyboards are not echoed in Message (like Telegram) but land in the transcript
    r = call(client, sim, "sendMessage", json={
        "chat_id": uid, "text": "Pick", "reply_to_message_id": msg["message_id"],
        "reply_markup": {"keyboard": [["A", "B"]], "one_time_keyboard": True}})
    assert "reply_markup" not in r.json()["result"]
    assert r.json()["result"]["reply_to_message"]["message_id"] == msg["message_id"]
    assert sim.transcript(uid)["reply_keyboard"]["keyboard"] == [[{"text": "A"}, {"text": "B"}]]
    sim.send_text(uid, "A")  # one-time keyboard hides after a press
    assert sim.transcript(uid)["reply_keyboard"] is None

    # editMessageReplyMarkup / not modified
    r = call(client, sim, "editMessageReplyMarkup",
             json={"chat_id": uid, "message_id": msg["message_id"], "reply_markup": kb})
    assert r.status_code == 400
    r = call(client, sim, "editMessageReplyMarkup",
             json={"chat_id": uid, "message_id": msg["message_id"]})
    assert r.json()["ok"] and "reply_markup" not in r.json()["result"]

    # multipart document upload, getFile, download, re-send by file_id, caption edit
    payload = b"id,price\n1,10\n2,20\n"
    r = call(client, sim, "sendDocument", data={"chat_id": str(uid), "caption": "Report"},
             files={"document": ("report.csv", payload, "text/csv")})
    doc = r.json()["result"]["document"]
    assert doc["file_name"] == "report.csv" and doc["mime_type"] == "text/csv"
    assert doc["file_size"] == len(payload) and doc["file_unique_id"]
    info = call(client, sim, "getFile", json={"file_id": doc["file_id"]}).json()["result"]
    downloaded = client.get(f"/file/bot{sim.token}/{info['file_path']}")
    assert downloaded.content == payload
    assert client.get(f"/file/botWRONG/{info['file_path']}").status_code == 401
    again = call(client, sim, "sendDocument", json={"chat_id": uid, "document": doc["file_id"]})
    assert again.json()["result"]["document"]["file_id"] == doc["file_id"]
    doc_mid = again.json()["result"]["message_id"]
    r = call(client, sim, "editMessageCaption",
             json={"chat_id": uid, "message_id": doc_mid, "caption": "v2"})
    assert r.json()["result"]["caption"] == "v2"

    # photo upload
    png = qr_png("hello")
    r = call(client, sim, "sendPhoto", data={"chat_id": str(uid)},
             files={"photo": ("qr.png", png, "image/png")})
    sizes = r.json()["result"]["photo"]
    assert sizes[-1]["width"] > 0 and sizes[-1]["file_id"] and sizes[-1]["file_unique_id"]

    # deleteMessage applies to the transcript
    assert call(client, sim, "deleteMessage",
                json={"chat_id": uid, "message_id": doc_mid}).json()["result"] is True
    mids = [m["message_id"] for m in sim.transcript(uid)["messages"]]
    assert doc_mid not in mids
    r = call(client, sim, "deleteMessage", json={"chat_id": uid, "message_id": doc_mid})
    assert r.json()["description"] == "Bad Request: message to delete not found"

    # commands, webhook, chat action
    cmds = [{"command": "start", "description": "Start shopping"}]
    assert call(client, sim, "setMyCommands", json={"commands": cmds}).json()["result"] is True
    assert call(client, sim, "getMyCommands").json()["result"] == cmds
    assert call(client, sim, "sendChatAction",
                json={"chat_id": uid, "action": "typing"}).json()["result"] is True
    assert sim.transcript(uid)["chat_action"]["action"] == "typing"
    call(client, sim, "setWebhook", data={"url": "https://shop.example/tg"})
    assert call(client, sim, "getWebhookInfo").json()["result"]["url"] == "https://shop.example/tg"
    r = call(client, sim, "getUpdates")
    assert r.status_code == 409
    call(client, sim, "deleteWebhook")
    assert call(client, sim, "getUpdates").json()["ok"]

    # calls are recorded with decoded params and filterable
    recs = sim.calls(method="sendMessage", chat_id=uid)
    assert recs[0]["params"]["reply_markup"] == kb
    seq = sim.last_call_seq()
    call(client, sim, "getMe")
    assert [c["method"] for c in sim.calls(since=seq)] == ["getMe"]


def test_get_updates_offset_semantics(sim: TelegramSimulator, client: httpx.Client) -> None:
    uid = sim.add_user("Dave")["id"]
    for text in ("one", "two", "three"):
        sim.send_text(uid, text)

    ups = call(client, sim, "getUpdates").json()["result"]
    assert [u["message"]["text"] for u in ups] == ["one", "two", "three"]
    ids = [u["update_id"] for u in ups]
    assert ids == sorted(ids) and len(set(ids)) == 3

    # without offset nothing is confirmed
    assert len(call(client, sim, "getUpdates").json()["result"]) == 3
    # limit
    assert len(call(client, sim, "getUpdates", json={"limit": 2}).json()["result"]) == 2
    # offset confirms everything before it
    ups = call(client, sim, "getUpdates", json={"offset": ids[1]}).json()["result"]
    assert [u["update_id"] for u in ups] == ids[1:]
    # earlier updates are gone for good
    assert [u["update_id"] for u in call(client, sim, "getUpdates").json()["result"]] == ids[1:]
    # negative offset: only the last update remains
    ups = call(client, sim, "getUpdates", json={"offset": -1}).json()["result"]
    assert [u["update_id"] for u in ups] == ids[2:]
    # confirming the last leaves an empty queue
    assert call(client, sim, "getUpdates", json={"offset": ids[2] + 1}).json()["result"] == []
    assert sim.pending_updates() == []

    # commands carry a bot_command entity
    sim.send_command(uid, "buy", "sku-1")
    up = call(client, sim, "getUpdates", json={"offset": ids[2] + 1}).json()["result"][0]
    assert up["message"]["text"] == "/buy sku-1"
    assert up["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 4}]
    assert up["update_id"] == ids[2] + 1


def test_long_poll_returns_as_soon_as_update_arrives(sim: TelegramSimulator,
                                                     client: httpx.Client) -> None:
    uid = sim.add_user("Erin")["id"]

    # empty queue: the call blocks for the timeout, then returns []
    t0 = time.monotonic()
    assert call(client, sim, "getUpdates", json={"timeout": 1}).json()["result"] == []
    assert 0.9 <= time.monotonic() - t0 < 3

    result: dict[str, Any] = {}
    gen = sim.state.poll_generation

    def poll() -> None:
        t = time.monotonic()
        with httpx.Client(base_url=sim.base_url, timeout=30) as c:
            result["body"] = call(c, sim, "getUpdates", json={"timeout": 20}).json()
        result["elapsed"] = time.monotonic() - t

    th = threading.Thread(target=poll)
    th.start()
    try:
        # wait until the long poll is parked in the server, then inject
        assert sim.state.wait_until(lambda: sim.state.poll_generation > gen, 5)
        sim.send_text(uid, "wake up")
    finally:
        th.join(25)
    assert result["body"]["result"][0]["message"]["text"] == "wake up"
    assert result["elapsed"] < 5


def test_concurrent_get_updates_conflict(sim: TelegramSimulator) -> None:
    gen = sim.state.poll_generation
    out: dict[str, Any] = {}

    def first() -> None:
        with httpx.Client(base_url=sim.base_url, timeout=30) as c:
            out["first"] = call(c, sim, "getUpdates", json={"timeout": 10})

    th = threading.Thread(target=first)
    th.start()
    try:
        assert sim.state.wait_until(lambda: sim.state.poll_generation > gen, 5)
        with httpx.Client(base_url=sim.base_url, timeout=30) as c:
            second = call(c, sim, "getUpdates", json={"timeout": 0})
    finally:
        th.join(15)
    assert second.json() == {"ok": True, "result": []}
    assert out["first"].status_code == 409
    assert "terminated by other getUpdates request" in out["first"].json()["description"]


def test_rate_limit_429(sim: TelegramSimulator, client: httpx.Client) -> None:
    a = sim.add_user("Ann")["id"]
    b = sim.add_user("Ben")["id"]
    # off by default
    for i in range(3):
        assert call(client, sim, "sendMessage", json={"chat_id": a, "text": f"m{i}"}).json()["ok"]

    r = client.post("/sandbox/rate-limit", json={"enabled": True, "global_per_second": 3})
    assert r.json() == {"enabled": True, "per_chat_per_second": 1, "global_per_second": 3,
                        "per_group_per_minute": 20, "answered_429": 0}
    assert call(client, sim, "sendMessage", json={"chat_id": a, "text": "x"}).json()["ok"]
    r = call(client, sim, "sendMessage", json={"chat_id": a, "text": "y"})
    assert r.status_code == 429
    assert r.json() == {"ok": False, "error_code": 429,
                        "description": "Too Many Requests: retry after 1",
                        "parameters": {"retry_after": 1}}
    # another chat is still fine until the global budget (3/s) is used up
    assert call(client, sim, "sendMessage", json={"chat_id": b, "text": "x"}).json()["ok"]
    c = sim.add_user("Cid")["id"]
    assert call(client, sim, "sendMessage", json={"chat_id": c, "text": "x"}).json()["ok"]
    d = sim.add_user("Dee")["id"]
    r = call(client, sim, "sendMessage", json={"chat_id": d, "text": "x"})
    assert r.status_code == 429 and r.json()["parameters"]["retry_after"] >= 1

    # after retry_after the chat can be messaged again (wait on the condition, bounded)
    deadline = time.monotonic() + 5
    while True:
        r = call(client, sim, "sendMessage", json={"chat_id": a, "text": "later"})
        if r.json()["ok"] or time.monotonic() > deadline:
            break
        time.sleep(r.json()["parameters"]["retry_after"] / 4)
    assert r.json()["ok"]

    client.post("/sandbox/rate-limit", json={"enabled": False})
    for i in range(3):
        assert call(client, sim, "sendMessage", json={"chat_id": a, "text": f"n{i}"}).json()["ok"]


# --------------------------------------------------------------------------- control API
def test_control_api(sim: TelegramSimulator, client: httpx.Client) -> None:
    u = client.post("/sandbox/users", json={"first_name": "Zed", "username": "zed",
                                            "language_code": "id", "id": 555}).json()
    assert u == {"id": 555, "is_bot": False, "first_name": "Zed", "username": "zed",
                 "language_code": "id"}
    assert [x["id"] for x in client.get("/sandbox/users").json()] == [555]

    m = client.post("/sandbox/users/555/messages", json={"text": "hello"}).json()
    assert m["message"]["from"]["username"] == "zed" and m["update_id"] > 0
    c = client.post("/sandbox/users/555/commands", json={"command": "start", "args": "ref42"})
    assert c.json()["message"]["entities"][0]["type"] == "bot_command"
    d = client.post("/sandbox/users/555/documents",
                    files={"file": ("stock.csv", b"a\nb\n", "text/csv")},
                    data={"caption": "restock"}).json()
    file_id = d["message"]["document"]["file_id"]
    assert d["message"]["caption"] == "restock"
    j = client.post("/sandbox/users/555/documents",
                    json={"filename": "x.txt", "content_text": "1\n2\n3\n"}).json()
    assert j["message"]["document"]["mime_type"] == "text/plain"
    p = client.post("/sandbox/users/555/photos",
                    json={"content_base64": __import__("base64").b64encode(qr_png("p")).decode()})
    assert p.json()["message"]["photo"][0]["width"] > 0
    assert client.post("/sandbox/users/999/messages", json={"text": "x"}).status_code == 404

    # the bot downloads the injected document through getFile
    info = call(client, sim, "getFile", json={"file_id": file_id}).json()["result"]
    assert client.get(f"/file/bot{sim.token}/{info['file_path']}").content == b"a\nb\n"

    # a bot message with inline keyboard, pressed through the control API
    kb = {"inline_keyboard": [[{"text": "Pay", "callback_data": "pay:7"}]]}
    sent = call(client, sim, "sendMessage",
                json={"chat_id": 555, "text": "Order #7", "reply_markup": kb}).json()["result"]
    press = client.post("/sandbox/users/555/callbacks",
                        json={"message_id": sent["message_id"], "callback_data": "pay:7"})
    assert press.status_code == 200
    bad = client.post("/sandbox/users/555/callbacks",
                      json={"message_id": sent["message_id"], "callback_data": "nope"})
    assert bad.status_code == 400
    ups = call(client, sim, "getUpdates").json()["result"]
    assert ups[-1]["callback_query"]["data"] == "pay:7"
    assert ups[-1]["callback_query"]["message"]["message_id"] == sent["message_id"]
    assert client.get("/sandbox/updates").json() == ups

    # wait endpoint: times out with 408, succeeds once the bot edits the message
    r = client.get("/sandbox/chats/555/wait", params={"contains": "Paid", "timeout": 0.2})
    assert r.status_code == 408

    def later() -> None:
        with httpx.Client(base_url=sim.base_url) as c2:
            call(c2, sim, "editMessageText",
                 json={"chat_id": 555, "message_id": sent["message_id"], "text": "Paid ✅"})

    threading.Timer(0.2, later).start()
    r = client.get("/sandbox/chats/555/wait", params={"regex": "^Paid", "timeout": 10})
    assert r.status_code == 200 and r.json()["message_id"] == sent["message_id"]

    tr = client.get("/sandbox/chats/555/transcript").json()
    assert tr["messages"][-1]["text"] == "Paid ✅"
    assert tr["messages"][-1]["reply_markup"] is None
    doc_msg = next(x for x in tr["messages"] if x["document"])
    assert client.get(doc_msg["document"]["url"]).content == b"a\nb\n"

    calls = client.get("/sandbox/calls", params={"method": "editMessageText",
                                                 "chat_id": 555}).json()
    assert len(calls["calls"]) == 1 and calls["last_seq"] >= calls["calls"][0]["seq"]

    page = client.get("/")
    assert page.status_code == 200 and "QuickCart" in page.text

    assert client.post("/sandbox/reset").json() == {"ok": True}
    assert client.get("/sandbox/users").json() == []
    assert client.get("/sandbox/calls").json()["calls"] == []
    # update ids keep increasing across reset so a running bot's offset stays valid
    sim.add_user("Again", user_id=555)
    assert sim.send_text(555, "after reset") is not None
    assert sim.pending_updates()[0]["update_id"] > ups[-1]["update_id"]


def test_parse_modes_produce_telegram_entities(sim: TelegramSimulator,
                                               client: httpx.Client) -> None:
    uid = sim.add_user("Fay")["id"]
    r = call(client, sim, "sendMessage", json={
        "chat_id": uid, "parse_mode": "HTML",
        "text": '<b>Hi 😀 <i>x</i></b> &lt;3 <a href="https://a.b">link</a>'})
    msg = r.json()["result"]
    assert msg["text"] == "Hi 😀 x <3 link"
    assert msg["entities"] == [  # offsets/lengths in UTF-16 code units, like Telegram
        {"type": "bold", "offset": 0, "length": 7},
        {"type": "italic", "offset": 6, "length": 1},
        {"type": "text_link", "offset": 11, "length": 4, "url": "https://a.b"},
    ]
    r = call(client, sim, "sendMessage", json={
        "chat_id": uid, "parse_mode": "MarkdownV2", "text": r"*Total* Rp 5\.000 \- `QR\-1`"})
    msg = r.json()["result"]
    assert msg["text"] == "Total Rp 5.000 - QR-1"
    assert [e["type"] for e in msg["entities"]] == ["bold", "code"]
    r = call(client, sim, "sendMessage",
             json={"chat_id": uid, "parse_mode": "HTML", "text": "<blink>x</blink>"})
    assert r.json()["description"] == (
        'Bad Request: can\'t parse entities: Unsupported start tag "blink" at byte offset 0'
    )


def test_webhook_pushes_updates_with_the_secret_and_retries_until_accepted(
        sim: TelegramSimulator) -> None:
    """While a webhook is set, updates are POSTed to it in order with the secret header; a
    non-2xx answer keeps the update queued (shown in getWebhookInfo) and it is sent again."""
    received: list[tuple[str | None, dict[str, Any]]] = []
    failing = threading.Event()
    failing.set()
    hook = FastAPI()

    @hook.post("/hook")
    async def take(request: Request) -> Response:
        received.append((request.headers.get("x-telegram-bot-api-secret-token"),
                         await request.json()))
        return Response(status_code=500 if failing.is_set() else 200)

    served = ServedApp(hook)
    try:
        api = f"{sim.base_url}/bot{sim.token}"
        assert httpx.post(f"{api}/setWebhook", data={
            "url": served.url + "/hook", "secret_token": "s3cret"}).json()["result"] is True
        # A polling bot is told the webhook is in the way, as Telegram does.
        assert httpx.post(f"{api}/getUpdates").status_code == 409
        uid = sim.add_user("Wendy")["id"]
        sim.send_text(uid, "halo")
        sim.send_text(uid, "lagi")

        wait_until(lambda: len(received) >= 2, what="a retried push", timeout=20)
        assert {r[1]["message"]["text"] for r in received} == {"halo"}  # still the first
        info = httpx.post(f"{api}/getWebhookInfo").json()["result"]
        assert info["pending_update_count"] == 2
        assert info["last_error_message"] == "Wrong response: 500"

        failing.clear()
        wait_until(lambda: httpx.post(f"{api}/getWebhookInfo").json()["result"][
            "pending_update_count"] == 0, what="updates accepted", timeout=20)
        texts = [r[1]["message"]["text"] for r in received]
        assert texts[-2:] == ["halo", "lagi"] and set(texts[:-2]) == {"halo"}
        assert {r[0] for r in received} == {"s3cret"}
        ids = [r[1]["update_id"] for r in received]
        assert ids[-1] == ids[-2] + 1
    finally:
        httpx.post(f"{sim.base_url}/bot{sim.token}/deleteWebhook")
        served.stop()


# --------------------------------------------------------------------------- users the shop knows
def test_known_users_are_listed_from_the_start_and_kept_across_reset() -> None:
    """`users=` (the handle's `--user`): listed before they write, reachable by the bot (the
    shop knows them because they wrote to it once), and listed again after a reset."""
    known = ["900001:Admin Demo:admin_demo", KnownUser(900002, "Budi Demo")]
    with TelegramSimulator(users=known) as sim, \
            httpx.Client(base_url=sim.base_url, timeout=15.0) as client:
        listed = client.get("/sandbox/users").json()
        assert listed == [
            {"id": 900001, "is_bot": False, "first_name": "Admin", "last_name": "Demo",
             "username": "admin_demo", "language_code": "en"},
            {"id": 900002, "is_bot": False, "first_name": "Budi", "last_name": "Demo",
             "language_code": "en"},
        ]
        sent = call(client, sim, "sendMessage", json={"chat_id": 900001, "text": "Pesanan baru"})
        assert sent.status_code == 200
        assert client.get("/sandbox/chats/900001/transcript").json()["opened"] is True

        client.post("/sandbox/reset")
        assert [u["id"] for u in client.get("/sandbox/users").json()] == [900001, 900002]
        assert client.get("/sandbox/chats/900001/transcript").json()["messages"] == []
        sim.reset(keep_known_users=False)
        assert sim.users() == []


def test_a_user_who_never_wrote_is_not_reachable_until_they_do(
        sim: TelegramSimulator, client: httpx.Client) -> None:
    """`opened: false`: as on Telegram, the bot gets "chat not found" for a user who never
    wrote to it, until they send something (e.g. /start)."""
    made = client.post("/sandbox/users", json={"id": 900005, "first_name": "Sari",
                                               "opened": False})
    assert made.status_code == 200
    assert client.get("/sandbox/chats/900005/transcript").json()["opened"] is False
    for method in ("sendMessage", "getChat"):
        refused = call(client, sim, method, json={"chat_id": 900005, "text": "hai"})
        assert refused.status_code == 400
        assert refused.json()["description"] == "Bad Request: chat not found"

    sim.send_command(900005, "start")
    assert call(client, sim, "sendMessage",
                json={"chat_id": 900005, "text": "hai"}).status_code == 200
    assert client.get("/sandbox/chats/900005/transcript").json()["opened"] is True


def test_known_users_endpoint_and_bad_ids(sim: TelegramSimulator, client: httpx.Client) -> None:
    """`POST /sandbox/known-users` does what `--user` does; ids that are not ids get a 400 that
    names the problem, and nothing is created."""
    made = client.post("/sandbox/known-users", json={"users": ["900003:Sari Demo:@sari"]})
    assert made.status_code == 200
    assert made.json() == [{"id": 900003, "is_bot": False, "first_name": "Sari",
                            "last_name": "Demo", "username": "sari", "language_code": "en"}]
    assert call(client, sim, "sendMessage", json={"chat_id": 900003, "text": "x"}).json()["ok"]

    bad = [
        client.post("/sandbox/known-users", json={"users": ["abc:Nobody"]}),
        client.post("/sandbox/known-users", json={"users": ["900004"]}),
        client.post("/sandbox/known-users", json={"users": "900004:Solo"}),
        client.post("/sandbox/users", json={"id": "abc", "first_name": "X"}),
        client.post("/sandbox/users", json={"id": -5, "first_name": "X"}),
    ]
    assert [r.status_code for r in bad] == [400] * 5
    assert bad[0].json()["detail"] == "user id must be a positive whole number, got 'abc'"
    assert "ID:NAME" in bad[1].json()["detail"]
    assert [u["id"] for u in client.get("/sandbox/users").json()] == [900003]


def test_user_option_of_the_command_line(tmp_path: Path) -> None:
    """`python -m sandbox.telegram --user ID:NAME ...` as the launcher runs it; a malformed
    `--user` is refused with one line naming it."""
    parsed = build_parser().parse_args(["--user", "900001:Admin Demo", "--user", "7:Ana:",
                                        "--user", "8::"])
    assert parsed.user == [KnownUser(900001, "Admin Demo"), KnownUser(7, "Ana"),
                           KnownUser(8, "User 8")]  # Telegram needs a first name

    bad = subprocess.run([sys.executable, "-m", "sandbox.telegram", "--user", "Budi"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "python -m sandbox.telegram: error: argument --user: expected ID:NAME or "
        "ID:NAME:USERNAME (e.g. 900002:Budi Demo), got 'Budi'")

    port = free_port()
    log = (tmp_path / "sim.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.telegram", "--port", str(port),
         "--user", "900001:Admin Demo:admin_demo", "--user", "900002:Budi Demo:budi_demo"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def listed() -> list[Any] | None:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "sim.log").read_text())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/sandbox/users", timeout=2).json()
            except httpx.HTTPError:
                return None

        users = wait_until(listed, what="the simulator's users", timeout=30)
        assert [(u["id"], u["first_name"], u.get("last_name"), u.get("username"))
                for u in users] == [(900001, "Admin", "Demo", "admin_demo"),
                                    (900002, "Budi", "Demo", "budi_demo")]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
