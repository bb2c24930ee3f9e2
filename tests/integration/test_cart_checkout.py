"""Multi-product orders, the cart and the checkout quote against real PostgreSQL and Redis:
one order with a line per product, all or nothing; the summary's numbers are the order row's;
crossed carts racing for scarce stock never oversell nor deadlock; bad input changes nothing."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from quickcart.adapters import redis_store
from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services import cart, orders
from quickcart.services.invariants import check_invariants
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user
from tests.conftest import TestUrls, scalar
from tests.integration.test_db_rules import make_product, make_stock

BUYER = 7
PRICES = {1: 10000, 2: 25000, 3: 99000}


def fund(engine: Engine, user_id: int, amount: int) -> None:
    register_user(engine, user_id, f"Shopper {user_id}")
    if amount:
        with unit_of_work(engine) as uow:
            move_balance(uow.session, user_id, Decimal(amount), "admin_credit", "test",
                         f"seed-{user_id}")
            uow.commit()


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """Products 1-3 (Rp10.000, Rp25.000, Rp99.000), 5 units each; buyer 7 with Rp500.000."""
    with db.begin() as conn:
        for product_id, price in PRICES.items():
            make_product(conn, product_id, price)
            make_stock(conn, product_id, 5)
    fund(db, BUYER, 500000)
    return db


@pytest.fixture()
def r(test_urls: TestUrls) -> Iterator[redis.Redis]:
    client = redis_store.client(test_urls.redis_url)
    client.delete(cart.cart_key(BUYER))
    yield client
    client.delete(cart.cart_key(BUYER))
    client.close()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def place(engine: Engine, lines: list[tuple[int, int]], method: str = "qris",
          user_id: int = BUYER, **extra: Any) -> dict[str, Any]:
    return orders.create_order(engine, orders.CreateOrder(
        user_id=user_id, product_id=lines[0][0] if lines else 0,
        quantity=lines[0][1] if lines else 0, payment_method=method,
        idempotency_key=f"test:{uuid.uuid4().hex}", lines=tuple(lines), **extra)).result


def test_cart_order_is_one_order_with_a_line_per_product(shop: Engine) -> None:
    # Lines given out of product order: the engine merges and sorts them.
    result = place(shop, [(3, 1), (1, 2), (2, 1), (1, 1)])
    assert result["status"] == "pending"
    assert [(line["product_id"], line["quantity"]) for line in result["lines"]] == [
        (1, 3), (2, 1), (3, 1)]
    order_id = result["order_id"]
    per_product = dict(rows(shop, "SELECT product_id, count(*) FROM order_items"
                            " WHERE order_id = :o GROUP BY product_id", o=order_id))
    assert per_product == {1: 3, 2: 1, 3: 1}
    subtotal = 3 * 10000 + 25000 + 99000  # 154.000 → fee ceil(1078) + 310
    [row] = rows(shop, "SELECT * FROM orders WHERE id = :o", o=order_id)
    assert (row.subtotal, row.voucher_discount, row.payment_fee, row.total_bill) == (
        subtotal, 0, 1078 + 310, subtotal + 1388)
    assert scalar(shop, "SELECT count(*) FROM orders") == 1


def test_a_short_line_refuses_the_whole_order_naming_the_product(shop: Engine) -> None:
    result = place(shop, [(1, 2), (2, 6), (3, 1)], method="account_balance")
    assert result["error"] == "not_enough_stock"
    assert result["params"]["product_id"] == 2
    assert result["params"]["product_name"] == "product 2"
    assert (result["params"]["available"], result["params"]["requested"]) == (5, 6)
    # nothing taken from the lines before or after the short one
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL") == 0
    assert scalar(shop, "SELECT count(*) FROM orders") == 0
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 500000


def test_balance_order_is_paid_at_once_and_summary_equals_the_row(shop: Engine) -> None:
    quoted = cart.quote(shop, BUYER, "customer", [(1, 1), (2, 2)])
    assert quoted.balance_bill.total == 60000 and quoted.balance_after == 440000
    assert quoted.qris.payment_fee == 420 + 310
    result = place(shop, [(1, 1), (2, 2)], method="account_balance",
                   expected_total=str(quoted.balance_bill.total))
    assert result["status"] == "paid"
    [row] = rows(shop, "SELECT * FROM orders WHERE id = :o", o=result["order_id"])
    assert row.total_bill == quoted.balance_bill.total and row.subtotal == quoted.qris.subtotal
    assert scalar(shop, "SELECT account_balance FROM users WHERE id = :u", u=BUYER) == 440000


def test_a_bill_that_changed_since_the_summary_is_refused(shop: Engine) -> None:
    quoted = cart.quote(shop, BUYER, "customer", [(1, 1)])
    with shop.begin() as conn:
        conn.execute(text("UPDATE products SET customer_price = 12000 WHERE id = 1"))
    result = place(shop, [(1, 1)], expected_total=str(quoted.qris.total))
    assert result["error"] == "bill_changed"
    assert scalar(shop, "SELECT count(*) FROM orders") == 0


def test_refusal_from_the_bot_edits_its_message_and_offers_next_steps(shop: Engine) -> None:
    outcome = orders.create_order(shop, orders.CreateOrder(
        BUYER, 1, 9, "qris", f"test:{uuid.uuid4().hex}", reply_to=77))
    [message] = outcome.outbox
    params = message.payload["params"]
    assert message.payload["key"] == "error.not_enough_stock"
    assert params["_edit"] == 77
    assert ["button.change_quantity", "k:view"] in [list(b) for row in params["_buttons"]
                                                      for b in row]


@pytest.mark.parametrize(("lines", "code"), [
    ([(1, -1)], "invalid_quantity"),
    ([(1, 0)], "invalid_quantity"),
    ([(1, 10**9)], "invalid_quantity"),
    ([(1, 600), (2, 600)], "invalid_quantity"),
    ([(p, 1) for p in range(1, 1001)], "cart_too_large"),
    ([], "cart_too_large"),
    ([(-5, 1)], "product_unavailable"),
    ([(2**40, 1)], "product_unavailable"),
    ([(424242, 1)], "product_unavailable"),
])
def test_bad_lines_are_refused_and_change_nothing(
        shop: Engine, lines: list[tuple[int, int]], code: str) -> None:
    result = place(shop, lines)
    assert result["status"] == "rejected" and result["error"] == code
    assert scalar(shop, "SELECT count(*) FROM orders") == 0
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE order_id IS NOT NULL") == 0


def test_cart_lives_in_redis_capped_by_stock_and_emptied_once_paid(
        shop: Engine, r: redis.Redis) -> None:
    assert cart.add(shop, r, BUYER, 1, 2).status == "added"
    capped = cart.add(shop, r, BUYER, 1, 50)
    assert (capped.status, capped.quantity) == ("capped", 5)
    assert cart.add(shop, r, BUYER, 424242, 1).status == "unavailable"
    cart.add(shop, r, BUYER, 3, 1)
    assert cart.lines(shop, r, BUYER) == {1: 5, 3: 1}
    key = cart.cart_key(BUYER)
    assert key.startswith(redis_store.prefixed("cart:"))
    assert 0 < r.ttl(key) <= cart.CART_TTL_SECONDS
    cart.set_quantity(r, BUYER, 1, 0)
    assert cart.lines(shop, r, BUYER) == {3: 1}
    # checked out by QRIS: kept while pending, emptied once its order is paid
    result = place(shop, [(3, 1)])
    cart.remember_order(r, BUYER, result["order_id"])
    assert cart.lines(shop, r, BUYER) == {3: 1}
    with shop.begin() as conn:  # paid, as the payment's settlement marks it
        conn.execute(text("UPDATE product_stocks SET is_sold = true WHERE order_id = :o;"
                          " UPDATE orders SET status = 'paid', paid_at = now(),"
                          " amount_paid = total_bill WHERE id = :o"), {"o": result["order_id"]})
    assert cart.lines(shop, r, BUYER) == {}
    assert r.exists(key) == 0


def _voucher(engine: Engine, code: str, amount: int = 5000, days: int = 30) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO users (id, name, bank_id, member_status)"
            " VALUES (1, 'admin', '100001', 'admin') ON CONFLICT DO NOTHING"))
        conn.execute(text(
            "INSERT INTO vouchers (code, amount, created_by, expires_at)"
            " VALUES (:c, :a, 1, :e)"),
            {"c": code, "a": amount, "e": datetime.now(UTC) + timedelta(days=days)})


@pytest.mark.parametrize("typed", [
    "NOPE1234", "GOOD'; DROP TABLE orders; --", "*GOOD1234*", "<b>GOOD</b>", "🎁🎁", "",
    "G" * 500])
def test_wrong_voucher_codes_are_unknown(shop: Engine, typed: str) -> None:
    _voucher(shop, "GOOD1234")
    with pytest.raises(ShopError) as refused:
        cart.check_voucher(shop, BUYER, typed)
    assert refused.value.code == "voucher_unknown"
    assert scalar(shop, "SELECT count(*) FROM orders") == 0


def test_voucher_states_on_the_summary(shop: Engine) -> None:
    _voucher(shop, "GOOD1234", 5000)
    _voucher(shop, "USED1234")
    _voucher(shop, "OLD12345", days=-1)
    fund(shop, 8, 0)  # another shopper's pending order holds USED1234
    assert place(shop, [(2, 1)], user_id=8, voucher_code="USED1234")["status"] == "pending"
    good = cart.check_voucher(shop, BUYER, " good1234 ")
    assert (good["code"], Decimal(good["amount"])) == ("GOOD1234", Decimal(5000))
    # checking writes and holds nothing: the voucher is still free for an order
    assert scalar(shop, "SELECT order_id FROM vouchers WHERE code = 'GOOD1234'") is None
    for code, error in (("USED1234", "voucher_used"), ("OLD12345", "voucher_expired")):
        with pytest.raises(ShopError) as refused:
            cart.check_voucher(shop, BUYER, code)
        assert refused.value.code == error
    # the quoted bill with the voucher is the order row's
    quoted = cart.quote(shop, BUYER, "customer", [(1, 3)], good)
    result = place(shop, [(1, 3)], voucher_code="GOOD1234",
                   expected_total=str(quoted.qris.total))
    assert result["status"] == "pending"
    assert (Decimal(result["subtotal"]), Decimal(result["voucher_discount"]),
            Decimal(result["payment_fee"]), Decimal(result["total_bill"])) == (
        quoted.qris.subtotal, quoted.qris.voucher_discount, quoted.qris.payment_fee,
        quoted.qris.total)
    assert quoted.qris.total == 25000 + 175 + 310


def test_crossed_carts_race_for_scarce_stock(
        db: Engine, audit_engine: Engine, test_urls: TestUrls) -> None:
    """50 shoppers, 3 products with 12 units each, carts of 2-3 products listed in random
    (crossed) orders, all placed at once from real threads: no oversell, no deadlock or other
    error reaching a shopper, every order all-or-nothing."""
    stock = 12
    with db.begin() as conn:
        for product_id, price in PRICES.items():
            make_product(conn, product_id, price)
            make_stock(conn, product_id, stock)
    shoppers = list(range(1001, 1051))
    for user_id in shoppers:
        fund(db, user_id, 1_000_000)
    rng = random.Random(21)
    carts: dict[int, list[tuple[int, int]]] = {}
    for user_id in shoppers:
        products = rng.sample([1, 2, 3], rng.choice([2, 3]))  # a random (crossed) order
        carts[user_id] = [(p, rng.randint(1, 3)) for p in products]
    engine = create_engine(test_urls.database_url, pool_size=50, max_overflow=10)
    start = threading.Barrier(len(shoppers))
    results: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def shopper(user_id: int) -> None:
        try:
            start.wait(timeout=60)
            results[user_id] = place(engine, carts[user_id],
                                     method="qris" if user_id % 2 else "account_balance",
                                     user_id=user_id)
        except BaseException as exc:  # noqa: BLE001 - any error reaching a shopper fails
            errors.append(exc)

    threads = [threading.Thread(target=shopper, args=(u,)) for u in shoppers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    engine.dispose()
    assert not errors, errors
    assert len(results) == len(shoppers)
    placed = {u: res for u, res in results.items() if res["status"] in ("paid", "pending")}
    refused = {u: res for u, res in results.items() if res["status"] == "rejected"}
    assert placed and refused  # the stock was scarce: some won, some were told
    assert {res["error"] for res in refused.values()} <= {"not_enough_stock", "out_of_stock"}
    with db.connect() as conn:
        items = conn.execute(text(
            "SELECT o.user_id, i.product_id, count(*) AS n FROM order_items i"
            " JOIN orders o ON o.id = i.order_id GROUP BY o.user_id, i.product_id")).all()
        taken = dict(conn.execute(text(
            "SELECT product_id, count(*) FROM product_stocks WHERE order_id IS NOT NULL"
            " GROUP BY product_id")).all())
        order_users = set(conn.execute(text("SELECT user_id FROM orders")).scalars())
    got: dict[int, dict[int, int]] = {}
    for row in items:
        got.setdefault(row.user_id, {})[row.product_id] = row.n
    for user_id in placed:
        assert got[user_id] == dict(carts[user_id]), user_id  # every unit of the cart
    assert order_users == set(placed)  # a refused cart left no order, nothing reserved
    for product_id in PRICES:
        wanted = sum(dict(carts[u]).get(product_id, 0) for u in placed)
        assert taken.get(product_id, 0) == wanted <= stock  # never oversold
    report = check_invariants(db, audit_engine)
    assert report.ok, report.format()


def test_top_buyers_this_month_masked(shop: Engine) -> None:
    from quickcart.services import catalog

    assert [catalog.mask_name(n) for n in ("Budi", "Al", "  ", "Susilowati")] == [
        "Bu***i", "A***", "?***", "Su***i"]
    fund(shop, 8, 500000)
    place(shop, [(1, 1)], method="account_balance")
    place(shop, [(3, 1)], method="account_balance", user_id=8)
    place(shop, [(1, 1)], method="account_balance")  # a second order of buyer 7
    old = place(shop, [(2, 1)], method="account_balance", user_id=8)
    with shop.begin() as conn:  # paid last month: not on this month's board
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE orders SET paid_at = now() - interval '40 days'"
                          " WHERE id = :o"), {"o": old["order_id"]})
    board = catalog.top_buyers(shop)
    assert [(b.masked_name, b.orders, b.total) for b in board] == [
        ("Sh***8", 1, 99000), ("Sh***7", 2, 20000)]


def test_reply_keyboard_ids_are_24_in_stock_best_sellers_by_id(db: Engine) -> None:
    from quickcart.services import catalog

    with db.begin() as conn:
        for product_id in range(1, 31):
            make_product(conn, product_id)
            if product_id != 5:
                make_stock(conn, product_id, 1)
        conn.execute(text("UPDATE products SET sold_count = 100 WHERE id IN (29, 30)"))
    ids = catalog.in_stock_ids(db)
    assert len(ids) == 24 and ids == sorted(ids)
    assert 5 not in ids and {29, 30} <= set(ids)
