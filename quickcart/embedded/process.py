"""What the embedded PostgreSQL and Redis servers share: ports, processes, state files, launching.

Servers are recognised by their working directory (both chdir into their data directory), their
state lives in small JSON files written atomically, and starts are serialised with a file lock so
the bot, the workers and the API can all ask for a server at once. `EmbeddedServer` is the part of
a server's bookkeeping that does not depend on which server it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Runner:
    """The OS account a server runs as; uid None means the current process's account."""

    uid: int | None = None
    gid: int | None = None
    name: str | None = None

    @property
    def switches_user(self) -> bool:
        """True when commands must be run as another account."""
        return self.uid is not None


# --------------------------------------------------------------------------- ports


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:port right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so TIME_WAIT leftovers must not count as "taken" here either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def any_free_port() -> int:
    """A port the kernel considers free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_port(port: int, timeout: float) -> bool:
    """Poll until 127.0.0.1:port accepts connections or `timeout` seconds pass."""
    return wait_until(lambda: port_answers(LOOPBACK, port), timeout)


# --------------------------------------------------------------------------- processes


def live_process(pid: int) -> psutil.Process | None:
    """The process `pid` if it exists and is not a zombie (a killed server nobody reaped yet)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def process_cwd(proc: psutil.Process) -> Path | None:
    """The working directory of `proc`, or None when it cannot be read."""
    try:
        return Path(proc.cwd()).resolve()
    except (psutil.Error, OSError):
        return None


def processes_in(directory: Path) -> list[psutil.Process]:
    """Live processes whose working directory is `directory` (how servers are recognised).

    PostgreSQL (every backend) and Redis chdir into their data directory, so the working
    directory identifies a server's processes even after pid reuse or a dead parent.
    """
    target = directory.resolve()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        if process_cwd(proc) == target and live_process(proc.pid) is not None:
            found.append(proc)
    return found


def reap_orphans(directory: Path, grace: float = 10.0) -> None:
    """Wait for leftover processes of a dead server to exit, killing those that do not."""
    if wait_until(lambda: not processes_in(directory), grace):
        return
    for proc in processes_in(directory):
        logger.warning("killing leftover process %s of a dead server in %s", proc.pid, directory)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    if not wait_until(lambda: not processes_in(directory), grace):
        raise RuntimeError(f"leftover server processes in {directory} would not exit")


def clean_env() -> dict[str, str]:
    """A minimal environment, so PG*/LC_* variables of the caller do not leak into the server."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}


def run(
    cmd: list[str], runner: Runner, log_path: Path, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run `cmd` as `runner`, appending its output to `log_path` (the server inherits that fd)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd="/", env=clean_env(), timeout=timeout, check=False,
            user=runner.uid, group=runner.gid,
            # Drop root's supplementary groups too, not only the uid/gid.
            extra_groups=[] if runner.switches_user else None,
        )


def package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (no import side effects)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {package!r} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------- files


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically, so a crash never leaves half a state file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` so concurrent starters (bot, worker, api) do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- servers


class EmbeddedServer:
    """A server's files in its data folder (state, log, start lock) and how it picks a port."""

    name: str
    default_port: int

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.requested_port = port
        self.state_file = self.data_dir / f"embedded-{self.name}.json"
        self.log_file = self.data_dir / "logs" / f"{self.name}.log"
        self._lock_file = self.data_dir / f".embedded-{self.name}.lock"

    @property
    def port(self) -> int:
        """The port the server last used (state file), else the requested or default port."""
        recorded = read_json(self.state_file).get("port")
        if recorded:
            return int(recorded)
        return self.requested_port if self.requested_port is not None else self.default_port

    def _choose_port(self, state: dict[str, Any]) -> int:
        """The requested port, else the remembered/default one if free, else any free port."""
        if self.requested_port is not None:
            if not port_is_free(self.requested_port):
                raise RuntimeError(f"port {self.requested_port} is taken by another program")
            return self.requested_port
        preferred = int(state.get("port") or self.default_port)
        return preferred if port_is_free(preferred) else any_free_port()

    def _launch_on_free_port(
        self, state: dict[str, Any], attempt: Callable[[int], str | None]
    ) -> None:
        """Call `attempt(port)` (None on success, else the error text) until a port holds.

        A port can be grabbed between our check and the server's bind; so a failure on a port
        that is now taken is retried on a fresh one, at most three times in all.
        """
        last_error = ""
        for _attempt in range(3):
            port = self._choose_port(state)
            state["port"] = port
            write_json(self.state_file, state)
            error = attempt(port)
            if error is None:
                return
            last_error = error
            if self.requested_port is not None or port_is_free(port):
                break
            logger.warning("port %s was taken while starting %s; trying another", port, self.name)
        raise RuntimeError(
            f"embedded {self.name} did not start; see {self.log_file}:\n{last_error}"
        )
