"""The admin commands' parsing (bad input → usage), argument masking and command naming."""

from __future__ import annotations

from typing import Any

import pytest

from bot.handlers import admin as admin_handlers
from bot.handlers import admin_catalog as catalog_handlers
from bot.handlers.admin import EDIT_COMMANDS, ROLE_COMMANDS
from bot.handlers.audit import parse_audit
from bot.handlers.review import parse_fraud, parse_review
from quickcart.bot_commands import ADMIN_COMMANDS
from quickcart.domain.errors import ShopError
from quickcart.services.admin_audit import mask, parse_subject, subject_of
from workers.app import app
from workers.tasks.admin_audit import NOT_COMMANDS, PREFIX, command_of


def test_review_syntax() -> None:
    assert parse_review("/review") is None
    assert parse_review("/review 12|approve") == (12, "approve", None)
    assert parse_review("/review 12|REFUND|Bukti | palsu") == (12, "refund", "Bukti | palsu")
    for bad in ("/review x|approve", "/review 12", "/review 12|ban", "/review |keep"):
        with pytest.raises(ValueError):
            parse_review(bad)


def test_audit_syntax() -> None:
    assert parse_audit("/audit 123456789") == ("123456789", 10)
    assert parse_audit("/audit QC261206ABCDEFGH 20") == ("QC261206ABCDEFGH", 20)
    assert parse_audit("/audit 42|5") == ("42", 5)
    for bad in ("/audit", "/audit 1 2 3", "/audit 1 0", "/audit 1 51", "/audit 1 x",
                "/audit a;b"):
        with pytest.raises(ValueError):
            parse_audit(bad)


def test_fraud_syntax() -> None:
    assert parse_fraud("/fraud") == (None, None)
    assert parse_fraud("/fraud OFF") == ("enabled", "off")
    assert parse_fraud("/fraud Large_Amount|2000000") == ("large_amount", "2000000")
    for bad in ("/fraud large_amount", "/fraud a|b|c", "/fraud |1"):
        with pytest.raises(ValueError):
            parse_fraud(bad)


def test_stock_contents_and_secrets_are_masked() -> None:
    kept = mask({"actor_id": 1, "product_id": 101, "lines": "akun1:pass1\nakun2:pass2",
                 "text": "promo: login budi:rahasia", "token": "123:ABC",
                 "idempotency_key": "tg:1", "amount": "50000"})
    assert kept == {"actor_id": 1, "product_id": 101, "lines": "[masked, 23]",
                    "text": "promo: login [masked]", "token": "[masked, 7]", "amount": "50000"}
    assert subject_of({"user_id": 5, "product_id": 7}, 9) == "5"
    assert subject_of({}, 9) == "9"


def test_subjects_and_command_names() -> None:
    assert parse_subject("123") == ("id", "123")
    assert parse_subject("QC261206ABCDEFGH") == ("invoice", "QC261206ABCDEFGH")
    with pytest.raises(ShopError):
        parse_subject("1; DROP TABLE")
    assert command_of("quickcart.admin_set_role", {"role": "customer",
                                                   "from_role": "admin"}) == "rmadmin"
    assert command_of("quickcart.admin_set_ban", {"banned": False}) == "unban"
    assert command_of("quickcart.admin_export_stock", {}) == "exportstock"
    assert command_of("quickcart.admin_order_lookup", {}) == "order"


#: Admin tasks only an inline button sends (no typed command): their audit names.
BUTTON_ACTIONS = frozenset({"delallstock:confirm", "order:warranty", "order:resend",
                            "order:recheck", "order:replace", "refund:confirm",
                            "refund:cancel"})
#: The arguments the bot fixes for tasks that serve several commands: every variant it sends.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "quickcart.admin_set_ban": [{"banned": True}, {"banned": False}],
    "quickcart.admin_set_role": [{"role": role, "from_role": from_role}
                                 for role, from_role in ROLE_COMMANDS.values()],
    "quickcart.admin_edit_product": [{"field": field} for field in EDIT_COMMANDS.values()],
    "quickcart.admin_discount": [{"scope": "product"}, {"scope": "category"}],
    "quickcart.admin_group": [{"listed": True}, {"listed": False}],
}


def test_every_admin_task_is_audited_under_a_typed_command_or_a_button() -> None:
    """A task added later without a name in command_of is audited as its task name: this fails."""
    app.loader.import_default_modules()
    tasks = sorted(name for name in app.tasks
                   if name.startswith(PREFIX) and name not in NOT_COMMANDS)
    assert len(tasks) >= 38, tasks  # the registry was loaded
    named = {(task, command_of(task, kwargs)) for task in tasks
             for kwargs in VARIANTS.get(task, [{}])}
    unnamed = {(task, name) for task, name in named
               if name not in ADMIN_COMMANDS and name not in BUTTON_ACTIONS}
    assert unnamed == set()
    # Every admin command that enqueues a worker task is audited under its own name.
    typed = {name for _, name in named if name in ADMIN_COMMANDS}
    assert set(ADMIN_COMMANDS) - typed == {"delallstock"}  # it only asks; its button acts


@pytest.mark.parametrize("command", sorted({**admin_handlers._FIXED, **catalog_handlers._FIXED}))
def test_fixed_argument_commands_are_audited_under_their_name(command: str) -> None:
    """The bot's own table (task, arguments it fixes) gives back the typed command."""
    task, _parsers, fixed = {**admin_handlers._FIXED, **catalog_handlers._FIXED}[command]
    assert command_of(task, dict(fixed)) == command


def test_commands_told_apart_by_their_arguments() -> None:
    assert command_of("quickcart.admin_discount", {"scope": "product"}) == "disc"
    assert command_of("quickcart.admin_discount", {"scope": "category"}) == "discat"
    assert command_of("quickcart.admin_edit_product", {"field": "category"}) == "editcategory"
    assert command_of("quickcart.admin_edit_product", {"field": "description"}) == "editdesc"
    assert command_of("quickcart.admin_add_stock_lines", {"lines": ["a"]}) == "addstock"
    assert command_of("quickcart.admin_delete_all_stock", {}) == "delallstock:confirm"
