"""The in-process servers (simulators, sandbox) answer without Nagle's delayed-ACK stall."""

from __future__ import annotations

import asyncio
import socket

from sandbox.serving import listening_socket


async def _nodelay_of_accepted(sock: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=sock)
    host, port = sock.getsockname()[:2]
    _reader, writer = await asyncio.open_connection(host, port)
    try:
        return await asyncio.wait_for(accepted, timeout=10)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


def test_connections_accepted_on_a_listening_socket_have_nagle_off() -> None:
    assert asyncio.run(_nodelay_of_accepted(listening_socket())) != 0


def test_a_plain_socket_would_keep_nagle_on() -> None:
    """The reason for listening_socket: asyncio skips TCP_NODELAY when proto is 0."""
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    plain.bind(("127.0.0.1", 0))
    assert asyncio.run(_nodelay_of_accepted(plain)) == 0
