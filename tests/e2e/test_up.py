"""`quickcart up` on a machine where no PostgreSQL or Redis answers: everything comes up, a
scripted shopper buys and receives the key, Flower shows the tasks, Ctrl-C leaves nothing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from quickcart.launcher import FLOWER_PASSWORD_FILE, is_warning
from quickcart.services.demo import DEMO_SHOPPER_ID
from tests.support import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


class Up:
    """A `quickcart up` process and what it printed; leaving a `with` block stops it
    (`stop_up`)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.ports = {name: free_port() for name in ("telegram", "pakasir", "flower", "api")}
        self.data_dir = tmp / "data"
        self.env = {
            **os.environ,
            "DATA_DIR": str(self.data_dir),
            # Nothing answers on these ports: QuickCart must start its embedded servers.
            "LOCAL_PG_PORT": "1", "LOCAL_REDIS_PORT": "1",
            "API_PORT": str(self.ports["api"]),
            "FLOWER_USER": "ops", "FLOWER_PASSWORD": "flower-test-pass",
            "LOG_JSON": "false",
        }
        for name in ("DATABASE_URL", "AUDIT_DATABASE_URL", "REDIS_URL", "BROKER_URL",
                     "TELEGRAM_BOT_TOKEN", "PAKASIR_PROJECT", "PAKASIR_API_KEY"):
            self.env.pop(name, None)
        self.env.update(env or {})
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quickcart.cli", "up",
             "--telegram-port", str(self.ports["telegram"]),
             "--pakasir-port", str(self.ports["pakasir"]),
             "--flower-port", str(self.ports["flower"]), *args],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def __enter__(self) -> Up:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_up(self)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def embedded_pids(self) -> list[int]:
        """The embedded servers: whatever listens on the ports their state files record."""
        ports = set()
        for name in ("embedded-postgres.json", "embedded-redis.json"):
            state = self.data_dir / name
            if state.exists():
                ports.add(int(json.loads(state.read_text())["port"]))
        return sorted({c.pid for c in psutil.net_connections("tcp")
                       if c.pid and c.status == psutil.CONN_LISTEN and c.laddr.port in ports})


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[Up]:
    with Up(tmp_path) as runner:
        yield runner


def stop_up(runner: Up) -> None:
    """Stop `up` as Ctrl-C does and kill whatever it left; stop its embedded servers."""
    if runner.proc.poll() is None:
        # `up` starts each component in a session of its own, so killing its group would
        # orphan them (after a failed assertion): stop it as Ctrl-C does, then kill
        # whatever it left.
        children = runner.descendants()
        runner.proc.send_signal(signal.SIGINT)
        try:
            runner.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(runner.proc.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
    subprocess.run([sys.executable, "-m", "quickcart.cli", "services", "stop"], cwd=ROOT,
                   env=runner.env, capture_output=True, timeout=60)


def test_up_runs_the_whole_shop_and_ctrl_c_stops_it(up: Up) -> None:
    # "QuickCart is up" comes once every component answers: the API's /health is ok, Flower
    # and the simulators answer, every worker answers a ping.
    wait_until(lambda: "QuickCart is up" in up.output() or up.proc.poll() is not None,
               what="quickcart up", timeout=240)
    assert up.proc.poll() is None, up.output()
    api = f"http://127.0.0.1:{up.ports['api']}"
    assert _status(api + "/health") == 200
    # The URL block is printed at start and again once healthy, after start-up's output.
    output = up.output()
    assert output.count("Flower: http") == 2
    assert output.index("QuickCart is up") > output.rindex("Flower: http")
    # Flower's password is on no command line (`ps` shows those to every user).
    assert all("flower-test-pass" not in " ".join(p.cmdline()) for p in up.descendants())

    # A scripted shopper chats with the bot through the simulator, as a person would in the
    # web chat page: opens product 2, takes one, sees the summary, pays with SALDO.
    telegram = f"http://127.0.0.1:{up.ports['telegram']}"
    uid = DEMO_SHOPPER_ID
    httpx.post(telegram + "/sandbox/users", json={"id": uid, "first_name": "Budi"},
               timeout=10).raise_for_status()
    httpx.post(f"{telegram}/sandbox/users/{uid}/messages", json={"text": "2"},
               timeout=10).raise_for_status()
    for data in ("o:buy:2", "o:qok:2", "k:pb"):  # quantity, the summary, pay by SALDO
        message_id = wait_until(lambda d=data: _message_with_button(telegram, uid, d),
                                what=f"a bot message with button {data}", timeout=60)
        httpx.post(f"{telegram}/sandbox/users/{uid}/callbacks",
                   json={"message_id": message_id, "callback_data": data},
                   timeout=10).raise_for_status()

    def delivered() -> bool:
        messages = httpx.get(f"{telegram}/sandbox/chats/{uid}/transcript",
                             timeout=10).json()["messages"]
        return any(m["from_bot"] and "DEMO2-" in str(m.get("text")) for m in messages)

    flower = f"http://127.0.0.1:{up.ports['flower']}"
    assert _status(flower + "/api/workers") == 401, "Flower requires basic auth"
    auth = ("ops", "flower-test-pass")

    def all_workers_seen() -> bool:
        # A refresh is a broadcast with a one-second reply window: on a busy machine a worker
        # can miss one, so ask again until every worker of `up` has answered.
        names = " ".join(httpx.get(flower + "/api/workers", params={"refresh": 1}, auth=auth,
                                   timeout=20).json())
        return "main@" in names and "payments@" in names and "bulk@" in names

    wait_until(all_workers_seen, what="Flower listing the main, payments and bulk workers",
               timeout=60)
    tasks = wait_until(
        lambda: [t for t in httpx.get(flower + "/api/tasks", auth=auth, timeout=10).json()
                 .values() if t.get("name") == "quickcart.create_order"],
        what="the purchase task in Flower", timeout=60)
    assert tasks[0]["state"] == "SUCCESS"

    children = up.descendants()
    embedded = up.embedded_pids()
    assert children and embedded
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(timeout=90)
    survivors = [p.pid for p in children if p.is_running() and p.status() != "zombie"]
    survivors += [pid for pid in embedded if psutil.pid_exists(pid)
                  and psutil.Process(pid).status() != "zombie"]
    assert survivors == [], up.output()[-3000:]


@pytest.fixture()
def quiet_up(tmp_path: Path) -> Iterator[Up]:
    # No FLOWER_USER/FLOWER_PASSWORD: `up` generates the password and keeps it in DATA_DIR.
    with Up(tmp_path, env={"FLOWER_USER": "", "FLOWER_PASSWORD": ""},
            args=("--quiet",)) as runner:
        yield runner


def test_up_quiet_keeps_the_console_to_the_summary_and_logs_per_component(
        quiet_up: Up) -> None:
    up = quiet_up
    wait_until(lambda: "QuickCart is up" in up.output() or up.proc.poll() is not None,
               what="quickcart up --quiet", timeout=240)
    assert up.proc.poll() is None, up.output()
    logs = up.data_dir / "logs"
    # Every component writes its own log file; the console shows none of their info lines,
    # only `up`'s own lines (and warnings, if any).
    for name in ("worker", "payments", "bulk", "beat", "api", "flower", "telegram", "pakasir"):
        assert (logs / f"{name}.log").exists(), name
    assert "ready" in (logs / "worker.log").read_text(errors="replace")
    supervised = [line for line in up.lines if " | " in line[:14]]
    others = [line for line in supervised if not line.lstrip().startswith("up |")]
    assert all(is_warning(line) for line in others), others
    # Flower's generated password: kept in DATA_DIR (0600), shown in the summary, on no
    # command line, and it opens Flower's API.
    password_file = up.data_dir / FLOWER_PASSWORD_FILE
    password = password_file.read_text().strip()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert f"user admin, password {password}" in up.output()
    assert all(password not in " ".join(p.cmdline()) for p in up.descendants())
    flower = f"http://127.0.0.1:{up.ports['flower']}"
    assert httpx.get(flower + "/api/workers", auth=("admin", password),
                     timeout=20).status_code == 200


def _message_with_button(telegram: str, uid: int, data: str) -> int | None:
    """The newest bot message offering inline button `data`, if any."""
    messages = httpx.get(f"{telegram}/sandbox/chats/{uid}/transcript",
                         timeout=10).json()["messages"]
    for message in reversed(messages):
        markup = message.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            if any(button.get("callback_data") == data for button in row):
                return int(message["message_id"])
    return None


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
