"""Going live safely: the demo seed stays off live shops, demo rows are found and purged in one
audited transaction, and database URLs are taken as every PostgreSQL tool writes them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from quickcart.config import Settings, normalize_database_url
from quickcart.db.uow import unit_of_work
from quickcart.golive import SIMULATOR_TOKEN, GoLiveRefused, refuse_demo_rows, should_seed_demo
from quickcart.services.demo import (
    DEMO_ADMIN_ID,
    DEMO_SHOPPER_ID,
    DemoInUse,
    find_demo_rows,
    purge_demo,
    seed_demo,
)
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user
from tests.conftest import TestUrls, scalar
from tests.support import ROOT

REAL_SHOPPER = 5550001


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`quickcart …` in a subprocess with `env` on top of a clean environment."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "AUDIT_DATABASE_URL", "TELEGRAM_BOT_TOKEN",
                         "PAKASIR_PROJECT", "PAKASIR_API_KEY")}
    return subprocess.run([sys.executable, "-m", "quickcart.cli", *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def _plain(url: str, scheme: str = "postgresql") -> str:
    """`url` as psql and pg_dump write it (no SQLAlchemy driver suffix)."""
    return scheme + "://" + url.split("://", 1)[1]


@pytest.fixture()
def scratch_dbs(test_urls: TestUrls) -> Iterator[tuple[str, str]]:
    """Names of two databases that do not exist yet; dropped afterwards if created."""
    tag = uuid.uuid4().hex[:8]
    names = (f"qct_live_{tag}_main", f"qct_live_{tag}_audit")
    base = make_url(test_urls.server_url)
    yield tuple(base.set(database=n).render_as_string(hide_password=False)  # type: ignore[misc]
                for n in names)
    admin = create_engine(test_urls.server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _exists(test_urls: TestUrls, url: str) -> bool:
    engine = create_engine(test_urls.server_url)
    try:
        return bool(scalar(engine, "SELECT count(*) FROM pg_database WHERE datname = :n",
                           n=make_url(url).database))
    finally:
        engine.dispose()  # no pooled connection left open for the rest of the session


# ------------------------------------------------------------------ database URLs
@pytest.mark.parametrize("url", [
    "postgresql://u:pw@db.example:5432/shop", "postgres://u:pw@db.example:5432/shop",
    "postgresql+psycopg2://u:pw@db.example:5432/shop"])
def test_every_postgres_spelling_reaches_the_shipped_driver(url: str) -> None:
    settings = Settings(database_url=url, audit_database_url=url)
    assert settings.database_url == "postgresql+psycopg2://u:pw@db.example:5432/shop"
    assert settings.audit_database_url == settings.database_url


@pytest.mark.parametrize(("url", "reason"), [
    ("mysql://u@h/db", "not a PostgreSQL URL"), ("db.example:5432/shop", "not a PostgreSQL URL"),
    ("postgresql://u@h", "needs a host and a database name")])
def test_a_malformed_url_is_refused_with_the_expected_form(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_database_url(url)


def test_migrate_and_check_take_plain_urls(test_urls: TestUrls,
                                           scratch_dbs: tuple[str, str]) -> None:
    main, audit = _plain(scratch_dbs[0]), _plain(scratch_dbs[1], "postgres")
    migrated = _cli("migrate", DATABASE_URL=main, AUDIT_DATABASE_URL=audit)
    assert migrated.returncode == 0, migrated.stderr
    assert "at head" in migrated.stdout
    checked = _cli("check", DATABASE_URL=main, AUDIT_DATABASE_URL=audit)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_malformed_database_url_gets_one_line_and_writes_nothing(
        test_urls: TestUrls, scratch_dbs: tuple[str, str]) -> None:
    result = _cli("migrate", DATABASE_URL="mysql://u@h/" + make_url(scratch_dbs[0]).database,
                  AUDIT_DATABASE_URL=scratch_dbs[1])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["quickcart: DATABASE_URL: not a PostgreSQL URL (expected"
                     " postgresql://user:password@host:5432/dbname)"], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not _exists(test_urls, scratch_dbs[1])


# ------------------------------------------------------------------ the demo gate
def test_demo_is_seeded_only_on_the_simulators() -> None:
    assert should_seed_demo(Settings(), requested=False)
    assert should_seed_demo(Settings(telegram_bot_token=SIMULATOR_TOKEN), requested=True)
    assert not should_seed_demo(Settings(telegram_bot_token="1:real"), requested=False)
    assert not should_seed_demo(Settings(pakasir_project="myshop"), requested=False)
    with pytest.raises(GoLiveRefused, match="TELEGRAM_BOT_TOKEN and PAKASIR_PROJECT are set"):
        should_seed_demo(Settings(telegram_bot_token="1:real", pakasir_project="myshop"),
                         requested=True)


def test_demo_with_live_keys_is_refused_before_anything_is_written(
        test_urls: TestUrls, scratch_dbs: tuple[str, str], tmp_path: object) -> None:
    result = _cli("up", "--demo", DATABASE_URL=scratch_dbs[0],
                  AUDIT_DATABASE_URL=scratch_dbs[1], TELEGRAM_BOT_TOKEN="1:live-token",
                  DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quickcart up --demo: refused, TELEGRAM_BOT_TOKEN is set (the demo shop runs on the"
        " simulators only; unset them or drop --demo)"], result.stderr
    assert not _exists(test_urls, scratch_dbs[0])


def test_a_live_bot_with_the_pakasir_sandbox_is_refused_before_anything_is_written(
        test_urls: TestUrls, scratch_dbs: tuple[str, str], tmp_path: object) -> None:
    result = _cli("up", DATABASE_URL=scratch_dbs[0], AUDIT_DATABASE_URL=scratch_dbs[1],
                  TELEGRAM_BOT_TOKEN="1:live-token", DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "quickcart up: refused, TELEGRAM_BOT_TOKEN is set but PAKASIR_PROJECT is not (a live"
        " bot would take sandbox payments); set PAKASIR_PROJECT and PAKASIR_API_KEY"]
    assert not _exists(test_urls, scratch_dbs[0])


def test_a_live_start_over_demo_rows_refuses_naming_them(db: Engine) -> None:
    assert seed_demo(db)
    with pytest.raises(GoLiveRefused) as refused:
        refuse_demo_rows(db, "quickcart up")
    message = str(refused.value)
    assert "\n" not in message
    assert "demo users 900001, 900002" in message
    assert "demo products 1, 2, 3, 4" in message
    assert "voucher DEMO5000" in message
    assert "quickcart demo purge" in message


def test_a_real_user_with_a_demo_id_is_not_demo_data(db: Engine) -> None:
    register_user(db, DEMO_ADMIN_ID, "Real person")
    assert not find_demo_rows(db)
    refuse_demo_rows(db, "quickcart up")  # no refusal


# ------------------------------------------------------------------ quickcart demo purge
def _demo_shopper_bought(db: Engine) -> None:
    """The demo shopper's purchase of demo product 2 with SALDO, as the web chat makes it."""
    from quickcart.services.orders import CreateOrder, create_order

    create_order(db, CreateOrder(DEMO_SHOPPER_ID, 2, 1, "account_balance", "demo-buy-1"))


def test_purge_removes_every_demo_row_in_one_audited_transaction(
        db: Engine, audit_engine: Engine) -> None:
    from quickcart.services.audit_shipping import ship_all

    seed_demo(db)
    _demo_shopper_bought(db)
    assert scalar(db, "SELECT count(*) FROM orders WHERE user_id = :u", u=DEMO_SHOPPER_ID) == 1
    register_user(db, REAL_SHOPPER, "Real shopper")
    removed = purge_demo(db)
    assert removed.users == (DEMO_ADMIN_ID, DEMO_SHOPPER_ID)
    assert removed.products == (1, 2, 3, 4)
    for query in ("SELECT count(*) FROM users WHERE id IN (900001, 900002)",
                  "SELECT count(*) FROM products", "SELECT count(*) FROM product_stocks",
                  "SELECT count(*) FROM vouchers", "SELECT count(*) FROM orders",
                  "SELECT count(*) FROM order_items", "SELECT count(*) FROM balance_ledger"):
        assert scalar(db, query) == 0, query
    assert scalar(db, "SELECT count(*) FROM users WHERE id = :u", u=REAL_SHOPPER) == 1
    assert not find_demo_rows(db)
    assert not purge_demo(db)  # idempotent: nothing left

    # Every deleted row is in the audit trail, under the purge's actor.
    ship_all(db, audit_engine, max_batches=100)
    with audit_engine.connect() as conn:
        deleted = dict(conn.execute(text(
            "SELECT entity_type, count(*) FROM audit_logs WHERE action IN ('delete', 'purge')"
            " AND context ->> 'purge' = 'demo' GROUP BY entity_type")).all())
    assert deleted["users"] == 2 and deleted["products"] == 4 and deleted["orders"] == 1
    assert deleted["balance_ledger"] == 2  # the seed's credit and the purchase
    assert deleted["demo"] == 1  # the purge itself, naming what it removed

    # The ledger's append-only guard is back on after the purge.
    with unit_of_work(db) as uow:
        move_balance(uow.session, REAL_SHOPPER, Decimal(1000), "admin_credit", "test", "t-1")
        uow.commit()
    with pytest.raises(DBAPIError, match="append-only"), db.begin() as conn:
        conn.execute(text("DELETE FROM balance_ledger"))


def test_purge_refuses_when_a_real_order_holds_a_demo_product(db: Engine) -> None:
    from quickcart.services.orders import CreateOrder, create_order

    seed_demo(db)
    register_user(db, REAL_SHOPPER, "Real shopper")
    with unit_of_work(db) as uow:
        move_balance(uow.session, REAL_SHOPPER, Decimal(100000), "admin_credit", "test", "t-2")
        uow.commit()
    create_order(db, CreateOrder(REAL_SHOPPER, 1, 1, "account_balance", "real-buy-1"))
    invoice = scalar(db, "SELECT invoice_id FROM orders WHERE user_id = :u", u=REAL_SHOPPER)
    with pytest.raises(DemoInUse, match=str(invoice)):
        purge_demo(db)
    # Nothing changed.
    assert find_demo_rows(db).users == (DEMO_ADMIN_ID, DEMO_SHOPPER_ID)
    assert scalar(db, "SELECT count(*) FROM products") == 4

    result = _cli("demo", "purge", DATABASE_URL=str(db.url.render_as_string(False)))
    assert result.returncode == 1
    assert result.stderr.startswith("quickcart demo purge: refused, real data references")
    assert len(result.stderr.strip().splitlines()) == 1
