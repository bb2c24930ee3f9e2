"""Wait until named Celery workers answer a ping: `python -m workers.ping NAME… [--timeout S]`.

`quickcart up` runs this to know its workers are ready (the core package never imports Celery),
and a container healthcheck can run it with `--this-host` (whatever the worker's name). Names
take `%h` as `celery worker -n` does. Exit 0 when every worker answered, 1 naming the others.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence

from celery.utils.nodenames import host_format


def answering(names: set[str], this_host: bool = False, reply_window: float = 1.0) -> set[str]:
    """The workers that answered one ping broadcast: of `names`, or any on this host."""
    from workers.app import app

    host = socket.gethostname()
    replies = app.control.ping(timeout=reply_window) or []
    seen = {name for reply in replies for name in reply}
    if this_host:
        return {name for name in seen if name.rpartition("@")[2] == host}
    return seen & names


def main(argv: Sequence[str] | None = None) -> int:
    """Ping until every named worker (or one on this host) answered, or time out."""
    parser = argparse.ArgumentParser(prog="python -m workers.ping", description=__doc__)
    parser.add_argument("names", nargs="*", help="worker names, e.g. main@%%h")
    parser.add_argument("--this-host", action="store_true",
                        help="succeed when any worker on this host answers")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="give up after this many seconds")
    args = parser.parse_args(argv)
    if not args.names and not args.this_host:
        parser.error("name a worker, or pass --this-host")
    names = {host_format(name) for name in args.names}
    deadline = time.monotonic() + args.timeout
    seen: set[str] = set()
    while True:
        try:
            seen |= answering(names, args.this_host)
        except Exception as exc:  # noqa: BLE001 - a broker not up yet: ask again
            if time.monotonic() >= deadline:
                print(f"cannot ping: {exc}", file=sys.stderr)
                return 1
            time.sleep(1.0)
            continue
        done = bool(seen) if args.this_host else seen >= names
        if done:
            print("answering: " + ", ".join(sorted(seen)))
            return 0
        if time.monotonic() >= deadline:
            missing = sorted(names - seen) or ["any worker on " + socket.gethostname()]
            print("not answering: " + ", ".join(missing), file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
