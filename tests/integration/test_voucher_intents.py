"""Voucher creation per admin intent on real PostgreSQL: the intent key is claimed in the
creating transaction, so a re-run task gets back what the first run made and creates nothing
more; only an admin in good standing creates codes."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from quickcart.domain.errors import ShopError
from quickcart.services import vouchers
from quickcart.services.registration import register_user
from tests.conftest import scalar

ADMIN, OTHER = 1, 2


@pytest.fixture()
def shop(db: Engine) -> Engine:
    register_user(db, ADMIN, "Admin")
    register_user(db, OTHER, "Other")
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id IN (:a, :o)"),
                     {"a": ADMIN, "o": OTHER})
    return db


def test_generated_codes_are_made_once_per_intent(shop: Engine) -> None:
    first = vouchers.generate_vouchers(shop, ADMIN, 5000, 3, intent_key="tg:1:generate")
    again = vouchers.generate_vouchers(shop, ADMIN, 5000, 3, intent_key="tg:1:generate")
    assert again == first
    assert len(set(first)) == 3
    assert scalar(shop, "SELECT count(*) FROM vouchers") == 3
    # Another intent makes codes of its own.
    other = vouchers.generate_vouchers(shop, ADMIN, 5000, 2, intent_key="tg:2:generate")
    assert not set(other) & set(first)
    assert scalar(shop, "SELECT count(*) FROM vouchers") == 5


def test_created_code_is_made_once_per_intent(shop: Engine) -> None:
    code = vouchers.create_voucher(shop, ADMIN, code=None, amount=2000,
                                   intent_key="tg:3:voucher")
    assert vouchers.create_voucher(shop, ADMIN, code=None, amount=2000,
                                   intent_key="tg:3:voucher") == code
    assert scalar(shop, "SELECT count(*) FROM vouchers") == 1
    # The same code by another intent is still refused.
    with pytest.raises(ShopError) as refused:
        vouchers.create_voucher(shop, ADMIN, code=code, amount=2000, intent_key="tg:4:voucher")
    assert refused.value.code == "voucher_exists"
    # The refused intent claimed nothing: its key is free for a retry that succeeds.
    assert scalar(shop, "SELECT count(*) FROM idempotency_keys WHERE key = 'tg:4:voucher'") == 0


def test_a_banned_admin_creates_no_codes(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("UPDATE users SET is_banned = true WHERE id = :a"), {"a": OTHER})
    for call in (lambda: vouchers.generate_vouchers(shop, OTHER, 5000, 1),
                 lambda: vouchers.create_voucher(shop, OTHER, code="BANNED1", amount=2000)):
        with pytest.raises(ShopError) as refused:
            call()
        assert refused.value.code == "not_admin"
    assert scalar(shop, "SELECT count(*) FROM vouchers") == 0
