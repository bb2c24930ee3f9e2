"""The event text of a task's result: the builtin repr for flat dicts, Celery's otherwise."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from celery.app import trace
from celery.utils.saferepr import saferepr

from workers import result_repr

PURCHASE = {
    "status": "paid", "order_id": 123456, "invoice_id": "QC-20261201-ABCDEF12",
    "product_id": 1, "product_name": "Netflix Premium 1 Bulan", "quantity": 1,
    "unit_price": "15000", "subtotal": "15000", "voucher_discount": "0", "payment_fee": "0",
    "total_bill": "15000", "payment_method": "account_balance", "changed": True, "due": None,
    "expires_at": "2026-12-01T16:50:00+00:00", "rate": 0.5,
}


def test_the_workers_tracer_uses_it() -> None:
    import workers.app  # noqa: F401 - installs it

    assert trace.saferepr is result_repr.result_repr


def test_a_flat_result_reads_as_celery_would_write_it(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = saferepr(PURCHASE, 1024)
    # The fast path must not fall back to Celery's walk for a result like this one.
    monkeypatch.setattr(result_repr, "saferepr", lambda *a, **k: pytest.fail("walked"))
    assert result_repr.result_repr(PURCHASE, 1024) == expected


@pytest.mark.parametrize("value", [
    {"status": "paid", "amount": Decimal("15000")},       # not a plain scalar
    {"status": "paid", "items": [1, 2, 3]},               # nested
    {"note": "x" * 2000},                                 # longer than one string may be
    {f"k{i}": i for i in range(100)},                     # more items than the fast path takes
    dict.fromkeys("abcdefghij", "y" * 200),               # fits no 1024-character event
    [1, 2, 3], "text", 42, None,
])
def test_anything_else_goes_to_celery(value: Any) -> None:
    assert result_repr.result_repr(value, 1024) == saferepr(value, 1024)
