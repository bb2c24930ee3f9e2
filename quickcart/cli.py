"""The `quickcart` command. Other layers (workers, bot, API, sandboxes) run as subprocesses, so
this core package never imports celery, telegram or fastapi."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from quickcart.config import MissingSettingError, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


# The local simulator's token: not a secret, it only works against the simulator.
SIMULATOR_TOKEN = "123456789:SANDBOX-quickcart-local"  # noqa: S105


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
    from quickcart.launcher import Supervisor
    from quickcart.services.demo import DEMO_ADMIN_ID, seed_demo

    rc = cmd_migrate(argparse.Namespace(downgrade=None))
    main_url, audit_url, redis_url = _urls()
    from quickcart.db.engine import get_engine

    if seed_demo(get_engine(main_url)):
        print("seeded the demo shop (4 products, voucher DEMO5000, admin 900001, shopper 900002)")
    env = {**os.environ, "DATABASE_URL": main_url, "AUDIT_DATABASE_URL": audit_url,
           "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"}
    sup = Supervisor(env)
    py = sys.executable
    urls: list[tuple[str, str]] = []
    if not settings.telegram_bot_token:
        port = args.telegram_port
        env.update(TELEGRAM_BOT_TOKEN=SIMULATOR_TOKEN,
                   TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{port}",
                   ADMIN_IDS=",".join(str(i) for i in {*settings.admin_ids, DEMO_ADMIN_ID}))
        sup.start("telegram", [py, "-m", "sandbox.telegram", "--port", str(port),
                               "--token", env["TELEGRAM_BOT_TOKEN"]])
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
    if not (settings.flower_user and settings.flower_password):
        import secrets

        env.update(FLOWER_USER="admin", FLOWER_PASSWORD=secrets.token_urlsafe(12))
    celery = [py, "-m", "celery", "-A", "workers.app"]
    sup.start("worker", [*celery, "worker", "-Q", "default,orders,expiry,audit,notify",
                         "-c", "2", "-n", "main@%h", "-E", "-l", "info"])
    sup.start("payments", [*celery, "worker", "-Q", "payments", "-c", "1",
                           "-n", "payments@%h", "-E", "-l", "info"])
    sup.start("bulk", [*celery, "worker", "-Q", "bulk", "-c", "1", "-n", "bulk@%h",
                       "-E", "-l", "info"])
    sup.start("beat", [*celery, "beat", "-l", "info", "-s",
                       str(settings.data_dir / "celerybeat-schedule")])
    sup.start("api", [py, "-m", "uvicorn", "api.app:create_app", "--factory",
                      "--host", settings.api_host, "--port", str(settings.api_port)])
    sup.start("flower", [*celery, "flower", f"--port={args.flower_port}",
                         f"--basic-auth={env['FLOWER_USER']}:{env['FLOWER_PASSWORD']}"])
    urls.append(("Flower", f"http://127.0.0.1:{args.flower_port}/ (user {env['FLOWER_USER']},"
                           f" password {env['FLOWER_PASSWORD']})"))
    urls.append(("webhook API", f"{api_url}/health"))
    if _module_exists("bot.app"):
        sup.start("bot", [py, "-m", "bot.app"])
    for label, url in urls:
        sup.say("up", f"{label}: {url}")
    sup.say("up", "QuickCart is up. Ctrl-C stops everything.")
    return rc or sup.wait()


def _module_exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def cmd_worker(args: argparse.Namespace) -> int:
    """One Celery worker for the given queues (payments apart from bulk in production)."""
    return _exec_module("celery", ["-A", "workers.app", "worker", "-Q", args.queues,
                                   "-c", str(args.concurrency), "-E", "-l", "info"])


def cmd_beat(args: argparse.Namespace) -> int:
    """Celery beat (run exactly one)."""
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    schedule = str(get_settings().data_dir / "celerybeat-schedule")
    return _exec_module("celery", ["-A", "workers.app", "beat", "-l", "info", "-s", schedule])


def cmd_flower(args: argparse.Namespace) -> int:
    """Flower with basic auth (FLOWER_USER / FLOWER_PASSWORD required)."""
    settings = get_settings()
    settings.require("flower")
    return _exec_module("celery", ["-A", "workers.app", "flower", f"--port={args.port}",
                                   f"--basic-auth={settings.flower_user}:"
                                   f"{settings.flower_password}"])


def cmd_bot(args: argparse.Namespace) -> int:
    """The Telegram bot: long polling, or a webhook listener with `--webhook-url`."""
    get_settings().require("bot")
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
    return 0 if report.ok else 1


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
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("worker", help="a Celery worker")
    p.add_argument("--queues", default="default,orders,payments,expiry,audit,notify,bulk")
    p.add_argument("--concurrency", type=int, default=2)
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
                                     " soak (see bench/RESULTS.md)")
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
    except MissingSettingError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
