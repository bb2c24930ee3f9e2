"""A foreground supervisor for `quickcart up`: child processes with prefixed logs, all stopped
together on Ctrl-C (or when one of them dies), leaving nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
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


class Supervisor:
    """Starts children in their own process groups and stops every group on the way out."""

    def __init__(self, env: dict[str, str], cwd: str | None = None,
                 out: IO[str] | None = None) -> None:
        self.env = env
        self.cwd = cwd
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self, name: str, argv: Sequence[str]) -> Child:
        """Launch `argv` as child `name`; its output is printed line by line, prefixed."""
        child = Child(name, list(argv), colour=COLOURS[len(self.children) % len(COLOURS)])
        child.proc = subprocess.Popen(
            child.argv, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
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

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            self.say(child.name, raw.decode("utf-8", "replace"), child.colour)

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
                    for c in exited:
                        code = c.proc.returncode if c.proc else "?"
                        self.say("up", f"{c.name} exited with {code}; stopping everything")
                    break
                self._stopping.wait(0.5)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return 1 if exited else 0

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
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


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
