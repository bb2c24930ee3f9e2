"""A demo shop for `quickcart up` on an empty database: products, stock, a voucher, users."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from quickcart.db.uow import unit_of_work
from quickcart.services.ledger import move_balance

DEMO_ADMIN_ID = 900001
DEMO_SHOPPER_ID = 900002
DEMO_VOUCHER = "DEMO5000"
PRODUCTS = (
    # id, name, category, price, reseller price, description
    (1, "Netflix Premium 1 Bulan", "Streaming", 35000, 30000, "Akun sharing 1 profil, 30 hari."),
    (2, "Spotify Premium 1 Bulan", "Musik", 20000, None, "Individual, perpanjangan otomatis mati."),
    (3, "Canva Pro 1 Tahun", "Desain", 50000, 42000, "Undangan tim Canva Pro 12 bulan."),
    (4, "Windows 11 Pro Key", "Software", 150000, 120000, "Kunci lisensi retail, 1 perangkat."),
)
UNITS_PER_PRODUCT = 25


def seed_demo(engine: Engine) -> bool:
    """Seed once (idempotent: nothing happens when any product exists); True if it seeded."""
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", {"seed": "demo"})
        session = uow.session
        if session.execute(text("SELECT 1 FROM products LIMIT 1")).scalar():
            return False
        for uid, name, role in ((DEMO_ADMIN_ID, "Admin Demo", "admin"),
                                (DEMO_SHOPPER_ID, "Budi Demo", "customer")):
            session.execute(
                text("INSERT INTO users (id, name, username, bank_id, member_status)"
                     " VALUES (:i, :n, :u, :b, :r) ON CONFLICT (id) DO NOTHING"),
                {"i": uid, "n": name, "u": name.split()[0].lower() + "_demo",
                 "b": str(100000 + uid % 900000), "r": role})
        move_balance(session, DEMO_SHOPPER_ID, Decimal(100000), "admin_credit", "demo",
                     "demo-seed-balance", note="demo balance")
        for pid, name, category, price, reseller, description in PRODUCTS:
            session.execute(
                text("INSERT INTO products (id, name, category, customer_price, reseller_price,"
                     " description) VALUES (:i, :n, :c, :p, :r, :d)"),
                {"i": pid, "n": name, "c": category, "p": price, "r": reseller,
                 "d": description})
            session.execute(
                text("INSERT INTO product_stocks (product_id, content)"
                     " SELECT :i, :prefix || '-' || upper(substr(md5(:salt || g), 1, 12))"
                     " FROM generate_series(1, :n) g"),
                {"i": pid, "prefix": f"DEMO{pid}", "salt": secrets.token_hex(8),
                 "n": UNITS_PER_PRODUCT})
        session.execute(
            text("INSERT INTO vouchers (code, amount, created_by, expires_at)"
                 " VALUES (:c, 5000, :a, :e)"),
            {"c": DEMO_VOUCHER, "a": DEMO_ADMIN_ID,
             "e": datetime.now(UTC) + timedelta(days=30)})
        uow.commit()
    return True


def chat_users(engine: Engine, limit: int = 50) -> list[tuple[int, str, str | None]]:
    """The shop's users for the Telegram simulator to list in its web chat (id, name,
    username): the demo users first, then the most recent ones (read only)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, name, username FROM users WHERE erased_at IS NULL"
            " ORDER BY id IN (:a, :s) DESC, created_at DESC LIMIT :n"),
            {"a": DEMO_ADMIN_ID, "s": DEMO_SHOPPER_ID, "n": limit}).all()
    return sorted((int(r.id), str(r.name), r.username) for r in rows)


# ------------------------------------------------------------------ demo rows in a live shop
# A demo user is recognised by its id *and* the bank id the seed gave it (registration never
# changes a bank id), so a real Telegram user who happens to have id 900001 is not mistaken.
DEMO_USERS = ((DEMO_ADMIN_ID, str(100000 + DEMO_ADMIN_ID % 900000)),
              (DEMO_SHOPPER_ID, str(100000 + DEMO_SHOPPER_ID % 900000)))
# A demo product has the seed's id and name and carries the seed's fake keys.
DEMO_KEY_PATTERN = "^DEMO[0-9]+-[0-9A-F]{12}$"


@dataclass(frozen=True)
class DemoRows:
    """What the demo seed left in a database (empty when none)."""

    users: tuple[int, ...] = ()
    products: tuple[int, ...] = ()
    vouchers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.products or self.vouchers)

    def describe(self) -> str:
        """One line naming the rows, e.g. "users 900001, 900002; products 1, 2; voucher X"."""
        parts = []
        if self.users:
            parts.append("demo users " + ", ".join(map(str, self.users)))
        if self.products:
            parts.append("demo products " + ", ".join(map(str, self.products)))
        if self.vouchers:
            parts.append(("voucher " if len(self.vouchers) == 1 else "vouchers ")
                         + ", ".join(self.vouchers))
        return "; ".join(parts)


class DemoInUse(Exception):
    """Real orders reference demo rows: purging them would rewrite real history."""


def _find(session: Session | Connection) -> DemoRows:
    users = session.execute(text(
        "SELECT id FROM users WHERE (id, bank_id) IN (SELECT * FROM unnest("
        "CAST(:ids AS bigint[]), CAST(:banks AS varchar[]))) ORDER BY id"),
        {"ids": [u for u, _ in DEMO_USERS], "banks": [b for _, b in DEMO_USERS]}).scalars()
    products = session.execute(text(
        "SELECT p.id FROM products p WHERE (p.id, p.name) IN (SELECT * FROM unnest("
        "CAST(:ids AS int[]), CAST(:names AS varchar[])))"
        " AND EXISTS (SELECT 1 FROM product_stocks s WHERE s.product_id = p.id"
        " AND s.content ~ :pattern) ORDER BY p.id"),
        {"ids": [p[0] for p in PRODUCTS], "names": [p[1] for p in PRODUCTS],
         "pattern": DEMO_KEY_PATTERN}).scalars()
    vouchers = session.execute(text(
        "SELECT code FROM vouchers WHERE created_by = ANY(:ids) ORDER BY code"),
        {"ids": [u for u, _ in DEMO_USERS]}).scalars()
    found_users = tuple(users)
    return DemoRows(found_users, tuple(products),
                    tuple(vouchers) if found_users else ())


def find_demo_rows(engine: Engine) -> DemoRows:
    """The demo seed's rows still in the database (read only, no locks)."""
    with engine.connect() as conn:
        return _find(conn)


def _real_references(session: Session, rows: DemoRows) -> list[str]:
    """Real shoppers' orders that reference demo rows, or demo orders holding real stock."""
    demo_users, demo_products = list(rows.users), list(rows.products)
    found = []
    for label, query in (
        ("orders of real users contain demo products",
         "SELECT DISTINCT o.invoice_id FROM orders o JOIN order_items i ON i.order_id = o.id"
         " WHERE i.product_id = ANY(:p) AND NOT o.user_id = ANY(:u)"
         " UNION SELECT DISTINCT o.invoice_id FROM orders o"
         " JOIN released_order_items i ON i.order_id = o.id"
         " WHERE i.product_id = ANY(:p) AND NOT o.user_id = ANY(:u)"),
        ("real users used demo vouchers",
         "SELECT code FROM vouchers WHERE created_by = ANY(:u)"
         " AND used_by IS NOT NULL AND NOT used_by = ANY(:u)"),
        ("demo users used real vouchers",
         "SELECT code FROM vouchers WHERE used_by = ANY(:u) AND NOT created_by = ANY(:u)"),
        ("demo orders hold real products' units",
         "SELECT DISTINCT o.invoice_id FROM orders o JOIN product_stocks s ON s.order_id = o.id"
         " WHERE o.user_id = ANY(:u) AND NOT s.product_id = ANY(:p)"),
    ):
        hits = [str(v) for v in session.execute(
            text(query), {"u": demo_users, "p": demo_products}).scalars()]
        if hits:
            found.append(f"{label}: {', '.join(hits[:10])}" + (" …" if len(hits) > 10 else ""))
    return found


def purge_demo(engine: Engine) -> DemoRows:
    """Delete the demo users' data, the demo products and their vouchers in one audited
    transaction; returns what was removed (empty when there was nothing).

    Locks the demo user and product rows (FOR UPDATE, by primary key) so no order can start
    on them meanwhile. Refuses (DemoInUse) when real orders reference demo rows. Idempotent: a
    second run finds nothing. The ledger is append-only; its trigger is switched off for this
    transaction alone, and every deleted row (ledger rows included) is captured in the audit
    trail like any other change."""
    with unit_of_work(engine) as uow:
        uow.set_actor(None, "system", {"purge": "demo"})
        session = uow.session
        rows = _find(session)
        if not rows:
            return rows
        session.execute(text("SELECT id FROM users WHERE id = ANY(:u) ORDER BY id FOR UPDATE"),
                        {"u": list(rows.users)})
        session.execute(text("SELECT id FROM products WHERE id = ANY(:p) ORDER BY id"
                             " FOR UPDATE"), {"p": list(rows.products)})
        refused = _real_references(session, rows)
        if refused:
            raise DemoInUse("; ".join(refused))
        params = {"u": list(rows.users), "p": list(rows.products)}
        demo_orders = "SELECT id FROM orders WHERE user_id = ANY(:u)"
        for statement in (
            "DELETE FROM admin_pending_notices WHERE chat_id = ANY(:u)",
            "DELETE FROM voucher_usage_cooldown WHERE user_id = ANY(:u)",
            "DELETE FROM vouchers WHERE created_by = ANY(:u)",
            f"DELETE FROM sold_count_deltas WHERE product_id = ANY(:p) OR order_id IN"
            f" ({demo_orders})",
            f"DELETE FROM released_order_items WHERE order_id IN ({demo_orders})",
            f"DELETE FROM order_items WHERE order_id IN ({demo_orders})",
            "DELETE FROM product_stocks WHERE product_id = ANY(:p)",
            "DELETE FROM payment_events WHERE invoice_id IN (SELECT invoice_id FROM orders"
            " WHERE user_id = ANY(:u) UNION SELECT invoice_id FROM deposits"
            " WHERE user_id = ANY(:u))",
            "DELETE FROM orders WHERE user_id = ANY(:u)",
            "DELETE FROM deposits WHERE user_id = ANY(:u)",
            "DELETE FROM products WHERE id = ANY(:p)",
        ):
            session.execute(text(statement), params)
        for table in _other_user_tables(session):
            session.execute(text(f'DELETE FROM "{table}" WHERE user_id = ANY(:u)'), params)
        # The ledger refuses deletes; this transaction alone may remove the demo shopper's
        # rows (ALTER TABLE is transactional: a rollback switches the guard back on too).
        # The ledger has no capture trigger (it is append-only): its deleted rows are written
        # to the audit trail here, with the purge itself.
        session.execute(text(
            "INSERT INTO audit_outbox (actor_id, actor_type, entity_type, entity_id, action,"
            " before_state, after_state, context)"
            " SELECT CAST(NULL AS bigint), 'system', 'balance_ledger', l.id::text, 'delete',"
            " to_jsonb(l), CAST(NULL AS jsonb), CAST(:ctx AS jsonb)"
            " FROM balance_ledger l WHERE l.user_id = ANY(:u)"
            " UNION ALL SELECT NULL, 'system', 'demo', 'demo', 'purge', NULL,"
            " CAST(:summary AS jsonb), CAST(:ctx AS jsonb)"),
            {**params, "ctx": json.dumps({"purge": "demo"}),
             "summary": json.dumps({"users": rows.users, "products": rows.products,
                                    "vouchers": rows.vouchers})})
        session.execute(text("ALTER TABLE balance_ledger DISABLE TRIGGER"
                             " balance_ledger_append_only"))
        session.execute(text("DELETE FROM balance_ledger WHERE user_id = ANY(:u)"), params)
        session.execute(text("ALTER TABLE balance_ledger ENABLE TRIGGER"
                             " balance_ledger_append_only"))
        session.execute(text("DELETE FROM users WHERE id = ANY(:u)"), params)
        uow.commit()
    return rows


# Tables of the data contract handled above; any other table with a user_id foreign key
# (added by later migrations, e.g. admin grants) is emptied of the demo users' rows too.
_HANDLED = frozenset({"orders", "deposits", "balance_ledger", "voucher_usage_cooldown",
                      "vouchers", "users"})


def _other_user_tables(session: Session) -> list[str]:
    names = session.execute(text(
        "SELECT DISTINCT c.conrelid::regclass::text FROM pg_constraint c"
        " WHERE c.contype = 'f' AND c.confrelid = 'users'::regclass"
        " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid"
        " AND a.attname = 'user_id' AND a.attnum = ANY(c.conkey))")).scalars()
    return sorted(n.strip('"') for n in names if n.strip('"') not in _HANDLED)
