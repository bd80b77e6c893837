"""A deliberately low-level PostgreSQL client for tests that need exact bytes on the wire."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from connectors.postgres.codec import BackendDecoder
from connectors.postgres.messages import (
    ErrorResponse,
    Message,
    PasswordMessage,
    ReadyForQuery,
    SSLRequest,
    StartupMessage,
)


def client_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class RawConnection:
    sock: socket.socket | ssl.SSLSocket
    decoder: BackendDecoder = field(default_factory=BackendDecoder)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_message(self) -> Message | None:
        """The next message, or None when the server closed the connection."""
        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                return None
            self.decoder.receive_data(data)

    def read_until_ready(self) -> list[Message]:
        """Messages up to and including ReadyForQuery (or until the server closes)."""
        out: list[Message] = []
        while (m := self.read_message()) is not None:
            out.append(m)
            if isinstance(m, ReadyForQuery):
                break
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def open_raw(port: int, *, tls: bool = True, timeout: float = 20) -> RawConnection:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        sock.sendall(SSLRequest().encode())
        assert sock.recv(1) == b"S"
        sock = client_tls_context().wrap_socket(sock)
    return RawConnection(sock)


def login(port: int, token: str, *, target: str = "pg-app", params: dict[str, str] | None = None) -> RawConnection:
    """TLS, StartupMessage, token: returns a connection at its first ReadyForQuery."""
    conn = open_raw(port)
    conn.send(StartupMessage({"user": "alice", "database": target, **(params or {})}).encode())
    first = conn.read_message()
    assert first is not None and type(first).__name__ == "AuthenticationCleartextPassword", first
    conn.send(PasswordMessage(token.encode() + b"\0").encode())
    messages = conn.read_until_ready()
    errors = [m for m in messages if isinstance(m, ErrorResponse)]
    assert not errors, errors[0].fields
    return conn


def errors_of(messages: list[Message]) -> list[ErrorResponse]:
    return [m for m in messages if isinstance(m, ErrorResponse)]
