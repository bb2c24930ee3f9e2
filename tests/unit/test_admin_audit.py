"""The admin commands' parsing (bad input → usage), argument masking and command naming."""

from __future__ import annotations

import pytest

from bot.handlers.audit import parse_audit
from bot.handlers.review import parse_fraud, parse_review
from quickcart.domain.errors import ShopError
from quickcart.services.admin_audit import mask, parse_subject, subject_of
from workers.tasks.admin_audit import command_of


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
    assert command_of("quickcart.admin_order_lookup", {}) == "order_lookup"
