"""A foreground supervisor for `quickcart up`: child processes with prefixed logs, all stopped
together on Ctrl-C (or when one of them dies), leaving nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93", "95", "92")


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    colour: str = "36"
    pump: threading.Thread | None = field(default=None, repr=False)
    log_path: Path | None = None


class Supervisor:
    """Starts children in their own process groups and stops every group on the way out."""

    def __init__(self, env: dict[str, str], cwd: str | None = None,
                 out: IO[str] | None = None, log_dir: Path | None = None,
                 quiet: bool = False) -> None:
        self.env = env
        self.cwd = cwd
        self.out = out or sys.stdout
        # With a log folder each child's output also goes to <log_dir>/<name>.log; `quiet`
        # keeps the console to the supervisor's own lines and the children's warnings.
        self.log_dir = log_dir
        self.quiet = quiet
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        """Launch `argv` as child `name` (with `env` added to the shared environment: what
        only this child may see, e.g. a password); its output is printed line by line,
        prefixed, and written to its log file when there is a log folder."""
        child = Child(name, list(argv), colour=COLOURS[len(self.children) % len(COLOURS)])
        if self.log_dir is not None:
            child.log_path = self.log_dir / f"{name}.log"
        child.proc = subprocess.Popen(
            child.argv, env={**self.env, **(env or {})}, cwd=self.cwd, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.pump.start()
        self.children.append(child)
        return child

    def say(self, name: str, line: str, colour: str = "1") -> None:
        """Print one prefixed line (thread-safe)."""
        tty = hasattr(self.out, "isatty") and self.out.isatty()
        prefix = f"\033[{colour}m{name:>10} |\033[0m " if tty else f"{name:>10} | "
        with self._lock:
            self.out.write(prefix + line.rstrip("\n") + "\n")
            self.out.flush()

    @property
    def stopping(self) -> bool:
        """Whether Ctrl-C (or a child's exit) has begun stopping everything."""
        return self._stopping.is_set()

    def warn(self, line: str) -> None:
        """A supervisor warning (supervisor lines reach the console even when quiet)."""
        self.say("up", line, "33")

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        log = child.log_path.open("ab") if child.log_path is not None else None
        try:
            for raw in iter(child.proc.stdout.readline, b""):
                if log is not None:
                    log.write(raw)
                    log.flush()
                line = raw.decode("utf-8", "replace")
                if not self.quiet or is_warning(line):
                    self.say(child.name, line, child.colour)
        finally:
            if log is not None:
                log.close()

    def wait_ready(self, checks: Sequence[tuple[str, Callable[[], bool]]],
                   timeout: float = 180.0, every: float = 1.0) -> list[str]:
        """Poll each (name, check) until all passed, the timeout ran out or the supervisor is
        stopping; returns the names that never passed. A check that raises has not passed."""
        pending = dict(checks)
        deadline = time.monotonic() + timeout
        while pending and not self._stopping.is_set():
            for name, check in list(pending.items()):
                try:
                    ok = check()
                except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
                    ok = False
                if ok:
                    del pending[name]
            if not pending or time.monotonic() >= deadline:
                break
            self._stopping.wait(every)
        return list(pending)

    def tail(self, child: Child, lines: int = 20) -> list[str]:
        """The last lines of a child's log file (empty without one)."""
        if child.log_path is None or not child.log_path.exists():
            return []
        with child.log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            text = f.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]

    def wait(self) -> int:
        """Block until Ctrl-C/SIGTERM or until a child exits; then stop everything."""
        exited: list[Child] = []

        def on_signal(signum: int, _frame: object) -> None:
            self._stopping.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self._stopping.is_set():
                exited = [c for c in self.children if c.proc and c.proc.poll() is not None]
                if exited:
                    self._stopping.set()
                    for c in exited:
                        code = c.proc.returncode if c.proc else "?"
                        if self.quiet:  # its last words are in its log file, not on screen
                            if c.pump is not None:
                                c.pump.join(timeout=2)  # until its output is all in the file
                            for line in self.tail(c):
                                self.say(c.name, line, c.colour)
                        where = f" (log: {c.log_path})" if c.log_path is not None else ""
                        self.warn(f"{c.name} exited with {code}{where}; stopping everything")
                    break
                self._stopping.wait(0.5)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 1 if exited else 0

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
        self._stopping.set()
        for child in reversed(self.children):
            if child.proc and child.proc.poll() is None:
                _signal_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("up", f"{child.name} did not stop in time; killing it")
            # Pool children and grandchildren live in the same group: make sure none survive.
            _signal_group(child.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2)


_LEVEL_WORD = re.compile(r"\b(WARNING|ERROR|CRITICAL|FATAL|Traceback)\b"
                         r"|\[(warning|error|critical|exception)\s*\]")


def is_warning(line: str) -> bool:
    """Whether a child's output line is a warning or worse: a JSON log line's level, a console
    log line's level word, or a traceback (what `--quiet` still shows)."""
    stripped = line.strip()
    if stripped.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            level = str(json.loads(stripped).get("level", "")).lower()
            return level in {"warning", "error", "critical", "exception", "fatal"}
    return bool(_LEVEL_WORD.search(line))


FLOWER_PASSWORD_FILE = "flower-password"  # noqa: S105 - a file name, not a password


@dataclass(frozen=True)
class FlowerLogin:
    """Flower's basic-auth user and password, and where the password came from."""

    user: str
    password: str
    source: str

    def env(self) -> dict[str, str]:
        """The environment that hands Flower its login (never its command line, which `ps`
        shows to every user of the machine)."""
        return {"FLOWER_BASIC_AUTH": f"{self.user}:{self.password}"}


def flower_login(data_dir: Path, user: str | None, password: str | None) -> FlowerLogin:
    """FLOWER_USER/FLOWER_PASSWORD when both are set; else user `admin` and the password kept
    in DATA_DIR/flower-password (0600), generated on first use and the same on every run."""
    if user and password:
        login = FlowerLogin(user, password, "FLOWER_PASSWORD")
    else:
        login = FlowerLogin(user or "admin", _kept_password(data_dir / FLOWER_PASSWORD_FILE),
                            str(data_dir / FLOWER_PASSWORD_FILE))
    # Flower splits its basic-auth option on commas (several logins) and the pair on a colon.
    if "," in login.user + login.password or ":" in login.user:
        raise ValueError("FLOWER_USER may not contain ':' or ',' and FLOWER_PASSWORD may not"
                         " contain ',' (Flower splits its login on them)")
    return login


def _kept_password(path: Path) -> str:
    """The password stored at `path`; when there is none, a new one stored there (0600).

    The file appears with its content in one step (written aside, then hard-linked into
    place), so two runs starting at once agree on one password and none reads a half-written
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    empty = False
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # readable by others: a secret's file is its owner's only
        stored = path.read_text().strip()
        if stored:
            return stored
        empty = True  # emptied by hand: a new password replaces it
    password = secrets.token_urlsafe(16)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    try:
        if empty:
            os.replace(aside, path)
            return password
        try:
            os.link(aside, path)
        except FileExistsError:  # another run stored one first: theirs is the password
            return path.read_text().strip()
        return password
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
