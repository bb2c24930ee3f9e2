"""Operations commands against a real broker: Flower's password never on a command line and
kept in DATA_DIR; `quickcart worker` names its node (`--hostname`, or from its queues)."""

from __future__ import annotations

import contextlib
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from quickcart.launcher import FLOWER_PASSWORD_FILE, flower_login
from tests.e2e.conftest import Shop
from tests.support import ROOT, free_port, stop_group, wait_until

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def quickcart(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`quickcart ARGS…` as its own process group, stopped afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "quickcart.cli", *args], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def command_lines(pid: int) -> str:
    """The command lines of a process and its children, as `ps` shows them."""
    proc = psutil.Process(pid)
    return "\n".join(" ".join(p.cmdline()) for p in [proc, *proc.children(recursive=True)])


def flower_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(log.read_text(errors="replace"))
    try:
        return httpx.get(url + "/healthcheck", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_flower_password_is_kept_in_data_dir_and_off_the_command_line(
        shop: Shop, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in shop.env.items() if not k.startswith("FLOWER_")}
    env["DATA_DIR"] = str(data_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "flower.log"
    with quickcart(env, log, "flower", "--port", str(port)) as proc:
        wait_until(lambda: flower_up(url, proc, log), what="Flower", timeout=90, interval=0.5)
        password_file = data_dir / FLOWER_PASSWORD_FILE
        password = password_file.read_text().strip()
        assert len(password) >= 16
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert password not in command_lines(proc.pid)
        assert httpx.get(url + "/api/workers", auth=("admin", password),
                         timeout=10).status_code == 200
        assert httpx.get(url + "/api/workers", auth=("admin", "wrong"),
                         timeout=10).status_code == 401
    # The next start (`quickcart flower` or `up`) finds the same password.
    assert flower_login(data_dir, None, None).password == password

    # A password from the environment reaches Flower the same way: never on a command line.
    env.update(FLOWER_USER="ops", FLOWER_PASSWORD="env-pass-" + uuid.uuid4().hex)
    with quickcart(env, log, "flower", "--port", str(port)) as proc:
        wait_until(lambda: flower_up(url, proc, log), what="Flower", timeout=90, interval=0.5)
        assert env["FLOWER_PASSWORD"] not in command_lines(proc.pid)
        assert httpx.get(url + "/api/workers", auth=("ops", env["FLOWER_PASSWORD"]),
                         timeout=10).status_code == 200


def test_worker_takes_a_hostname_and_otherwise_names_itself_after_its_queues(
        shop: Shop, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    named = f"probe-{tag}@%h"
    queue = f"qct-probe-{tag}"
    log = tmp_path / "workers.log"
    with quickcart(shop.env, log, "worker", "--queues", queue, "--hostname", named,
                   "--concurrency", "1", "--pool", "solo") as first, \
            quickcart(shop.env, log, "worker", "--queues", queue + "-b", "-c", "1",
                      "-P", "threads") as second:
        host = socket.gethostname()
        names = [f"probe-{tag}@{host}", f"{queue}-b@{host}"]
        ping = subprocess.run([sys.executable, "-m", "workers.ping", *names, "--timeout", "90"],
                              cwd=ROOT, env=shop.env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert ping.returncode == 0, ping.stderr + log.read_text(errors="replace")[-3000:]
        # The options reached celery's own command line (the CLI execs celery in place).
        first_argv = psutil.Process(first.pid).cmdline()
        assert first_argv[first_argv.index("-n") + 1] == named
        assert first_argv[first_argv.index("-P") + 1] == "solo"
        assert first_argv[first_argv.index("-c") + 1] == "1"
        second_argv = psutil.Process(second.pid).cmdline()
        assert second_argv[second_argv.index("-n") + 1] == f"{queue}-b@%h"
