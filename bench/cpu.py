"""CPU seconds per process group over a measured phase (psutil), to say where an order's CPU
goes: each worker, PostgreSQL, Redis and the bench process itself (driver and simulators)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil
from sqlalchemy import text

from bench.common import Report
from bench.harness import Stack


def _seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def snapshot(stack: Stack) -> dict[str, float]:
    """CPU seconds so far by group: every subprocess of the stack by its name (with its pool
    children), `postgres` (every server process on the machine, the other databases' included,
    so run nothing else meanwhile), `redis` and `bench` (this process).

    A pool child that exited during the phase takes its CPU with it: none is replaced in the
    orders scenarios (no max-tasks-per-child)."""
    groups: dict[str, float] = {"postgres": 0.0, "redis": 0.0, "bench": 0.0}
    for proc in stack.procs:
        for member in _tree(proc.pid):
            with contextlib.suppress(psutil.Error):
                groups[proc.name] = groups.get(proc.name, 0.0) + _seconds(member)
    for proc in psutil.process_iter(["name"]):
        name = proc.info["name"] or ""
        group = ("postgres" if name.startswith("postgres")
                 else "redis" if name.startswith("redis-server") else None)
        if group is not None:
            with contextlib.suppress(psutil.Error):
                groups[group] += _seconds(proc)
    groups["bench"] = _seconds(psutil.Process(os.getpid()))
    return groups


class Phase:
    """CPU used by each group between `start` and `stop`, then per unit of work."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = snapshot(self.stack)

    def stop(self) -> None:
        after = snapshot(self.stack)
        self.used = {name: max(0.0, seconds - self.before.get(name, 0.0))
                     for name, seconds in after.items()}

    def ms_per(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit, by group (groups that used none left out)."""
        if units <= 0:
            return {}
        return {name: seconds * 1000 / units for name, seconds in self.used.items()
                if seconds > 0}


@contextlib.contextmanager
def measured(stack: Stack) -> Iterator[Phase]:
    """`with measured(stack) as phase:` … then `phase.ms_per(n)`."""
    phase = Phase(stack)
    phase.start()
    try:
        yield phase
    finally:
        phase.stop()


def add_figures(report: Report, name: str, label: str, ms: dict[str, float]) -> None:
    """Report CPU per unit by group, largest first, then the total: figures `{name}_{group}`
    and `{name}_total`, printed as `label, group`."""
    for group, value in sorted(ms.items(), key=lambda item: -item[1]):
        report.add(f"{name}_{group}", value, f"  {label}, {group}", "ms")
    report.add(f"{name}_total", sum(ms.values()), f"  {label}, total", "ms")


def postgres_by_client(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the stack's PostgreSQL backends, summed by the process group whose
    connection each serves (`bench` for this process, `other` for the rest). A backend that
    closed during the phase takes its CPU with it; the worker pools keep theirs open."""
    owner = {member.pid: proc.name for proc in stack.procs for member in _tree(proc.pid)}
    owner[os.getpid()] = "bench"
    client_of: dict[int, str] = {}
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.raddr and conn.pid:
                client_of[conn.laddr.port] = owner.get(conn.pid, "other")
    assert stack.main is not None
    with stack.main.connect() as db:
        backends = db.execute(text(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend'")).all()
    groups: dict[str, float] = {}
    for pid, port in backends:
        group = client_of.get(port or 0, "other")
        with contextlib.suppress(psutil.Error):
            groups[group] = groups.get(group, 0.0) + _seconds(psutil.Process(pid))
    return groups
