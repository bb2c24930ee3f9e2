"""`quickcart bench SCENARIO [--json] [--size N]` (until wired: `python -m bench.cli SCENARIO`).

Each scenario builds throw-away databases, starts the workers it needs as subprocesses, measures
its own baseline in the same run, prints its figures and ratios, and cleans everything up (also
on Ctrl-C). See bench/RESULTS.md for figures measured on the reference machine."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench.common import Report
from bench.harness import interrupts_as_exceptions

DEFAULT_SIZES = {
    "orders": 1000,
    "flash-sale": 1000,
    "qris": 300,
    "import": 1_000_000,
    "audit-lag": 20,
    "soak": 100_000,
}
SIZE_HELP = ("orders: orders per concurrency level (1000); flash-sale: buyers, units = N/10 (1000);"
             " qris: orders paid (300); import: keys (1,000,000); audit-lag: seconds of orders"
             " load (20); soak: tasks (100,000)")


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
    from bench import soak
    return soak.run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="quickcart bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(DEFAULT_SIZES))
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    parser.add_argument("--size", type=int, default=None, help=SIZE_HELP)
    args = parser.parse_args(argv)
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
