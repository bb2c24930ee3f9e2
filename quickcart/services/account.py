"""A user's own account: read-only views for the bot, and the few profile writes tasks make."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from quickcart.db.uow import unit_of_work
from quickcart.domain.errors import ShopError

HISTORY_PAGE = 5
PROFILE_FIELDS = ("name", "whatsapp_number", "email")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{8,15}$")


@dataclass(frozen=True)
class Viewer:
    """What the bot's gate needs to know about the sender of an update."""

    user_id: int
    role: str
    is_banned: bool
    language: str
    name: str


@dataclass(frozen=True)
class HistoryLine:
    """One row of a user's history: an order, or a balance movement (a balance_ledger row)."""

    kind: str  # "order" or "balance"
    created_at: datetime
    amount: Decimal  # an order's total bill; a movement's signed amount
    word: str  # an order's status, or a movement's reason
    invoice_id: str | None  # the order's invoice, or the invoice a movement refers to
    order_id: int | None = None
    delivered: bool = False
    balance_after: Decimal | None = None


@dataclass(frozen=True)
class DetailLine:
    """One product of an order: its name, how many units, the unit price and the line total."""

    product_name: str
    quantity: int
    unit_price: Decimal
    total: Decimal


@dataclass(frozen=True)
class OrderDetail:
    """What the shopper sees when opening one of their orders from the history."""

    order_id: int
    invoice_id: str
    status: str
    payment_method: str
    subtotal: Decimal
    voucher_discount: Decimal
    payment_fee: Decimal
    total_bill: Decimal
    created_at: datetime
    paid_at: datetime | None
    delivered: bool
    lines: list[DetailLine]


def viewer(engine: Engine, user_id: int) -> Viewer | None:
    """The registered user's role, ban state and language, or None if unknown."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT id, member_status, is_banned, language, name FROM users"
            " WHERE id = :u"), {"u": user_id}).first()
    if row is None:
        return None
    return Viewer(int(row.id), str(row.member_status), bool(row.is_banned),
                  str(row.language or "id"), str(row.name))


def profile(engine: Engine, user_id: int) -> dict[str, Any] | None:
    """The profile screen: id, name, username, email, WhatsApp, balance, bank_id, role."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT id, name, username, email, whatsapp_number, account_balance, bank_id,"
            " member_status FROM users WHERE id = :u"), {"u": user_id}).first()
    if row is None:
        return None
    return {"user_id": row.id, "name": row.name, "username": row.username or "-",
            "email": row.email or "-", "whatsapp": row.whatsapp_number or "-",
            "balance": str(row.account_balance), "bank_id": row.bank_id,
            "role": row.member_status}


def balance(engine: Engine, user_id: int) -> Decimal:
    """The user's balance (0 if unknown)."""
    with engine.connect() as conn:
        value = conn.execute(text("SELECT account_balance FROM users WHERE id = :u"),
                             {"u": user_id}).scalar()
    return Decimal(value or 0)


# Orders and balance movements in one newest-first list. A SALDO purchase writes its order and
# its ledger row in one transaction (same created_at): the tie puts the order first, then the
# movement, then the higher id, so paging is stable.
_HISTORY = """
SELECT * FROM (
  SELECT 'order' AS kind, id AS row_id, id AS order_id, invoice_id AS reference,
         'order' AS reference_type, status AS word, total_bill AS amount,
         NULL::numeric AS balance_after, created_at, delivered_at IS NOT NULL AS delivered
    FROM orders WHERE user_id = :u
  UNION ALL
  SELECT 'balance', id, NULL, reference_id, reference_type, reason, amount, balance_after,
         created_at, false
    FROM balance_ledger WHERE user_id = :u
) h ORDER BY created_at DESC, kind DESC, row_id DESC LIMIT :n OFFSET :o
"""
# Ledger references that name an invoice (admin adjustments carry a request id instead).
_INVOICE_REFERENCES = ("order", "deposit", "review")


def history(engine: Engine, user_id: int, page: int = 0,
            page_size: int = HISTORY_PAGE) -> tuple[list[HistoryLine], int]:
    """One page of the user's orders and balance movements, newest first, and their total
    count (one REPEATABLE READ snapshot, so the page and the count agree)."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            total = int(conn.execute(text(
                "SELECT (SELECT count(*) FROM orders WHERE user_id = :u)"
                " + (SELECT count(*) FROM balance_ledger WHERE user_id = :u)"),
                {"u": user_id}).scalar_one())
            rows = conn.execute(text(_HISTORY), {"u": user_id, "n": page_size,
                                                 "o": max(page, 0) * page_size}).all()
    return [_history_line(r) for r in rows], total


def _history_line(row: Any) -> HistoryLine:
    invoice = None
    if row.reference is not None and row.reference_type in _INVOICE_REFERENCES:
        invoice = str(row.reference).split("#", 1)[0]  # a refund's reference is INV#R<id>
    return HistoryLine(
        str(row.kind), row.created_at, Decimal(row.amount), str(row.word), invoice,
        int(row.order_id) if row.order_id is not None else None, bool(row.delivered),
        Decimal(row.balance_after) if row.balance_after is not None else None)


def order_detail(engine: Engine, user_id: int, order_id: int) -> OrderDetail | None:
    """The user's own order `order_id` with its lines per product (None when it is not theirs
    or unknown); one read-only snapshot."""
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            o = conn.execute(text(
                "SELECT id, invoice_id, status, payment_method, subtotal, voucher_discount,"
                " payment_fee, total_bill, created_at, paid_at, delivered_at FROM orders"
                " WHERE id = :o AND user_id = :u"), {"o": order_id, "u": user_id}).first()
            if o is None:
                return None
            items = conn.execute(text(
                "SELECT p.name, i.price_per_unit, count(*) AS quantity FROM order_items i"
                " JOIN products p ON p.id = i.product_id WHERE i.order_id = :o"
                " GROUP BY i.product_id, p.name, i.price_per_unit ORDER BY min(i.id)"),
                {"o": order_id}).all()
    lines = [DetailLine(str(r.name), int(r.quantity), Decimal(r.price_per_unit),
                        Decimal(r.price_per_unit) * int(r.quantity)) for r in items]
    return OrderDetail(int(o.id), str(o.invoice_id), str(o.status), str(o.payment_method),
                       Decimal(o.subtotal), Decimal(o.voucher_discount), Decimal(o.payment_fee),
                       Decimal(o.total_bill), o.created_at, o.paid_at,
                       o.delivered_at is not None, lines)


def export_data(engine: Engine, user_id: int) -> dict[str, Any]:
    """Everything the shop holds about the user (for /export), JSON-ready."""
    with engine.connect() as conn:
        user = conn.execute(text(
            "SELECT id, name, username, email, whatsapp_number, bank_id, member_status,"
            " account_balance, language, created_at FROM users WHERE id = :u"),
            {"u": user_id}).mappings().first()
        orders = conn.execute(text(
            "SELECT invoice_id, status, subtotal, voucher_discount, payment_fee, total_bill,"
            " payment_method, created_at, paid_at FROM orders WHERE user_id = :u ORDER BY id"),
            {"u": user_id}).mappings().all()
        deposits = conn.execute(text(
            "SELECT invoice_id, status, amount, payment_fee, total_bill, created_at FROM deposits"
            " WHERE user_id = :u ORDER BY id"), {"u": user_id}).mappings().all()
        ledger = conn.execute(text(
            "SELECT reason, amount, balance_after, reference_type, reference_id, created_at"
            " FROM balance_ledger WHERE user_id = :u ORDER BY id"),
            {"u": user_id}).mappings().all()
    def clean(row: Any) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal | datetime) else v) for k, v in row.items()}
    return {"user": clean(user) if user else None, "orders": [clean(o) for o in orders],
            "deposits": [clean(d) for d in deposits], "balance_ledger": [clean(x) for x in ledger]}


# ------------------------------------------------------------------ writes (workers only)

def set_language(engine: Engine, user_id: int, language: str) -> bool:
    """Set the user's language (`id`/`en`); idempotent by state."""
    if language not in ("id", "en"):
        raise ShopError("invalid_language")
    with unit_of_work(engine) as uow:
        uow.set_actor(user_id, "user")
        changed = uow.session.execute(
            text("UPDATE users SET language = :l WHERE id = :u AND language <> :l"
                 " RETURNING id"), {"l": language, "u": user_id}).scalar()
        uow.commit()
    return changed is not None


def update_profile(engine: Engine, user_id: int, field: str, value: str) -> None:
    """Set the name, WhatsApp number or email (validated); idempotent by state."""
    if field not in PROFILE_FIELDS:
        raise ShopError("unknown_field", fields=[field])
    value = value.strip()
    if field == "email" and (not _EMAIL.match(value) or len(value) > 255):
        raise ShopError("invalid_email")
    if field == "whatsapp_number":
        value = value.replace(" ", "").replace("-", "")
        if not _PHONE.match(value):
            raise ShopError("invalid_whatsapp")
    if field == "name" and not 0 < len(value) <= 255:
        raise ShopError("invalid_text", field="name")
    with unit_of_work(engine) as uow:
        uow.set_actor(user_id, "user")
        if field == "email":
            taken = uow.session.execute(
                text("SELECT 1 FROM users WHERE lower(email) = lower(:e) AND id <> :u"),
                {"e": value, "u": user_id}).scalar()
            if taken:
                raise ShopError("email_taken")
        # The column name comes from PROFILE_FIELDS only; the value is bound.
        uow.session.execute(text(f"UPDATE users SET {field} = :v WHERE id = :u"),
                            {"v": value, "u": user_id})
        uow.commit()


def own_pending_deposit(engine: Engine, user_id: int, invoice_id: str) -> int | None:
    """The id of the user's pending deposit `invoice_id`, or None."""
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT id FROM deposits WHERE user_id = :u AND invoice_id = :i"
            " AND status = 'pending'"), {"u": user_id, "i": invoice_id}).scalar()
    return None if found is None else int(found)


def own_order_id(engine: Engine, user_id: int, invoice_id: str) -> int | None:
    """The id of the user's order `invoice_id` as typed (any case), or None (someone else's
    invoice is None)."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM orders WHERE user_id = :u AND invoice_id = :i"),
                             {"u": user_id, "i": invoice_id.strip().upper()}).scalar()
    return None if found is None else int(found)


def erase_personal_data(engine: Engine, user_id: int) -> bool:
    """/delete_me: blank name, username, email and WhatsApp; orders, deposits and the ledger
    stay (financial records). Idempotent: an erased user is left alone."""
    with unit_of_work(engine) as uow:
        uow.set_actor(user_id, "user", {"reason": "erasure"})
        changed = uow.session.execute(text(
            "UPDATE users SET name = :n, username = NULL, email = NULL, whatsapp_number = NULL,"
            " erased_at = now() WHERE id = :u AND erased_at IS NULL RETURNING id"),
            {"n": f"deleted-{user_id}", "u": user_id}).scalar()
        uow.commit()
    return changed is not None


def anonymise_audit(audit_engine: Engine, user_id: int) -> int:
    """Blank the user's personal fields in the audit log (the chain still verifies)."""
    with audit_engine.begin() as conn:
        return int(conn.execute(text("SELECT anonymise_audit_subject(:u)"),
                                {"u": user_id}).scalar() or 0)


def active_user_ids(engine: Engine) -> list[int]:
    """Users a broadcast reaches: not banned, not erased."""
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(text(
            "SELECT id FROM users WHERE NOT is_banned AND erased_at IS NULL ORDER BY id"))
            .scalars()]
