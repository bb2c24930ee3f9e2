"""Serving and waiting helpers shared by the simulators' users: tests and benchmarks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


class WaitTimeout(AssertionError, TimeoutError):
    """A condition did not hold in time (an assertion failure in tests, a timeout elsewhere)."""


def wait_until(predicate: Callable[[], Any], *, what: str, timeout: float = 30.0,
               interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; raise WaitTimeout after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound TCP socket for uvicorn's `sockets=`, created with IPPROTO_TCP on purpose.

    asyncio turns Nagle off (TCP_NODELAY) only on sockets whose `proto` is IPPROTO_TCP, and a
    plain `socket.socket()` has proto 0, which every accepted connection inherits. uvicorn writes
    a response's headers and body separately, so with Nagle on the body waited for the client's
    delayed ACK: every request took 44 ms instead of under 1 ms.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ServedApp:
    """An ASGI app served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = listening_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, what="server start", timeout=20)

    def stop(self) -> None:
        """Stop the server and release its port."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
