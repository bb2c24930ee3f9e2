"""The data contract's Redis caches on real PostgreSQL and Redis: stock counts and welcome
stats are read through a TTL'd cache and fresh again once a writer's task invalidates them;
a paginated list is stored once and paged through."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import redis
from sqlalchemy import Engine, text

from quickcart.adapters import redis_store
from quickcart.db.uow import unit_of_work
from quickcart.services import catalog, orders
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user
from tests.conftest import TEST_KEY_PREFIX, TestUrls

BUYER = 2
# A product id no other test or seed uses: the stock_count key is shared with any other run.
PRODUCT = 900_000 + uuid.uuid4().int % 90_000


@pytest.fixture()
def cache(test_urls: TestUrls) -> Iterator[redis.Redis]:
    """Real Redis; every key these tests may create is deleted before and after."""
    r = redis_store.client(test_urls.redis_url)
    user = 2_000_000_000 + uuid.uuid4().int % 100_000_000
    keys = [redis_store.stock_count_key(PRODUCT), redis_store.stats_users_key(),
            redis_store.stats_transactions_key(), redis_store.pagination_key(user, "all")]
    r.delete(*keys)
    r.pagination_user = user  # type: ignore[attr-defined]
    yield r
    r.delete(*keys)
    r.close()


@pytest.fixture()
def shop(db: Engine) -> Engine:
    register_user(db, BUYER, "Buyer")
    with db.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES"
                          " (:p, 'Key', 10000)"), {"p": PRODUCT})
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT :p, 'K-' || g FROM generate_series(1, 5) g"), {"p": PRODUCT})
    with unit_of_work(db) as uow:
        move_balance(uow.session, BUYER, Decimal(100000), "admin_credit", "test", "seed")
        uow.commit()
    return db


def test_stock_count_is_cached_until_invalidated(shop: Engine, cache: redis.Redis) -> None:
    key = redis_store.stock_count_key(PRODUCT)
    assert catalog.stock_count(shop, PRODUCT, cache) == 5
    # Under REDIS_KEY_PREFIX (this session's), never the bare name of the data contract.
    assert key == f"{TEST_KEY_PREFIX}stock_count:{PRODUCT}"
    assert cache.get(key) == "5" and cache.exists(f"stock_count:{PRODUCT}") == 0
    assert 0 < int(cache.ttl(key)) <= redis_store.STOCK_COUNT_TTL_SECONDS
    with shop.begin() as conn:  # a change behind the cache's back
        conn.execute(text("DELETE FROM product_stocks WHERE product_id = :p AND content = 'K-1'"),
                     {"p": PRODUCT})
    assert catalog.stock_count(shop, PRODUCT, cache) == 5  # cached
    assert catalog.product(shop, PRODUCT, "customer", cache).stock == 5  # type: ignore[union-attr]
    assert catalog.stock_count(shop, PRODUCT) == 4  # the database itself
    assert redis_store.invalidate_stock_counts(cache, [PRODUCT])
    assert catalog.stock_count(shop, PRODUCT, cache) == 4
    # product() fills the same cache when it misses
    cache.delete(key)
    assert catalog.product(shop, PRODUCT, "customer", cache).stock == 4  # type: ignore[union-attr]
    assert cache.get(key) == "4"


def test_purchase_task_invalidation_makes_the_next_read_fresh(
        shop: Engine, cache: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import runtime
    from workers.tasks import orders as order_tasks

    monkeypatch.setattr(runtime, "engine", lambda: shop)
    monkeypatch.setattr(runtime, "redis_client", lambda: cache)
    assert catalog.stock_count(shop, PRODUCT, cache) == 5
    assert catalog.shop_counts(shop, cache) == (1, 0)

    result = orders.create_order(shop, orders.CreateOrder(
        user_id=BUYER, product_id=PRODUCT, quantity=2, payment_method="account_balance",
        idempotency_key=f"t:{uuid.uuid4().hex}")).result
    assert result["status"] == "paid"
    assert catalog.stock_count(shop, PRODUCT, cache) == 5  # stale until invalidated
    assert catalog.shop_counts(shop, cache) == (1, 0)
    # what quickcart.create_order does after the service returned
    redis_store.invalidate_stock_counts(runtime.redis_client(), [PRODUCT],
                                        redis_store.stats_transactions_key())
    assert catalog.stock_count(shop, PRODUCT, cache) == 3
    assert catalog.shop_counts(shop, cache) == (1, 1)

    # a QRIS order reserves units; its cancellation releases them and invalidates by order
    pending = orders.create_order(shop, orders.CreateOrder(
        user_id=BUYER, product_id=PRODUCT, quantity=1, payment_method="qris",
        idempotency_key=f"t:{uuid.uuid4().hex}")).result
    assert pending["status"] == "pending", pending
    redis_store.invalidate_stock_counts(cache, [PRODUCT])
    assert catalog.stock_count(shop, PRODUCT, cache) == 2
    cancelled = orders.cancel_own_order(shop, BUYER).result
    assert cancelled["changed"]
    assert catalog.stock_count(shop, PRODUCT, cache) == 2  # cached
    assert order_tasks.invalidate_order_caches(None, str(cancelled["invoice_id"]))
    assert catalog.stock_count(shop, PRODUCT, cache) == 3


def test_stats_cached_and_invalidated_on_registration(shop: Engine, cache: redis.Redis) -> None:
    assert catalog.shop_counts(shop, cache) == (1, 0)
    assert cache.get(redis_store.stats_users_key()) == "1"
    assert 0 < int(cache.ttl(redis_store.stats_users_key())) <= redis_store.STATS_TTL_SECONDS
    register_user(shop, BUYER + 1, "Second")
    assert catalog.shop_counts(shop, cache) == (1, 0)  # cached
    redis_store.invalidate(cache, redis_store.stats_users_key())  # what register_user's task does
    assert catalog.shop_counts(shop, cache) == (2, 0)


def test_unreachable_redis_falls_back_to_the_database(shop: Engine) -> None:
    dead = redis_store.client("redis://127.0.0.1:1/0")
    assert catalog.stock_count(shop, PRODUCT, dead) == 5
    assert catalog.shop_counts(shop, dead) == (1, 0)
    assert redis_store.invalidate(dead, redis_store.stats_users_key()) is False
    assert redis_store.pagination_load(dead, 1, "all", 1) is None
    assert redis_store.pagination_store(dead, 1, "all", [1, 2, 3], 2)["total_pages"] == 2


def test_pagination_stores_and_pages_a_list(cache: redis.Redis) -> None:
    user = cache.pagination_user  # type: ignore[attr-defined]
    key = redis_store.pagination_key(user, "all")
    items = list(range(1, 20))
    state = redis_store.pagination_store(cache, user, "all", items, 8)
    assert (state["page"], state["total_pages"]) == (0, 3)
    assert redis_store.page_items(state) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert 0 < int(cache.ttl(key)) <= redis_store.PAGINATION_TTL_SECONDS

    nxt = redis_store.pagination_load(cache, user, "all", 1)
    assert nxt is not None and nxt["page"] == 1
    assert redis_store.page_items(nxt) == list(range(9, 17))
    last = redis_store.pagination_load(cache, user, "all", 99)  # clamped
    assert last is not None and (last["page"], redis_store.page_items(last)) == (2, [17, 18, 19])
    stored = redis_store.pagination_load(cache, user, "all")
    assert stored is not None and stored["page"] == 2 and stored["items"] == items

    cache.set(key, "not json")
    assert redis_store.pagination_load(cache, user, "all", 1) is None
    assert cache.exists(key) == 0
    assert redis_store.pagination_load(cache, user, "other", 0) is None
