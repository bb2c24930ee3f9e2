"""Fault-injection harness: running shops on servers the tests may break.

Every shop here uses its own `redis-server` (no persistence, on a free port) so that killing or
restarting Redis never touches the machine's shared one, and its own pair of databases (on the
session's PostgreSQL, or on an embedded PostgreSQL the test may restart). Workers can run as one
process per queue group, so a test can `kill -9` the orders worker without touching the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from quickcart.db.migrate import migrate_all
from quickcart.embedded import redis_server_binary
from tests.conftest import TestUrls, empty_databases
from tests.e2e.conftest import Shop
from tests.support import CeleryProcess, free_port, wait_until

# One worker process per queue group: each type of task can be killed on its own.
QUEUE_GROUPS = {
    "orders": "orders",
    "payments": "payments",
    "notify": "notify",
    "bulk": "bulk",
    "system": "default,expiry,audit",
}


class RedisServer:
    """A private, non-persistent `redis-server` that a test may kill and restart."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = tmp
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def up() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_until(up, what=f"redis-server on {self.port}", timeout=30)
        return self

    def kill(self) -> None:
        """`kill -9`: everything in memory (queues, unacked messages, expiry set) is gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.kill()


class FaultShop(Shop):
    """A `Shop` on given servers, with optional per-queue-group workers."""

    def __init__(self, urls: TestUrls, tmp: Path, main: Engine, audit: Engine) -> None:
        super().__init__(urls, tmp, main, audit)
        self.group_workers: dict[str, CeleryProcess] = {}
        self.kills = 0

    # -- per-group workers ------------------------------------------------------------------
    def _group_worker(self, group: str) -> CeleryProcess:
        return CeleryProcess(
            self.env,
            ["worker", "-Q", QUEUE_GROUPS[group], "-c", "2", "-P", "prefork",
             "-n", f"{group}-{uuid.uuid4().hex[:6]}@%h",
             "--without-gossip", "--without-mingle", "-l", "info"],
            self.tmp / f"worker-{group}.log",
        )

    def start_group_workers(self) -> None:
        """Stop the all-queues worker; run one worker per queue group instead."""
        self.worker.stop()
        for group in QUEUE_GROUPS:
            self.group_workers[group] = self._group_worker(group).start()
        wait_until(lambda: len(self.client.control.ping(timeout=1.0)) >= len(QUEUE_GROUPS),
                   what="every group worker answering", timeout=90, interval=0.5)

    def kill_group(self, group: str) -> None:
        """`kill -9` one group's worker (main process and pool children) and start a new one."""
        self.group_workers[group].kill_hard()
        self.kills += 1
        self.group_workers[group] = self._group_worker(group).start()

    def stop_group(self, group: str) -> None:
        """`kill -9` one group's worker and leave its queues without a consumer."""
        self.group_workers[group].kill_hard()
        self.kills += 1

    def start_group(self, group: str) -> None:
        self.group_workers[group] = self._group_worker(group).start()

    def group_log_paths(self) -> list[Path]:
        """Every group worker's log file (a restarted worker appends to its group's)."""
        return [w.log_path for w in self.group_workers.values()]

    def group_logs(self) -> str:
        return "\n".join(f"--- {g}\n{w.log_tail(15)}" for g, w in self.group_workers.items())

    def close(self) -> None:
        for worker in self.group_workers.values():
            worker.kill_hard()
        super().close()


@contextlib.contextmanager
def running_shop(server_url: str, redis_url: str, tmp: Path, *,
                 start_worker: bool = True) -> Iterator[FaultShop]:
    """A shop with freshly migrated databases on `server_url`, using `redis_url`; all dropped
    and stopped afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    base = make_url(server_url)
    tag = uuid.uuid4().hex[:6]
    main_url = base.set(database=f"qct_flt_{tag}_main").render_as_string(hide_password=False)
    audit_url = base.set(database=f"qct_flt_{tag}_audit").render_as_string(hide_password=False)
    migrate_all(main_url, audit_url)
    urls = TestUrls(database_url=main_url, audit_database_url=audit_url, redis_url=redis_url,
                    server_url=server_url)
    main = create_engine(main_url, pool_size=10, pool_pre_ping=True)
    audit = create_engine(audit_url, pool_pre_ping=True)
    shop = FaultShop(urls, tmp, main, audit)
    # Telegram's flood limits, as the workers must live with them (429 with retry_after).
    shop.telegram.set_rate_limit(True)
    try:
        if start_worker:
            shop.start_worker()
        shop.beat.start()
        yield shop
    finally:
        shop.close()
        main.dispose()
        audit.dispose()
        with contextlib.suppress(Exception):
            admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for url in (main_url, audit_url):
                    conn.exec_driver_sql(
                        f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
            admin.dispose()


@pytest.fixture(scope="package")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the fault package (never the machine's shared one)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def fault_shop_session(test_urls: TestUrls, fault_redis: RedisServer,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultShop]:
    """One running shop for the fault tests that break only workers or send bad input."""
    with running_shop(test_urls.server_url, fault_redis.url,
                      tmp_path_factory.mktemp("fshop")) as shop:
        yield shop


@pytest.fixture()
def fshop(fault_shop_session: FaultShop) -> FaultShop:
    """The running fault shop, empty, with the all-queues worker alive."""
    shop = fault_shop_session
    for worker in shop.group_workers.values():
        worker.kill_hard()
    shop.group_workers.clear()
    empty_databases(shop.main, shop.audit)
    redis.Redis.from_url(shop.redis_url).flushdb()
    shop.telegram.reset()
    shop.telegram.set_rate_limit(True)  # a reset forgets the limits
    shop.kills = 0  # each test counts its own kills
    shop.pakasir.post("/sandbox/reset")
    if shop.api_url:
        shop.pakasir.post("/sandbox/webhook-url", json={"url": shop.api_url + "/webhooks/pakasir"})
    if shop.worker.proc is None or shop.worker.proc.poll() is not None:
        shop.restart_worker()
    return shop


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["FaultShop", "RedisServer", "running_shop", "dataclasses"]
