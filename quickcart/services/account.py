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
    """One order in a user's transaction history."""

    order_id: int
    invoice_id: str
    status: str
    total: Decimal
    created_at: datetime
    delivered: bool


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


def history(engine: Engine, user_id: int, page: int = 0,
            page_size: int = HISTORY_PAGE) -> tuple[list[HistoryLine], int]:
    """One page of the user's orders, newest first, and their total count."""
    with engine.connect() as conn:
        total = int(conn.execute(text("SELECT count(*) FROM orders WHERE user_id = :u"),
                                 {"u": user_id}).scalar_one())
        rows = conn.execute(text(
            "SELECT id, invoice_id, status, total_bill, created_at, delivered_at FROM orders"
            " WHERE user_id = :u ORDER BY created_at DESC, id DESC LIMIT :n OFFSET :o"),
            {"u": user_id, "n": page_size, "o": max(page, 0) * page_size}).all()
    return [HistoryLine(int(r.id), str(r.invoice_id), str(r.status), Decimal(r.total_bill),
                        r.created_at, r.delivered_at is not None) for r in rows], total


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
    """The id of the user's order `invoice_id`, or None (someone else's invoice is None)."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM orders WHERE user_id = :u AND invoice_id = :i"),
                             {"u": user_id, "i": invoice_id}).scalar()
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
