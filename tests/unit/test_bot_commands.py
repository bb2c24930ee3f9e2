"""The command menu and /help: one list, every command described, with syntax and an example,
in every language, within Telegram's limits."""

from __future__ import annotations

import re

import pytest

from bot.handlers import admin as admin_handlers
from quickcart import bot_commands
from quickcart.i18n import load_catalog
from quickcart.messages import LANGUAGES


def test_the_bot_handles_exactly_the_listed_admin_commands() -> None:
    assert admin_handlers.COMMANDS == bot_commands.ADMIN_COMMANDS
    assert len(set(bot_commands.ADMIN_COMMANDS)) == len(bot_commands.ADMIN_COMMANDS)
    assert not set(bot_commands.ADMIN_COMMANDS) & set(bot_commands.SHOPPER_COMMANDS)
    assert set(admin_handlers.ROLE_COMMANDS) <= set(bot_commands.ADMIN_COMMANDS)


@pytest.mark.parametrize("language", LANGUAGES)
def test_menus_fit_telegram(language: str) -> None:
    shopper = bot_commands.menu(language, admin=False)
    admin = bot_commands.menu(language, admin=True)
    assert [c["command"] for c in shopper] == list(bot_commands.SHOPPER_COMMANDS)
    assert [c["command"] for c in admin] == list(
        bot_commands.SHOPPER_COMMANDS + bot_commands.ADMIN_COMMANDS)
    assert len(admin) <= 100  # Telegram's maximum per scope
    for command in admin:
        assert re.fullmatch(r"[a-z0-9_]{1,32}", command["command"])
        assert 1 <= len(command["description"]) <= 256
        assert f"command.{command['command']}" in load_catalog(language).msgids


@pytest.mark.parametrize("language", LANGUAGES)
def test_help_gives_admins_every_command_with_syntax_and_example(language: str) -> None:
    example = "Contoh:" if language == "id" else "Example:"
    messages = bot_commands.help_messages(language, admin=True)
    assert all(len(m) <= 4096 for m in messages)
    text = "\n".join(messages)
    for name in bot_commands.ADMIN_COMMANDS:
        entry = re.search(rf"^/{name} — .+\n<code>/{name}\b.*</code>.*\n{example} <code>/{name}\b",
                          text, re.MULTILINE)
        assert entry, f"/{name} has no description, syntax and example in /help ({language})"
    for name in bot_commands.SHOPPER_COMMANDS:
        assert re.search(rf"^/{name} — ", text, re.MULTILINE)


@pytest.mark.parametrize("language", LANGUAGES)
def test_help_for_shoppers_lists_no_admin_command(language: str) -> None:
    [text] = bot_commands.help_messages(language, admin=False)
    listed = re.findall(r"^/(\w+) — ", text, re.MULTILINE)
    assert listed == list(bot_commands.SHOPPER_COMMANDS)


def test_long_help_is_split_between_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot_commands, "HELP_CHUNK", 400)
    messages = bot_commands.help_messages("id", admin=True)
    assert len(messages) > 3
    assert all(len(m) <= 400 for m in messages)
    assert all(m.startswith(("/", "🛠", "🛒")) for m in messages)  # never cut inside an entry
