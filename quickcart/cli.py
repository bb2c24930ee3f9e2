"""The `quickcart` command. Other layers (workers, bot, API, sandboxes) run as subprocesses, so
this core package never imports celery, telegram or fastapi."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import ValidationError

from quickcart.config import MissingSettingError, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from quickcart.launcher import Supervisor


from quickcart.golive import SIMULATOR_TOKEN, GoLiveRefused


def _urls() -> tuple[str, str, str]:
    from quickcart.db.urls import service_urls

    urls = service_urls()
    return urls.database_url, urls.audit_database_url, urls.redis_url


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a Redis URL is not an SQLAlchemy URL
        return url.split("@")[-1] if "@" in url else url


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create missing databases and bring both to head (or to --revision)."""
    from quickcart.db import migrate

    main_url, audit_url, _ = _urls()
    if args.downgrade:
        migrate.downgrade("main", main_url, args.downgrade)
        migrate.downgrade("audit", audit_url, args.downgrade)
        print(f"downgraded main and audit to {args.downgrade}")
        return 0
    created = migrate.migrate_all(main_url, audit_url)
    for name in created:
        print(f"created database {name}")
    print(f"main  database at head: {_redact(main_url)}")
    print(f"audit database at head: {_redact(audit_url)}")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    """Start, stop or show the embedded PostgreSQL and Redis of the data folder."""
    from quickcart import embedded

    return embedded.main([args.action, "--data-dir", str(get_settings().data_dir)])


def cmd_up(args: argparse.Namespace) -> int:
    """Run the whole shop in the foreground: local/embedded services migrated and seeded, the
    simulators where no real Telegram/Pakasir is configured, workers, beat, API, Flower, bot."""
    from quickcart.embedded import EmbeddedPostgres, EmbeddedRedis, stop_embedded

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Servers this run starts are this run's to stop: Ctrl-C leaves no process behind.
    already_running = (EmbeddedPostgres(settings.data_dir).is_running()
                       or EmbeddedRedis(settings.data_dir).is_running())
    try:
        return _up(args, settings)
    finally:
        if not already_running:
            stopped = stop_embedded(settings.data_dir)
            if stopped:
                print(f"stopped embedded {', '.join(stopped)}")


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from quickcart.golive import (
        live_services,
        refuse_demo_rows,
        refuse_sandbox_payments_on_live_telegram,
        should_seed_demo,
    )
    from quickcart.launcher import Supervisor, flower_login
    from quickcart.services.demo import DEMO_ADMIN_ID, chat_users, seed_demo

    demo = should_seed_demo(settings, args.demo)  # before anything is written
    refuse_sandbox_payments_on_live_telegram(settings)
    rc = cmd_migrate(argparse.Namespace(downgrade=None))
    main_url, audit_url, redis_url = _urls()
    from quickcart.db.engine import get_engine

    if not demo:
        refuse_demo_rows(get_engine(main_url), "quickcart up")
        print(f"live shop ({', '.join(live_services(settings))} set): no demo data")
    elif seed_demo(get_engine(main_url)):
        print("seeded the demo shop (4 products, voucher DEMO5000, admin 900001, shopper 900002)")
    _say_admins_not_opened(get_engine(main_url))
    env = {**os.environ, "DATABASE_URL": main_url, "AUDIT_DATABASE_URL": audit_url,
           "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    try:
        login = flower_login(settings.data_dir, settings.flower_user, settings.flower_password)
    except ValueError as exc:
        print(f"quickcart up: {exc}", file=sys.stderr)
        return 2
    env.pop("FLOWER_PASSWORD", None)  # Flower alone gets its login (FLOWER_BASIC_AUTH)
    sup = Supervisor(env, log_dir=settings.data_dir / "logs" if args.quiet else None,
                     quiet=args.quiet)
    py = sys.executable
    urls: list[tuple[str, str]] = []
    if not settings.telegram_bot_token:
        port = args.telegram_port
        admins = {*settings.admin_ids, *([DEMO_ADMIN_ID] if demo else [])}
        env.update(TELEGRAM_BOT_TOKEN=SIMULATOR_TOKEN,
                   TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{port}",
                   ADMIN_IDS=",".join(str(i) for i in sorted(admins)))
        # The shop's users (the demo's among them) are listed in the web chat page's sidebar.
        known = [arg for uid, name, username in chat_users(get_engine(main_url))
                 for arg in ("--user", f"{uid}:{name.replace(':', ' ')}:{username or ''}")]
        sup.start("telegram", [py, "-m", "sandbox.telegram", "--port", str(port),
                               "--token", env["TELEGRAM_BOT_TOKEN"], *known])
        urls.append(("web chat (Telegram simulator)", f"http://127.0.0.1:{port}/"))
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if not settings.pakasir_project:
        port = args.pakasir_port
        env.update(PAKASIR_BASE_URL=f"http://127.0.0.1:{port}", PAKASIR_PROJECT="quickcart-demo",
                   PAKASIR_API_KEY="demo-" + "key", RECONCILE_AFTER_SECONDS="30")
        sup.start("pakasir", [py, "-m", "sandbox.pakasir", "--port", str(port),
                              "--project", "quickcart-demo", "--api-key", "demo-key",
                              "--webhook-url", f"{api_url}/webhooks/pakasir"])
        urls.append(("Pakasir sandbox", f"http://127.0.0.1:{port}/"))
    # `--quiet`: no banners (the summary below says what runs where).
    celery = [py, "-m", "celery", "-A", "workers.app", "--quiet"]
    workers = {"worker": ("default,orders,expiry,audit,notify", 2, "main@%h"),
               "payments": ("payments", 1, "payments@%h"), "bulk": ("bulk", 1, "bulk@%h")}
    for name, (queues, concurrency, hostname) in workers.items():
        sup.start(name, [py, "-m", "celery", "--quiet",
                         *worker_argv(queues, concurrency, hostname)])
    sup.start("beat", [*celery, "beat", "-l", "info", "-s",
                       str(settings.data_dir / "celerybeat-schedule")])
    sup.start("api", [py, "-m", "uvicorn", "api.app:create_app", "--factory",
                      "--host", settings.api_host, "--port", str(settings.api_port)])
    flower_url = f"http://127.0.0.1:{args.flower_port}"
    sup.start("flower", [*celery, "flower", f"--port={args.flower_port}"], env=login.env())
    shown = (f"password {login.password}" if login.source != "FLOWER_PASSWORD"
             else "password from FLOWER_PASSWORD")
    urls.append(("Flower", f"{flower_url}/ (user {login.user}, {shown})"))
    urls.append(("webhook API", f"{api_url}/health"))
    if _module_exists("bot.app"):
        sup.start("bot", [py, "-m", "bot.app"])
    if args.quiet:
        sup.say("up", f"component logs: {settings.data_dir / 'logs'}/<component>.log")
    for label, url in urls:
        sup.say("up", f"{label}: {url}")
    checks = _readiness_checks(urls, api_url, flower_url,
                               [hostname for _, _, hostname in workers.values()])
    threading.Thread(target=_announce_when_ready, args=(sup, urls, checks), daemon=True,
                     name="up-ready").start()
    return rc or sup.wait()


#: How long `up` waits for every component to answer before it says which did not.
READY_TIMEOUT_SECONDS = 180.0


def _readiness_checks(urls: list[tuple[str, str]], api_url: str, flower_url: str,
                      worker_names: list[str]) -> list[tuple[str, Callable[[], bool]]]:
    """What "everything is healthy" means for `up`: the API's /health says ok, Flower and the
    simulators answer, and every worker answers a ping."""
    import functools
    import subprocess

    import httpx

    def answers(url: str, ok: Callable[[int], bool] = lambda status: status < 500) -> bool:
        return ok(httpx.get(url, timeout=5).status_code)

    checks: list[tuple[str, Callable[[], bool]]] = [
        ("webhook API", lambda: answers(f"{api_url}/health", lambda status: status == 200)),
        ("Flower", lambda: answers(f"{flower_url}/healthcheck", lambda status: status == 200)),
    ]
    # The rest of the block: the simulators' pages.
    checks += [(label, functools.partial(answers, url)) for label, url in urls
               if label not in ("Flower", "webhook API")]

    def workers_answer() -> bool:
        # The core package never imports Celery: a child process pings (workers/ping.py).
        done = subprocess.run([sys.executable, "-m", "workers.ping", *worker_names,
                               "--timeout", "20"], capture_output=True, timeout=60,
                              check=False)
        return done.returncode == 0

    checks.append(("workers", workers_answer))
    return checks


def _announce_when_ready(sup: Supervisor, urls: list[tuple[str, str]],
                         checks: list[tuple[str, Callable[[], bool]]]) -> None:
    """Print the URL block again once every component is healthy (start-up output has
    scrolled it away by then), or say which components are not."""
    waiting = sup.wait_ready(checks, timeout=READY_TIMEOUT_SECONDS)
    if sup.stopping:
        return
    if waiting:
        sup.warn(f"not healthy after {READY_TIMEOUT_SECONDS:.0f} s: {', '.join(waiting)}"
                 " (the shop keeps running; see their logs)")
        return
    sup.say("up", "-" * 60)
    for label, url in urls:
        sup.say("up", f"{label}: {url}")
    sup.say("up", "QuickCart is up. Ctrl-C stops everything.")
    sup.say("up", "-" * 60)


def _module_exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


ALL_QUEUES = "default,orders,payments,expiry,audit,notify,bulk"


def worker_argv(queues: str, concurrency: int, hostname: str | None = None,
                pool: str | None = None) -> list[str]:
    """`celery worker` arguments for these queues. Without a hostname the node is named after
    its queues (`orders-default@host`; `worker@host` for all of them), so workers of different
    queues on one host have distinct names in Flower; same queues twice need `--hostname`."""
    if not hostname:
        names = [q.strip() for q in queues.split(",") if q.strip()]
        label = "worker" if set(names) == set(ALL_QUEUES.split(",")) else "-".join(names)
        hostname = f"{label}@%h"
    argv = ["-A", "workers.app", "worker", "-Q", queues, "-n", hostname,
            "-c", str(concurrency), "-E", "-l", "info"]
    return [*argv, "-P", pool] if pool else argv


def cmd_worker(args: argparse.Namespace) -> int:
    """One Celery worker for the given queues (payments apart from bulk in production)."""
    return _exec_module("celery", worker_argv(args.queues, args.concurrency, args.hostname,
                                              args.pool))


def cmd_beat(args: argparse.Namespace) -> int:
    """Celery beat (run exactly one)."""
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    schedule = str(get_settings().data_dir / "celerybeat-schedule")
    return _exec_module("celery", ["-A", "workers.app", "beat", "-l", "info", "-s", schedule])


def cmd_flower(args: argparse.Namespace) -> int:
    """Flower with basic auth: FLOWER_USER / FLOWER_PASSWORD, else user `admin` and the
    password kept in DATA_DIR/flower-password (generated once). The login reaches Flower in
    its environment, never on its command line (which `ps` shows to everyone)."""
    from quickcart.launcher import flower_login

    settings = get_settings()
    try:
        login = flower_login(settings.data_dir, settings.flower_user, settings.flower_password)
    except ValueError as exc:
        print(f"quickcart flower: {exc}", file=sys.stderr)
        return 2
    if login.source != "FLOWER_PASSWORD":
        print(f"Flower login: user {login.user}, password in {login.source}", file=sys.stderr)
    os.environ.pop("FLOWER_PASSWORD", None)
    os.environ.update(login.env())
    return _exec_module("celery", ["-A", "workers.app", "flower", f"--port={args.port}"])


def cmd_bot(args: argparse.Namespace) -> int:
    """The Telegram bot: long polling, or a webhook listener with `--webhook-url`."""
    from quickcart.golive import live_services, refuse_demo_rows

    settings = get_settings()
    settings.require("bot")
    if live_services(settings):
        refuse_demo_rows(_engines()[0], "quickcart bot")
    webhook = (["--webhook-url", args.webhook_url, "--listen", args.listen,
                "--port", str(args.port)] if args.webhook_url else [])
    return _exec_module("bot.app", webhook)


def _engines() -> tuple[Engine, Engine]:
    from quickcart.db.engine import get_engine

    main_url, audit_url, _ = _urls()
    return get_engine(main_url), get_engine(audit_url)


def cmd_check(args: argparse.Namespace) -> int:
    """Check every invariant over the live databases: exit 0 when clean, 1 with a report."""
    from quickcart.services.audit_shipping import ship_all
    from quickcart.services.invariants import check_invariants

    main, audit = _engines()
    if args.ship_audit:
        ship_all(main, audit, max_batches=1000)
    report = check_invariants(main, audit, delivery_grace_seconds=args.delivery_grace,
                              audit_grace_seconds=args.audit_grace)
    print(report.format())
    _say_admins_not_opened(main)
    return 0 if report.ok else 1


def _say_admins_not_opened(engine: Engine) -> None:
    """Name the ADMIN_IDS Telegram cannot message yet (their notices wait for /start)."""
    from quickcart.services.admin_inbox import admins_not_opened

    waiting = admins_not_opened(engine)
    if waiting:
        print(f"admins who have not opened the bot yet: {', '.join(map(str, waiting))}"
              " (Telegram cannot message them; their notices are kept until they send /start)")


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo purge`: delete the demo shop's rows in one audited transaction."""
    from quickcart.services.demo import DemoInUse, purge_demo

    main, _ = _engines()
    try:
        removed = purge_demo(main)
    except DemoInUse as exc:
        print(f"quickcart demo purge: refused, real data references the demo rows ({exc})",
              file=sys.stderr)
        return 1
    print(f"removed {removed.describe()}" if removed else "no demo data found")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify the audit chain: exit 0 when intact, 1 with the entries that do not verify."""
    from quickcart.services.audit_verify import format_report, verify_audit_chain

    _, audit = _engines()
    report = verify_audit_chain(audit)
    print(format_report(report))
    return 0 if report.ok else 1


def _exec_module(module: str, argv: Sequence[str]) -> int:
    """Replace this process with `python -m module argv…` (signals reach it directly)."""
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])  # noqa: S606 - fixed argv
    return 0  # pragma: no cover - execv does not return


def cmd_api(args: argparse.Namespace) -> int:
    """Serve the webhook API (uvicorn) in the foreground."""
    settings = get_settings()
    settings.require("api")
    return _exec_module("uvicorn", ["api.app:create_app", "--factory", "--host",
                                    args.host or settings.api_host, "--port",
                                    str(args.port or settings.api_port)])


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark scenario (bench/ is a dev tool; it starts its own processes)."""
    return _exec_module("bench.cli", args.rest)


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Run a local simulator of a service this machine cannot reach."""
    module = {"pakasir": "sandbox.pakasir", "telegram": "sandbox.telegram"}[args.service]
    return _exec_module(module, args.rest)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="quickcart", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create and migrate both databases")
    p.add_argument("--downgrade", metavar="REV", help="downgrade both databases to REV (base)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("services", help="embedded PostgreSQL/Redis: start, stop, status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("up", help="run the whole shop in the foreground")
    p.add_argument("--telegram-port", type=int, default=8081)
    p.add_argument("--pakasir-port", type=int, default=8990)
    p.add_argument("--flower-port", type=int, default=5555)
    p.add_argument("--quiet", action="store_true",
                   help="console shows the summary and warnings only; each component logs"
                        " to DATA_DIR/logs/<component>.log")
    p.add_argument("--demo", action="store_true",
                   help="seed the demo shop (simulators only; refused with live keys)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("demo", help="the demo shop's data: purge it before going live")
    p.add_argument("action", choices=["purge"])
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("worker", help="a Celery worker")
    p.add_argument("--queues", default=ALL_QUEUES)
    p.add_argument("-n", "--hostname", help="node name as `celery worker -n` (%%h: this host);"
                   " default: from the queues, e.g. payments@%%h, worker@%%h for all")
    p.add_argument("-c", "--concurrency", type=int, default=2)
    p.add_argument("-P", "--pool", choices=["prefork", "threads", "solo", "eventlet", "gevent"],
                   help="pool implementation (celery's default: prefork)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="Celery beat (exactly one per deployment)")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("flower", help="Flower with basic auth")
    p.add_argument("--port", type=int, default=5555)
    p.set_defaults(func=cmd_flower)

    p = sub.add_parser("bot", help="the Telegram bot (long polling unless --webhook-url)")
    p.add_argument("--webhook-url", help="public HTTPS URL Telegram posts updates to (behind"
                   " your TLS proxy); needs TELEGRAM_WEBHOOK_SECRET")
    p.add_argument("--listen", default="127.0.0.1", help="webhook listen address")
    p.add_argument("--port", type=int, default=8443, help="webhook listen port")
    p.set_defaults(func=cmd_bot)

    p = sub.add_parser("check", help="check invariants over the live databases")
    p.add_argument("--delivery-grace", type=int, default=60, metavar="SECONDS")
    p.add_argument("--audit-grace", type=int, default=30, metavar="SECONDS")
    p.add_argument("--ship-audit", action="store_true",
                   help="ship pending audit entries first (when no audit worker runs)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("audit", help="audit database tools")
    p.add_argument("action", choices=["verify"])
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("api", help="serve the webhook API")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("bench", help="benchmarks: orders, flash-sale, qris, import, audit-lag,"
                                     " soak, telegram-flood (see bench/RESULTS.md)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="SCENARIO [--json] [--size N]")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("sandbox", help="local simulators: pakasir, telegram")
    p.add_argument("service", choices=["pakasir", "telegram"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options passed to the simulator")
    p.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `quickcart` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (MissingSettingError, GoLiveRefused) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ValidationError as exc:  # a malformed setting (e.g. DATABASE_URL): one line each
        for error in exc.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "setting"
            print(f"quickcart: {name}: {error['msg'].removeprefix('Value error, ')}",
                  file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
