"""Wire bytes for the replies the gateway sends on its own: errors, notices, authentication
success, session parameters and small synthetic results.

For example a denied statement is answered with
``error_response("ERROR", "42501", "denied by policy") + ready_for_query("I")``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .authentication import AuthenticationOk
from .backend import (
    BackendKeyData,
    CommandComplete,
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    ParameterStatus,
    ReadyForQuery,
    RowDescription,
    data_row,
)


def _fields(
    severity: str, sqlstate: str, message: str, detail: str | None, hint: str | None
) -> dict[str, str]:
    if len(sqlstate) != 5 or not sqlstate.isascii() or not sqlstate.isalnum():
        raise ValueError(f"an SQLSTATE is five ASCII letters/digits, not {sqlstate!r}")
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    return fields


def error_response(
    severity: str, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> bytes:
    """An ErrorResponse, e.g. ``error_response("ERROR", "42501", "denied by policy")``."""
    return ErrorResponse(_fields(severity, sqlstate, message, detail, hint)).encode()


def notice_response(
    severity: str, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> bytes:
    return NoticeResponse(_fields(severity, sqlstate, message, detail, hint)).encode()


def ready_for_query(status: str = "I") -> bytes:
    return ReadyForQuery(status).encode()


def authentication_ok() -> bytes:
    return AuthenticationOk().encode()


def parameter_status(name: str, value: str) -> bytes:
    return ParameterStatus(name, value).encode()


def backend_key_data(pid: int, key: int | bytes) -> bytes:
    """``key`` as the 4 secret bytes (or an unsigned 32-bit int, as protocol 3.0 sends it)."""
    secret = key.to_bytes(4, "big") if isinstance(key, int) else key
    return BackendKeyData(pid, secret).encode()


def row_description(fields: Iterable[FieldDescription | str]) -> bytes:
    """A RowDescription; a plain name stands for a text column."""
    return RowDescription(
        tuple(f if isinstance(f, FieldDescription) else FieldDescription(f) for f in fields)
    ).encode()


def command_complete(tag: str) -> bytes:
    return CommandComplete(tag).encode()


__all__ = [
    "authentication_ok",
    "backend_key_data",
    "command_complete",
    "data_row",
    "error_response",
    "notice_response",
    "parameter_status",
    "ready_for_query",
    "row_description",
]
