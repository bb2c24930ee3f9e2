"""The Telegram bot end to end: `python -m bot.app` as a real process polling the Bot API
simulator, real Celery workers, real PostgreSQL and Redis, the Pakasir sandbox."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from quickcart.services.vouchers import generate_vouchers
from tests.e2e.conftest import Shop
from tests.e2e.test_payments_api import pay
from tests.support import ROOT, free_port, stop_group, wait_until

pytestmark = pytest.mark.slow

Message = dict[str, Any]


@pytest.fixture()
def bot(shop: Shop) -> Iterator[subprocess.Popen[bytes]]:
    """The bot as its own process, polling the simulator; stopped at the end of the test."""
    with bot_with(shop) as proc:
        yield proc


@contextlib.contextmanager
def bot_with(shop: Shop, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """The bot as its own process with extra environment (e.g. its ADMIN_IDS), polling."""
    since = shop.telegram.last_call_seq()
    log_path = shop.tmp / "bot.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.app"], cwd=ROOT,
                                env={**shop.env, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def polling() -> bool:
            if proc.poll() is not None:
                raise AssertionError("bot died:\n" + log_path.read_text(errors="replace"))
            return bool(shop.telegram.calls(method="getUpdates", since=since))
        wait_until(polling, what="bot polling", timeout=60)
        yield proc
    finally:
        stop_group(proc)


# ------------------------------------------------------------------ helpers

def content(message: Message) -> str:
    return str(message.get("text") or message.get("caption") or "")


def last_id(shop: Shop, uid: int) -> int:
    messages = shop.telegram.bot_messages(uid)
    return max((m["message_id"] for m in messages), default=0)


def said(shop: Shop, uid: int, needle: str, after: int = 0, timeout: float = 30) -> Message:
    """Wait for a bot message in `uid`'s chat containing `needle` (after message `after`)."""
    return shop.telegram.wait_for_bot_message(
        uid, lambda m: needle in content(m), timeout=timeout, after_message_id=after)


def buttons(message: Message) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [b.get("callback_data") for row in rows for b in row]


def pager_row(message: Message) -> list[tuple[str, str]]:
    """The last row of `message`'s inline keyboard (where the lists put their pager)."""
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [(b["text"], b.get("callback_data")) for b in rows[-1]] if rows else []


def press(shop: Shop, uid: int, message: Message, data: str,
          expect: Callable[[Message], bool], timeout: float = 30) -> Message:
    """Press a button of `message` and wait until that message (edited) satisfies `expect`."""
    mid = message["message_id"]
    shop.telegram.press_button(uid, mid, data)
    return shop.telegram.wait_for_bot_message(
        uid, lambda m: m["message_id"] == mid and expect(m), timeout=timeout,
        after_message_id=mid - 1)


def has_button(data: str) -> Callable[[Message], bool]:
    return lambda m: data in buttons(m)


def open_product(shop: Shop, uid: int, product_id: int) -> Message:
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, str(product_id))
    return shop.telegram.wait_for_bot_message(
        uid, lambda m: f"o:buy:{product_id}" in buttons(m), after_message_id=after, timeout=30)


def to_payment(shop: Shop, uid: int, product_id: int, extra: int = 0,
               voucher: str | None = None) -> Message:
    """Product page → quantity (+extra) → the summary (its pay buttons: k:pq, k:pb), with a
    voucher applied on it when given."""
    page = open_product(shop, uid, product_id)
    qty = press(shop, uid, page, f"o:buy:{product_id}", has_button(f"o:qok:{product_id}"))
    if extra:
        qty = press(shop, uid, qty, f"o:q:{product_id}:{extra}",
                    lambda m: f"Jumlah: {1 + extra}" in content(m))
    summary = press(shop, uid, qty, f"o:qok:{product_id}", has_button("k:pq"))
    if voucher is None:
        return summary
    prompt = press(shop, uid, summary, "k:v", lambda m: "Ketik kode voucher" in content(m))
    shop.telegram.send_text(uid, voucher.lower())
    return shop.telegram.wait_for_bot_message(
        uid, lambda m: "k:pq" in buttons(m) and voucher in content(m),
        after_message_id=prompt["message_id"], timeout=30)


def qris_invoice(shop: Shop, uid: int, payment: Message) -> tuple[Message, str]:
    """Press QRIS on the summary `payment`; the invoice photo (its "check" button) and its
    invoice id."""
    press(shop, uid, payment, "k:pq", lambda m: "diproses" in content(m)
          or "Invoice" in content(m))
    photo = shop.telegram.wait_for_bot_message(
        uid, lambda m: "Invoice" in content(m) and "pay:check:" in str(buttons(m)), timeout=30)
    invoice = re.search(r"(QC\S+)", content(photo))
    assert invoice is not None
    return photo, invoice.group(1)


def make_admin(shop: Shop, uid: int) -> int:
    shop.add_user(uid)
    with shop.main.begin() as conn:
        conn.exec_driver_sql(f"UPDATE users SET member_status = 'admin' WHERE id = {uid}")
    return uid


# ------------------------------------------------------------------ tests

def test_catalog_pager_and_a_stale_page_button(shop: Shop, bot: Any) -> None:
    for product_id in range(1, 10):  # nine products: two pages of eight
        shop.add_product(product_id, price=5000, units=1)
    uid = shop.add_user(5009)
    shop.telegram.send_command(uid, "start")
    welcome = said(shop, uid, "Selamat datang")
    first = press(shop, uid, welcome, "c:all:0", has_button("c:p:1"))
    # [KEMBALI] [SELANJUTNYA n/N] above the list's own way back to the menu
    rows = first["reply_markup"]["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for b in rows[-2]] == [("SELANJUTNYA 1/2",
                                                                   "c:all:1")]
    assert [b["callback_data"] for b in rows[-1]] == ["m:home"]
    second = press(shop, uid, first, "c:all:1", has_button("c:p:9"))
    rows = second["reply_markup"]["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for b in rows[-2]] == [("KEMBALI", "c:all:0"),
                                                                   ("2/2", "noop")]
    # The list shrank to one page while the button waited: it shows the list as it is now.
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE products SET is_active = false WHERE id = 9"))
    now = press(shop, uid, second, "c:all:0", lambda m: "c:p:9" not in buttons(m)
                and "c:p:1" in buttons(m))
    rows = now["reply_markup"]["inline_keyboard"]
    assert [(b["text"], b["callback_data"]) for b in rows[-2]] == [("1/1", "noop")]


def test_start_browse_and_buy_with_balance(shop: Shop, bot: Any) -> None:
    shop.add_product(1, price=10000, units=3)
    uid = shop.add_user(5001, balance=50000)
    shop.telegram.send_command(uid, "start")
    welcome = said(shop, uid, "Selamat datang")
    assert {"c:cats", "c:best:0", "c:all:0"} <= set(buttons(welcome))
    keyboard = said(shop, uid, "Menu cepat")
    rows = keyboard["reply_markup"]["keyboard"]
    labels = [b if isinstance(b, str) else b["text"] for row in rows for b in row]
    assert {"LIST PRODUK", "STOK", "AKUN", "KIRIM PESAN", "1"} <= set(labels)

    listing = press(shop, uid, welcome, "c:all:0", has_button("c:p:1"))
    assert "Produk 1" in content(listing) and "1/1" in str(listing["reply_markup"])
    assert ("1/1", "noop") in [(b["text"], b.get("callback_data")) for row in
                               listing["reply_markup"]["inline_keyboard"] for b in row]

    payment = to_payment(shop, uid, 1, extra=1)
    assert "Rp20.000" in content(payment)
    assert "Rp50.000" in content(payment)  # the balance, and what is left after paying
    assert "Rp30.000" in content(payment)
    press(shop, uid, payment, "k:pb", lambda m: "diproses" in content(m)
          or "berhasil" in content(m))
    delivery = said(shop, uid, "KEY-1-")
    assert len(re.findall(r"KEY-1-\d", content(delivery))) == 2
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 30000

    # AKUN: profile, history, re-send
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, "AKUN")
    profile = said(shop, uid, "Profil", after)
    assert "5001" in content(profile) and "Rp30.000" in content(profile)
    for n in range(3):  # three admin top-ups: 6 history rows, so two pages
        with shop.main.begin() as conn:
            conn.execute(text("UPDATE users SET account_balance = account_balance + 1000"
                              " WHERE id = :u"), {"u": uid})
            conn.execute(text("INSERT INTO balance_ledger (user_id, amount, reason,"
                              " reference_type, reference_id) VALUES (:u, 1000, 'admin_credit',"
                              " 'test', :r)"), {"u": uid, "r": f"top-{n}"})
    history = press(shop, uid, profile, "a:hist:0", lambda m: "Riwayat" in content(m))
    assert "Lunas" in content(history) and "Pembelian" in content(history)
    assert "−Rp20.000" in content(history) and "halaman 1/2" in content(history)
    # The pager as the requirements draw it: [KEMBALI] [SELANJUTNYA n/N]
    assert pager_row(history) == [("SELANJUTNYA 1/2", "a:hist:1")]
    older = press(shop, uid, history, "a:hist:1", lambda m: "halaman 2/2" in content(m))
    assert "+Rp50.000" in content(older) and "Pembelian" not in content(older)
    assert pager_row(older) == [("KEMBALI", "a:hist:0"), ("2/2", "noop")]
    history = press(shop, uid, older, "a:hist:0", lambda m: "halaman 1/2" in content(m))
    detail = next(d for d in buttons(history) if d.startswith("a:o:"))
    detail_view = press(shop, uid, history, detail, lambda m: "Produk 1 × 2" in content(m))
    assert "Lunas" in content(detail_view) and "a:hist:0" in buttons(detail_view)
    history = press(shop, uid, detail_view, "a:hist:0",
                    lambda m: "halaman 1/2" in content(m))
    resend = next(d for d in buttons(history) if d.startswith("a:rs:"))
    after = last_id(shop, uid)
    shop.telegram.press_button(uid, history["message_id"], resend)
    assert "KEY-1-" in content(said(shop, uid, "KEY-1-", after))
    # No dead end: the history goes back to the profile it came from.
    profile = press(shop, uid, history, "a:prof", lambda m: "Profil" in content(m))
    assert "a:hist:0" in buttons(profile)


def test_qris_with_voucher(shop: Shop, bot: Any) -> None:
    shop.start_api()
    shop.add_product(2, price=30000, units=2)
    admin = make_admin(shop, 9002)
    [code] = generate_vouchers(shop.main, admin, 5000, 1)
    uid = shop.add_user(5002)
    photo, invoice = qris_invoice(shop, uid, to_payment(shop, uid, 2, voucher=code))
    assert shop.q("SELECT voucher_discount FROM orders WHERE invoice_id = :i",
                  i=invoice) == 5000
    shop.telegram.press_button(uid, photo["message_id"], f"pay:check:{invoice}")
    pay(shop, invoice)
    said(shop, uid, "KEY-2-", timeout=60)
    assert shop.q("SELECT is_used FROM vouchers WHERE code = :c", c=code) is True


def test_admin_adds_product_and_stock(shop: Shop, bot: Any) -> None:
    admin = make_admin(shop, 9003)
    shopper = shop.add_user(5003)
    shop.telegram.send_command(shopper, "add", "7|Hack|X|1|y")
    said(shop, shopper, "Perintah tidak dikenal")
    shop.telegram.send_command(admin, "add", "oops")
    said(shop, admin, "Format salah")
    shop.telegram.send_command(admin, "add", "7|Netflix 1 Bulan|Streaming|25000|Akun premium")
    made = said(shop, admin, "Produk dibuat")  # reports what it created (issue 23)
    assert "ID: 7" in content(made) and "Nama: Netflix 1 Bulan" in content(made)
    shop.telegram.send_command(admin, "addstock", "7")
    said(shop, admin, "Kirim file")
    shop.telegram.send_document(admin, b"NFX-A\nNFX-B\n\nNFX-C\nNFX-A\n", "stock.txt")
    said(shop, admin, "3 ditambahkan")
    page = open_product(shop, shopper, 7)
    assert "Stok: 3" in content(page) and "Rp25.000" in content(page)
    assert shop.rows("SELECT content FROM product_stocks WHERE product_id = 7 ORDER BY content"
                     ) == [("NFX-A",), ("NFX-B",), ("NFX-C",)]


def test_banned_user_is_blocked(shop: Shop, bot: Any) -> None:
    shop.add_product(4, price=1000, units=1)
    admin = make_admin(shop, 9004)
    uid = shop.add_user(5004)
    shop.telegram.send_command(admin, "ban", str(uid))
    said(shop, admin, "diblokir")
    shop.telegram.send_command(uid, "start")
    said(shop, uid, "Akun Anda diblokir")
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, "4")
    shop.telegram.wait_until_consumed()
    with pytest.raises(TimeoutError):
        shop.telegram.wait_for_bot_message(uid, after_message_id=after, timeout=3)


def test_ten_shoppers_race_for_the_last_unit(shop: Shop, bot: Any) -> None:
    shop.add_product(3, price=15000, units=1)
    users = [shop.add_user(6000 + i, balance=20000) for i in range(10)]
    summaries = [to_payment(shop, uid, 3) for uid in users]
    for uid, summary in zip(users, summaries, strict=True):
        shop.telegram.press_button(uid, summary["message_id"], "k:pb")
    for uid in users:
        shop.telegram.wait_for_bot_message(
            uid, lambda m: "KEY-3-1" in content(m) or "habis" in content(m), timeout=60)
    winners = [uid for uid in users
               if any("KEY-3-1" in content(m) for m in shop.telegram.bot_messages(uid))]
    assert len(winners) == 1
    assert shop.q("SELECT count(*) FROM orders WHERE status = 'paid'") == 1
    assert shop.q("SELECT sum(account_balance) FROM users") == 20000 * 10 - 15000


def test_language_profile_and_deposit(shop: Shop, bot: Any) -> None:
    shop.start_api()
    uid = shop.add_user(5005)
    shop.telegram.send_command(uid, "lang", "en")
    said(shop, uid, "Language set to English")
    wait_until(lambda: shop.q("SELECT language FROM users WHERE id = :u", u=uid) == "en",
               what="language stored")
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, "AKUN")
    profile = said(shop, uid, "Profile", after)
    # profile edit (onboarding steps, each skippable)
    name = press(shop, uid, profile, "a:edit", lambda m: "What is your name" in content(m))
    shop.telegram.send_text(uid, "Budi Santoso")
    phone = said(shop, uid, "WhatsApp", name["message_id"])
    press(shop, uid, phone, "a:skip:whatsapp_number", lambda m: "email" in content(m))
    shop.telegram.send_text(uid, "budi@example.com")
    said(shop, uid, "profile is saved")
    wait_until(lambda: shop.q("SELECT email FROM users WHERE id = :u", u=uid)
               == "budi@example.com", what="email stored")
    assert shop.q("SELECT name FROM users WHERE id = :u", u=uid) == "Budi Santoso"
    # deposit → QR → cancel
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, "ACCOUNT")
    profile = said(shop, uid, "Profile", after)
    press(shop, uid, profile, "a:dep", lambda m: "top-up amount" in content(m))
    shop.telegram.send_text(uid, "50.000")
    photo = shop.telegram.wait_for_bot_message(
        uid, lambda m: "Deposit DP" in content(m), timeout=30)
    invoice = re.search(r"(DP\S+)", content(photo))
    assert invoice is not None
    shop.telegram.press_button(uid, photo["message_id"], f"pay:cancel:{invoice.group(1)}")
    said(shop, uid, f"Deposit {invoice.group(1)} was cancelled")
    assert shop.q("SELECT status FROM deposits WHERE invoice_id = :i",
                  i=invoice.group(1)) == "cancelled"


def test_admin_commands(shop: Shop, bot: Any) -> None:
    shop.add_product(8, price=10000, units=2)
    admin = make_admin(shop, 9006)
    uid = shop.add_user(5006)
    shop.telegram.send_command(admin, "editbalance", f"{uid}|25000")
    said(shop, admin, "Rp25.000")
    shop.telegram.send_command(admin, "addreseller", str(uid))
    said(shop, admin, "sekarang reseller")
    shop.telegram.send_command(admin, "priceress", "8|8000")
    said(shop, admin, "Harga reseller produk 8: Rp8.000")
    page = open_product(shop, uid, 8)
    assert "Rp8.000" in content(page)
    shop.telegram.send_command(admin, "giveaway", "5000|2")
    giveaway = said(shop, admin, "2 voucher")
    assert len(re.findall(r"<code>|\b[A-Z0-9]{8}\b", content(giveaway))) >= 2
    assert shop.q("SELECT count(*) FROM vouchers") == 2
    shop.telegram.send_command(admin, "stats")
    said(shop, admin, "Statistik")
    shop.telegram.send_command(admin, "info", str(uid))
    info = said(shop, admin, "Bank ID")
    assert str(uid) in content(info) and "reseller" in content(info)
    shop.telegram.send_command(admin, "rmadmin", str(admin))
    said(shop, admin, "admin terakhir")
    shop.telegram.send_command(admin, "ban", "abc")
    said(shop, admin, "Contoh: /ban")
    shop.telegram.send_command(admin, "del", "8")
    said(shop, admin, "Produk 8 dihapus")
    after = last_id(shop, uid)
    shop.telegram.send_text(uid, "8")
    said(shop, uid, "tidak ditemukan", after)


def test_contact_export_and_delete_me(shop: Shop, bot: Any) -> None:
    admin = make_admin(shop, 9007)
    uid = shop.add_user(5007)
    shop.telegram.send_text(uid, "KIRIM PESAN")
    said(shop, uid, "Tulis pesan untuk admin")
    shop.telegram.send_text(uid, "Halo, stok kapan masuk?")
    said(shop, admin, "stok kapan masuk?")  # a support ticket (tests/e2e/test_after_sales.py)
    said(shop, uid, "Pesan terkirim")
    since = shop.telegram.last_call_seq()
    shop.telegram.send_command(uid, "export")
    call = shop.telegram.wait_for_call(
        "sendDocument", lambda c: str(c["params"].get("chat_id")) == str(uid), timeout=30,
        since=since)
    assert call["ok"]
    shop.telegram.send_command(uid, "delete_me")
    confirm = said(shop, uid, "Hapus data pribadi")
    shop.telegram.press_button(uid, confirm["message_id"], "a:erase")
    said(shop, uid, "sudah dihapus")
    assert shop.q("SELECT username FROM users WHERE id = :u", u=uid) is None
    assert shop.q("SELECT erased_at IS NOT NULL FROM users WHERE id = :u", u=uid)
    with shop.audit.connect() as conn:
        leaks = conn.execute(text(
            "SELECT count(*) FROM audit_logs WHERE (coalesce(before_state::text, '')"
            " || coalesce(after_state::text, '')) LIKE :needle"),
            {"needle": f"%buyer{uid}%"}).scalar()
        anonymised = conn.exec_driver_sql(
            "SELECT count(*) FROM audit_logs WHERE anonymised_at IS NOT NULL").scalar()
    assert leaks == 0 and anonymised


def test_rate_limit_and_stale_session(shop: Shop, bot: Any) -> None:
    shop.add_product(9, price=1000, units=5)
    uid = shop.add_user(5008)
    page = open_product(shop, uid, 9)
    qty = press(shop, uid, page, "o:buy:9", has_button("o:qok:9"))
    shop.telegram.send_command(uid, "start")  # ends the order flow
    said(shop, uid, "Selamat datang")
    # a stale button answers with the current state of its product, never an error
    press(shop, uid, qty, "o:q:9:5", has_button("o:buy:9"))
    for _ in range(10):
        shop.telegram.send_text(uid, "hello")
    said(shop, uid, "Terlalu cepat")
    shop.telegram.wait_until_consumed()
    assert sum("Terlalu cepat" in content(m) for m in shop.telegram.bot_messages(uid)) == 1


def test_missing_token_exits_2(shop: Shop) -> None:
    env = {**shop.env, "TELEGRAM_BOT_TOKEN": ""}
    done = subprocess.run([sys.executable, "-m", "bot.app"], cwd=ROOT, env=env,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.decode().strip().count("\n") == 0
    assert "TELEGRAM_BOT_TOKEN" in done.stderr.decode()


def test_first_contact_registers_and_offers_onboarding(shop: Shop, bot: Any) -> None:
    shop.telegram.add_user("Siti", user_id=5009, username="siti", language_code="id")
    shop.telegram.send_command(5009, "start")
    welcome = said(shop, 5009, "Selamat datang")
    assert "Siti" in content(welcome)
    offer = said(shop, 5009, "Lengkapi profil")
    assert shop.q("SELECT username FROM users WHERE id = 5009") == "siti"
    press(shop, 5009, offer, "a:edit", lambda m: "Boleh tahu nama" in content(m))
    shop.telegram.send_text(5009, "Siti Aminah")
    said(shop, 5009, "Nomor WhatsApp")
    shop.telegram.send_text(5009, "0812-3456-7890")
    said(shop, 5009, "Alamat email")
    wait_until(lambda: shop.q("SELECT whatsapp_number FROM users WHERE id = 5009")
               == "081234567890", what="WhatsApp stored")


def test_qris_cancel_and_check_limit(shop: Shop, bot: Any) -> None:
    shop.add_product(10, price=20000, units=1)
    uid = shop.add_user(5010)
    payment = to_payment(shop, uid, 10)
    # a double tap on QRIS places one order
    shop.telegram.press_button(uid, payment["message_id"], "k:pq")
    shop.telegram.press_button(uid, payment["message_id"], "k:pq")
    photo = shop.telegram.wait_for_bot_message(
        uid, lambda m: "pay:cancel:" in str(buttons(m)), timeout=30)
    invoice = re.search(r"(QC\S+)", content(photo))
    assert invoice is not None
    for _ in range(6):
        shop.telegram.press_button(uid, photo["message_id"], f"pay:check:{invoice.group(1)}")

    def answers() -> list[str]:
        events = shop.telegram.transcript(uid)["events"]
        return [str(e.get("text")) for e in events if e["type"] == "callback_answer"]
    def checks() -> list[str]:
        return [a for a in answers() if "Memeriksa" in a or "Tunggu sebentar" in a]
    # the bot answers updates concurrently, so wait for all six answers, not the first refusal
    wait_until(lambda: len(checks()) >= 6, what="six check answers")
    assert sum("Memeriksa" in a for a in checks()) == 5
    assert sum("Tunggu sebentar" in a for a in checks()) == 1
    shop.telegram.press_button(uid, photo["message_id"], f"pay:cancel:{invoice.group(1)}")
    said(shop, uid, f"Pesanan {invoice.group(1)} dibatalkan")
    assert shop.q("SELECT count(*) FROM orders") == 1
    assert shop.q("SELECT status FROM orders") == "cancelled"


def test_webhook_mode_answers_pushed_updates_and_refuses_forged_ones(shop: Shop) -> None:
    """`quickcart bot --webhook-url …`: the bot sets its webhook with the secret, answers
    the updates the simulator pushes to it (a command and a button), never polls, and a POST
    without the secret gets 403 and changes nothing."""
    uid = shop.add_user(5031, balance=0)
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram-updates"
    secret = "webhook-secret-5031"  # noqa: S105 - test value
    env = {**shop.env, "TELEGRAM_WEBHOOK_SECRET": secret}
    since = shop.telegram.last_call_seq()
    log_path = shop.tmp / "bot-webhook.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quickcart.cli", "bot", "--webhook-url", url,
             "--listen", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def webhook_set() -> bool:
            if proc.poll() is not None:
                raise AssertionError("bot died:\n" + log_path.read_text(errors="replace"))
            return bool(shop.telegram.state.webhook.get("url") == url)
        wait_until(webhook_set, what="setWebhook", timeout=60)
        assert shop.telegram.state.webhook.get("secret_token") == secret

        shop.telegram.send_command(uid, "start")
        welcome = said(shop, uid, "Selamat datang")
        press(shop, uid, welcome, "c:cats", lambda m: m.get("edit_date") is not None
              or "Kategori" in content(m))

        # A forged update (no secret, then a wrong one) reaches the listener and is refused.
        after = last_id(shop, uid)
        forged = {"update_id": 999_999, "message": {
            "message_id": 1, "date": 0, "chat": {"id": uid, "type": "private"},
            "from": {"id": uid, "is_bot": False, "first_name": "X"}, "text": "/start"}}
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
            assert httpx.post(url, json=forged, headers=headers, timeout=10).status_code == 403
        shop.telegram.send_text(uid, "AKUN")  # a real update after the forged ones
        profile = said(shop, uid, "Profil", after)
        assert [m["message_id"] for m in shop.telegram.bot_messages(uid)
                if m["message_id"] > after] == [profile["message_id"]]
        assert not shop.telegram.calls(method="getUpdates", since=since)
    finally:
        stop_group(proc)
        # The simulator is shared: the next test's bot polls again.
        httpx.post(shop.telegram.api_url("deleteWebhook"), timeout=10)
