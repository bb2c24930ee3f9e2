"""A throw-away running shop for one benchmark: its own databases, Redis DB, simulators and
Celery/uvicorn subprocesses, all torn down at the end (also on Ctrl-C, SIGTERM or failure)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
import redis
from celery import Celery
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench import prebuilt as push
from sandbox.serving import ServedApp, free_port, wait_until
from workers.routes import TASK_QUEUES

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "quickcart-bench"
API_KEY = "bench-secret-key"
# "0" switches the Telegram simulator's flood limits off (`quickcart bench --no-telegram-limits`).
TELEGRAM_LIMITS_ENV = "BENCH_TELEGRAM_LIMITS"


class Proc:
    """A subprocess in its own process group (Ctrl-C in the terminal does not reach it; the
    harness stops it), output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree_rss(self) -> int:
        """Resident set size of the process and all its children, in bytes."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (warm shutdown), SIGKILL it if it hangs."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _claim_redis_db(base_url: str) -> tuple[str, redis.Redis]:
    """An empty Redis DB number (highest first; tests take 1 + pid % 15), marked as ours."""
    root = base_url.rsplit("/", 1)[0]
    for number in range(15, 0, -1):
        url = f"{root}/{number}"
        client = redis.Redis.from_url(url)
        if client.dbsize() == 0 and client.set("qc-bench:owner", os.getpid(), nx=True):
            return url, client
        client.close()
    raise RuntimeError("no empty Redis database (1-15) for the benchmark")


@contextlib.contextmanager
def interrupts_as_exceptions() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so `finally` blocks clean up as on Ctrl-C."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class Stack:
    """Everything one benchmark runs against. Use as a context manager."""

    def __init__(self, name: str, *, pakasir: bool = False, telegram: bool = True,
                 quiet: bool = False) -> None:
        self.name = name
        self.want_pakasir = pakasir
        self.want_telegram = telegram
        self.quiet = quiet
        self.procs: list[Proc] = []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"qc-bench-{name}-"))
        self.main_url = self.audit_url = self.server_url = self.redis_url = ""
        self.main: Engine | None = None
        self.audit: Engine | None = None
        self.redis: redis.Redis | None = None
        self.telegram: Any = None
        self.pakasir_app: ServedApp | None = None
        self.pakasir: httpx.Client | None = None
        self.client: Celery | None = None
        self.key_prefix = ""
        self.api_url = ""
        self.env: dict[str, str] = {}
        self._dbs: list[str] = []

    def log(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.name}] {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Stack:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        from quickcart.config import get_settings
        from quickcart.db.migrate import migrate_all
        from quickcart.db.urls import service_urls

        urls = service_urls()
        # The shop's keys under this process' REDIS_KEY_PREFIX (default `qc:`), passed on below.
        self.key_prefix = get_settings().redis_key_prefix
        base = make_url(urls.database_url)
        tag = f"{self.name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
        self.server_url = base.set(database="postgres").render_as_string(hide_password=False)
        self.main_url = base.set(database=f"qcb_{tag}_main").render_as_string(hide_password=False)
        self.audit_url = base.set(database=f"qcb_{tag}_audit").render_as_string(
            hide_password=False)
        self._dbs = [f"qcb_{tag}_main", f"qcb_{tag}_audit"]
        self.log(f"migrating {self._dbs[0]} / {self._dbs[1]}")
        migrate_all(self.main_url, self.audit_url)
        self.main = create_engine(self.main_url, pool_size=12, max_overflow=20)
        self.audit = create_engine(self.audit_url, pool_size=2)
        self.redis_url, self.redis = _claim_redis_db(urls.redis_url)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABASE_", "AUDIT_DATABASE", "REDIS_", "BROKER_"))}
        # JSON logs, as compose runs the shop: the console renderer draws each traceback with
        # rich, about a tenth of a second of CPU that lands inside whatever is measured.
        env.update({
            "DATABASE_URL": self.main_url, "AUDIT_DATABASE_URL": self.audit_url,
            "REDIS_URL": self.redis_url, "REDIS_KEY_PREFIX": self.key_prefix,
            "LOG_JSON": "true", "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        })
        if self.want_telegram:
            from sandbox.telegram import TelegramSimulator

            self.telegram = TelegramSimulator().start()
            # Telegram's flood limits (429 with retry_after) on, unless `--no-telegram-limits`.
            if os.environ.get(TELEGRAM_LIMITS_ENV, "1") != "0":
                self.telegram.set_rate_limit(True)
            env.update({"TELEGRAM_BOT_TOKEN": self.telegram.token,
                        "TELEGRAM_API_BASE_URL": self.telegram.base_url})
        if self.want_pakasir:
            from sandbox.pakasir import create_app

            self.pakasir_app = ServedApp(create_app(PROJECT, API_KEY, webhook_url=None))
            self.pakasir = httpx.Client(base_url=self.pakasir_app.url, timeout=30)
            env.update({"PAKASIR_BASE_URL": self.pakasir_app.url, "PAKASIR_PROJECT": PROJECT,
                        "PAKASIR_API_KEY": API_KEY, "PAKASIR_TIMEOUT_SECONDS": "10"})
        self.env = env
        self.client = Celery(broker=self.redis_url)
        # Queues, events and remote control where the workers (celeryconfig) have them.
        self.client.conf.broker_transport_options = {"global_keyprefix": self.key_prefix}

    def close(self) -> None:
        """Stop every process and server, drop the databases and the Redis DB's keys."""
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # keep cleaning up
                self.log(f"stopping {proc.name}: {exc}")
        self.procs.clear()
        if self.telegram is not None:
            with contextlib.suppress(Exception):
                self.telegram.stop()
        if self.pakasir is not None:
            self.pakasir.close()
        if self.pakasir_app is not None:
            with contextlib.suppress(Exception):
                self.pakasir_app.stop()
        for engine in (self.main, self.audit):
            if engine is not None:
                engine.dispose()
        if self.redis is not None:
            with contextlib.suppress(redis.RedisError):
                self.redis.flushdb()
            self.redis.close()
        if self._dbs:
            admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    for db in self._dbs:
                        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            finally:
                admin.dispose()
            self._dbs = []
        self.log(f"cleaned up (logs kept in {self.tmp})")

    # ------------------------------------------------------------------ processes
    def start_worker(self, name: str, queues: str, concurrency: int, *,
                     extra: list[str] | None = None, wait: bool = True) -> Proc:
        """A real `celery worker` consuming `queues`."""
        argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues,
                "-c", str(concurrency), "-P", "prefork",
                "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip",
                "--without-mingle", "--without-heartbeat", "-l", "warning", *(extra or [])]
        proc = Proc(name, argv, self.env, self.tmp / f"{name}.log")
        self.procs.append(proc)
        if wait:

            def answering() -> bool:
                if not proc.alive():
                    raise RuntimeError(f"worker {name} died:\n{proc.tail()}")
                assert self.client is not None
                replies = self.client.control.ping(timeout=0.5)
                return any(next(iter(r)).startswith(f"{name}-") for r in replies)

            wait_until(answering, what=f"worker {name}", timeout=90, interval=0.2)
        return proc

    def start_beat(self) -> Proc:
        """`celery beat`; returns once a worker received its first every-second task: beat has
        finished starting (a second or two of CPU that would otherwise land in the first
        measurement)."""
        from bench.events import TaskWatcher

        argv = [sys.executable, "-m", "celery", "-A", "workers.app", "beat",
                "-s", str(self.tmp / "beat-schedule"), "--pidfile=", "-l", "warning"]
        assert self.client is not None and self.redis is not None
        # The quiet beat (workers/beat.py) sends `expire_due` only when an expiry is due: one
        # is (of a row that never was), so its first run says beat has started.
        self.redis.zadd(self.key("queue:payment_expiry"), {"order:0": 0})
        with TaskWatcher(self.client, wait_first_event=False) as watcher:
            proc = Proc("beat", argv, self.env, self.tmp / "beat.log")
            self.procs.append(proc)
            watcher.wait_received("quickcart.expire_due", timeout=90)
        return proc

    def start_api(self) -> str:
        """The webhook API as its own uvicorn process; the sandbox's webhooks go to it."""
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                "--no-access-log"]
        proc = Proc("api", argv, self.env, self.tmp / "api.log")
        self.procs.append(proc)
        self.api_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not proc.alive():
                raise RuntimeError("webhook API died:\n" + proc.tail())
            try:
                return httpx.get(self.api_url + "/health", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_until(up, what="webhook API", timeout=60, interval=0.2)
        assert self.pakasir is not None
        self.pakasir.post("/sandbox/webhook-url",
                          json={"url": self.api_url + "/webhooks/pakasir"}).raise_for_status()
        return self.api_url

    def check_alive(self) -> None:
        """Fail loudly when a subprocess died mid-benchmark."""
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} died:\n{proc.tail()}")

    # ------------------------------------------------------------------ driving
    def send(self, task: str, **kwargs: Any) -> str:
        """Enqueue a task by name as the bot or API would (the message `send_task` stores,
        built by bench.prebuilt); returns the task id."""
        assert self.client is not None and self.redis is not None
        return push.send_unsafe(self.client, self.redis, task, kwargs,
                                TASK_QUEUES.get(task, "default"))

    def build_messages(self, task: str, kwargs_list: list[dict[str, Any]]
                       ) -> tuple[str, list[str], list[str]]:
        """Task messages for `task` as `send` would publish them: (queue, task ids,
        serialized messages)."""
        assert self.client is not None
        queue = TASK_QUEUES.get(task, "default")
        built = [push.build(self.client, task, kwargs, queue) for kwargs in kwargs_list]
        return queue, [task_id for task_id, _ in built], [message for _, message in built]

    def push(self, queue: str, messages: list[str]) -> None:
        """Put built messages on `queue` in one pipeline, in order."""
        assert self.redis is not None and self.client is not None
        push.push_unsafe(self.redis, [(push.queue_key(self.client, queue), message)
                                      for message in messages])

    def send_many(self, task: str, kwargs_list: list[dict[str, Any]]) -> list[str]:
        """Enqueue many intents at once, built as `send` builds them and pushed in one
        pipeline, so building them (the bot's work, in its own process) does not compete with
        the shop it measures. Returns the task ids in order."""
        queue, ids, messages = self.build_messages(task, kwargs_list)
        self.push(queue, messages)
        return ids

    def key(self, name: str) -> str:
        """The Redis key of key or queue name `name` (under the shop's REDIS_KEY_PREFIX)."""
        return self.key_prefix + name

    def q(self, sql: str, **params: Any) -> Any:
        assert self.main is not None
        with self.main.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def exec(self, sql: str, **params: Any) -> None:
        assert self.main is not None
        with self.main.begin() as conn:
            conn.execute(text(sql), params)

    # ------------------------------------------------------------------ data
    def add_users(self, first_id: int, count: int, balance: int) -> list[int]:
        """`count` registered shoppers with a ledgered balance (set-based, one transaction),
        each known to the Telegram simulator so deliveries reach a chat."""
        assert self.main is not None
        ids = list(range(first_id, first_id + count))
        with self.main.begin() as conn:
            conn.execute(text(
                "INSERT INTO users (id, name, username, bank_id)"
                " SELECT g, 'Pembeli ' || g, 'buyer' || g, lpad((100000 + g % 900000)::text, 6)"
                " FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g"),
                {"a": ids[0], "b": ids[-1]})
            if balance:
                conn.execute(text("UPDATE users SET account_balance = account_balance + :m"
                                  " WHERE id BETWEEN :a AND :b"),
                             {"m": balance, "a": ids[0], "b": ids[-1]})
                conn.execute(text(
                    "INSERT INTO balance_ledger (user_id, amount, reason, reference_type,"
                    " reference_id) SELECT g, :m, 'admin_credit', 'bench', 'seed-' || g"
                    " FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g"),
                    {"m": balance, "a": ids[0], "b": ids[-1]})
        if self.telegram is not None:
            for uid in ids:
                self.telegram.state.add_user(f"Pembeli {uid}", user_id=uid,
                                             username=f"buyer{uid}", language_code="id")
        return ids

    def add_product(self, product_id: int, price: int, units: int) -> int:
        """A product with `units` distinct keys in stock."""
        self.exec("INSERT INTO products (id, name, customer_price) VALUES (:i, :n, :p)",
                  i=product_id, n=f"Produk {product_id}", p=price)
        if units:
            self.exec("INSERT INTO product_stocks (product_id, content)"
                      " SELECT :i, 'KEY-' || :i || '-' || g FROM generate_series(1, :n) g",
                      i=product_id, n=units)
        return product_id

    def vacuum_stock(self) -> None:
        """VACUUM the stock table, so every measured phase starts with the hand-out index's
        head free of the dead entries earlier phases' sales left (each purchase's SKIP LOCKED
        scan walks them: the raw baseline alone fell from 301 to 221 orders/s over 6,000
        sales). A live shop's autovacuum does this every ~1% of the table (migration 0003)."""
        assert self.main is not None
        with self.main.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE) product_stocks")

    def wait_audit_shipped(self, timeout: float = 300) -> None:
        """Until the audit shipper has moved every captured change to the audit DB (so a
        phase's CPU figures include shipping its own audit rows)."""
        wait_until(lambda: self.q("SELECT count(*) FROM audit_outbox") == 0,
                   what="audit outbox shipped", timeout=timeout, interval=0.1)

    def vacuum(self) -> None:
        """ANALYZE after seeding, so plans are those of a live shop."""
        assert self.main is not None
        with self.main.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
