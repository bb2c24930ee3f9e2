"""Checks shared by the fault scenarios: the invariant checker clean, plus exact effects."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from quickcart.db.uow import unit_of_work
from tests.e2e.conftest import TASK_QUEUES, Shop
from tests.e2e.test_order_engine import assert_clean, delivered_contents, sold_contents
from tests.support import wait_until

__all__ = ["assert_clean", "delivered_contents", "sold_contents"]


def intent(shop: Shop, user_id: int, product_id: int, method: str = "account_balance",
           key: str | None = None, quantity: int = 1) -> str:
    """Send one purchase intent (as the bot does); returns its idempotency key."""
    key = key or f"flt:{uuid.uuid4().hex}"
    # The task id names the key, so a failure can find what the workers did with it.
    shop.client.send_task("quickcart.create_order", queue=TASK_QUEUES["quickcart.create_order"],
                          task_id=f"{key}:{uuid.uuid4().hex[:6]}",
                          kwargs={"user_id": user_id, "product_id": product_id,
                                  "quantity": quantity, "payment_method": method,
                                  "idempotency_key": key, "voucher_code": None})
    return key


def outcomes(shop: Shop, keys: list[str]) -> dict[str, dict[str, Any] | None]:
    """The recorded result of each key (None while it has none)."""
    with shop.main.connect() as conn:
        got = dict(conn.execute(text("SELECT key, result FROM idempotency_keys"
                                     " WHERE key = ANY(:k)"), {"k": keys}).all())
    return {k: got.get(k) for k in keys}


def wait_all_outcomes(shop: Shop, keys: list[str], timeout: float,
                      extra: str | Callable[[], str] = "",
                      logs: Iterable[Path] = ()) -> dict[str, dict[str, Any]]:
    """Wait until every key has an outcome; on timeout, say which are missing, with `extra`
    (read then, if a callable) and every line of the `logs` naming a missing key or a problem."""
    try:
        wait_until(lambda: all(v is not None for v in outcomes(shop, keys).values()),
                   what=f"{len(keys)} intents", timeout=timeout, interval=0.5)
    except AssertionError as exc:
        missing = [k for k, v in outcomes(shop, keys).items() if v is None]
        told = extra() if callable(extra) else extra
        raise AssertionError(f"{exc}: {len(missing)} intent(s) without an outcome, e.g."
                             f" {missing[:5]}\n{told}\n{_log_lines(logs, missing)}") from None
    return {k: v for k, v in outcomes(shop, keys).items() if v is not None}


def _log_lines(paths: Iterable[Path], keys: list[str], limit: int = 80) -> str:
    """The log lines that name one of `keys` (in a task id) or report a retry, an error or a
    parked message."""
    problem = re.compile(r"retry|error|poison|warning|lost|restor", re.IGNORECASE)
    found = []
    for path in paths:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        found += [f"{path.name}: {line[:300]}" for line in lines
                  if any(k in line for k in keys)
                  or (problem.search(line) and "SecurityWarning" not in line
                      and "_warn_or_raise_security_error" not in line)]
    return "--- log lines naming the missing keys or a problem\n" + "\n".join(found[-limit:])


def add_admin(shop: Shop, user_id: int) -> int:
    shop.add_user(user_id)
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE users SET member_status = 'admin' WHERE id = :a"),
                     {"a": user_id})
    return user_id


def write_keys(path: Path, prefix: str, count: int) -> Path:
    path.write_text("".join(f"{prefix}-{i}\n" for i in range(count)))
    return path


def import_task(shop: Shop, product_id: int, actor_id: int, upload_id: str, path: Path) -> str:
    shop.send("quickcart.import_stock", product_id=product_id, actor_id=actor_id,
              upload_id=upload_id, path=str(path))
    return f"stock-import:{upload_id}"


def qris_pending(shop: Shop, user_id: int, product_id: int) -> tuple[int, str]:
    """A pending QRIS order whose gateway transaction is open."""
    key = intent(shop, user_id, product_id, method="qris")
    [outcome] = shop.wait_intents([key])
    assert outcome["status"] == "pending", outcome
    order_id = outcome["order_id"]
    wait_until(lambda: shop.q("SELECT payment_number FROM orders WHERE id = :o", o=order_id),
               what="QR created with the gateway", timeout=60)
    return order_id, outcome["invoice_id"]


def make_due(shop: Shop, order_ids: list[int]) -> None:
    with shop.main.begin() as conn:
        conn.execute(text("UPDATE orders SET expires_at = now() - interval '1 second'"
                          " WHERE id = ANY(:o)"), {"o": order_ids})


def delivery_report(shop: Shop) -> tuple[list[Any], Counter[str]]:
    """Paid orders whose delivery_count is not 1, and keys Telegram received more than once."""
    wrong = shop.rows("SELECT id, invoice_id, delivery_count FROM orders"
                      " WHERE status = 'paid' AND delivery_count <> 1")
    sent = Counter(delivered_contents(shop))
    return wrong, Counter({k: n for k, n in sent.items() if n > 1})


def assert_delivered_once(shop: Shop) -> None:
    """Each paid order delivered once (delivery_count == 1) and every sold key reached the buyer.

    Telegram duplicates (a worker killed between the send and recording it) are the documented
    at-least-once window of delivery.py; they are reported, not hidden."""
    wrong, dup = delivery_report(shop)
    assert not wrong, f"paid orders with delivery_count != 1: {wrong}"
    sold = sold_contents(shop)
    delivered = delivered_contents(shop)
    assert sorted(set(delivered)) == sold, (
        f"sold but never delivered: {sorted(set(sold) - set(delivered))[:10]};"
        f" delivered but not sold: {sorted(set(delivered) - set(sold))[:10]}")
    if dup:
        print(f"NOTE: {len(dup)} key(s) reached Telegram more than once: {dict(dup)}")


def unprocessed_events(shop: Shop) -> list[Any]:
    return shop.rows("SELECT id, invoice_id, outcome FROM payment_events"
                     " WHERE processed_at IS NULL")


def credit(shop: Shop, user_id: int, amount: int, ref: str) -> None:
    from decimal import Decimal

    from quickcart.services.ledger import move_balance

    with unit_of_work(shop.main) as uow:
        move_balance(uow.session, user_id, Decimal(amount), "admin_credit", "test", ref)
        uow.commit()
