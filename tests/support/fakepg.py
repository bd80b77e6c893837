"""A scripted, hostile 'PostgreSQL server' for tests that play the target's side."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from tests.support.ports import free_port


class FakeServer:
    """Accepts connections on a free port and runs ``script(conn, received)`` for each.

    ``received`` collects every byte the gateway sent, so a test can assert what it never sent.
    """

    def __init__(self, script: Callable[[socket.socket, bytearray], None]) -> None:
        self.script = script
        self.port = free_port()
        self.received = bytearray()
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(30)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        conn.settimeout(10)
        with conn:
            try:
                self.script(conn, self.received)
            except OSError:
                pass

    def close(self) -> None:
        self._sock.close()
        self._thread.join(timeout=10)


def recv_exact(conn: socket.socket, n: int, received: bytearray) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    received.extend(data)
    return data


def drain(conn: socket.socket, received: bytearray) -> None:
    """Read whatever the peer still sends until it closes."""
    try:
        while chunk := conn.recv(65536):
            received.extend(chunk)
    except OSError:
        pass
