"""Admin rights and discoverable commands end to end: the bot process (started with its own
ADMIN_IDS), real Celery workers, PostgreSQL, Redis and the Telegram simulator.

ADMIN_IDS makes and, once an id is removed and the bot restarted, unmakes 'env' admins;
/addadmin and /rmadmin handle the others; Telegram's command menu shows admin commands only in
admins' chats; /help answers each role; /addstock of an unknown product says so at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e import test_bot as base
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot_with, content, last_id, make_admin, said
from tests.support import wait_until

pytestmark = pytest.mark.slow

bot = base.bot  # the same bot-process fixture as tests/e2e/test_bot.py

UNKNOWN = "Perintah tidak dikenal"


def my_commands(shop: Shop, chat_id: int | None = None) -> list[str]:
    """The command names Telegram (the simulator) shows in a chat's scope, or the default."""
    params: dict[str, Any] = {}
    if chat_id is not None:
        params["scope"] = {"type": "chat", "chat_id": chat_id}
    response = httpx.post(f"{shop.telegram.base_url}/bot{shop.telegram.token}/getMyCommands",
                          json=params, timeout=10)
    assert response.json()["ok"], response.text
    return [c["command"] for c in response.json()["result"]]


def role(shop: Shop, uid: int) -> tuple[str, str | None]:
    """A user's role and the source of their admin rights."""
    row = shop.rows("SELECT u.member_status, g.source FROM users u"
                    " LEFT JOIN admin_grants g ON g.user_id = u.id WHERE u.id = :u", u=uid)[0]
    return str(row[0]), row[1]


def wait_role(shop: Shop, uid: int, expected: tuple[str, str | None]) -> None:
    wait_until(lambda: role(shop, uid) == expected, what=f"{uid} becomes {expected}",
               timeout=60)


def wait_menu(shop: Shop, uid: int, admin: bool) -> None:
    """The chat's menu lists the admin commands (or, for a non-admin, nothing of its own)."""
    if admin:
        wait_until(lambda: {"stats", "addadmin", "rmadmin", "help"} <= set(my_commands(shop, uid)),
                   what=f"admin commands in {uid}'s menu", timeout=60)
    else:
        wait_until(lambda: my_commands(shop, uid) == [], what=f"{uid}'s admin menu removed",
                   timeout=60)


def test_admin_ids_and_role_commands(shop: Shop) -> None:
    owner = shop.add_user(9301)  # registered before ADMIN_IDS named them
    helper = shop.add_user(9302)
    with bot_with(shop, ADMIN_IDS=str(owner)):
        wait_role(shop, owner, ("admin", "env"))
        wait_menu(shop, owner, admin=True)
        default = my_commands(shop)
        assert "start" in default and "help" in default
        assert not {"stats", "addadmin", "addstock"} & set(default)

        # /addadmin: a command admin, with the admin menu.
        after = last_id(shop, owner)
        shop.telegram.send_command(owner, "addadmin", str(helper))
        said(shop, owner, f"Pengguna {helper} sekarang admin", after)
        assert role(shop, helper) == ("admin", "command")
        wait_menu(shop, helper, admin=True)

        # An ADMIN_IDS admin cannot be removed by command, and the answer says why.
        after = last_id(shop, helper)
        shop.telegram.send_command(helper, "rmadmin", str(owner))
        refusal = said(shop, helper, "ADMIN_IDS", after)
        assert "restart" in content(refusal)
        assert role(shop, owner) == ("admin", "env")

        # /rmadmin removes a command admin: the role, the grant and the admin menu go.
        after = last_id(shop, owner)
        shop.telegram.send_command(owner, "rmadmin", str(helper))
        said(shop, owner, f"Pengguna {helper} sekarang customer", after)
        assert role(shop, helper) == ("customer", None)
        wait_menu(shop, helper, admin=False)
        after = last_id(shop, helper)
        shop.telegram.send_command(helper, "stats")
        said(shop, helper, UNKNOWN, after)

    # The owner takes the id out of ADMIN_IDS and restarts: the next sync demotes them.
    with bot_with(shop, ADMIN_IDS=""):
        wait_role(shop, owner, ("customer", None))
        wait_menu(shop, owner, admin=False)
        after = last_id(shop, owner)
        shop.telegram.send_command(owner, "stats")
        answer = said(shop, owner, UNKNOWN, after)
        assert "Statistik" not in content(answer)


def test_help_by_role_and_addstock_of_an_unknown_product(shop: Shop, bot: Any) -> None:
    shop.add_product(31, price=5000, units=1)
    admin = make_admin(shop, 9303)
    shopper = shop.add_user(5303)

    shop.telegram.send_command(shopper, "help")
    shopper_help = said(shop, shopper, "/start")
    assert "/stock" in content(shopper_help)
    assert "/addstock" not in content(shopper_help) and "/stats" not in content(shopper_help)

    shop.telegram.send_command(admin, "help")
    said(shop, admin, "/start")  # the shopper section comes last
    admin_help = "\n".join(content(m) for m in shop.telegram.bot_messages(admin))
    for command in ("addstock", "rmadmin", "editbalance", "stats", "broadcast"):
        assert f"/{command} — " in admin_help, command
    assert "Contoh: <code>/addstock" in admin_help or "Contoh: /addstock" in admin_help

    # /addstock 999: answered at once, no file asked for.
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "addstock", "999")
    answer = shop.telegram.wait_for_bot_message(admin, timeout=30, after_message_id=after)
    assert "Produk 999 tidak ditemukan" in content(answer)
    assert shop.rows("SELECT 1 FROM product_stocks WHERE product_id = 999") == []
    # A product that exists still gets the prompt for the file.
    after = last_id(shop, admin)
    shop.telegram.send_command(admin, "addstock", "31")
    prompt = shop.telegram.wait_for_bot_message(admin, timeout=30, after_message_id=after)
    assert ".txt" in content(prompt) and "31" in content(prompt)
