"""The go-live gate: when the demo shop may be seeded, and why a live start refuses demo rows.

A shop is live as soon as a real Telegram token or a Pakasir project is configured. A live shop
never gets the demo seed (it would make Telegram user 900001 an admin and hand out a free
balance and voucher), and it refuses to start over a database that still holds demo rows from
an earlier local run, naming them and `quickcart demo purge`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from quickcart.config import Settings
from quickcart.services.demo import find_demo_rows

# The local simulator's token: not a secret, it only works against the simulator.
SIMULATOR_TOKEN = "123456789:SANDBOX-quickcart-local"  # noqa: S105


class GoLiveRefused(RuntimeError):
    """A start that would put demo data in front of real users; the message is one line."""


def live_services(settings: Settings) -> list[str]:
    """The settings that make this shop live (empty on the simulators)."""
    live = []
    if settings.telegram_bot_token and settings.telegram_bot_token != SIMULATOR_TOKEN:
        live.append("TELEGRAM_BOT_TOKEN")
    if settings.pakasir_project:
        live.append("PAKASIR_PROJECT")
    return live


def should_seed_demo(settings: Settings, requested: bool) -> bool:
    """Seed the demo only on the simulators; `--demo` with live keys is refused."""
    live = live_services(settings)
    if requested and live:
        verb = "is" if len(live) == 1 else "are"
        raise GoLiveRefused(
            f"quickcart up --demo: refused, {' and '.join(live)} {verb} set (the demo shop"
            " runs on the simulators only; unset them or drop --demo)")
    return not live


def refuse_sandbox_payments_on_live_telegram(settings: Settings) -> None:
    """Stop `up` from pairing a real bot with the local Pakasir sandbox: real shoppers would get
    QR codes nobody can pay, and the sandbox's "Bayar" button would release real keys."""
    if "TELEGRAM_BOT_TOKEN" in live_services(settings) and not settings.pakasir_project:
        raise GoLiveRefused(
            "quickcart up: refused, TELEGRAM_BOT_TOKEN is set but PAKASIR_PROJECT is not (a live"
            " bot would take sandbox payments); set PAKASIR_PROJECT and PAKASIR_API_KEY")


def refuse_demo_rows(engine: Engine, who: str) -> None:
    """Stop a live start whose database still holds demo rows (read only)."""
    rows = find_demo_rows(engine)
    if rows:
        raise GoLiveRefused(
            f"{who}: refusing a live start, the database holds demo data ({rows.describe()});"
            " remove it with `quickcart demo purge`")
