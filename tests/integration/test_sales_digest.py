"""The admins' sales digest: consecutive windows count every order once; one message per admin
per window; nothing to tell sends nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from quickcart.adapters.redis_store import prefixed
from quickcart.messages import render
from quickcart.services import digest
from tests.conftest import TestUrls, worker_runtime
from tests.integration.test_db_rules import make_order, make_product, make_stock, make_user
from workers import runtime
from workers.tasks import maintenance

T0 = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)


def order(conn: Any, user_id: int, status: str, *, created: datetime,
          paid: datetime | None = None, expires: datetime | None = None,
          method: str = "qris", total: int = 10000) -> None:
    """An order of one unit as history left it (times and status set directly)."""
    if not conn.execute(text("SELECT 1 FROM products WHERE id = 1")).first():
        make_product(conn, 1)
    order_id = make_order(conn, user_id, make_stock(conn, 1), price=total, method=method)
    conn.execute(text("UPDATE orders SET created_at = :c, expires_at = :e WHERE id = :o"),
                 {"c": created, "e": expires or created + timedelta(minutes=10), "o": order_id})
    if status != "pending":
        conn.execute(text("UPDATE orders SET status = :s, paid_at = :p WHERE id = :o"),
                     {"s": status, "p": paid, "o": order_id})


def test_consecutive_windows_count_each_order_once(db: Engine) -> None:
    with db.begin() as conn:
        for uid in range(1, 6):
            make_user(conn, uid)
        order(conn, 1, "paid", created=T0, paid=T0 + timedelta(seconds=30), total=15000)
        order(conn, 2, "paid", created=T0 + timedelta(seconds=50),
              paid=T0 + timedelta(seconds=70), method="account_balance", total=5000)
        order(conn, 3, "expired", created=T0 - timedelta(minutes=9),
              expires=T0 + timedelta(seconds=60))
        order(conn, 4, "pending", created=T0 + timedelta(seconds=90))
    first = digest.sales_between(db, T0, T0 + timedelta(seconds=60))
    second = digest.sales_between(db, T0 + timedelta(seconds=60), T0 + timedelta(seconds=120))
    assert (first.paid, first.paid_total, first.created_qris, first.expired) == \
        (1, Decimal(15000), 1, 0)
    assert (second.paid, second.paid_total, second.created_qris, second.expired) == \
        (1, Decimal(5000), 1, 1)
    assert digest.sales_between(db, T0 + timedelta(hours=1), T0 + timedelta(hours=2)).empty
    text_ = render("admin.sales_digest", "id", **first.params(lambda d: d.strftime("%H:%M")))
    assert "Rp15.000" in text_ and "Dibayar: 1 pesanan" in text_


@pytest.fixture()
def digest_env(monkeypatch: pytest.MonkeyPatch, test_urls: TestUrls,
               db: Engine) -> Iterator[list[dict[str, Any]]]:
    """The task against this session's databases and Redis, with its publishes captured."""
    with worker_runtime(monkeypatch, test_urls, ADMIN_IDS="4242,4343"):
        runtime.redis_client().delete(prefixed(maintenance.DIGEST_KEY))
        sent: list[dict[str, Any]] = []
        monkeypatch.setattr(maintenance.app, "send_task",
                            lambda name, **kw: sent.append({"name": name, **kw}))
        try:
            yield sent
        finally:
            runtime.redis_client().delete(prefixed(maintenance.DIGEST_KEY))


def test_digest_task_sends_one_summary_per_admin_per_window(
        digest_env: list[dict[str, Any]], db: Engine) -> None:
    assert maintenance.admin_sales_digest.run() == {"sent": 0}  # opens the first window
    r = runtime.redis_client()
    start = datetime.now(UTC) - timedelta(minutes=1)
    r.set(prefixed(maintenance.DIGEST_KEY), str(start.timestamp()))
    assert maintenance.admin_sales_digest.run() == {"sent": 0}  # nothing happened
    assert digest_env == []
    with db.begin() as conn:
        make_user(conn, 9)
        order(conn, 9, "paid", created=start + timedelta(seconds=5),
              paid=start + timedelta(seconds=6))
    r.set(prefixed(maintenance.DIGEST_KEY), str(start.timestamp()))
    assert maintenance.admin_sales_digest.run() == {"sent": 2, "paid": 1}
    assert sorted(m["kwargs"]["chat_id"] for m in digest_env) == [4242, 4343]
    assert {m["kwargs"]["key"] for m in digest_env} == {"admin.sales_digest"}
    assert len({m["kwargs"]["once_key"] for m in digest_env}) == 2
    # the window moved on: the same sale is not told twice
    assert maintenance.admin_sales_digest.run() == {"sent": 0}
    assert len(digest_env) == 2
