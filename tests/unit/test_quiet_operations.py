"""Quiet operations: the Flower password file, worker names, `up --quiet`'s console filter and
log files, readiness waiting, and what counts as an idle housekeeping run."""

from __future__ import annotations

import io
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

from quickcart.cli import worker_argv
from quickcart.launcher import FLOWER_PASSWORD_FILE, Supervisor, flower_login, is_warning
from workers.housekeeping import did_nothing, housekeeping_tasks


def test_flower_password_is_generated_once_private_and_stable(tmp_path: Path) -> None:
    first = flower_login(tmp_path, None, None)
    second = flower_login(tmp_path, None, None)
    path = tmp_path / FLOWER_PASSWORD_FILE
    assert first == second and first.user == "admin" and len(first.password) >= 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.env() == {"FLOWER_BASIC_AUTH": f"admin:{first.password}"}
    assert [p.name for p in tmp_path.iterdir()] == [FLOWER_PASSWORD_FILE]  # nothing left aside


def test_a_password_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / FLOWER_PASSWORD_FILE
    path.write_text("kept-secret\n")
    path.chmod(0o644)
    assert flower_login(tmp_path, None, None).password == "kept-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_first_runs_agree_on_one_password(tmp_path: Path) -> None:
    got: list[str] = []
    barrier = threading.Barrier(8)

    def resolve() -> None:
        barrier.wait()
        got.append(flower_login(tmp_path, None, None).password)

    threads = [threading.Thread(target=resolve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and got[0] == (tmp_path / FLOWER_PASSWORD_FILE).read_text().strip()


def test_environment_login_wins_and_commas_are_refused(tmp_path: Path) -> None:
    login = flower_login(tmp_path, "ops", "s3cret")
    assert (login.user, login.password, login.source) == ("ops", "s3cret", "FLOWER_PASSWORD")
    assert not (tmp_path / FLOWER_PASSWORD_FILE).exists()
    with pytest.raises(ValueError, match="FLOWER_PASSWORD may not contain ','"):
        flower_login(tmp_path, "ops", "a,b")


def test_worker_names_follow_the_queues_unless_given() -> None:
    def name(argv: list[str]) -> str:
        return argv[argv.index("-n") + 1]

    assert name(worker_argv("payments", 2)) == "payments@%h"
    assert name(worker_argv("orders,default", 4)) == "orders-default@%h"
    assert name(worker_argv("default,orders,payments,expiry,audit,notify,bulk", 2)) == \
        "worker@%h"
    argv = worker_argv("bulk", 1, hostname="bulk-2@%h", pool="solo")
    assert name(argv) == "bulk-2@%h" and argv[-2:] == ["-P", "solo"]
    assert "-P" not in worker_argv("bulk", 1)


@pytest.mark.parametrize(("line", "shown"), [
    ('{"event": "x", "level": "warning"}', True),
    ('{"event": "x", "level": "error"}', True),
    ('{"event": "Task quickcart.create_order[1] succeeded", "level": "info"}', False),
    ("2026-01-01T00:00:00Z [warning  ] slow gateway", True),
    ("2026-01-01T00:00:00Z [info     ] Connected to redis", False),
    ("[2026-01-01 00:00:00,000: ERROR/MainProcess] consumer: Cannot connect", True),
    ("Traceback (most recent call last):", True),
    ("INFO:     Uvicorn running on http://127.0.0.1:8000", False),
])
def test_quiet_console_shows_warnings_only(line: str, shown: bool) -> None:
    assert is_warning(line) is shown


def test_quiet_supervisor_logs_to_files_and_shows_only_warnings(tmp_path: Path) -> None:
    out = io.StringIO()
    sup = Supervisor(dict(os.environ), out=out, log_dir=tmp_path / "logs", quiet=True)
    script = ("import sys; print('plain info line'); "
              "print('2026-01-01T00:00:00Z [warning  ] disk almost full'); sys.exit(3)")
    sup.start("chatty", [sys.executable, "-c", script])
    sup.say("up", "summary line")
    assert sup.wait() == 1  # the child exited: everything stops
    log = (tmp_path / "logs" / "chatty.log").read_text()
    assert "plain info line" in log and "disk almost full" in log
    console = out.getvalue()
    assert "summary line" in console and "disk almost full" in console
    assert "chatty exited with 3" in console
    # The exit shows the child's last lines, from its log file, since the console hid them.
    assert console.count("plain info line") == 1


def test_wait_ready_reports_what_never_became_ready() -> None:
    sup = Supervisor(dict(os.environ), out=io.StringIO())
    calls = {"n": 0}

    def becomes_ready() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    def broken() -> bool:
        raise OSError("connection refused")

    waiting = sup.wait_ready([("api", becomes_ready), ("flower", broken)], timeout=0.5,
                             every=0.05)
    assert waiting == ["flower"] and calls["n"] == 3


def test_idle_housekeeping_results() -> None:
    assert {"quickcart.relay_outbox", "quickcart.ship_audit", "quickcart.health_monitor",
            "quickcart.expire_due"} <= housekeeping_tasks()
    assert "quickcart.create_order" not in housekeeping_tasks()
    for idle in (0, None, {}, {"sent": 0}, {"database": True, "redis": True}):
        assert did_nothing(idle), idle
    for busy in (3, {"sent": 2, "paid": 1}, {"database": True, "gateway": False}, True, False):
        assert not did_nothing(busy), busy
