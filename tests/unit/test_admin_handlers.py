"""Admin command wiring and argument parsing: every listed admin command has exactly one parser,
and amounts take at most one sign."""

from __future__ import annotations

import pytest

from bot.app import admin_command_handlers
from bot.handlers import admin, admin_catalog, admin_orders, review
from bot.handlers.admin import Usage
from quickcart import bot_commands


def test_every_admin_command_has_exactly_one_parsing_module() -> None:
    owners = [*review.COMMANDS, "audit", *admin_orders.COMMANDS, *admin_catalog.COMMANDS,
              "broadcast", *admin.OWN_COMMANDS]
    assert len(owners) == len(set(owners)), "a command is claimed by two modules"
    assert set(admin_command_handlers()) == set(bot_commands.ADMIN_COMMANDS) | {"refund"}


@pytest.mark.parametrize(("typed", "parsed"), [
    ("1.000", "1000"), ("5,000", "5000"), ("-5000", "-5000"), ("+2 500", "+2500")])
def test_amounts_drop_thousands_separators(typed: str, parsed: str) -> None:
    assert admin._amount(typed) == parsed


@pytest.mark.parametrize("typed", ["", "-", "+-5000", "--5", "5-", "abc", "1e3"])
def test_malformed_amounts_are_usage_errors(typed: str) -> None:
    with pytest.raises(Usage):
        admin._amount(typed)


def test_a_transfer_moves_a_positive_amount() -> None:
    assert admin._credit("+5.000") == "5000"
    for typed in ("-5000", "0", "+000", "+-5000"):
        with pytest.raises(Usage):
            admin._credit(typed)
