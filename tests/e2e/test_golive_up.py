"""Going live: `quickcart up` with a bot token and a Pakasir project (pointed at the simulators'
URLs, as the real services would be) seeds no demo, lets no demo id act as admin, and refuses
to start over a database that still holds demo rows. An admin who has not opened the bot gets
their notices when they do."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from quickcart.db.engine import get_engine
from quickcart.db.migrate import migrate_all
from quickcart.services.demo import DEMO_ADMIN_ID, DEMO_SHOPPER_ID, seed_demo
from quickcart.services.registration import register_user
from sandbox.pakasir import create_app as create_pakasir_app
from sandbox.telegram import TelegramSimulator
from tests.conftest import TestUrls, assert_no_keys_left, redis_keys
from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import content, last_id, said
from tests.e2e.test_up import Up
from tests.support import ServedApp, wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py
NEVER_OPENED_ADMIN = 7001


class Live:
    """Fresh databases, a Redis database, and the two simulators standing in for Telegram and
    Pakasir, for a live `quickcart up` to run against."""

    def __init__(self, urls: TestUrls) -> None:
        tag = uuid.uuid4().hex[:8]
        server = make_url(urls.server_url)
        self.server_url = urls.server_url
        # As psql and hosting platforms write them: no SQLAlchemy driver suffix.
        self.main_url = f"postgresql://{server.username}@{server.host}:{server.port}" \
                        f"/qct_golive_{tag}_main"
        self.audit_url = f"postgres://{server.username}@{server.host}:{server.port}" \
                         f"/qct_golive_{tag}_audit"
        self.redis_url = urls.redis_url.rsplit("/", 1)[0] + f"/{1 + (os.getpid() + 7) % 15}"
        self.keys_before = redis_keys(self.redis_url)
        self.telegram = TelegramSimulator().start()
        self.pakasir = ServedApp(create_pakasir_app("live-project", "live-key", webhook_url=None))

    def env(self) -> dict[str, str]:
        """A live shop's settings, every URL pointing at this machine."""
        return {"DATABASE_URL": self.main_url, "AUDIT_DATABASE_URL": self.audit_url,
                "REDIS_URL": self.redis_url, "TELEGRAM_BOT_TOKEN": self.telegram.token,
                "TELEGRAM_API_BASE_URL": self.telegram.base_url,
                "PAKASIR_PROJECT": "live-project", "PAKASIR_API_KEY": "live-key",
                "PAKASIR_BASE_URL": self.pakasir.url, "ADMIN_IDS": str(NEVER_OPENED_ADMIN)}

    def engine(self) -> Any:
        return get_engine(self.main_url)  # the shop's own engine takes the plain URL too

    def close(self) -> None:
        self.telegram.stop()
        self.pakasir.stop()
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for url in (self.main_url, self.audit_url):
                conn.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        admin.dispose()
        # `up` inherits this session's REDIS_KEY_PREFIX: delete exactly its keys (the database
        # is shared with other sessions, whose shops a FLUSHDB would wipe), and fail if it
        # wrote any without the prefix.
        assert_no_keys_left(self.redis_url, self.keys_before)


@pytest.fixture()
def live(test_urls: TestUrls) -> Iterator[Live]:
    services = Live(test_urls)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture()
def live_up(live: Live, tmp_path: Path) -> Iterator[Up]:
    with Up(tmp_path, env=live.env()) as runner:
        yield runner


def _unknown_command(live: Live, uid: int, command: str, args: str) -> None:
    after = max((m["message_id"] for m in live.telegram.bot_messages(uid)), default=0)
    live.telegram.send_command(uid, command, args)
    live.telegram.wait_for_bot_message(
        uid, lambda m: "Perintah tidak dikenal" in str(m.get("text")), timeout=60,
        after_message_id=after)


def test_a_live_start_seeds_no_demo_and_demo_ids_are_shoppers(live: Live, live_up: Up) -> None:
    wait_until(lambda: "QuickCart is up" in live_up.output() or live_up.proc.poll() is not None,
               what="quickcart up", timeout=180)
    assert live_up.proc.poll() is None, live_up.output()
    output = live_up.output()
    assert "seeded the demo shop" not in output
    assert "live shop (TELEGRAM_BOT_TOKEN, PAKASIR_PROJECT set)" in output
    assert f"admins who have not opened the bot yet: {NEVER_OPENED_ADMIN}" in output
    # The simulators stand in for the real services: `up` starts neither of its own.
    assert "web chat (Telegram simulator)" not in output and "Pakasir sandbox" not in output

    engine = live.engine()
    with engine.connect() as conn:
        for query in ("SELECT count(*) FROM users", "SELECT count(*) FROM products",
                      "SELECT count(*) FROM vouchers", "SELECT count(*) FROM balance_ledger"):
            assert conn.execute(text(query)).scalar() == 0, query

    # Users with the demo ids are shoppers like any other: admin commands stay hidden.
    for uid in (DEMO_ADMIN_ID, DEMO_SHOPPER_ID):
        live.telegram.add_user(f"User {uid}", user_id=uid)
        for command, args in (("stats", ""), ("addstock", "1"), ("editbalance", f"{uid}|5000")):
            _unknown_command(live, uid, command, args)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users WHERE member_status = 'admin'"
                                 " OR account_balance > 0")).scalar() == 0
    engine.dispose()


def test_a_live_start_over_demo_rows_refuses_and_names_the_purge(live: Live,
                                                                  tmp_path: Path) -> None:
    migrate_all(live.main_url, live.audit_url)
    engine = live.engine()
    seed_demo(engine)
    with Up(tmp_path, env=live.env()) as runner:
        assert runner.proc.wait(timeout=120) == 2
    last = runner.output().strip().splitlines()[-1]
    assert last.startswith("quickcart up: refusing a live start, the database holds demo data"
                           " (demo users 900001, 900002; demo products 1, 2, 3, 4;"
                           " voucher DEMO5000)"), runner.output()
    assert last.endswith("remove it with `quickcart demo purge`")
    assert "Traceback" not in runner.output()
    with engine.connect() as conn:  # nothing was started or written
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar() == 0
    engine.dispose()


def test_an_admin_who_never_opened_the_bot_gets_the_notices_at_start(shop: Shop,
                                                                     bot: Any) -> None:
    admin = 7101
    # An admin Telegram does not know yet: registered in the shop, never wrote to the bot.
    register_user(shop.main, admin, "Admin Baru")
    with shop.main.begin() as conn:
        conn.exec_driver_sql(f"UPDATE users SET member_status = 'admin' WHERE id = {admin}")
    for n in range(3):
        shop.send("quickcart.notify_admins", key="admin.deposit_paid",
                  params={"invoice_id": f"DPKEPT{n}", "user_id": 5000 + n, "amount": "10000"})
    wait_until(lambda: shop.q("SELECT count(*) FROM admin_pending_notices WHERE chat_id = :a",
                              a=admin) == 3, what="three kept notices", timeout=60)
    assert shop.telegram.bot_messages(admin) == []

    shop.telegram.add_user("Admin Baru", user_id=admin)
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "start")
    for n in range(3):
        said(shop, admin, f"DPKEPT{n}", after, timeout=60)
    wait_until(lambda: shop.q("SELECT count(*) FROM admin_pending_notices") == 0,
               what="kept notices released", timeout=30)
    texts = [content(m) for m in shop.telegram.bot_messages(admin) if "DPKEPT" in content(m)]
    assert texts == [t for t in texts if t] and len(texts) == 3  # each exactly once
