"""The shopper's history (AKUN → Riwayat) on real PostgreSQL: orders and balance movements in
one newest-first list, stable pages that cover every row once, dates read in Jakarta, and an
order's details shown to its owner only."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from quickcart.db.uow import unit_of_work
from quickcart.i18n import format_datetime
from quickcart.services import account, orders
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user

BUYER, OTHER = 2, 3


@pytest.fixture()
def shop(db: Engine) -> Engine:
    for uid, name in ((BUYER, "Buyer"), (OTHER, "Other")):
        register_user(db, uid, name)
    with db.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES"
                          " (1, 'Key A', 10000), (2, 'Key B', 7000)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                          " SELECT p, 'K-' || p || '-' || g FROM generate_series(1, 10) g,"
                          " generate_series(1, 2) p"))
        # An old deposit, dated: 20:30 UTC on 1 January is 03:30 on 2 January in Jakarta.
        conn.execute(text("UPDATE users SET account_balance = 50000 WHERE id = :u"),
                     {"u": BUYER})
        conn.execute(text(
            "INSERT INTO balance_ledger (user_id, amount, reason, reference_type, reference_id,"
            " created_at) VALUES (:u, 50000, 'deposit', 'deposit', 'DP2401010001',"
            " '2024-01-01 20:30:00+00')"), {"u": BUYER})
    return db


def buy(engine: Engine, product_id: int, quantity: int, method: str = "account_balance",
        user_id: int = BUYER) -> dict[str, object]:
    return orders.create_order(engine, orders.CreateOrder(
        user_id=user_id, product_id=product_id, quantity=quantity, payment_method=method,
        idempotency_key=f"t:{uuid.uuid4().hex}")).result


def adjust(engine: Engine, amount: int, reason: str, reference: str) -> None:
    with unit_of_work(engine) as uow:
        move_balance(uow.session, BUYER, Decimal(amount), reason, "admin", reference)
        uow.commit()


def everything(engine: Engine, user_id: int = BUYER) -> list[account.HistoryLine]:
    lines, total = account.history(engine, user_id, 0, page_size=1000)
    assert len(lines) == total
    return lines


def test_orders_and_movements_merge_newest_first(shop: Engine) -> None:
    paid = buy(shop, 1, 2)  # SALDO: an order and its purchase movement, one transaction
    adjust(shop, 5000, "admin_credit", "req-1")
    pending = buy(shop, 2, 1, method="qris")
    adjust(shop, -1000, "admin_debit", "req-2")
    buy(shop, 1, 1, user_id=OTHER, method="qris")  # someone else's: never shown

    lines = everything(shop)
    assert [(h.kind, h.word) for h in lines] == [
        ("balance", "admin_debit"), ("order", "pending"), ("balance", "admin_credit"),
        ("order", "paid"), ("balance", "purchase"), ("balance", "deposit")]
    assert [h.created_at for h in lines] == sorted((h.created_at for h in lines), reverse=True)
    debit, open_order, credit, order, purchase, deposit = lines
    assert (order.invoice_id, order.order_id, order.amount) == \
        (paid["invoice_id"], paid["order_id"], Decimal(20000))
    assert open_order.invoice_id == pending["invoice_id"] and not open_order.delivered
    # movements: signed amounts, the balance after each, the invoice they refer to (if any)
    assert (purchase.amount, purchase.balance_after, purchase.invoice_id) == \
        (Decimal(-20000), Decimal(30000), paid["invoice_id"])
    assert (credit.amount, credit.balance_after, credit.invoice_id) == \
        (Decimal(5000), Decimal(35000), None)  # an admin request id is not an invoice
    assert (debit.amount, debit.balance_after) == (Decimal(-1000), Decimal(34000))
    assert (deposit.amount, deposit.invoice_id) == (Decimal(50000), "DP2401010001")
    assert all(h.order_id is None for h in (debit, credit, purchase, deposit))


def test_refund_names_its_order_invoice(shop: Engine) -> None:
    paid = buy(shop, 2, 1)
    with unit_of_work(shop) as uow:  # refunds reference "<invoice>#R<refund id>"
        move_balance(uow.session, BUYER, Decimal(7000), "refund", "order",
                     f"{paid['invoice_id']}#R1")
        uow.commit()
    refund = everything(shop)[0]
    assert (refund.word, refund.amount, refund.invoice_id) == \
        ("refund", Decimal(7000), paid["invoice_id"])


def test_pages_cover_every_row_once_in_order(shop: Engine) -> None:
    for n in range(3):
        buy(shop, 1 + n % 2, 1)
        adjust(shop, 100 + n, "admin_credit", f"req-{n}")
    full = everything(shop)
    assert len(full) == 1 + 3 * 3  # the deposit; per round an order, its purchase, a credit
    seen: list[account.HistoryLine] = []
    for page in range(4):
        lines, total = account.history(shop, BUYER, page, page_size=3)
        assert total == len(full)
        assert len(lines) == (3 if page < 3 else 1)
        seen += lines
    assert seen == full
    assert account.history(shop, BUYER, 4, page_size=3) == ([], len(full))
    assert account.history(shop, OTHER, 0) == ([], 0)


def test_dates_read_in_jakarta(shop: Engine) -> None:
    [deposit] = everything(shop)
    assert format_datetime(deposit.created_at) == "02/01/2024 03:30 WIB"


def test_order_details_for_the_owner_only(shop: Engine) -> None:
    paid = buy(shop, 1, 3)
    detail = account.order_detail(shop, BUYER, int(paid["order_id"]))  # type: ignore[call-overload]
    assert detail is not None
    assert (detail.invoice_id, detail.status, detail.payment_method) == \
        (paid["invoice_id"], "paid", "account_balance")
    assert [(d.product_name, d.quantity, d.unit_price, d.total) for d in detail.lines] == \
        [("Key A", 3, Decimal(10000), Decimal(30000))]
    assert detail.subtotal == detail.total_bill == Decimal(30000)
    assert account.order_detail(shop, OTHER, int(paid["order_id"])) is None  # type: ignore[call-overload]
    assert account.order_detail(shop, BUYER, 999999) is None
