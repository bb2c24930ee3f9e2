"""Test helpers: wait on conditions, serve ASGI apps on loopback, run real Celery processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox.serving import ServedApp, free_port, wait_until

__all__ = ["ROOT", "CeleryProcess", "ServedApp", "free_port", "stop_group", "wait_until"]
ROOT = Path(__file__).resolve().parents[1]


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process group `proc` leads (started with `start_new_session`), a clean
    shutdown; SIGKILL the group if it hangs."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class CeleryProcess:
    """A real `celery worker` (or `celery beat`) in its own process group."""

    def __init__(self, env: dict[str, str], args: list[str], log_path: Path) -> None:
        self.env = env
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        """Launch the process (its output goes to the log file)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def kill_hard(self) -> None:
        """`kill -9` the main process and every pool child at once."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (finish the current task), then force if it hangs."""
        if self.proc is not None:
            stop_group(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
