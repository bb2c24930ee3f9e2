"""Product and category discounts (/disc, /discat, /discfloor) and the price they give.

The rule itself is pure (quickcart/domain/discounts.py); this module stores discounts and reads
the ones that apply. Writes run as the admin (audit triggers on `discounts` and `products`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine

from quickcart.db.sql import Record, Tx, sql
from quickcart.domain import discounts as rule
from quickcart.domain import pricing
from quickcart.domain.errors import ShopError
from quickcart.domain.money import InvalidAmountError, rupiah
from quickcart.services.admin import admin_work
from quickcart.services.stock_admin import set_product_setting

MAX_CATEGORY = 255


@dataclass(frozen=True)
class DiscountView:
    """A discount as set (value 0 = removed)."""

    target: str
    kind: str
    value: Decimal
    ends_at: datetime | None
    removed: bool


def _check(kind: str, value: Decimal, ends_at: datetime | None, now: datetime) -> None:
    if kind not in rule.KINDS or value < 0:
        raise ShopError("invalid_discount", value=str(value))
    if kind == "percent" and not 0 < value < 100:
        raise ShopError("invalid_discount", value=str(value))
    if ends_at is not None and ends_at <= now:
        raise ShopError("discount_end_past")


def set_product_discount(engine: Engine, actor_id: int, product_id: int, kind: str,
                         value: Decimal, ends_at: datetime | None = None,
                         now: datetime | None = None) -> DiscountView:
    """/disc id|10% or id|5000 (optional end), `0` removes. Locks the product's discount row
    (upsert on its unique index). Idempotent: setting the same discount again changes nothing."""
    moment = now or datetime.now(UTC)
    _check(kind, value, ends_at, moment)
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        price = session.execute(sql("SELECT customer_price FROM products WHERE id = :p"),
                                {"p": product_id}).scalar()
        if price is None:
            raise ShopError("product_not_found", product_id=product_id)
        if value == 0:
            session.execute(sql("DELETE FROM discounts WHERE product_id = :p"), {"p": product_id})
        else:
            if kind == "amount" and value >= price:
                raise ShopError("discount_too_large", price=str(price))
            _upsert(session, "product_id", product_id, kind, value, ends_at, actor_id)
        uow.commit()
    return DiscountView(str(product_id), kind, value, ends_at, value == 0)


def set_category_discount(engine: Engine, actor_id: int, category: str, kind: str,
                          value: Decimal, ends_at: datetime | None = None,
                          now: datetime | None = None) -> DiscountView:
    """/discat category|15% (optional end), `0` removes; the category must have products.
    Locks the category's discount row (upsert). Idempotent like set_product_discount."""
    moment = now or datetime.now(UTC)
    _check(kind, value, ends_at, moment)
    name = category.strip()
    if not name or len(name) > MAX_CATEGORY:
        raise ShopError("category_not_found", category=name[:50])
    with admin_work(engine, actor_id) as uow:
        session = uow.session
        found = session.execute(sql("SELECT category FROM products WHERE lower(category) ="
                                    " lower(:c) ORDER BY id LIMIT 1"), {"c": name}).scalar()
        if found is None:
            raise ShopError("category_not_found", category=name)
        if value == 0:
            session.execute(sql("DELETE FROM discounts WHERE category = :c"), {"c": found})
        else:
            _upsert(session, "category", found, kind, value, ends_at, actor_id)
        uow.commit()
    return DiscountView(str(found), kind, value, ends_at, value == 0)


def _upsert(session: Tx, column: str, target: Any, kind: str, value: Decimal,
            ends_at: datetime | None, actor_id: int) -> None:
    # `column` is one of two literals chosen above; values are bound.
    session.execute(sql(
        f"INSERT INTO discounts ({column}, discount_kind, value, ends_at, created_by)"
        " VALUES (:t, :k, :v, :e, :a)"
        f" ON CONFLICT ({column}) WHERE {column} IS NOT NULL DO UPDATE"
        " SET discount_kind = EXCLUDED.discount_kind,"
        " value = EXCLUDED.value, ends_at = EXCLUDED.ends_at, created_by = EXCLUDED.created_by"
        " WHERE (discounts.discount_kind, discounts.value, discounts.ends_at) IS DISTINCT FROM"
        " (EXCLUDED.discount_kind, EXCLUDED.value, EXCLUDED.ends_at)"),
        {"t": target, "k": kind, "v": value, "e": ends_at, "a": actor_id})


def set_reseller_floor(engine: Engine, actor_id: int, product_id: int,
                       floor: Decimal | int | str | None) -> Decimal | None:
    """/discfloor id|amount: the lowest price a discount may give resellers (None/0: resellers
    get no discount). Locks the product row (UPDATE); idempotent."""
    value: Decimal | None
    try:
        value = None if floor is None else rupiah(floor)
    except InvalidAmountError as exc:
        raise ShopError("invalid_price", field="reseller_discount_floor",
                        value=str(floor)) from exc
    if value == 0:
        value = None
    with admin_work(engine, actor_id) as uow:
        set_product_setting(uow.session, product_id, "reseller_discount_floor", value)
        uow.commit()
    return value


# ------------------------------------------------------------------ reading prices

def unit_price_for(conn: Tx, product_id: int, role: str,
                   now: datetime | None = None) -> rule.Price | None:
    """A product's unit price for `role` with the best running discount (one query; a read),
    or None when the product does not exist."""
    row = conn.execute(sql(
        "SELECT p.id, p.customer_price, p.reseller_price, p.reseller_discount_floor,"
        f" {DISCOUNTS_JSON} AS discounts FROM products p WHERE p.id = :p"),
        {"p": product_id}).first()
    return None if row is None else product_price(row, role, now)


def list_discounts(engine: Engine) -> list[Record]:
    """Every discount row (product and category), newest first; a read."""
    with engine.connect() as conn:
        return list(conn.execute(sql(
            "SELECT product_id, category, discount_kind, value, ends_at FROM discounts"
            " ORDER BY created_at DESC, id DESC")).all())


#: SQL for one product row (alias `p`): its running discounts (own and category's) as a JSON
#: array, so a catalog page or an order's read gets prices in the same round trip.
DISCOUNTS_JSON = (
    "(SELECT json_agg(json_build_object('kind', d.discount_kind, 'value', d.value::text,"
    " 'ends_at', d.ends_at)) FROM discounts d"
    " WHERE (d.product_id = p.id OR d.category = p.category)"
    " AND (d.ends_at IS NULL OR d.ends_at > now()))"
)


def from_json(value: Any) -> list[rule.Discount]:
    """DISCOUNTS_JSON's array as Discounts (None: none run)."""
    found = []
    for item in value or []:
        ends = item.get("ends_at")
        found.append(rule.Discount(str(item["kind"]), Decimal(str(item["value"])),
                                   datetime.fromisoformat(ends) if ends else None))
    return found


def _field(product: Any, name: str) -> Any:
    return product.get(name) if isinstance(product, dict) else getattr(product, name, None)


def product_price(product: Any, role: str, now: datetime | None = None) -> rule.Price:
    """The price a row or JSON object of a product (id, customer_price, reseller_price,
    reseller_discount_floor, discounts = DISCOUNTS_JSON) has for `role`, through the one
    pricing entry point (quickcart/domain/pricing.py product_price)."""
    reseller = _field(product, "reseller_price")
    floor = _field(product, "reseller_discount_floor")
    return pricing.product_price(
        int(_field(product, "id")), role, Decimal(str(_field(product, "customer_price"))),
        None if reseller is None else Decimal(str(reseller)),
        discounts=from_json(_field(product, "discounts")),
        reseller_floor=None if floor is None else Decimal(str(floor)), now=now)
