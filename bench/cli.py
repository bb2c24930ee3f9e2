"""`quickcart bench SCENARIO [--json] [--size N]` (until wired: `python -m bench.cli SCENARIO`).

Each scenario builds throw-away databases, starts the workers it needs as subprocesses, measures
its own baseline in the same run, prints its figures and ratios, and cleans everything up (also
on Ctrl-C). See bench/RESULTS.md for figures measured on the reference machine."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from bench.common import Report
from bench.harness import TELEGRAM_LIMITS_ENV, interrupts_as_exceptions

DEFAULT_SIZES = {
    "orders": 1000,
    "flash-sale": 1000,
    "qris": 300,
    "import": 1_000_000,
    "audit-lag": 20,
    "soak": 100_000,
    "fraud-rules": 1_000_000,
    "telegram-flood": 1000,
}
SIZE_HELP = ("orders: orders per concurrency level (1000); flash-sale: buyers, units = N/10 (1000);"
             " qris: orders paid (300); import: keys (1,000,000); audit-lag: seconds of orders"
             " load (20); soak: tasks (100,000); fraud-rules: paid orders in the table (1,000,000);"
             " telegram-flood: buyers, units = N/10, 5 x N audience users; the broadcast goes to"
             " every user, 7 x N + 1 (1000)")


def _runner(name: str) -> Callable[[int, bool], Report]:
    if name == "orders":
        from bench import orders
        return orders.run
    if name == "flash-sale":
        from bench import flash_sale
        return flash_sale.run
    if name == "qris":
        from bench import qris
        return qris.run
    if name == "import":
        from bench import stock_import
        return stock_import.run
    if name == "audit-lag":
        from bench import audit_lag
        return audit_lag.run
    if name == "telegram-flood":
        from bench import telegram_flood
        return telegram_flood.run
    if name == "fraud-rules":
        from bench import fraud_rules
        return fraud_rules.run
    from bench import soak
    return soak.run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quickcart bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(DEFAULT_SIZES))
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    parser.add_argument("--size", type=int, default=None, help=SIZE_HELP)
    parser.add_argument("--no-telegram-limits", action="store_true",
                        help="the Telegram simulator without its flood limits (on by default:"
                             " 30 messages/s, 1/s per chat, 20/min per group, 429 above)")
    args = parser.parse_args(argv)
    if args.no_telegram_limits:
        os.environ[TELEGRAM_LIMITS_ENV] = "0"
    size = args.size if args.size is not None else DEFAULT_SIZES[args.scenario]
    if size < 1:
        parser.error("--size must be positive")
    try:
        with interrupts_as_exceptions():
            report = _runner(args.scenario)(size, args.json)
    except KeyboardInterrupt:
        print("interrupted: everything the benchmark started was stopped", file=sys.stderr)
        return 130
    report.print(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
