"""Admin work on products and their stock: /add with defaults, /addstock, /liststock, /delstock,
/delallstock, /exportstock, /editid, low-stock thresholds and alerts, restock watches.

Every writing service runs in one unit of work whose audit actor is the admin and first checks
the actor (services/admin.py `admin_work`, ShopError('not_admin')); refusals are raised before
anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from quickcart.db import idempotency, outbox
from quickcart.db.sql import Tx, sql
from quickcart.db.uow import actor_statement, unit_of_work
from quickcart.domain.errors import ShopError
from quickcart.i18n import N_
from quickcart.services.admin import (
    MAX_PRODUCT_ID,
    _description,
    _label,
    _price,
    _require_product,
    admin_work,
)
from quickcart.services.effects import Effects
from quickcart.services.stock_import import MAX_CONTENT_CHARS, ImportResult, import_items

DEFAULT_CATEGORY = "Uncategorized"
DEFAULT_THRESHOLD = 5
#: A unit's short id: the LAST 8 hex digits of its uuid. (The requirements say the first 8, but
#: imported units get time-ordered ids whose leading digits are the import's millisecond,
#: shared by every unit of one import; the trailing ones are random.)
SHORT_ID = 8
LIST_PAGE = 20
_EXPORT_CHUNK = 1000
_FREE = "NOT s.is_sold AND s.order_id IS NULL"
#: The units /delallstock deletes: free, and never in a (released) order (history keeps them).
_DELETABLE = (f"s.product_id = :p AND {_FREE}"
              " AND NOT EXISTS (SELECT 1 FROM released_order_items r WHERE r.stock_id = s.id)")


@dataclass(frozen=True)
class CreatedProduct:
    """What /add created (defaults resolved)."""

    product_id: int
    name: str
    category: str
    price: Decimal
    description: str | None


@dataclass(frozen=True)
class LineReport:
    """/addstock's answer: units added, duplicates skipped, lines refused (with their numbers)."""

    added: int
    duplicates: int
    blank: int
    refused: list[int]


@dataclass(frozen=True)
class StockLine:
    """One unsold unit as /liststock shows it."""

    short_id: str
    masked: str
    reserved: bool


@dataclass(frozen=True)
class DeletedUnit:
    """The stock unit an admin deleted."""

    stock_id: uuid.UUID
    product_id: int


# ------------------------------------------------------------------ /add

def create_product(engine: Engine, actor_id: int, product_id: int | None, name: str | None,
                   category: str | None, price: Decimal | int | str,
                   description: str | None, *, intent_key: str) -> CreatedProduct:
    """/add with `None` for a default: id = smallest free, name = "Produk {id}", category
    "Uncategorized", no description. Locks nothing but the intent key; idempotent per
    `intent_key` (claimed with the insert, so a retried /add returns the product it made)."""
    if product_id is not None and (isinstance(product_id, bool)
                                   or not 0 < product_id <= MAX_PRODUCT_ID):
        raise ShopError("invalid_product_id", product_id=product_id)
    amount = _price(price, "customer_price")
    clean_name = _label(name, "name") if name is not None else None
    clean_category = _label(category, "category") if category else DEFAULT_CATEGORY
    clean_description = _description(description)
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        previous = idempotency.claim(session, intent_key, "admin_add_product")
        if previous is not None and "product_id" in previous:
            row = session.execute(sql("SELECT * FROM products WHERE id = :p"),
                                  {"p": previous["product_id"]}).first()
            if row is not None:
                return _created(row)
        if product_id is None:
            # Serialises concurrent "/add -|…": each takes the next id after the other commits.
            session.execute(sql("SELECT pg_advisory_xact_lock(hashtext('quickcart:add_product'))"))
            product_id = int(session.execute(sql(
                "SELECT coalesce((SELECT min(p.id) + 1 FROM products p WHERE NOT EXISTS"
                " (SELECT 1 FROM products q WHERE q.id = p.id + 1)"
                " AND EXISTS (SELECT 1 FROM products WHERE id = 1)), 1)")).scalar_one())
        row = session.execute(sql(
            "INSERT INTO products (id, name, category, description, customer_price)"
            " VALUES (:id, :n, :c, :d, :cp) ON CONFLICT (id) DO NOTHING RETURNING *"),
            {"id": product_id, "n": clean_name or f"Produk {product_id}", "c": clean_category,
             "d": clean_description, "cp": amount}).first()
        if row is None:
            raise ShopError("product_exists", product_id=product_id)
        # A new product has no stock to fall from: it alerts once stock rose above the
        # threshold and fell again.
        session.execute(sql("INSERT INTO low_stock_alerts (product_id) VALUES (:p)"
                            " ON CONFLICT DO NOTHING"), {"p": product_id})
        idempotency.record(session, intent_key, {"product_id": product_id})
        uow.commit()
    return _created(row)


def _created(row: Any) -> CreatedProduct:
    return CreatedProduct(int(row.id), str(row.name), str(row.category),
                          Decimal(row.customer_price), row.description)


# ------------------------------------------------------------------ stock in

def product_exists(engine: Engine, product_id: int) -> bool:
    """Whether product `product_id` exists, active or not (/addstock asks before it waits for
    a file); a read that locks nothing."""
    if isinstance(product_id, bool) or not 0 < product_id <= MAX_PRODUCT_ID:
        return False
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT 1 FROM products WHERE id = :p"),
                                 {"p": product_id}).scalar())


def add_stock_lines(
    engine: Engine, actor_id: int, product_id: int, lines: Iterable[str]
) -> ImportResult:
    """Add units from a chat message: one per line, stripped, blanks and duplicates skipped.

    Takes the product's import lock (stock_import.lock_product_imports) so it dedupes against
    concurrent imports. Retry-safe while the units are unsold: a repeated message finds every
    line already in stock and adds nothing.
    """
    with admin_work(engine, actor_id) as uow:
        result = import_items(uow.session, product_id, lines)
        uow.commit()
    return result


def add_stock_report(engine: Engine, actor_id: int, product_id: int,
                     lines: Iterable[str]) -> LineReport:
    """/addstock id|line|line…: the acceptable lines are added (add_stock_lines), lines a unit
    cannot hold (too long, NUL) are refused and reported by number; same locks and retries."""
    good: list[str] = []
    refused: list[int] = []
    for number, raw in enumerate((part for item in lines for part in
                                  (item.splitlines() or [""])), start=1):
        value = raw.strip()
        if len(value) > MAX_CONTENT_CHARS or "\x00" in value:
            refused.append(number)
        else:
            good.append(value)
    result = add_stock_lines(engine, actor_id, product_id, good)
    return LineReport(result.added, result.duplicates_skipped, result.blank_skipped, refused)


# ------------------------------------------------------------------ listing

def mask_content(content: str) -> str:
    """A unit's content as admins see it in lists: all but the last 4 characters hidden,
    behind a fixed-width mask that does not tell the length (4 characters or fewer: all
    hidden)."""
    if len(content) <= 4:
        return "•" * 4
    return "•" * 8 + content[-4:]


def list_stock(engine: Engine, actor_id: int, product_id: int,
               page: int = 0) -> tuple[list[StockLine], int]:
    """/liststock id [page]: one page of the product's unsold units (oldest first) and their
    total; a read as the admin (locks nothing)."""
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        _require_product(session, product_id)
        total = int(session.execute(sql(
            "SELECT count(*) FROM product_stocks WHERE product_id = :p AND NOT is_sold"),
            {"p": product_id}).scalar_one())
        rows = session.execute(sql(
            "SELECT id, content, order_id FROM product_stocks WHERE product_id = :p"
            " AND NOT is_sold ORDER BY created_at, id LIMIT :n OFFSET :o"),
            {"p": product_id, "n": LIST_PAGE, "o": max(page, 0) * LIST_PAGE}).all()
    return [StockLine(short_id(r.id), mask_content(str(r.content)), r.order_id is not None)
            for r in rows], total


# ------------------------------------------------------------------ stock out

def short_id(unit_id: uuid.UUID | str) -> str:
    """The short id /liststock shows and /delstock takes (the uuid's last 8 hex digits)."""
    return str(unit_id)[-SHORT_ID:]


def resolve_unit(session: Tx, product_id: int | None, ident: str) -> uuid.UUID:
    """A unit id from a full uuid, or from a short id (its last 8 hex digits) within a product;
    ShopError('stock_unit_not_found' / 'stock_short_id_ambiguous') otherwise."""
    value = ident.strip().lower()
    try:
        return uuid.UUID(value)
    except ValueError:
        pass
    if product_id is None or len(value) != SHORT_ID or any(c not in "0123456789abcdef"
                                                          for c in value):
        raise ShopError("stock_unit_not_found", stock_id=ident[:40])
    # Among the product's units (its index); an admin's lookup, not a hot path.
    found = session.execute(sql(
        "SELECT id FROM product_stocks WHERE product_id = :p AND right(id::text, 8) = :s"
        " LIMIT 2"), {"s": value, "p": product_id}).scalars().all()
    if not found:
        raise ShopError("stock_unit_not_found", stock_id=value)
    if len(found) > 1:
        raise ShopError("stock_short_id_ambiguous", stock_id=value)
    return uuid.UUID(str(found[0]))


def delete_stock_unit(engine: Engine, actor_id: int, stock_id: uuid.UUID | str,
                      product_id: int | None = None) -> DeletedUnit:
    """Delete one free unit (not sold, not reserved, never in an order), by uuid or by short id
    within `product_id`.

    The DELETE locks the unit itself and re-checks it after any buyer holding it commits, so a
    unit a buyer just reserved is refused. Repeating it refuses with 'stock_unit_not_found'.
    """
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        if product_id is not None:
            _require_product(session, product_id)
        unit_id = stock_id if isinstance(stock_id, uuid.UUID) else resolve_unit(
            session, product_id, str(stock_id))
        owner = session.execute(
            text(
                "DELETE FROM product_stocks s WHERE s.id = :id AND NOT s.is_sold"
                " AND s.order_id IS NULL AND (CAST(:p AS int) IS NULL OR s.product_id = :p)"
                " AND NOT EXISTS (SELECT 1 FROM released_order_items r WHERE r.stock_id = s.id)"
                " RETURNING s.product_id"
            ),
            {"id": unit_id, "p": product_id},
        ).scalar()
        if owner is None:
            state = session.execute(
                text(
                    "SELECT s.is_sold, s.order_id, s.product_id,"
                    " EXISTS (SELECT 1 FROM released_order_items r WHERE r.stock_id = s.id)"
                    " AS has_history FROM product_stocks s WHERE s.id = :id"
                ),
                {"id": unit_id},
            ).first()
            if state is None or (product_id is not None and state.product_id != product_id):
                raise ShopError("stock_unit_not_found", stock_id=str(unit_id))
            if state.is_sold or state.order_id is not None:
                raise ShopError("stock_unit_in_use", stock_id=str(unit_id))
            raise ShopError("stock_unit_has_history", stock_id=str(unit_id))
        uow.commit()
    return DeletedUnit(unit_id, int(owner))


def count_deletable(engine: Engine, product_id: int) -> int:
    """How many units /delallstock would delete now (the confirmation shows it); a read."""
    with engine.connect() as conn:
        return int(conn.execute(sql(
            f"SELECT count(*) FROM product_stocks s WHERE {_DELETABLE}"),
            {"p": product_id}).scalar_one())


@dataclass(frozen=True)
class AllDeleted:
    """One /delallstock confirmation's outcome: units it deleted (when it ran first, or when it
    ran before: what it deleted then), whether it had run before, and the free units left."""

    deleted: int
    repeated: bool
    left: int


def delete_all_unsold_once(engine: Engine, actor_id: int, product_id: int,
                           confirmation_key: str) -> AllDeleted:
    """Delete a product's free units once per confirmation (`confirmation_key`): a second
    press of the same button deletes nothing, even units added since, and reports what the
    first did.

    A confirmation that ran already is seen before any unit is touched (a read of its key),
    so a repeated press never locks free units a buyer could want. Otherwise it deletes the
    free units no order's history names (the DELETE locks each; a unit a buyer holds is
    waited for and re-checked, so a just-reserved unit survives), then claims the key last
    (db/locks.py order) with the count: a twin pressed at the same moment waits there, finds
    the key taken and rolls back its delete, so one confirmation deletes once."""
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        _require_product(session, product_id)
        stored = session.execute(text("SELECT result FROM idempotency_keys WHERE key = :k"),
                                 {"k": confirmation_key}).first()
        if stored is not None:
            earlier = idempotency.as_result(stored.result)
        else:
            deleted = int(session.execute(text(f"DELETE FROM product_stocks s WHERE {_DELETABLE}"),
                                          {"p": product_id}).rowcount or 0)
            twin = idempotency.claim(session, confirmation_key, "delallstock")
            if twin is None:
                idempotency.record(session, confirmation_key, {"count": deleted})
                left = _count_deletable(session, product_id)
                uow.commit()
                return AllDeleted(deleted, False, left)
            session.rollback()  # the twin deleted and committed first: this one deletes nothing
            earlier = twin
        return AllDeleted(int(earlier.get("count", 0)), True,
                          _count_deletable(session, product_id))


def _count_deletable(session: Session, product_id: int) -> int:
    return int(session.execute(text(f"SELECT count(*) FROM product_stocks s WHERE {_DELETABLE}"),
                               {"p": product_id}).scalar_one())


def export_unsold(engine: Engine, product_id: int, *, actor_id: int) -> Iterator[str]:
    """The contents of a product's free units, oldest first, streamed (a server-side cursor).

    Locks nothing (a read). The actor and product are checked before this returns; the rows
    are read lazily in one REPEATABLE READ snapshot while the caller iterates.
    """
    with admin_work(engine, actor_id) as uow:
        _require_product(uow.session, product_id)
    return _stream_free_units(engine, product_id)


def _stream_free_units(engine: Engine, product_id: int) -> Iterator[str]:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", stream_results=True,
                                      max_row_buffer=_EXPORT_CHUNK)
        result = conn.execute(
            text(
                "SELECT content FROM product_stocks"
                " WHERE product_id = :p AND NOT is_sold AND order_id IS NULL"
                " ORDER BY created_at, id"
            ),
            {"p": product_id},
        )
        for partition in result.scalars().partitions(_EXPORT_CHUNK):
            yield from partition
        conn.rollback()


# ------------------------------------------------------------------ /editid

_REFERENCES = """
SELECT c.conrelid::regclass::text AS tbl, a.attname AS col
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'f' AND c.confrelid = 'products'::regclass
  AND array_length(c.conkey, 1) = 1
ORDER BY (c.conrelid::regclass::text <> 'product_stocks'), 1, 2
"""


def renumber_product(engine: Engine, actor_id: int, old_id: int, new_id: int) -> int:
    """/editid old|new: the product takes id `new_id`; every row referencing it follows, in one
    transaction. Returns how many referencing rows moved.

    Locks: the product row, then its stock units (FOR UPDATE, by id), so no purchase of it runs
    meanwhile (buyers skip locked units). The product is copied under the new id, each foreign
    key found in the catalog (pg_constraint) is repointed (order items follow their units by
    ON UPDATE CASCADE), and the old row is deleted. Idempotent in effect: run again, the old id
    no longer exists (ShopError('product_not_found')).
    """
    for value in (old_id, new_id):
        if isinstance(value, bool) or not 0 < value <= MAX_PRODUCT_ID:
            raise ShopError("invalid_product_id", product_id=value)
    if old_id == new_id:
        raise ShopError("product_exists", product_id=new_id)
    with admin_work(engine, actor_id) as uow:
        session: Session = uow.session
        found = session.execute(sql("SELECT id FROM products WHERE id = :p FOR UPDATE"),
                                {"p": old_id}).scalar()
        if found is None:
            raise ShopError("product_not_found", product_id=old_id)
        session.execute(sql("SELECT id FROM product_stocks WHERE product_id = :p"
                            " ORDER BY id FOR UPDATE"), {"p": old_id})
        columns = [c for c in session.execute(sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'products'"
            " AND table_schema = current_schema() AND is_generated = 'NEVER'"
            " ORDER BY ordinal_position")).scalars() if c != "id"]
        listed = ", ".join(columns)
        copied = session.execute(sql(
            f"INSERT INTO products (id, {listed}) SELECT :new, {listed} FROM products"
            " WHERE id = :old ON CONFLICT (id) DO NOTHING RETURNING id"),
            {"new": new_id, "old": old_id}).scalar()
        if copied is None:
            raise ShopError("product_exists", product_id=new_id)
        moved = 0
        for table, column in session.execute(sql(_REFERENCES)).all():
            # Table and column names come from the catalog, quoted as identifiers.
            moved += int(session.connection().execute(sql(
                f'UPDATE {table} SET "{column}" = :new WHERE "{column}" = :old'),
                {"new": new_id, "old": old_id}).rowcount or 0)
        session.execute(sql("DELETE FROM products WHERE id = :old"), {"old": old_id})
        uow.commit()
    return moved


# ------------------------------------------------------------------ low stock

def set_low_stock_threshold(engine: Engine, actor_id: int, product_id: int,
                            threshold: int) -> int:
    """/lowstock id|n: alert admins when free stock falls to `n` (0: never). Locks the product
    row (UPDATE) and resets its alert, so the new threshold is judged afresh; idempotent."""
    if isinstance(threshold, bool) or not 0 <= threshold <= 1_000_000:
        raise ShopError("invalid_threshold", threshold=threshold)
    with admin_work(engine, actor_id) as uow:
        set_product_setting(uow.session, product_id, "low_stock_threshold", threshold)
        uow.session.execute(sql("DELETE FROM low_stock_alerts WHERE product_id = :p"),
                            {"p": product_id})
        uow.commit()
    return threshold


#: Product columns an admin command sets alone (set_product_setting).
PRODUCT_SETTINGS = frozenset({"low_stock_threshold", "reseller_discount_floor"})


def set_product_setting(session: Tx, product_id: int, column: str, value: Any) -> None:
    """Set one of PRODUCT_SETTINGS on a product in the caller's transaction (locks its row);
    ShopError('product_not_found') when there is no such product."""
    if column not in PRODUCT_SETTINGS:
        raise ValueError(f"not a product setting: {column}")
    found = session.execute(sql(f"UPDATE products SET {column} = :v WHERE id = :p RETURNING id"),
                            {"v": value, "p": product_id}).scalar()
    if found is None:
        raise ShopError("product_not_found", product_id=product_id)


# The low-stock levels and the crossing test, shared by `low_stock_crossings` and beat's check
# (quickcart.services.housekeeping, which asks whether any product's alert would change):
# LOW_STOCK_LEVELS is the CTE `levels`, each active product with a threshold (only those in
# `:ids`, an int array, unless it is NULL) with its free units, counted only up to
# threshold + 1 so the scan reads a few index entries per product whatever the stock size;
# IS_LOW is true for a level `l` at or below its threshold (an alert fires, and stays until it
# is false again).
LOW_STOCK_LEVELS = """levels AS (
    SELECT p.id, p.name, p.low_stock_threshold AS threshold,
           (SELECT count(*) FROM (SELECT 1 FROM product_stocks s WHERE s.product_id = p.id
                AND NOT s.is_sold AND s.order_id IS NULL
                LIMIT p.low_stock_threshold + 1) AS f) AS free
    FROM products p
    WHERE p.is_active AND p.low_stock_threshold > 0
      AND (CAST(:ids AS int[]) IS NULL OR p.id = ANY(CAST(:ids AS int[])))
)"""
IS_LOW = "l.free <= l.threshold"

_LOW_STOCK = "WITH " + LOW_STOCK_LEVELS + """, recovered AS (
    DELETE FROM low_stock_alerts a USING levels l
    WHERE a.product_id = l.id AND NOT (""" + IS_LOW + """)
), fired AS (
    INSERT INTO low_stock_alerts (product_id)
    SELECT l.id FROM levels l WHERE """ + IS_LOW + """ ORDER BY l.id
    ON CONFLICT (product_id) DO NOTHING
    RETURNING product_id
)
SELECT l.id, l.name, l.free, l.threshold FROM levels l JOIN fired f ON f.product_id = l.id
ORDER BY l.id
"""


@dataclass(frozen=True)
class LowStock:
    """A product whose free stock just fell to its threshold."""

    product_id: int
    name: str
    free: int
    threshold: int


def low_stock_crossings(conn: Tx, product_ids: list[int] | None = None) -> list[LowStock]:
    """Products whose free stock is at or below their threshold and were not alerted yet
    (marked alerted in the same statement), and products back above it un-marked, so each
    crossing alerts once. Locks the alert rows it writes; the caller commits."""
    return [LowStock(int(r.id), str(r.name), int(r.free), int(r.threshold))
            for r in conn.execute(sql(_LOW_STOCK), {"ids": product_ids}).all()]


# ------------------------------------------------------------------ restock watches

def watch_restock(engine: Engine, user_id: int, product_id: int) -> bool:
    """"🔔 Kabari saya": remember that `user_id` wants to hear when `product_id` is back.
    Locks nothing (the unique key decides); idempotent: True only the first time."""
    with engine.begin() as conn:
        statement, params = actor_statement(user_id, "user")
        conn.execute(sql(statement), params)
        if not conn.execute(sql("SELECT 1 FROM products WHERE id = :p AND is_active"),
                            {"p": product_id}).scalar():
            raise ShopError("product_not_found", product_id=product_id)
        return conn.execute(sql(
            "INSERT INTO restock_watches (user_id, product_id) VALUES (:u, :p)"
            " ON CONFLICT (product_id, user_id) DO NOTHING RETURNING id"),
            {"u": user_id, "p": product_id}).scalar() is not None


def check_low_stock(engine: Engine, product_ids: list[int] | None = None
                    ) -> list[outbox.OutboxMessage]:
    """Queue one admin notice per product whose free stock just fell to its threshold (in the
    transaction that marks it alerted; returns the outbox rows to publish after commit). Locks
    the alert rows it writes; idempotent: a product stays alerted until stock rises above the
    threshold again, so repeated checks queue nothing more."""
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", {"reason": "low stock check"})
        effects = Effects(uow.session)
        for low in low_stock_crossings(uow.session, product_ids):
            effects.admins(N_("admin.low_stock"), product_id=low.product_id, name=low.name,
                           free=low.free, threshold=low.threshold)
        uow.commit()
    return effects.messages
