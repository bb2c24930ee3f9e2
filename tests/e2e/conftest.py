"""A running shop for end-to-end tests: real `celery worker` and `celery beat` processes on real
PostgreSQL and Redis, the Telegram Bot API simulator and the Pakasir sandbox on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from quickcart.db.migrate import migrate_all
from quickcart.db.uow import unit_of_work
from quickcart.services.ledger import move_balance
from quickcart.services.registration import register_user
from sandbox.pakasir import create_app as create_pakasir_app
from sandbox.telegram import TelegramSimulator
from tests.conftest import (
    TEST_KEY_PREFIX,
    TestUrls,
    assert_no_keys_left,
    delete_prefixed,
    empty_databases,
    redis_keys,
)
from tests.support import ROOT, CeleryProcess, ServedApp, free_port, wait_until

PROJECT = "quickcart-e2e"
API_KEY = "e2e-secret-key"
QUEUES = "default,orders,payments,expiry,audit,notify,bulk"
TASK_QUEUES = {
    "quickcart.create_order": "orders",
    "quickcart.cancel_order": "orders",
    "quickcart.confirm_payment": "payments",
    "quickcart.create_deposit": "payments",
    "quickcart.import_stock": "bulk",
    "quickcart.ship_audit": "audit",
}


class Shop:
    """Handles on every moving part of a running shop, for tests to drive and observe."""

    def __init__(self, urls: TestUrls, tmp: Path, main: Engine, audit: Engine,
                 key_prefix: str = TEST_KEY_PREFIX) -> None:
        self.urls = urls
        self.main = main
        self.audit = audit
        self.tmp = tmp
        # Its own Redis database per test session, and its own key prefix (REDIS_KEY_PREFIX):
        # two sessions on one machine (a developer and CI) must never consume each other's
        # tasks, nor delete each other's keys.
        self.redis_url = urls.redis_url.rsplit("/", 1)[0] + f"/{1 + os.getpid() % 15}"
        self.key_prefix = key_prefix
        delete_prefixed(self.redis_url, key_prefix)
        self.keys_before = redis_keys(self.redis_url)
        self.telegram = TelegramSimulator().start()
        self.pakasir_app = ServedApp(create_pakasir_app(PROJECT, API_KEY, webhook_url=None))
        self.pakasir = httpx.Client(base_url=self.pakasir_app.url, timeout=10)
        self.env = {
            **os.environ,
            "DATABASE_URL": urls.database_url,
            "AUDIT_DATABASE_URL": urls.audit_database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_BASE_URL": self.telegram.base_url,
            "PAKASIR_BASE_URL": self.pakasir_app.url,
            "PAKASIR_PROJECT": PROJECT,
            "PAKASIR_API_KEY": API_KEY,
            "PAKASIR_TIMEOUT_SECONDS": "5",
            # Short enough that a killed worker's task comes back within the test.
            "CELERY_VISIBILITY_TIMEOUT": "12",
            "CELERY_TASK_TIME_LIMIT": "10",
            "CELERY_RESTORE_INTERVAL": "2",
            "RECONCILE_AFTER_SECONDS": "1",
            "LOG_JSON": "false",
        }
        self.client = Celery(broker=self.redis_url)
        self.client.conf.broker_transport_options = {"global_keyprefix": key_prefix}
        self.api: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.worker = self._worker("w1")
        self.beat = CeleryProcess(self.env, ["beat", "-s", str(tmp / "beat-schedule"),
                                             "--pidfile=", "-l", "warning"],
                                  tmp / "beat.log")

    def _worker(self, name: str) -> CeleryProcess:
        return CeleryProcess(
            self.env,
            ["worker", "-Q", QUEUES, "-c", "4", "-P", "prefork",
             "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
             "--without-gossip", "--without-mingle", "-l", "info", "-E"],
            self.tmp / f"worker-{name}.log",
        )

    def start_api(self) -> str:
        """The webhook API as its own process; the sandbox's webhooks go to it."""
        if self.api is None or self.api.poll() is not None:
            port = free_port()
            log = (self.tmp / "api.log").open("ab")
            self.api = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            self.api_url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                if self.api is not None and self.api.poll() is not None:
                    raise AssertionError((self.tmp / "api.log").read_text())
                try:
                    return httpx.get(self.api_url + "/health", timeout=2).status_code in (200, 503)
                except httpx.HTTPError:
                    return False

            wait_until(up, what="webhook API", timeout=60)
        self.pakasir.post("/sandbox/webhook-url",
                          json={"url": self.api_url + "/webhooks/pakasir"})
        return self.api_url

    def start_worker(self) -> None:
        """Start the worker and wait until it answers a ping."""
        self.worker.start()

        def answering() -> bool:
            proc = self.worker.proc
            if proc is not None and proc.poll() is not None:
                raise AssertionError("worker died:\n" + self.worker.log_tail())
            return bool(self.client.control.ping(timeout=0.5))

        wait_until(answering, what="worker ping", timeout=60)

    def restart_worker(self) -> None:
        """A fresh worker process (after a kill)."""
        self.worker = self._worker(f"w{uuid.uuid4().hex[:4]}")
        self.start_worker()

    def send(self, task: str, **kwargs: Any) -> None:
        """Enqueue a task exactly as the bot or API would."""
        self.client.send_task(task, kwargs=kwargs, queue=TASK_QUEUES.get(task, "default"))

    @contextlib.contextmanager
    def gateway_down(self) -> Iterator[None]:
        """The Pakasir sandbox's API answers 503 inside the block, and is back after it."""
        self.pakasir.post("/sandbox/down", json={"status": 503})
        try:
            yield
        finally:
            self.pakasir.post("/sandbox/up")

    def gateway_marks_paid(self, invoice: str) -> None:
        """The shopper pays at the gateway, which sends no webhook for it ("webhook lost")."""
        response = self.pakasir.post(f"/sandbox/transactions/{invoice}/mark-paid")
        assert response.status_code == 200 and response.json()["status"] == "completed", \
            response.text

    def paid_at_gateway_then_expired(self, order_id: int, invoice: str) -> None:
        """The shopper pays at the gateway, then the order expires at the shop, in that order:
        the gateway's API is unreachable until the shop has expired the order, so neither
        reconciliation nor the shop's gateway cancel comes first. The expiry runs now, as the
        Redis set or the sweep would."""
        with self.gateway_down():
            self.gateway_marks_paid(invoice)
            with self.main.begin() as conn:
                conn.execute(text("UPDATE orders SET expires_at = now() - interval '1 second'"
                                  " WHERE id = :o"), {"o": order_id})
            self.send("quickcart.expire", kind="order", id=order_id)
            wait_until(lambda: self.q("SELECT status FROM orders WHERE id = :o", o=order_id)
                       == "expired", what="order expired", timeout=60)

    def key(self, name: str) -> str:
        """The Redis key of key or queue name `name` in this shop (its REDIS_KEY_PREFIX)."""
        return self.key_prefix + name

    def q(self, sql: str, **params: Any) -> Any:
        """One value from the main database."""
        with self.main.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """All rows of a query on the main database."""
        with self.main.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def add_user(self, user_id: int, balance: int = 0) -> int:
        """A registered shopper with a ledgered starting balance."""
        # A shopper has talked to the bot, so Telegram (the simulator) knows their chat.
        self.telegram.add_user(f"Pembeli {user_id}", user_id=user_id, username=f"buyer{user_id}",
                               language_code="id")
        register_user(self.main, user_id, f"Pembeli {user_id}", f"buyer{user_id}")
        if balance:
            with unit_of_work(self.main) as uow:
                move_balance(uow.session, user_id, Decimal(balance), "admin_credit", "test",
                             f"seed-{user_id}")
                uow.commit()
        return user_id

    def add_product(self, product_id: int, price: int, units: int,
                    reseller_price: int | None = None) -> int:
        """A product with `units` distinct keys in stock."""
        with self.main.begin() as conn:
            conn.execute(text("INSERT INTO products (id, name, customer_price, reseller_price)"
                              " VALUES (:i, :n, :p, :r)"),
                         {"i": product_id, "n": f"Produk {product_id}", "p": price,
                          "r": reseller_price})
            conn.execute(text("INSERT INTO product_stocks (product_id, content)"
                              " SELECT :i, 'KEY-' || :i || '-' || g"
                              " FROM generate_series(1, :n) g"), {"i": product_id, "n": units})
        return product_id

    def wait_intents(self, keys: list[str], timeout: float = 60) -> list[dict[str, Any]]:
        """Wait until every intent key has a recorded outcome; return them in order."""
        def done() -> list[dict[str, Any]] | None:
            with self.main.connect() as conn:
                got = dict(conn.execute(
                    text("SELECT key, result FROM idempotency_keys WHERE key = ANY(:k)"
                         " AND result IS NOT NULL"), {"k": keys}).all())
            return [got[k] for k in keys] if len(got) == len(keys) else None
        return wait_until(done, what=f"{len(keys)} intents", timeout=timeout)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop every process and server this shop started."""
        for proc in (self.beat, self.worker):
            proc.stop()
        if self.api is not None and self.api.poll() is None:
            os.killpg(self.api.pid, signal.SIGTERM)
            self.api.wait(timeout=20)
        self.telegram.stop()
        self.pakasir.close()
        self.pakasir_app.stop()


@contextlib.contextmanager
def running_e2e_shop(test_urls: TestUrls, tmp: Path, *, redis_url: str | None = None,
                 key_prefix: str = TEST_KEY_PREFIX) -> Iterator[Shop]:
    """A running shop (worker and beat started) on databases of its own, using `redis_url`
    (else the session's Redis) under `key_prefix`; stopped and dropped afterwards, with its
    keys deleted and a check that it left none without the prefix."""
    base = make_url(test_urls.database_url)
    tag = uuid.uuid4().hex[:6]
    main_url = base.set(database=f"qct_e2e_{tag}_main").render_as_string(hide_password=False)
    audit_url = base.set(database=f"qct_e2e_{tag}_audit").render_as_string(hide_password=False)
    migrate_all(main_url, audit_url)
    urls = dataclasses.replace(test_urls, database_url=main_url, audit_database_url=audit_url,
                               redis_url=redis_url or test_urls.redis_url)
    # pre_ping: a test may terminate backends (to copy the database); the pool must notice.
    main = create_engine(main_url, pool_size=10, pool_pre_ping=True)
    audit = create_engine(audit_url, pool_pre_ping=True)
    shop = Shop(urls, tmp, main, audit, key_prefix=key_prefix)
    try:
        shop.start_worker()
        shop.beat.start()
        yield shop
    finally:
        shop.close()
        main.dispose()
        audit.dispose()
        admin = create_engine(test_urls.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for url in (main_url, audit_url):
                conn.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
        admin.dispose()
        delete_prefixed(shop.redis_url, key_prefix)
    assert_no_keys_left(shop.redis_url, shop.keys_before, key_prefix)


@pytest.fixture(scope="package")
def shop_session(test_urls: TestUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """One running shop for the e2e tests, on databases of its own: its beat and workers must
    never touch the databases other tests use, and they stop when the e2e package ends."""
    with running_e2e_shop(test_urls, tmp_path_factory.mktemp("shop")) as shop:
        yield shop


@pytest.fixture()
def shop(shop_session: Shop) -> Shop:
    """The running shop with empty databases, a fresh simulator and sandbox state."""
    empty_databases(shop_session.main, shop_session.audit)
    delete_prefixed(shop_session.redis_url, shop_session.key_prefix)
    shop_session.telegram.reset()
    shop_session.pakasir.post("/sandbox/reset")
    if shop_session.api_url:
        shop_session.pakasir.post("/sandbox/webhook-url",
                                  json={"url": shop_session.api_url + "/webhooks/pakasir"})
    if shop_session.worker.proc is None or shop_session.worker.proc.poll() is not None:
        shop_session.restart_worker()
    return shop_session
