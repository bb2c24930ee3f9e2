"""Catalog admin services against real PostgreSQL (issue 23): /add defaults, inline stock with
its report, masked listings and short ids, /editid with every reference, low-stock crossings,
discounts in the order's price, voucher kinds, admin groups, /stats periods, restock watches.
Refusals change nothing; retries act once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.services import (
    admin_groups,
    broadcast,
    discounts,
    notifications,
    orders,
    shop_stats,
    stock_admin,
    vouchers,
)
from quickcart.services.ledger import move_balance
from tests.conftest import scalar
from tests.integration.test_admin_services import ADMIN, CUSTOMER, PRODUCT, refuses
from tests.integration.test_admin_services import shop as shop  # noqa: F401 - the fixture
from tests.integration.test_db_rules import make_product, make_stock, make_user

D = Decimal


def buy(engine: Engine, user_id: int, product_id: int, quantity: int = 1,
        voucher: str | None = None) -> dict[str, object]:
    """A balance purchase through the order engine; returns its recorded result."""
    return orders.create_order(engine, orders.CreateOrder(
        user_id=user_id, product_id=product_id, quantity=quantity,
        payment_method="account_balance", idempotency_key=f"t:{uuid.uuid4().hex}",
        voucher_code=voucher)).result


def fund(engine: Engine, user_id: int, amount: int) -> None:
    with unit_of_work(engine) as uow:
        move_balance(uow.session, user_id, D(amount), "admin_credit", "test",
                     f"fund-{uuid.uuid4().hex[:8]}")
        uow.commit()


# ------------------------------------------------------------------ /add and stock

def test_add_uses_defaults_reports_and_acts_once(shop: Engine) -> None:
    made = stock_admin.create_product(shop, ADMIN, None, None, None, "25.000", None,
                                      intent_key="t:add:1")
    assert (made.product_id, made.name, made.category, made.price, made.description) == \
        (1, "Produk 1", "Uncategorized", D(25000), None)
    again = stock_admin.create_product(shop, ADMIN, None, None, None, "25.000", None,
                                       intent_key="t:add:1")
    assert again == made and scalar(shop, "SELECT count(*) FROM products") == 2
    # no stock to fall from: a new product raises no low-stock alert
    assert stock_admin.check_low_stock(shop, [made.product_id]) == []
    second = stock_admin.create_product(shop, ADMIN, None, "Spotify", None,
                                        5000, "x", intent_key="t:add:2")
    assert second.product_id == 2  # the smallest free id (10 is taken, 1 too)
    refuses(shop, "invalid_price", lambda: stock_admin.create_product(
        shop, ADMIN, None, None, None, "-5", None, intent_key="t:add:3"))
    refuses(shop, "product_exists", lambda: stock_admin.create_product(
        shop, ADMIN, PRODUCT, None, None, 5000, None, intent_key="t:add:4"))
    refuses(shop, "not_admin", lambda: stock_admin.create_product(
        shop, CUSTOMER, None, None, None, 5000, None, intent_key="t:add:5"))


def test_inline_stock_reports_added_duplicates_refused(shop: Engine) -> None:
    long_line = "x" * 5000
    report = stock_admin.add_stock_report(shop, ADMIN, PRODUCT,
                                          ["akun1:pass1", "akun2:pass2", "akun1:pass1", "",
                                           long_line, "akun3:pass3\nakun4:pass4"])
    assert (report.added, report.duplicates, report.refused) == (4, 1, [5])
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE product_id = :p",
                  p=PRODUCT) == 4
    again = stock_admin.add_stock_report(shop, ADMIN, PRODUCT, ["akun1:pass1"])
    assert (again.added, again.duplicates) == (0, 1)
    refuses(shop, "product_not_found",
            lambda: stock_admin.add_stock_report(shop, ADMIN, 99, ["a"]))


def test_listing_masks_contents_and_short_ids_delete(shop: Engine) -> None:
    stock_admin.add_stock_report(shop, ADMIN, PRODUCT, ["akun1:pass1", "k2", "akun3:secret"])
    lines, total = stock_admin.list_stock(shop, ADMIN, PRODUCT)
    assert total == 3
    assert [line.masked for line in lines] == ["••••••••ass1", "••••", "••••••••cret"]
    assert all("akun" not in line.masked for line in lines)
    ids = {str(r.id)[-8:]: r.id for r in _units(shop)}
    assert {line.short_id for line in lines} == set(ids)
    target = lines[0].short_id
    deleted = stock_admin.delete_stock_unit(shop, ADMIN, target, PRODUCT)
    assert deleted.stock_id == ids[target]
    refuses(shop, "stock_unit_not_found",
            lambda: stock_admin.delete_stock_unit(shop, ADMIN, target, PRODUCT))
    refuses(shop, "stock_unit_not_found",
            lambda: stock_admin.delete_stock_unit(shop, ADMIN, "zzzzzzzz", PRODUCT))
    refuses(shop, "not_admin", lambda: stock_admin.list_stock(shop, CUSTOMER, PRODUCT))
    # another product's unit is not found through this product's short ids
    with shop.begin() as conn:
        make_product(conn, 11)
    other = lines[1].short_id
    refuses(shop, "stock_unit_not_found",
            lambda: stock_admin.delete_stock_unit(shop, ADMIN, other, 11))


def _units(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM product_stocks")).all())


def test_short_id_shared_by_two_units_asks_for_the_full_id(shop: Engine) -> None:
    with shop.begin() as conn:
        for suffix in ("1", "2"):
            conn.execute(text("INSERT INTO product_stocks (id, product_id, content) VALUES"
                              " (:i, :p, :c)"),
                         {"i": f"0000000{suffix}-0000-4000-8000-0000abcdef12", "p": PRODUCT,
                          "c": f"K{suffix}"})
    refuses(shop, "stock_short_id_ambiguous",
            lambda: stock_admin.delete_stock_unit(shop, ADMIN, "ABCDEF12", PRODUCT))


# ------------------------------------------------------------------ /editid

def test_editid_moves_every_reference_in_one_transaction(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 3)
    fund(shop, CUSTOMER, 50000)
    assert buy(shop, CUSTOMER, PRODUCT)["status"] == "paid"
    discounts.set_product_discount(shop, ADMIN, PRODUCT, "percent", D(10))
    moved = stock_admin.renumber_product(shop, ADMIN, PRODUCT, 77)
    assert moved >= 3 + 1 + 1  # units, order item, discount (and the sale's delta)
    assert scalar(shop, "SELECT count(*) FROM products WHERE id = :p", p=PRODUCT) == 0
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE product_id = 77") == 3
    assert scalar(shop, "SELECT count(*) FROM order_items WHERE product_id = 77") == 1
    assert scalar(shop, "SELECT count(*) FROM discounts WHERE product_id = 77") == 1
    assert scalar(shop, "SELECT count(*) FROM sold_count_deltas WHERE product_id = :p",
                  p=PRODUCT) == 0
    with shop.begin() as conn:
        make_product(conn, 78)
    refuses(shop, "product_exists", lambda: stock_admin.renumber_product(shop, ADMIN, 77, 78))
    refuses(shop, "product_not_found",
            lambda: stock_admin.renumber_product(shop, ADMIN, PRODUCT, 79))
    refuses(shop, "not_admin", lambda: stock_admin.renumber_product(shop, CUSTOMER, 77, 79))


# ------------------------------------------------------------------ low stock, restock

def test_low_stock_alerts_once_per_crossing(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 7)
    stock_admin.set_low_stock_threshold(shop, ADMIN, PRODUCT, 5)
    assert stock_admin.check_low_stock(shop) == []
    fund(shop, CUSTOMER, 100000)
    assert buy(shop, CUSTOMER, PRODUCT, 2)["status"] == "paid"  # 5 left: at the threshold
    alerts = stock_admin.check_low_stock(shop)
    assert [m.payload["params"]["product_id"] for m in alerts] == [PRODUCT]
    assert alerts[0].payload["key"] == "admin.low_stock"
    assert buy(shop, CUSTOMER, PRODUCT, 1)["status"] == "paid"  # 4 left: no second notice
    assert stock_admin.check_low_stock(shop) == []
    stock_admin.add_stock_report(shop, ADMIN, PRODUCT, [f"NEW-{i}" for i in range(5)])
    assert stock_admin.check_low_stock(shop) == []  # 9 left: re-armed
    assert buy(shop, CUSTOMER, PRODUCT, 4)["status"] == "paid"  # 5 left: crossed again
    assert len(stock_admin.check_low_stock(shop)) == 1
    refuses(shop, "invalid_threshold",
            lambda: stock_admin.set_low_stock_threshold(shop, ADMIN, PRODUCT, -1))


def test_restock_watchers_hear_once(shop: Engine) -> None:
    with shop.begin() as conn:
        for uid in (20, 21, 22):
            make_user(conn, uid)
        conn.execute(text("UPDATE users SET is_banned = true WHERE id = 22"))
    for uid in (20, 21, 22):
        assert stock_admin.watch_restock(shop, uid, PRODUCT) is True
    assert stock_admin.watch_restock(shop, 20, PRODUCT) is False
    assert broadcast.start_restock_notice(shop, ADMIN, PRODUCT, "t:r:1") is None  # no stock
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 1)
    started = broadcast.start_restock_notice(shop, ADMIN, PRODUCT, "t:r:2")
    assert started is not None and started.total == 2  # the banned one is left out
    assert scalar(shop, "SELECT count(*) FROM restock_watches") == 0
    assert broadcast.start_restock_notice(shop, ADMIN, PRODUCT, "t:r:3") is None


# ------------------------------------------------------------------ discounts

def test_discounts_set_the_order_price_and_the_catalog_shows_both(shop: Engine) -> None:
    from quickcart.services import catalog

    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 5)
        conn.execute(text("UPDATE products SET category = 'Streaming' WHERE id = :p"),
                     {"p": PRODUCT})
    fund(shop, CUSTOMER, 100000)
    discounts.set_product_discount(shop, ADMIN, PRODUCT, "percent", D(10))
    discounts.set_category_discount(shop, ADMIN, "streaming", "amount", D(2500))
    card = catalog.product(shop, PRODUCT, "customer")
    assert card is not None and (card.price, card.original_price) == (D(7500), D(10000))
    result = buy(shop, CUSTOMER, PRODUCT, 2)
    assert result["status"] == "paid"
    assert scalar(shop, "SELECT sum(price_per_unit) FROM order_items") == 15000
    discounts.set_category_discount(shop, ADMIN, "Streaming", "amount", D(0))  # removed
    assert catalog.product(shop, PRODUCT, "customer").price == D(9000)  # type: ignore[union-attr]
    discounts.set_product_discount(shop, ADMIN, PRODUCT, "amount", D(0))
    plain = catalog.product(shop, PRODUCT, "customer")
    assert plain is not None and (plain.price, plain.original_price) == (D(10000), None)
    refuses(shop, "discount_too_large",
            lambda: discounts.set_product_discount(shop, ADMIN, PRODUCT, "amount", D(10000)))
    refuses(shop, "invalid_discount",
            lambda: discounts.set_product_discount(shop, ADMIN, PRODUCT, "percent", D(100)))
    refuses(shop, "discount_end_past", lambda: discounts.set_product_discount(
        shop, ADMIN, PRODUCT, "percent", D(5), datetime.now(UTC) - timedelta(hours=1)))
    refuses(shop, "category_not_found",
            lambda: discounts.set_category_discount(shop, ADMIN, "Nope", "percent", D(5)))
    refuses(shop, "product_not_found",
            lambda: discounts.set_product_discount(shop, ADMIN, 99, "percent", D(5)))


def test_resellers_discounted_only_down_to_the_floor(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 3)
        conn.execute(text("UPDATE products SET reseller_price = 9000 WHERE id = :p"),
                     {"p": PRODUCT})
        conn.execute(text("UPDATE users SET member_status = 'reseller' WHERE id = :u"),
                     {"u": CUSTOMER})
    fund(shop, CUSTOMER, 100000)
    discounts.set_product_discount(shop, ADMIN, PRODUCT, "percent", D(50))
    with shop.connect() as conn:
        assert discounts.unit_price_for(conn, PRODUCT, "reseller").price == D(9000)  # type: ignore[union-attr]
    discounts.set_reseller_floor(shop, ADMIN, PRODUCT, "8.000")
    assert buy(shop, CUSTOMER, PRODUCT)["status"] == "paid"
    assert scalar(shop, "SELECT price_per_unit FROM order_items") == 8000


# ------------------------------------------------------------------ vouchers

def test_percentage_voucher_with_cap_and_minimum(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 5)
    fund(shop, CUSTOMER, 100000)
    code = vouchers.create_voucher(shop, ADMIN, code="hemat50", amount=3000, percent=50,
                                   min_purchase=20000)
    assert code == "HEMAT50"
    refused = buy(shop, CUSTOMER, PRODUCT, 1, voucher=code)
    assert refused["error"] == "voucher_min_purchase"
    assert buy(shop, CUSTOMER, PRODUCT, 2, voucher=code)["status"] == "paid"
    assert scalar(shop, "SELECT voucher_discount FROM orders WHERE status = 'paid'") == 3000
    with pytest.raises(ShopError) as info:
        vouchers.create_voucher(shop, ADMIN, code="HEMAT50", amount=3000)
    assert info.value.code == "voucher_exists"


def test_multi_use_voucher_total_and_per_user_limits(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 10)
        for uid in (30, 31):
            make_user(conn, uid)
    for uid in (CUSTOMER, 30, 31):
        fund(shop, uid, 100000)
    code = vouchers.create_voucher(shop, ADMIN, code=None, amount=1000, max_uses=2,
                                   per_user_limit=1)
    assert buy(shop, CUSTOMER, PRODUCT, voucher=code)["status"] == "paid"
    with shop.begin() as conn:  # the cooldown is not what this test is about
        conn.execute(text("DELETE FROM voucher_usage_cooldown"))
    assert buy(shop, CUSTOMER, PRODUCT, voucher=code)["error"] == "voucher_user_limit"
    assert buy(shop, 30, PRODUCT, voucher=code)["status"] == "paid"
    assert buy(shop, 31, PRODUCT, voucher=code)["error"] == "voucher_used"
    assert scalar(shop, "SELECT count(*) FROM voucher_redemptions WHERE used_at IS NOT NULL") == 2
    # the single-use contract is untouched: the code row itself was never marked used
    assert scalar(shop, "SELECT is_used FROM vouchers WHERE code = :c", c=code) is False


# ------------------------------------------------------------------ groups and stats

def test_admin_groups_in_the_database(shop: Engine) -> None:
    assert admin_groups.whitelist(shop, ADMIN, -100123).changed is True
    assert admin_groups.whitelist(shop, ADMIN, -100123).changed is False
    assert -100123 in notifications.admin_chat_ids(shop)
    assert admin_groups.sync_env_groups(shop, [-200, -100123]) == ([-100123, -200], [])
    refuses(shop, "env_group", lambda: admin_groups.remove(shop, ADMIN, -200))
    refuses(shop, "invalid_group_id", lambda: admin_groups.whitelist(shop, ADMIN, 5))
    assert admin_groups.sync_env_groups(shop, []) == ([], [-100123, -200])
    assert admin_groups.whitelist(shop, ADMIN, -300).changed is True
    assert admin_groups.remove(shop, ADMIN, -300).changed is True
    assert admin_groups.group_ids(shop) == []
    assert -300 not in notifications.admin_chat_ids(shop)


def test_stats_count_the_period_in_jakarta(shop: Engine) -> None:
    with shop.begin() as conn:
        make_stock(conn, PRODUCT, 5)
    fund(shop, CUSTOMER, 100000)
    assert buy(shop, CUSTOMER, PRODUCT, 2)["status"] == "paid"
    now = datetime.now(UTC)
    today = shop_stats.period_stats(shop, "today", now)
    assert (today.orders, today.units, today.revenue, today.saldo_orders) == (1, 2, D(20000), 1)
    assert [(p.product_id, p.units) for p in today.top] == [(PRODUCT, 2)]
    with shop.begin() as conn:  # the sale moves to 40 days ago: out of today, in "all"
        conn.execute(text("UPDATE orders SET paid_at = now() - interval '40 days'"))
    assert shop_stats.period_stats(shop, "month", now).orders == 0
    assert shop_stats.period_stats(shop, "all", now).orders == 1
    assert shop_stats.period_stats(shop, "all", now).new_users == 2
    # Jakarta's day starts at 17:00 UTC
    assert shop_stats.period_stats(shop, "today", datetime(2026, 12, 6, 16, 59, tzinfo=UTC)
                                   ).since == datetime(2026, 12, 5, 17, tzinfo=UTC)
