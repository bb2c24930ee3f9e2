"""A demo shop for `quickcart up` on an empty database: products, stock, a voucher, users."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, text

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
