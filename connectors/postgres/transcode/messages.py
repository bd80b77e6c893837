"""Rewriting whole protocol messages between a client encoding and UTF-8.

Every function takes the message as framed on the wire (type byte, length, body: ``raw`` from
``next_raw()``) and returns the message to forward, with its length recomputed. When nothing
changes (a no-op encoding, or only ASCII text) the very ``raw`` object comes back, so the relay
can forward it untouched. Only the fields PostgreSQL itself converts are converted (names and SQL
via ``pq_getmsgstring``, text-format values, binary values of text-like types); the rest of the
body is copied byte for byte.

Client messages are split on NUL before conversion, as the server does (``pq_getmsgstring`` finds
the NUL in the raw bytes): no client encoding has NUL as a trailing byte, and the verifiers refuse
it, so a field boundary is the same before and after conversion.

A converted message that outgrows ``max_message_size``, or the server's own limit for its type,
is refused with SQLSTATE 54000 instead of being sent to be refused by the target.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backend import BODY_LIMITS as BACKEND_LIMITS
from ..codec import DEFAULT_MAX_MESSAGE_SIZE
from ..frontend import BODY_LIMITS as FRONTEND_LIMITS
from ..wire import I32, U16, U32, Reader
from .encoding import PROGRAM_LIMIT_EXCEEDED, ClientEncoding, TranscodeError
from .values import convert_binary, needs_conversion

_NULL = b"\xff\xff\xff\xff"


def _frame(raw: bytes, body: bytes, limits: dict[bytes, int | None], max_size: int) -> bytes:
    tag = raw[:1]
    limit = limits.get(tag)
    bound = max_size - 4 if limit is None else min(limit, max_size - 4)
    if len(body) > bound:
        raise TranscodeError(
            f"message of type {tag.decode('ascii', 'replace')!r} would be {len(body) + 4} bytes "
            f"after encoding conversion, over the limit of {bound + 4}",
            sqlstate=PROGRAM_LIMIT_EXCEEDED,
        )
    return tag + U32.pack(len(body) + 4) + body


def _reader(raw: bytes, what: str) -> Reader:
    if len(raw) < 5:
        raise TranscodeError(f"invalid {what} message: truncated", sqlstate="08P01")
    return Reader(raw, 5, what, "strict")


def _rebuilt(
    raw: bytes, parts: list[bytes], changed: bool, limits: dict[bytes, int | None], max_size: int
) -> bytes:
    if not changed:
        return raw
    return _frame(raw, b"".join(parts), limits, max_size)


def _strings(
    encoding: ClientEncoding,
    raw: bytes,
    what: str,
    count: int,
    *,
    to_server: bool,
    max_message_size: int,
    prefix: int = 0,
) -> bytes:
    """A message that is ``prefix`` fixed bytes, ``count`` NUL-terminated strings, then the rest."""
    if encoding.is_noop:
        return raw
    r = _reader(raw, what)
    parts = [r.take(prefix)] if prefix else []
    changed = False
    convert = encoding.to_server if to_server else encoding.to_client
    for _ in range(count):
        text = r.cbytes()
        new = convert(text)
        changed = changed or new is not text
        parts.append(new + b"\0")
    parts.append(r.rest())
    limits = FRONTEND_LIMITS if to_server else BACKEND_LIMITS
    return _rebuilt(raw, parts, changed, limits, max_message_size)


# --- frontend (client encoding -> UTF-8) ----------------------------------------------------------


def query(
    encoding: ClientEncoding, raw: bytes, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> bytes:
    """Query ('Q'): the SQL text."""
    return _strings(encoding, raw, "Query", 1, to_server=True, max_message_size=max_message_size)


def parse(
    encoding: ClientEncoding, raw: bytes, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> bytes:
    """Parse ('P'): statement name and SQL text; the parameter type OIDs are copied."""
    return _strings(encoding, raw, "Parse", 2, to_server=True, max_message_size=max_message_size)


def describe(encoding: ClientEncoding, raw: bytes) -> bytes:
    """Describe ('D'): the statement or portal name after the kind byte."""
    return _strings(
        encoding,
        raw,
        "Describe",
        1,
        to_server=True,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        prefix=1,
    )


def close(encoding: ClientEncoding, raw: bytes) -> bytes:
    """Close ('C'): the statement or portal name after the kind byte."""
    return _strings(
        encoding,
        raw,
        "Close",
        1,
        to_server=True,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        prefix=1,
    )


def execute(encoding: ClientEncoding, raw: bytes) -> bytes:
    """Execute ('E'): the portal name; the row limit is copied."""
    return _strings(
        encoding, raw, "Execute", 1, to_server=True, max_message_size=DEFAULT_MAX_MESSAGE_SIZE
    )


def copy_fail(encoding: ClientEncoding, raw: bytes) -> bytes:
    """CopyFail ('f'): the client's error message."""
    return _strings(
        encoding, raw, "CopyFail", 1, to_server=True, max_message_size=DEFAULT_MAX_MESSAGE_SIZE
    )


def bind(
    encoding: ClientEncoding,
    raw: bytes,
    param_types: Sequence[int] = (),
    *,
    text_oids: frozenset[int] = frozenset(),
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> bytes:
    """Bind ('B'): portal and statement names, and the parameter values PostgreSQL converts.

    Text-format parameters are all converted (the server converts them before calling the type's
    input function). Binary ones only where ``param_types[i]`` (the statement's parameter types:
    ParameterDescription if seen, else Parse's OIDs; 0 or missing = unknown) is text-like, as
    textrecv and friends convert; a binary value of unknown type passes unchanged.
    """
    if encoding.is_noop:
        return raw
    r = _reader(raw, "Bind")
    parts: list[bytes] = []
    changed = False
    for _ in range(2):
        name = r.cbytes()
        new = encoding.to_server(name)
        changed = changed or new is not name
        parts.append(new + b"\0")
    start = r.pos
    formats = r.format_codes()
    count = r.count(4)
    if len(formats) > 1 and len(formats) != count:
        raise r.fail(f"{len(formats)} parameter format codes for {count} parameters")
    parts.append(raw[start : r.pos])
    for index in range(count):
        value = r.nullable()
        if value is None:
            parts.append(_NULL)
            continue
        fmt = formats[0] if len(formats) == 1 else (formats[index] if formats else 0)
        oid = param_types[index] if index < len(param_types) else 0
        if fmt == 0:
            new = encoding.to_server(value)
        elif needs_conversion(oid, text_oids):
            new = convert_binary(value, oid, encoding.to_server, encoding.name, text_oids)
        else:
            new = value
        changed = changed or new is not value
        parts.append(I32.pack(len(new)) + new)
    parts.append(r.rest())
    return _rebuilt(raw, parts, changed, FRONTEND_LIMITS, max_message_size)


# --- backend (UTF-8 -> client encoding) -----------------------------------------------------------


def parameter_status(encoding: ClientEncoding, raw: bytes) -> bytes:
    """ParameterStatus ('S'): name and value (the relay substitutes client_encoding's value)."""
    return _strings(
        encoding,
        raw,
        "ParameterStatus",
        2,
        to_server=False,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
    )


def command_complete(encoding: ClientEncoding, raw: bytes) -> bytes:
    """CommandComplete ('C'): the command tag."""
    return _strings(
        encoding,
        raw,
        "CommandComplete",
        1,
        to_server=False,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
    )


def notification_response(encoding: ClientEncoding, raw: bytes) -> bytes:
    """NotificationResponse ('A'): channel and payload after the process id."""
    return _strings(
        encoding,
        raw,
        "NotificationResponse",
        2,
        to_server=False,
        max_message_size=DEFAULT_MAX_MESSAGE_SIZE,
        prefix=4,
    )


def error_response(encoding: ClientEncoding, raw: bytes) -> bytes:
    """ErrorResponse ('E') or NoticeResponse ('N'): every field value.

    A field PostgreSQL could not convert makes PostgreSQL replace the whole message with the
    22P05 error; the TranscodeError raised here is that error, for the relay to send instead.
    """
    if encoding.is_noop:
        return raw
    r = _reader(raw, "ErrorResponse")
    parts: list[bytes] = []
    changed = False
    while (code := r.byte()) != b"\0":
        value = r.cbytes()
        new = encoding.to_client(value)
        changed = changed or new is not value
        parts.append(code + new + b"\0")
    r.finish()
    parts.append(b"\0")
    return _rebuilt(raw, parts, changed, BACKEND_LIMITS, DEFAULT_MAX_MESSAGE_SIZE)


notice_response = error_response


def row_description(
    encoding: ClientEncoding, raw: bytes, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> bytes:
    """RowDescription ('T'): the column names; the 18 bytes of attributes each are copied."""
    if encoding.is_noop:
        return raw
    r = _reader(raw, "RowDescription")
    count = r.count(19)
    parts = [U16.pack(count)]
    changed = False
    for _ in range(count):
        name = r.cbytes()
        new = encoding.to_client(name)
        changed = changed or new is not name
        parts.append(new + b"\0" + r.take(18))
    r.finish()
    return _rebuilt(raw, parts, changed, BACKEND_LIMITS, max_message_size)


class DataRowTranscoder:
    """Converts the DataRows of one result, whose column formats and types are known.

    ``formats``: per column 0 (text) or 1 (binary), as the RowDescription / Bind say; one code
    applies to every column, none means all text. ``type_oids``: per column, from the
    RowDescription. Text values are all converted (PostgreSQL converts every output function's
    text); binary ones only for text-like types.
    """

    __slots__ = ("_binary_oids", "_encoding", "_max", "_text_oids")

    def __init__(
        self,
        encoding: ClientEncoding,
        formats: Sequence[int],
        type_oids: Sequence[int],
        *,
        text_oids: frozenset[int] = frozenset(),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._encoding = encoding
        self._text_oids = text_oids
        self._max = max_message_size
        # Per column: None = text, 0 = binary left alone, else the OID to convert as.
        self._binary_oids: list[int | None] = []
        for index, oid in enumerate(type_oids):
            fmt = formats[0] if len(formats) == 1 else (formats[index] if formats else 0)
            if fmt == 0:
                self._binary_oids.append(None)
            else:
                self._binary_oids.append(oid if needs_conversion(oid, text_oids) else 0)

    def data_row(self, raw: bytes) -> bytes:
        """One DataRow ('D'), converted; ``raw`` itself when nothing changes."""
        encoding = self._encoding
        if encoding.is_noop:
            return raw
        r = _reader(raw, "DataRow")
        count = r.count(4)
        columns = self._binary_oids
        if count != len(columns):
            raise r.fail(f"{count} columns where the RowDescription has {len(columns)}")
        parts = [U16.pack(count)]
        changed = False
        for index in range(count):
            value = r.nullable()
            if value is None:
                parts.append(_NULL)
                continue
            oid = columns[index]
            if oid is None:
                new = encoding.to_client(value)
            elif oid:
                new = convert_binary(value, oid, encoding.to_client, encoding.name, self._text_oids)
            else:
                new = value
            changed = changed or new is not value
            parts.append(I32.pack(len(new)) + new)
        r.finish()
        return _rebuilt(raw, parts, changed, BACKEND_LIMITS, self._max)
