"""Embedded PostgreSQL/Redis against real server processes: start, reuse, stop, crash recovery."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from quickcart import embedded
from quickcart.config import Settings
from quickcart.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ServiceUrls,
    port_answers,
    postgres,
    process,
    resolve_service_urls,
    stop_embedded,
)

pytestmark = pytest.mark.timeout(180)

MakeDataDir = Callable[..., Path]


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `condition` until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_connect(pg: EmbeddedPostgres, dbname: str = "postgres"):
    return psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=dbname,
                            connect_timeout=5)


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    assert pg.pgdata is not None
    return int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])


def _gone(pid: int) -> bool:
    return process.live_process(pid) is None


def _ancestor_modes(path: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in path.parents}


@pytest.fixture
def data_dirs(tmp_path: Path) -> Iterator[MakeDataDir]:
    """Hands out data folders; afterwards stops and deletes every server started in them."""
    made: list[tuple[Path, Path | None]] = []

    def make(reachable: bool = False) -> Path:
        base: Path | None = None
        if reachable:
            # A folder every account can traverse, so the cluster can live inside the data dir.
            base = Path(tempfile.mkdtemp(prefix="qc-embedded-"))
            base.chmod(0o755)
            data = base / "data"
        else:
            # pytest's tmp_path sits under /tmp/pytest-of-<user> (0700): unreachable by others.
            data = tmp_path / f"data{len(made)}"
        made.append((data, base))
        return data

    yield make

    for data, base in made:
        pgdata = EmbeddedPostgres(data).pgdata
        with contextlib.suppress(Exception):
            stop_embedded(data)
        for directory in (pgdata, data / "redis"):
            if directory is not None and directory.exists():
                for proc in process.processes_in(directory):
                    with contextlib.suppress(Exception):
                        proc.kill()
        if pgdata is not None and embedded.EXTERNAL_PGDATA_ROOT in pgdata.parents:
            shutil.rmtree(pgdata.parent, ignore_errors=True)
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


def _settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings that ignore the environment's service URLs and any .env file."""
    values: dict[str, object] = {
        "database_url": None,
        "audit_database_url": None,
        "redis_url": None,
        "data_dir": data_dir,
        "local_pg_port": _free_port(),
        "local_redis_port": _free_port(),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_port_answers() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_answers("127.0.0.1", port)
    assert not port_answers("127.0.0.1", _free_port())


def test_postgres_start_reuse_stop_keeps_data(data_dirs: MakeDataDir) -> None:
    data = data_dirs(reachable=True)
    pg = EmbeddedPostgres(data)
    assert not pg.is_running()

    url = pg.start()
    assert url == f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/postgres"
    assert pg.is_running()
    assert pg.pgdata == data.resolve() / "pgdata"
    if os.geteuid() == 0:
        assert pg.pgdata.owner() == embedded.PG_SYSTEM_USER
    assert (data / "logs" / "postgres.log").exists()

    with _pg_connect(pg) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        cur.execute("INSERT INTO kept VALUES (1, 'survives restart')")
    conn.close()

    # A second start (fresh object, as another QuickCart process would do) reuses the server.
    pid = _postmaster_pid(pg)
    assert EmbeddedPostgres(data).start() == url
    assert _postmaster_pid(pg) == pid

    assert pg.stop()
    assert not pg.is_running()
    assert _gone(pid)
    assert not port_answers("127.0.0.1", pg.port)
    assert not pg.stop()

    pg.start()
    with _pg_connect(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT note FROM kept WHERE id = 1")
        assert cur.fetchone() == ("survives restart",)
    conn.close()
    assert pg.stop()


def test_postgres_recovers_from_kill_9_and_private_parent(data_dirs: MakeDataDir) -> None:
    data = data_dirs()
    modes_before = _ancestor_modes(data)
    pg = EmbeddedPostgres(data)
    pg.start()
    assert pg.pgdata is not None
    if os.geteuid() == 0 and not postgres._can_reach(data.resolve(), postgres._pg_runner()):
        # Data folder under a 0700 parent: the cluster lives in a folder the system user owns.
        assert pg.pgdata == pg.external_pgdata_dir()
        assert pg.pgdata.parent.owner() == embedded.PG_SYSTEM_USER
    # No ancestor of the data folder had its permissions loosened.
    assert _ancestor_modes(data) == modes_before

    with _pg_connect(pg) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE crash (id int)")
        cur.execute("INSERT INTO crash VALUES (42)")
    conn.close()

    idle = _pg_connect(pg)  # an open session: its backend outlives the postmaster briefly
    pid = _postmaster_pid(pg)
    os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: _gone(pid))
    assert not pg.is_running()
    assert (pg.pgdata / "postmaster.pid").exists()  # stale pid file left by the crash

    pg.start()
    idle.close()
    assert pg.is_running()
    assert _postmaster_pid(pg) != pid
    with _pg_connect(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM crash")
        assert cur.fetchall() == [(42,)]
    conn.close()
    assert pg.stop()

    # The recorded cluster folder was wiped (e.g. by hand): the next start makes a fresh one.
    shutil.rmtree(pg.pgdata.parent if pg.pgdata.parent != data.resolve() else pg.pgdata)
    pg.start()
    with _pg_connect(pg) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('crash')")
        assert cur.fetchone() == (None,)
    conn.close()
    assert pg.stop()


def test_redis_restart_keeps_data_and_recovers_from_kill_9(data_dirs: MakeDataDir) -> None:
    data = data_dirs()
    rd = EmbeddedRedis(data)
    url = rd.start()
    assert url == f"redis://127.0.0.1:{rd.port}/0"
    assert rd.is_running()
    assert (data / "logs" / "redis.log").exists()

    client = redis.Redis.from_url(url)
    client.set("greeting", "halo")
    client.close()

    pid = int(rd.pid_file.read_text())
    assert EmbeddedRedis(data).start() == url  # reuse while running
    assert int(rd.pid_file.read_text()) == pid

    assert rd.stop()
    assert _gone(pid)
    assert not rd.is_running()
    assert not rd.stop()

    rd.start()
    client = redis.Redis.from_url(rd.url())
    assert client.get("greeting") == b"halo"
    client.close()

    pid = int(rd.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: _gone(pid))
    assert rd.pid_file.exists()  # stale pid file left by the crash
    assert not rd.is_running()

    rd.start()
    assert rd.is_running()
    assert int(rd.pid_file.read_text()) != pid
    client = redis.Redis.from_url(rd.url())
    assert client.get("greeting") == b"halo"  # saved at the clean shutdown before the crash
    client.close()
    assert rd.stop()


def test_redis_moves_off_a_remembered_port_that_something_else_took(
    data_dirs: MakeDataDir,
) -> None:
    data = data_dirs()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        data.mkdir(parents=True)
        (data / "embedded-redis.json").write_text(f'{{"port": {taken}}}')

        rd = EmbeddedRedis(data)
        url = rd.start()
        assert rd.port != taken
        assert url == f"redis://127.0.0.1:{rd.port}/0"
        assert redis.Redis.from_url(url).ping()
        assert rd.stop()


def test_resolve_starts_embedded_servers_when_local_ports_are_closed(
    data_dirs: MakeDataDir,
) -> None:
    data = data_dirs()
    settings = _settings(data)

    urls = resolve_service_urls(settings)
    assert urls.embedded_postgres and urls.embedded_redis
    pg, rd = EmbeddedPostgres(data), EmbeddedRedis(data)
    assert urls.database_url == f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/quickcart"
    assert urls.audit_database_url == (
        f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/quickcart_audit"
    )
    assert urls.redis_url == f"redis://127.0.0.1:{rd.port}/0"

    for db in ("quickcart", "quickcart_audit"):  # both databases were created
        conn = _pg_connect(pg, db)
        conn.close()
    assert redis.Redis.from_url(urls.redis_url).ping()

    # Resolving again (next run) reuses the same servers.
    assert resolve_service_urls(settings) == urls

    assert sorted(stop_embedded(data)) == ["postgres", "redis"]
    assert stop_embedded(data) == []

    # start=False reports where the embedded servers would be without starting them.
    assert resolve_service_urls(settings, start=False) == urls
    assert not pg.is_running() and not rd.is_running()


def test_resolve_returns_explicit_urls_untouched(tmp_path: Path) -> None:
    data = tmp_path / "never-created"
    db = "postgresql+psycopg2://shop:s3cr%40t@db.example:6543/quickcart?sslmode=require"
    settings = _settings(data, database_url=db, redis_url="redis://cache.example:6380/2")

    urls = resolve_service_urls(settings)
    assert urls == ServiceUrls(
        database_url=db,
        audit_database_url=(
            "postgresql+psycopg2://shop:s3cr%40t@db.example:6543/quickcart_audit?sslmode=require"
        ),
        redis_url="redis://cache.example:6380/2",
        embedded_postgres=False,
        embedded_redis=False,
    )
    assert not data.exists()  # nothing was started or written

    audit = "postgresql+psycopg2://auditor@audit.example/ledger"
    explicit = resolve_service_urls(_settings(data, database_url=db, audit_database_url=audit,
                                              redis_url="redis://cache.example:6380/2"))
    assert explicit.audit_database_url == audit
    assert not data.exists()


def test_resolve_prefers_answering_local_ports(tmp_path: Path) -> None:
    data = tmp_path / "never-created"
    with socket.socket() as fake_pg, socket.socket() as fake_redis:
        for sock in (fake_pg, fake_redis):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        settings = _settings(data, local_pg_port=fake_pg.getsockname()[1],
                             local_redis_port=fake_redis.getsockname()[1])
        urls = resolve_service_urls(settings)
    pg_port, redis_port = settings.local_pg_port, settings.local_redis_port
    assert urls == ServiceUrls(
        database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/quickcart",
        audit_database_url=f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/quickcart_audit",
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        embedded_postgres=False,
        embedded_redis=False,
    )
    assert not data.exists()
