"""Group chats in the Telegram Bot API simulator (sandbox/telegram.py): negative chat ids,
members who write, reply and press buttons there, the bot's messages to the group on the real
wire format, privacy mode, and a real python-telegram-bot Application answering in a group."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from telegram import Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes, MessageHandler, filters

from sandbox.telegram import TelegramSimulator
from tests.integration.test_telegram_sandbox import BotRunner

pytestmark = pytest.mark.timeout(60)


def call(client: httpx.Client, sim: TelegramSimulator, method: str,
         **params: Any) -> httpx.Response:
    return client.post(f"/bot{sim.token}/{method}", json=params)


def staff(sim: TelegramSimulator) -> tuple[int, int, int]:
    """Two shop staff (Ana, Budi) and a stranger (Eve), all simulated users."""
    ana = sim.add_user("Ana", user_id=801, username="ana")["id"]
    budi = sim.add_user("Budi", user_id=802)["id"]
    stranger = sim.add_user("Eve", user_id=803)["id"]
    return ana, budi, stranger


def test_groups_are_created_with_negative_ids_and_listed(sim: TelegramSimulator,
                                                          client: httpx.Client) -> None:
    ana, budi, _ = staff(sim)
    made = sim.add_group("Staf Toko", [ana, budi])
    assert made == {"id": -1001000000001, "type": "supergroup", "title": "Staf Toko",
                    "member_ids": [ana, budi]}
    assert sim.add_group("Kedua", [ana])["id"] == -1001000000002
    basic = client.post("/sandbox/groups", json={"id": -4123, "title": "Lama",
                                                 "member_ids": [budi]})
    assert basic.json() == {"id": -4123, "type": "group", "title": "Lama", "member_ids": [budi]}
    assert [g["id"] for g in client.get("/sandbox/groups").json()] == [
        -1001000000001, -1001000000002, -4123]
    assert client.get("/sandbox/info").json()["groups"] == 3

    # the same id again replaces the title and members
    again = client.post("/sandbox/groups", json={"id": -4123, "title": "Baru",
                                                 "member_ids": [ana, budi]}).json()
    assert again["title"] == "Baru" and again["member_ids"] == [ana, budi]

    refused = [
        client.post("/sandbox/groups", json={"id": 4123, "title": "x", "member_ids": [ana]}),
        client.post("/sandbox/groups", json={"id": "abc", "title": "x"}),
        client.post("/sandbox/groups", json={"title": "x", "member_ids": "801"}),
        client.post("/sandbox/groups", json={"title": "x", "type": "channel"}),
    ]
    assert [r.status_code for r in refused] == [400] * 4
    assert "negative whole number" in refused[0].json()["detail"]
    assert client.post("/sandbox/groups", json={"title": "x", "member_ids": [999]}
                       ).status_code == 404  # not a simulated user
    assert len(sim.groups()) == 3

    sim.reset()
    assert sim.groups() == [] and client.get("/sandbox/groups").json() == []


def test_the_bot_writes_to_a_group_on_the_real_wire_format(sim: TelegramSimulator,
                                                            client: httpx.Client) -> None:
    ana, budi, _ = staff(sim)
    group = sim.add_group("Staf Toko", [ana, budi])["id"]

    sent = call(client, sim, "sendMessage", chat_id=group, text="<b>Stok menipis</b>",
                parse_mode="HTML",
                reply_markup={"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]})
    assert sent.status_code == 200, sent.text
    message = sent.json()["result"]
    assert message["chat"] == {"id": group, "type": "supergroup", "title": "Staf Toko"}
    assert message["from"]["is_bot"] is True and message["message_id"] == 1
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": 12}]
    photo = client.post(f"/bot{sim.token}/sendPhoto", data={"chat_id": str(group),
                                                            "caption": "QR"},
                        files={"photo": ("qr.png", b"\x89PNG\r\n\x1a\nfake", "image/png")})
    assert photo.status_code == 200 and photo.json()["result"]["chat"]["id"] == group
    edited = call(client, sim, "editMessageText", chat_id=group, message_id=1, text="Diisi")
    assert edited.json()["result"]["text"] == "Diisi"
    chat = call(client, sim, "getChat", chat_id=group).json()["result"]
    assert chat["type"] == "supergroup" and chat["title"] == "Staf Toko"
    assert call(client, sim, "deleteMessage", chat_id=group, message_id=2).json()["ok"]

    # the group's transcript is its own, with the members listed; private chats are untouched
    transcript = client.get(f"/sandbox/chats/{group}/transcript").json()
    assert [(m["message_id"], m["text"]) for m in transcript["messages"]] == [(1, "Diisi")]
    assert transcript["chat"]["title"] == "Staf Toko"
    assert [u["id"] for u in transcript["members"]] == [ana, budi]
    assert sim.transcript(ana)["messages"] == [] and sim.transcript(ana)["members"] is None
    assert [c["params"]["text"] for c in sim.calls("sendMessage", chat_id=group)] == [
        "<b>Stok menipis</b>"]

    # a group the simulator does not know (or the bot is not in): Telegram's answer
    for unknown in (-1009999999999, -42):
        refused = call(client, sim, "sendMessage", chat_id=unknown, text="halo")
        assert refused.status_code == 400
        assert refused.json() == {"ok": False, "error_code": 400,
                                  "description": "Bad Request: chat not found"}
    assert client.get("/sandbox/chats/-42/transcript").status_code == 404

    # groups have Telegram's own flood limit: 20 messages a minute (here 2)
    sim.set_rate_limit(True, per_chat_per_second=100, per_group_per_minute=2)
    assert call(client, sim, "sendMessage", chat_id=group, text="a").status_code == 200
    assert call(client, sim, "sendMessage", chat_id=group, text="b").status_code == 200
    limited = call(client, sim, "sendMessage", chat_id=group, text="c")
    assert limited.status_code == 429 and limited.json()["parameters"]["retry_after"] > 1
    assert call(client, sim, "sendMessage", chat_id=ana, text="d").status_code == 200


def test_members_write_reply_and_press_buttons_in_a_group(sim: TelegramSimulator,
                                                          client: httpx.Client) -> None:
    ana, budi, stranger = staff(sim)
    group = sim.add_group("Staf Toko", [ana, budi])["id"]
    notice = call(client, sim, "sendMessage", chat_id=group, text="Tiket #1",
                  reply_markup={"inline_keyboard": [[{"text": "Tutup",
                                                      "callback_data": "sup:x:1"}]]}
                  ).json()["result"]

    # a member's reply to the bot: message.chat is the group, message.from the member
    reply = sim.send_text(ana, "Sudah kami cek", reply_to_message_id=notice["message_id"],
                          chat_id=group)
    assert reply["chat"]["id"] == group and reply["from"]["id"] == ana
    assert reply["reply_to_message"]["message_id"] == notice["message_id"]
    assert reply["reply_to_message"]["from"]["is_bot"] is True
    command = client.post(f"/sandbox/users/{budi}/commands",
                          json={"command": "stats", "chat_id": group}).json()
    assert command["message"]["text"] == "/stats" and command["update_id"] > 0
    updates = sim.pending_updates()
    assert [(u["message"]["chat"]["type"], u["message"]["from"]["id"]) for u in updates] == [
        ("supergroup", ana), ("supergroup", budi)]

    # a press on the group message's button: the query's message is in the group
    query_id = sim.press_button(budi, notice["message_id"], "sup:x:1", chat_id=group)
    query = sim.pending_updates()[-1]["callback_query"]
    assert query["id"] == query_id and query["from"]["id"] == budi
    assert query["message"]["chat"]["id"] == group
    assert call(client, sim, "answerCallbackQuery", callback_query_id=query_id,
                text="Ditutup").json()["ok"]
    events = sim.transcript(group)["events"]
    assert [(e["type"], e.get("text")) for e in events] == [("button_press", "Tutup"),
                                                             ("callback_answer", "Ditutup")]
    assert sim.transcript(budi)["events"] == []  # not in the member's private chat

    # an edit of a member's own message in the group
    edited = sim.edit_text(ana, reply["message_id"], "Sudah kami cek ✅", chat_id=group)
    assert edited["chat"]["id"] == group and edited["text"] == "Sudah kami cek ✅"
    with pytest.raises(KeyError):
        sim.edit_text(budi, reply["message_id"], "bukan punyaku", chat_id=group)

    # writing in a group does not open the member's private chat for the bot
    quiet = sim.add_user("Sari", user_id=804, opened=False)["id"]
    sim.add_group("Staf Toko", [ana, budi, quiet], chat_id=group)
    sim.send_text(quiet, "/help", chat_id=group)
    assert call(client, sim, "sendMessage", chat_id=quiet, text="x").status_code == 400

    # only members write there; an unknown group is a 404, a reply to nothing too
    with pytest.raises(ValueError, match="not a member"):
        sim.send_text(stranger, "halo", chat_id=group)
    assert client.post(f"/sandbox/users/{stranger}/messages",
                       json={"text": "halo", "chat_id": group}).status_code == 400
    assert client.post(f"/sandbox/users/{ana}/messages",
                       json={"text": "halo", "chat_id": -5}).status_code == 404
    assert client.post(f"/sandbox/users/{ana}/messages",
                       json={"text": "halo", "chat_id": group,
                             "reply_to_message_id": 999}).status_code == 404
    assert client.post(f"/sandbox/users/{ana}/messages",
                       json={"text": "halo", "chat_id": "grup"}).status_code == 400
    photo = client.post(f"/sandbox/users/{ana}/photos", data={"chat_id": str(group)},
                        files={"file": ("s.png", b"\x89PNG\r\n\x1a\nfake", "image/png")})
    assert photo.status_code == 200 and photo.json()["message"]["chat"]["id"] == group


def test_privacy_mode_keeps_the_group_talk_from_the_bot(sim: TelegramSimulator,
                                                        client: httpx.Client) -> None:
    """As Telegram's default for bots: commands, mentions and replies to the bot reach it;
    members talking among themselves are shown in the group but never reach the bot."""
    ana, budi, _ = staff(sim)
    group = sim.add_group("Staf Toko", [ana, budi])["id"]
    bot_msg = call(client, sim, "sendMessage", chat_id=group, text="Tiket #1").json()["result"]

    def delivered(user: int, text: str, reply_to: int | None = None) -> bool:
        return sim.state.send_text(user, text, reply_to, group)["update_id"] is not None

    talk = sim.send_text(ana, "siapa yang jaga hari ini?", chat_id=group)
    assert not delivered(budi, "saya", reply_to=talk["message_id"])  # a reply to a member
    assert not delivered(ana, "/stats@other_bot")
    assert not delivered(ana, "@someone lihat ini")
    assert delivered(ana, "/stats")
    assert delivered(ana, "/stats@QuickCart_Sandbox_Bot week")
    assert delivered(budi, "tolong cek @quickcart_sandbox_bot")
    assert delivered(budi, "sudah", reply_to=bot_msg["message_id"])
    assert [u["message"]["text"] for u in sim.pending_updates()] == [
        "/stats", "/stats@QuickCart_Sandbox_Bot week", "tolong cek @quickcart_sandbox_bot",
        "sudah"]
    assert len(sim.transcript(group)["messages"]) == 9  # everything is shown in the group
    assert sim.state.send_text(ana, "halo saja")["update_id"] is not None  # private: all


async def _answer_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.reply_to_message is not None
    assert update.effective_user is not None
    await message.reply_text(f"{update.effective_user.first_name} menjawab tiket "
                             f"{message.reply_to_message.text}")


async def _group_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_chat is not None and update.effective_message is not None
    await update.effective_message.reply_text(
        f"{update.effective_chat.type} {update.effective_chat.title}")


def test_a_ptb_bot_answers_in_a_group(sim: TelegramSimulator) -> None:
    """python-telegram-bot parses the group updates and its group filters match them."""
    ana, budi, _ = staff(sim)
    group = sim.add_group("Staf Toko", [ana, budi])["id"]
    app = ApplicationBuilder().token(sim.token).base_url(sim.bot_base_url) \
        .base_file_url(sim.file_base_url).build()
    app.add_handler(MessageHandler(filters.ChatType.GROUPS & filters.REPLY & ~filters.COMMAND,
                                   _answer_reply))
    app.add_handler(CommandHandler("stats", _group_stats, filters=filters.ChatType.SUPERGROUP))
    runner = BotRunner(app)
    runner.start()
    try:
        notice = httpx.post(sim.api_url("sendMessage"), json={"chat_id": group, "text": "#7"},
                            timeout=10).json()["result"]["message_id"]
        reply = sim.send_text(budi, "sudah dikirim", reply_to_message_id=notice, chat_id=group)
        answer = sim.wait_for_bot_message(group, lambda m: "menjawab" in (m["text"] or ""))
        assert answer["text"] == "Budi menjawab tiket #7"
        assert answer["reply_to_message_id"] == reply["message_id"]  # PTB quotes in groups
        sim.send_command(ana, "stats@quickcart_sandbox_bot", chat_id=group)
        stats = sim.wait_for_bot_message(group, lambda m: m["text"].startswith("supergroup"))
        assert stats["text"] == "supergroup Staf Toko"
        sim.wait_until_consumed()
        assert sim.bot_messages(ana) == [] and sim.bot_messages(budi) == []
    finally:
        runner.stop()
    assert not runner.errors, runner.errors
