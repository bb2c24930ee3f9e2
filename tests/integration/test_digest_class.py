"""The sales digest is an admin notice: its copies go out as `send_notice` (the admins' class in
Telegram's send pipe, after shoppers' replies), not as a shopper's reply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from quickcart.adapters.redis_store import prefixed
from tests.integration.test_db_rules import make_user
from tests.integration.test_sales_digest import digest_env, order  # noqa: F401 - the fixture
from workers import runtime
from workers.routes import NOTIFY_PRIORITIES
from workers.tasks import maintenance


def test_digest_copies_are_admin_notices(digest_env: list[dict[str, Any]],  # noqa: F811
                                         db: Engine) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    with db.begin() as conn:
        make_user(conn, 9)
        order(conn, 9, "paid", created=start + timedelta(seconds=5),
              paid=start + timedelta(seconds=6))
    runtime.redis_client().set(prefixed(maintenance.DIGEST_KEY), str(start.timestamp()))
    assert maintenance.admin_sales_digest.run() == {"sent": 2, "paid": 1}
    assert {m["name"] for m in digest_env} == {"quickcart.send_notice"}
    assert NOTIFY_PRIORITIES["quickcart.send_notice"] > NOTIFY_PRIORITIES["quickcart.send_message"]
