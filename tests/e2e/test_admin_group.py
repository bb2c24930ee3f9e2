"""Admin groups end to end through the Telegram simulator, with the bot process and real
workers: an admin whitelists the staff group; admin notices and a shopper's ticket reach it; a
Telegram reply there answers the shopper, whose reply comes back to the group; a staff member
who is not an admin answers as the group (as documented); replies that answer no ticket of a
whitelisted group reach nobody and cause no error; a reply to a closed ticket hears its state;
after /rm the group hears nothing more."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import buttons, content, last_id, make_admin, said
from tests.e2e.test_bot_catalog_admin import ask
from tests.support import wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py

GROUP = -1001234567890  # the staff group the admin whitelists
OTHER = -1009876543210  # a group the bot is in that is never whitelisted


def open_ticket(shop: Shop, shopper: int, text: str) -> int:
    """📩 KIRIM PESAN from the menu keyboard, then the message: the ticket's number."""
    after = last_id(shop, shopper)
    shop.telegram.send_text(shopper, "KIRIM PESAN")
    said(shop, shopper, "Tulis pesan untuk admin", after)
    shop.telegram.send_text(shopper, text)
    found = re.search(r"#(\d+)", content(said(shop, shopper, "Nomor tiket", after)))
    assert found is not None
    return int(found.group(1))


def audited(shop: Shop, admin: int) -> list[tuple[str, int, str]]:
    """The admin's finished /whitelist and /rm audit rows: command, group id, outcome."""
    def finished() -> list[Any]:
        rows = shop.rows("SELECT command, arguments, outcome FROM admin_actions"
                         " WHERE actor_id = :a AND command IN ('whitelist', 'rm') ORDER BY id",
                         a=admin)
        return rows if rows and all(r.outcome != "started" for r in rows) else []
    rows = wait_until(finished, what="the admin's audit rows", timeout=30)
    return [(r.command, int(r.arguments["chat_id"]), r.outcome) for r in rows]


def answers(shop: Shop, shopper: int) -> list[str]:
    """The admins' answers the shopper got (their text), oldest first."""
    return [content(m).split("\n\n")[1] for m in shop.telegram.bot_messages(shopper)
            if content(m).startswith("💬 Balasan admin")]


def group_said(shop: Shop, chat: int) -> list[str]:
    """What the bot said in a group, each message's first line, oldest first."""
    return [content(m).splitlines()[0] for m in shop.telegram.bot_messages(chat)]


def test_tickets_answered_from_a_whitelisted_admin_group(shop: Shop, bot: Any) -> None:
    tg = shop.telegram
    admin = make_admin(shop, 9401)
    staff = shop.add_user(9402)  # in the staff group, but not an admin of the shop
    shopper = shop.add_user(5401)
    # Ten units: above the default threshold (5), so beat's sweep never alerts on its own;
    # `/lowstock id|10` makes each alert now.
    shop.add_product(41, price=10000, units=10)
    shop.add_product(42, price=10000, units=10)
    tg.add_group("Staf QuickCart", [admin, staff], chat_id=GROUP)
    tg.add_group("Grup lain", [admin, staff], chat_id=OTHER)
    bot_log = shop.tmp / "bot.log"
    log_start = bot_log.stat().st_size  # the log of the whole session: this test's part
    since = tg.last_call_seq()

    # /whitelist in the admin's private chat: answered, stored, audited
    ask(shop, admin, "whitelist", str(GROUP), "menerima notifikasi")
    assert shop.q("SELECT source FROM admin_groups WHERE id = :g", g=GROUP) == "command"
    assert audited(shop, admin) == [("whitelist", GROUP, "done")]

    # admin notices reach the group: a low-stock alert
    ask(shop, admin, "lowstock", "41|10", "Peringatan stok produk 41")
    low = said(shop, GROUP, "Stok menipis")
    assert "Produk 41" in content(low) and buttons(low) == []

    # the shopper's ticket reaches the group, with the way to answer and no dead buttons
    ticket = open_ticket(shop, shopper, "Kunci saya tidak bisa dipakai")
    copy = said(shop, GROUP, f"Tiket #{ticket}")
    assert "Kunci saya tidak bisa dipakai" in content(copy) and str(shopper) in content(copy)
    assert "Balas (reply) pesan ini" in content(copy)
    # The bot serves buttons in private chats only (bot/gate.py): in a group they would spin
    # and do nothing, so the group's copy has none; the admin's own copy keeps them.
    assert buttons(copy) == []
    private_copy = said(shop, admin, f"Tiket #{ticket}")
    assert f"sup:x:{ticket}" in buttons(private_copy)

    # an admin answers in the group with a Telegram reply; the shopper gets it privately
    after, after_group = last_id(shop, shopper), last_id(shop, GROUP)
    tg.send_text(admin, "Sudah kami ganti, coba lagi ya.",
                 reply_to_message_id=copy["message_id"], chat_id=GROUP)
    answer = said(shop, shopper, "Sudah kami ganti", after)
    assert f"tiket #{ticket}" in content(answer)
    ack = said(shop, GROUP, "Jawaban terkirim", after_group)
    assert f"pengguna {shopper} (tiket #{ticket})" in content(ack)
    assert shop.q("SELECT status FROM support_tickets WHERE id = :t", t=ticket) == "answered"

    # the shopper's reply to the answer goes back to the admins: the group and the admin
    after, after_group, after_admin = (last_id(shop, shopper), last_id(shop, GROUP),
                                       last_id(shop, admin))
    tg.send_text(shopper, "Masih belum bisa", reply_to_message_id=answer["message_id"])
    said(shop, shopper, "Balasan Anda terkirim", after)
    follow_up = said(shop, GROUP, "Masih belum bisa", after_group)
    assert f"Tiket #{ticket}" in content(follow_up) and "balasan dari" in content(follow_up)
    said(shop, admin, "Masih belum bisa", after_admin)

    # Replies that answer no ticket of a whitelisted group reach nobody, and nobody hears an
    # error: a reply to the low-stock alert; a reply in a group that is not whitelisted to a
    # bot message with the same id as the ticket's copy in the staff group; a command there.
    tg.send_text(staff, "siap, kami isi", reply_to_message_id=low["message_id"], chat_id=GROUP)
    for _ in range(copy["message_id"]):
        sent = httpx.post(tg.api_url("sendMessage"), json={"chat_id": OTHER, "text": "Info"},
                          timeout=10).json()["result"]
    assert sent["message_id"] == copy["message_id"]
    tg.send_text(admin, "salah grup", reply_to_message_id=sent["message_id"], chat_id=OTHER)
    tg.send_command(admin, "stats", chat_id=GROUP)

    # A member of the whitelisted group who is not an admin answers as the group: documented
    # (docs/owner-guide.md 6.5, "staff can answer tickets there") and the service trusts it.
    after, after_group = last_id(shop, shopper), last_id(shop, GROUP)
    tg.send_text(staff, "Kami cek ulang sekarang.", reply_to_message_id=follow_up["message_id"],
                 chat_id=GROUP)
    said(shop, shopper, "Kami cek ulang sekarang.", after)
    said(shop, GROUP, "Jawaban terkirim", after_group)
    assert [(r.direction, r.author_id, r.body) for r in shop.rows(
        "SELECT direction, author_id, body FROM support_messages WHERE ticket_id = :t"
        " ORDER BY id", t=ticket)] == [
        ("shopper", shopper, "Kunci saya tidak bisa dipakai"),
        ("admin", admin, "Sudah kami ganti, coba lagi ya."),
        ("shopper", shopper, "Masih belum bisa"),
        ("admin", staff, "Kami cek ulang sekarang.")]

    # the admin closes the ticket (its button in their private chat); a later reply to it in
    # the group is told the ticket's state, not the shopper's "press KIRIM PESAN"
    after, after_group = last_id(shop, shopper), last_id(shop, GROUP)
    tg.press_button(admin, private_copy["message_id"], f"sup:x:{ticket}")
    said(shop, shopper, "ditutup", after)
    tg.send_text(staff, "Satu lagi", reply_to_message_id=copy["message_id"], chat_id=GROUP)
    closed = said(shop, GROUP, f"Tiket #{ticket}", after_group)
    assert content(closed) == f"ℹ️ Tiket #{ticket} sudah ditutup sebelumnya."

    # /rm: the group hears nothing more, and a reply to the old copy there reaches nobody
    ask(shop, admin, "rm", str(GROUP), "dihapus dari notifikasi")
    assert shop.q("SELECT count(*) FROM admin_groups") == 0
    assert audited(shop, admin) == [("whitelist", GROUP, "done"), ("rm", GROUP, "done")]
    tg.send_text(admin, "setelah rm", reply_to_message_id=copy["message_id"], chat_id=GROUP)
    second = open_ticket(shop, shopper, "Satu pertanyaan lagi")
    said(shop, admin, f"Tiket #{second}")
    ask(shop, admin, "lowstock", "42|10", "Peringatan stok produk 42")
    said(shop, admin, "Produk 42")  # the alert's copies were written in one transaction:
    notices = shop.rows("SELECT payload->>'chat_id' AS chat FROM outbox"
                        " WHERE topic = 'quickcart.send_notice'"
                        " AND payload->>'key' = 'admin.low_stock' ORDER BY id")
    assert [int(r.chat) for r in notices] == [admin, GROUP, admin]  # none for the group now
    # An admin's private reply to the new ticket: the last thing, so every earlier update has
    # been handled once it arrives.
    after = last_id(shop, shopper)
    second_copy = said(shop, admin, f"Tiket #{second}")
    tg.send_text(admin, "Jawaban dari chat pribadi", reply_to_message_id=second_copy["message_id"])
    said(shop, shopper, "Jawaban dari chat pribadi", after)

    # everything the bot said in the groups, and no answer that should not have been
    assert group_said(shop, GROUP) == [
        "⚠️ Stok menipis: Produk 41 (ID 41) tersisa 10 (batas 10).",
        f"🎫 Tiket #{ticket} dari Pembeli {shopper} ({shopper}, @buyer{shopper})",
        f"✅ Jawaban terkirim ke pengguna {shopper} (tiket #{ticket}).",
        f"🎫 Tiket #{ticket} — balasan dari Pembeli {shopper} ({shopper}, @buyer{shopper})",
        f"✅ Jawaban terkirim ke pengguna {shopper} (tiket #{ticket}).",
        f"ℹ️ Tiket #{ticket} sudah ditutup sebelumnya.",
    ]
    assert group_said(shop, OTHER) == ["Info"] * copy["message_id"]
    assert answers(shop, shopper) == [
        "Sudah kami ganti, coba lagi ya.", "Kami cek ulang sekarang.",
        "Jawaban dari chat pribadi"]
    assert shop.q("SELECT count(*) FROM support_messages WHERE direction = 'admin'") == 3
    assert tg.bot_messages(staff) == []  # the staff member never wrote to the bot privately
    assert not [m for m in tg.bot_messages(admin) if "kendala" in content(m)
                or "khusus admin" in content(m) or "Perintah tidak dikenal" in content(m)]
    failed = [c for c in tg.calls(since=since) if not c["ok"]]
    assert failed == [], failed
    assert b"Traceback" not in bot_log.read_bytes()[log_start:]
