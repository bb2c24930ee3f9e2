"""Admin commands: catalog, users and balances. Every call is checked against its actor.

Stock, discounts, broadcasts, admin groups and statistics have modules of their own
(stock_admin, discounts, broadcast, admin_groups, shop_stats).

Each service runs in one unit of work whose audit actor is the admin, and first verifies inside
that transaction that the actor is an admin (member_status 'admin', not banned, not erased),
else ShopError('not_admin'). Refusals are raised before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from quickcart.db.locks import lock_user
from quickcart.db.uow import UnitOfWork, unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.domain.money import InvalidAmountError, rupiah
from quickcart.services import ledger

MAX_PRODUCT_ID = 2_147_483_647
MAX_TEXT = 255
ADMIN_REFERENCE = "admin"
ORDER_STATUSES = ("pending", "paid", "expired", "cancelled")
PRODUCT_FIELDS = frozenset(
    {"name", "category", "description", "customer_price", "reseller_price", "is_active"}
)


@dataclass(frozen=True)
class ProductView:
    """A catalog entry as an admin sees it."""

    product_id: int
    name: str
    category: str
    description: str | None
    customer_price: Decimal
    reseller_price: Decimal | None
    is_active: bool


@dataclass(frozen=True)
class UserView:
    """A user's role and ban state after an admin change."""

    user_id: int
    member_status: str
    is_banned: bool
    changed: bool


# ------------------------------------------------------------------ shared

@contextmanager
def admin_work(engine: Engine, actor_id: int) -> Iterator[UnitOfWork]:
    """A unit of work acting as `actor_id`, refused unless the actor is an admin."""
    with unit_of_work(engine) as uow:
        uow.set_actor(actor_id, "admin")
        require_admin(uow.session, actor_id)
        yield uow


def require_admin(session: Session | Connection, actor_id: int) -> None:
    """Refuse (ShopError 'not_admin') unless `actor_id` is an admin, not banned, not erased
    (THE admin check: every admin service runs it inside its own transaction)."""
    row = session.execute(
        text("SELECT member_status, is_banned, erased_at FROM users WHERE id = :a"),
        {"a": actor_id},
    ).first()
    if row is None or row.member_status != "admin" or row.is_banned or row.erased_at is not None:
        raise ShopError("not_admin", actor_id=actor_id)


def _price(value: Any, field: str = "price") -> Decimal:
    """A positive whole-rupiah price, or ShopError('invalid_price')."""
    try:
        amount = rupiah(value)
    except (InvalidAmountError, TypeError) as exc:
        raise ShopError("invalid_price", field=field, value=str(value)) from exc
    if amount <= 0:
        raise ShopError("invalid_price", field=field, value=str(value))
    return amount


def _label(value: Any, field: str) -> str:
    """A non-blank single-line label of at most 255 characters."""
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_TEXT:
        raise ShopError("invalid_text", field=field)
    return value.strip()


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ShopError("invalid_text", field="description")
    return value.strip() or None


def _product_view(row: Row[Any]) -> ProductView:
    return ProductView(row.id, row.name, row.category, row.description, row.customer_price,
                       row.reseller_price, row.is_active)


def _require_product(session: Session, product_id: int) -> None:
    found = session.execute(text("SELECT 1 FROM products WHERE id = :p"), {"p": product_id})
    if not found.scalar():
        raise ShopError("product_not_found", product_id=product_id)


# ------------------------------------------------------------------ products

def create_product(
    engine: Engine, actor_id: int, product_id: int, name: str, category: str | None,
    price: Decimal | int | str, description: str | None = None,
    reseller_price: Decimal | int | str | None = None,
) -> ProductView:
    """Create a product with an admin-chosen id (locks nothing: the primary key arbitrates).

    Not repeatable: INSERT … ON CONFLICT makes a retried or concurrent create of the same id
    refuse with ShopError('product_exists') instead of changing the first.
    """
    if isinstance(product_id, bool) or not isinstance(product_id, int) \
            or not 0 < product_id <= MAX_PRODUCT_ID:
        raise ShopError("invalid_product_id", product_id=product_id)
    clean_name = _label(name, "name")
    clean_category = _label(category, "category") if category and category.strip() \
        else "Uncategorized"
    customer_price = _price(price, "customer_price")
    reseller = None if reseller_price is None else _price(reseller_price, "reseller_price")
    with admin_work(engine, actor_id) as uow:
        row = uow.session.execute(
            text(
                "INSERT INTO products (id, name, category, description, customer_price,"
                " reseller_price) VALUES (:id, :n, :c, :d, :cp, :rp)"
                " ON CONFLICT (id) DO NOTHING RETURNING *"
            ),
            {"id": product_id, "n": clean_name, "c": clean_category,
             "d": _description(description), "cp": customer_price, "rp": reseller},
        ).first()
        if row is None:
            raise ShopError("product_exists", product_id=product_id)
        uow.commit()
    return _product_view(row)


def update_product(engine: Engine, actor_id: int, product_id: int, **fields: Any) -> ProductView:
    """Change a product's name, category, description, prices or is_active.

    The UPDATE locks the product row (admin path only; buyers never lock products). Idempotent:
    the same fields set twice leave the same row (the audit skips the no-op second change).
    """
    unknown = set(fields) - PRODUCT_FIELDS
    if unknown:
        raise ShopError("unknown_field", fields=sorted(unknown))
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("name", "category"):
            values[key] = _label(value, key)
        elif key == "description":
            values[key] = _description(value)
        elif key == "customer_price":
            values[key] = _price(value, key)
        elif key == "reseller_price":
            values[key] = None if value is None else _price(value, key)
        elif key == "is_active":
            if not isinstance(value, bool):
                raise ShopError("invalid_flag", field=key)
            values[key] = value
    with admin_work(engine, actor_id) as uow:
        if values:
            # Column names come from PRODUCT_FIELDS only; values are bound.
            assignments = ", ".join(f"{column} = :{column}" for column in sorted(values))
            row = uow.session.execute(
                text(f"UPDATE products SET {assignments} WHERE id = :id RETURNING *"),
                {**values, "id": product_id},
            ).first()
        else:
            row = uow.session.execute(
                text("SELECT * FROM products WHERE id = :id"), {"id": product_id}
            ).first()
        if row is None:
            raise ShopError("product_not_found", product_id=product_id)
        uow.commit()
    return _product_view(row)


def deactivate_product(engine: Engine, actor_id: int, product_id: int) -> ProductView:
    """Soft-delete (/del): the product leaves the catalog; its orders and stock rows stay.

    Products are never deleted (orders and sold units reference them). The UPDATE locks the
    product row; idempotent: deactivating an inactive product changes nothing.
    """
    with admin_work(engine, actor_id) as uow:
        row = uow.session.execute(
            text("UPDATE products SET is_active = false WHERE id = :id AND is_active"
                 " RETURNING *"),
            {"id": product_id},
        ).first()
        if row is None:
            row = uow.session.execute(
                text("SELECT * FROM products WHERE id = :id"), {"id": product_id}
            ).first()
        if row is None:
            raise ShopError("product_not_found", product_id=product_id)
        uow.commit()
    return _product_view(row)


# Stock (/addstock, /liststock, /delstock, /delallstock, /exportstock, /editid) lives in
# quickcart/services/stock_admin.py.


# ------------------------------------------------------------------ users

def set_ban(engine: Engine, actor_id: int, user_id: int, banned: bool) -> UserView:
    """Ban or unban a user; locks the user row. Idempotent: the same state twice is a no-op."""
    if banned and user_id == actor_id:
        raise ShopError("cannot_ban_self")
    with admin_work(engine, actor_id) as uow:
        row = lock_user(uow.session, user_id)
        if row is None:
            raise ShopError("user_not_found", user_id=user_id)
        changed = row.is_banned != banned
        if changed:
            uow.session.execute(text("UPDATE users SET is_banned = :b WHERE id = :u"),
                                {"b": banned, "u": user_id})
        uow.commit()
    return UserView(user_id, row.member_status, banned, changed)


def lock_admins_and(session: Session, user_ids: Iterable[int]) -> list[Row[Any]]:
    """Lock every admin row plus `user_ids`, in id order (role changes that may drop an admin).

    Lives here until it moves to quickcart/db/locks.py. Level 1 of the lock order (users), many
    rows, always ascending id, so two role changes cannot deadlock; after waiting, PostgreSQL
    re-checks each row, so an admin demoted meanwhile is no longer counted.
    """
    return list(
        session.execute(
            text(
                "SELECT id, member_status, is_banned, erased_at FROM users"
                " WHERE member_status = 'admin' OR id = ANY(:ids) ORDER BY id FOR UPDATE"
            ),
            {"ids": list(user_ids)},
        ).all()
    )


def set_role(engine: Engine, actor_id: int, user_id: int, role: str) -> UserView:
    """Make a user customer, reseller or admin (admin_rights.set_role: grants recorded, ADMIN_IDS
    admins and the last admin kept); locks every admin row and the target."""
    # Imported here: admin_rights builds on this module's admin check and locks.
    from quickcart.services import admin_rights

    change = admin_rights.set_role(engine, actor_id, user_id, role)
    return UserView(change.user_id, change.member_status, change.is_banned, change.changed)


def adjust_balance(
    engine: Engine, actor_id: int, user_id: int, amount: Decimal, reason_note: str,
    request_id: str,
) -> Decimal:
    """Credit (amount > 0) or debit (< 0) a balance via the ledger; returns the new balance.

    Locks the user row (locks.lock_user). Idempotent per `request_id`: the ledger reference
    ('admin', request_id) is unique, so a retried request finds its row and only returns the
    current balance; a request id reused for another user or amount is refused.
    """
    if isinstance(amount, (float, bool)):
        raise ShopError("invalid_amount", amount=str(amount))
    try:
        magnitude = rupiah(abs(Decimal(amount)))
    except (InvalidAmountError, ArithmeticError, TypeError, ValueError) as exc:
        raise ShopError("invalid_amount", amount=str(amount)) from exc
    if magnitude == 0:
        raise ShopError("invalid_amount", amount=str(amount))
    if not request_id or len(request_id) > 64:
        raise ShopError("invalid_request_id")
    delta = magnitude if amount > 0 else -magnitude
    reason = "admin_credit" if delta > 0 else "admin_debit"
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        if lock_user(session, user_id) is None:
            raise ShopError("user_not_found", user_id=user_id)
        previous = session.execute(
            text(
                "SELECT user_id, amount FROM balance_ledger WHERE reference_type = :rt"
                " AND reference_id = :ri AND reason IN ('admin_credit', 'admin_debit')"
            ),
            {"rt": ADMIN_REFERENCE, "ri": request_id},
        ).first()
        if previous is not None:
            if previous.user_id != user_id or previous.amount != delta:
                raise ShopError("request_id_reused", request_id=request_id)
            balance: Decimal = session.execute(
                text("SELECT account_balance FROM users WHERE id = :u"), {"u": user_id}
            ).scalar_one()
            return balance
        try:
            with session.begin_nested():
                balance = ledger.move_balance(
                    session, user_id, delta, reason, ADMIN_REFERENCE, request_id,
                    actor_id=actor_id, note=(reason_note or "").strip() or None,
                )
        except IntegrityError as exc:  # the same id used for another user, concurrently
            raise ShopError("request_id_reused", request_id=request_id) from exc
        uow.commit()
    return balance


def user_info(engine: Engine, user_id: int, *, actor_id: int) -> dict[str, Any]:
    """A user's profile, role, balance and order counts by status (a read; locks nothing)."""
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        user = session.execute(
            text(
                "SELECT id, name, username, email, whatsapp_number, bank_id, member_status,"
                " account_balance, is_banned, language, created_at, erased_at"
                " FROM users WHERE id = :u"
            ),
            {"u": user_id},
        ).first()
        if user is None:
            raise ShopError("user_not_found", user_id=user_id)
        counts = dict.fromkeys(ORDER_STATUSES, 0)
        for status, count in session.execute(
            text("SELECT status, count(*) FROM orders WHERE user_id = :u GROUP BY status"),
            {"u": user_id},
        ).all():
            counts[status] = int(count)
    return {
        "user_id": user.id,
        "name": user.name,
        "username": user.username,
        "email": user.email,
        "whatsapp_number": user.whatsapp_number,
        "bank_id": user.bank_id,
        "role": user.member_status,
        "balance": user.account_balance,
        "is_banned": user.is_banned,
        "language": user.language,
        "created_at": user.created_at,
        "erased_at": user.erased_at,
        "orders": counts,
        "orders_total": sum(counts.values()),
    }
