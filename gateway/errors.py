"""The two error families of wardgate.

``GatewayError`` is for operators: bad configuration, a plugin that fails to load, a data directory
that cannot be written. Its message says what is wrong and how to fix it (file, key, expectation).

``ProtocolError`` is for the wire: malformed or hostile input from a peer. It carries what a
connector needs to render a native reply (as h11's ``error_status_hint`` does); it is never raised
with ``assert`` and never as a bare ``Exception``.
"""

from __future__ import annotations


class GatewayError(Exception):
    """An operator-facing failure; the message names the file/key and the fix."""


class ConfigError(GatewayError):
    """Invalid configuration."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        where = ""
        if file and key:
            where = f"{file}: [{key}] "
        elif file:
            where = f"{file}: "
        elif key:
            where = f"[{key}] "
        super().__init__(f"{where}{message}")
        self.file = file
        self.key = key


class PluginError(GatewayError):
    """A plugin failed to load or registered something invalid."""


class RecordingError(GatewayError):
    """A recording could not be written; the session must end (fail closed)."""


class ProtocolError(Exception):
    """Malformed or hostile protocol input.

    ``sqlstate``/``mysql_errno``/``http_status`` are hints for the native error reply.
    """

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str = "08P01",
        mysql_errno: int = 1047,
        http_status: int = 400,
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.mysql_errno = mysql_errno
        self.http_status = http_status


class AuthenticationError(Exception):
    """A credential (token) was rejected. The message is safe to show to the caller."""


def one_line(text: str) -> str:
    """An operator-facing message as one terminal-safe line.

    Whitespace runs (newlines included) become one space; control and format characters (ESC,
    bidi overrides) that a config key, a file name or a server's reply may carry are escaped
    rather than interpreted by the operator's terminal.
    """
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)
