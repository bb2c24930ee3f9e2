"""Voucher rules through the order service on real PostgreSQL: distinct refusals that change
nothing, single use, the 5-minute cooldown, release on expiry, never a negative bill."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from quickcart.db.uow import unit_of_work
from quickcart.services import orders
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user
from quickcart.services.vouchers import generate_vouchers
from tests.conftest import scalar

ADMIN, BUYER = 1, 2


@pytest.fixture()
def shop(db: Engine) -> Engine:
    register_user(db, ADMIN, "Admin")
    register_user(db, BUYER, "Buyer")
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :a"),
                     {"a": ADMIN})
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES"
                          " (1, 'Key', 10000)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT 1, 'K-' || g FROM generate_series(1, 10) g"))
    with unit_of_work(db) as uow:
        move_balance(uow.session, BUYER, Decimal(100000), "admin_credit", "test", "seed")
        uow.commit()
    return db


def order(engine: Engine, code: str | None, method: str = "account_balance",
          quantity: int = 1) -> dict[str, object]:
    return orders.create_order(engine, orders.CreateOrder(
        user_id=BUYER, product_id=1, quantity=quantity, payment_method=method,
        idempotency_key=f"t:{uuid.uuid4().hex}", voucher_code=code)).result


def state(engine: Engine) -> tuple[object, ...]:
    return (scalar(engine, "SELECT count(*) FROM orders"),
            scalar(engine, "SELECT account_balance FROM users WHERE id = :u", u=BUYER),
            scalar(engine, "SELECT count(*) FROM vouchers WHERE is_used OR order_id IS NOT NULL"),
            scalar(engine, "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL"))


def test_unknown_expired_and_used_codes_get_distinct_answers(shop: Engine) -> None:
    [used, expired] = generate_vouchers(shop, ADMIN, 2000, 2)
    with shop.begin() as conn:
        conn.execute(text("UPDATE vouchers SET expires_at = now() - interval '1 minute'"
                          " WHERE code = :c"), {"c": expired})
    assert order(shop, used)["status"] == "paid"
    with shop.begin() as conn:  # let the cooldown pass so only the code's own state answers
        conn.execute(text("UPDATE voucher_usage_cooldown SET expires_at = now()"
                          " - interval '1 second', last_voucher_used = now() - interval '6 min'"))
    before = state(shop)
    assert order(shop, "NOPE1234")["error"] == "voucher_unknown"
    assert order(shop, expired)["error"] == "voucher_expired"
    assert order(shop, used)["error"] == "voucher_used"
    assert state(shop) == before, "a refusal changes nothing"


def test_codes_are_case_insensitive_and_single_use(shop: Engine) -> None:
    [code] = generate_vouchers(shop, ADMIN, 3000, 1)
    first = order(shop, code.lower())
    assert first["status"] == "paid" and first["voucher_discount"] == "3000"
    assert scalar(shop, "SELECT used_by FROM vouchers") == BUYER
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 93000


def test_cooldown_of_five_minutes_between_redemptions(shop: Engine) -> None:
    [a, b] = generate_vouchers(shop, ADMIN, 1000, 2)
    assert order(shop, a)["status"] == "paid"
    refused = order(shop, b)
    assert refused["error"] == "voucher_cooldown"
    assert 0 < refused["params"]["seconds"] <= 300
    assert 1 <= refused["params"]["minutes"] <= 5  # the shopper reads "{n} menit"
    with shop.begin() as conn:
        conn.execute(text("UPDATE voucher_usage_cooldown SET expires_at = now()"
                          " - interval '1 second', last_voucher_used = now() - interval '6 min'"))
    assert order(shop, b)["status"] == "paid"


def test_voucher_held_by_expired_order_is_released(shop: Engine) -> None:
    [code] = generate_vouchers(shop, ADMIN, 5000, 1)
    pending = order(shop, code, method="qris")
    assert pending["status"] == "pending"
    assert scalar(shop, "SELECT order_id FROM vouchers") == pending["order_id"]
    outcome = orders.expire_order(shop, int(pending["order_id"]),  # type: ignore[call-overload]
                                  now=datetime.now(UTC) + timedelta(minutes=11))
    assert outcome.result["changed"] is True
    assert scalar(shop, "SELECT order_id FROM vouchers") is None
    assert scalar(shop, "SELECT is_used FROM vouchers") is False
    assert order(shop, code)["status"] == "paid", "the released code works again"


def test_discount_never_makes_the_bill_negative(shop: Engine) -> None:
    [code] = generate_vouchers(shop, ADMIN, 50000, 1)
    result = order(shop, code)
    assert result["status"] == "paid"
    assert result["voucher_discount"] == "10000" and result["total_bill"] == "0"
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 100000
