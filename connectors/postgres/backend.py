"""Backend (server -> client) messages of the PostgreSQL v3 protocol and their decoding.

The Authentication* requests live in ``authentication.py``; the gateway's own replies are built by
``replies.py``.

Server text is decoded as UTF-8 with ``surrogateescape``: a localised message in another encoding
must not break the session, and it re-encodes to the very same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from .authentication import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationRequest,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    decode_authentication,
)
from .wire import (
    BYTE,
    I16,
    I32,
    U16,
    U32,
    BackendMessage,
    CopyData,
    CopyDone,
    Message,
    Reader,
    cstring,
    decode_copy_data,
    decode_copy_done,
    frame,
    length_prefixed,
    set_raw,
    violation,
    with_raw,
)

_TEXT = "surrogateescape"

#: BackendKeyData: pid + a secret of 4 bytes (protocol 3.0) up to 256 bytes (3.2).
_KEY_DATA_LIMIT = 4 + 256

#: Per tag, the largest body accepted (None: the decoder's max_message_size). A tag not listed here
#: is not a backend message and is refused before its body is buffered.
BODY_LIMITS: dict[bytes, int | None] = {
    b"R": None,
    b"K": _KEY_DATA_LIMIT,
    b"S": None,
    b"Z": 1,
    b"T": None,
    b"D": None,
    b"C": None,
    b"I": 0,
    b"E": None,
    b"N": None,
    b"1": 0,
    b"2": 0,
    b"3": 0,
    b"n": 0,
    b"s": 0,
    b"t": None,
    b"G": None,
    b"H": None,
    b"W": None,
    b"d": None,
    b"c": 0,
    b"A": None,
    b"v": None,
    b"V": None,
}


def _cstr(value: str) -> bytes:
    return cstring(value, _TEXT)


# --- session set-up -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParameterStatus(BackendMessage):
    msg_type: ClassVar[bytes] = b"S"

    name: str
    value: str

    def encode(self) -> bytes:
        return frame(b"S", _cstr(self.name) + _cstr(self.value))


@dataclass(frozen=True, slots=True)
class BackendKeyData(BackendMessage):
    msg_type: ClassVar[bytes] = b"K"

    pid: int
    secret_key: bytes

    def encode(self) -> bytes:
        return frame(b"K", I32.pack(self.pid) + self.secret_key)


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(BackendMessage):
    msg_type: ClassVar[bytes] = b"v"

    newest_minor: int
    unrecognized: tuple[str, ...] = ()

    def encode(self) -> bytes:
        options = b"".join(_cstr(o) for o in self.unrecognized)
        return frame(b"v", I32.pack(self.newest_minor) + I32.pack(len(self.unrecognized)) + options)


_STATUSES = ("I", "T", "E")


@dataclass(frozen=True, slots=True)
class ReadyForQuery(BackendMessage):
    """'I' idle, 'T' in a transaction block, 'E' in a failed transaction block."""

    msg_type: ClassVar[bytes] = b"Z"

    status: str

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"transaction status must be one of I/T/E, not {self.status!r}")

    def encode(self) -> bytes:
        return b"Z\x00\x00\x00\x05" + self.status.encode("ascii")


def _decode_parameter_status(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "ParameterStatus", _TEXT)
    name = r.cstr()
    value = r.cstr()
    r.finish()
    return with_raw(ParameterStatus(name, value), raw)


def _decode_backend_key_data(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "BackendKeyData", _TEXT)
    pid = r.int32()
    key = r.rest()
    if not 4 <= len(key) <= 256:
        raise r.fail(f"secret key of {len(key)} bytes")
    return with_raw(BackendKeyData(pid, key), raw)


def _decode_negotiate(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "NegotiateProtocolVersion", _TEXT)
    newest = r.int32()
    n = r.int32()
    if n < 0 or n > r.remaining():  # each option takes at least its NUL
        raise r.fail(f"option count {n} does not fit the message")
    options = tuple(r.cstr() for _ in range(n))
    r.finish()
    return with_raw(NegotiateProtocolVersion(newest, options), raw)


def _decode_ready(buf: bytes, pos: int, raw: bytes) -> Message:
    status = buf[pos:]
    if status != b"I" and status != b"T" and status != b"E":
        raise violation(f"invalid ReadyForQuery message: transaction status {status!r}")
    return with_raw(ReadyForQuery(status.decode("ascii")), raw)


# --- results --------------------------------------------------------------------------------------

_FIELD = struct.Struct("!IhIhih")  # table oid, column attr, type oid, size, modifier, format


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription (defaults describe a computed ``text`` column)."""

    name: str
    table_oid: int = 0
    column_attr: int = 0
    type_oid: int = 25
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0

    def encode(self) -> bytes:
        return _cstr(self.name) + _FIELD.pack(
            self.table_oid,
            self.column_attr,
            self.type_oid,
            self.type_size,
            self.type_modifier,
            self.format,
        )


@dataclass(frozen=True, slots=True)
class RowDescription(BackendMessage):
    msg_type: ClassVar[bytes] = b"T"

    fields: tuple[FieldDescription, ...]

    def encode(self) -> bytes:
        return frame(b"T", U16.pack(len(self.fields)) + b"".join(f.encode() for f in self.fields))


@dataclass(frozen=True, slots=True)
class DataRow(BackendMessage):
    msg_type: ClassVar[bytes] = b"D"

    values: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        return data_row(self.values)


@dataclass(frozen=True, slots=True)
class CommandComplete(BackendMessage):
    msg_type: ClassVar[bytes] = b"C"

    tag: str  # the command tag, e.g. "SELECT 3", "INSERT 0 1"

    def encode(self) -> bytes:
        return frame(b"C", _cstr(self.tag))


@dataclass(frozen=True, slots=True)
class ParameterDescription(BackendMessage):
    msg_type: ClassVar[bytes] = b"t"

    type_oids: tuple[int, ...]

    def encode(self) -> bytes:
        oids = b"".join(U32.pack(oid) for oid in self.type_oids)
        return frame(b"t", U16.pack(len(self.type_oids)) + oids)


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(BackendMessage):
    msg_type: ClassVar[bytes] = b"V"

    result: bytes | None

    def encode(self) -> bytes:
        return frame(b"V", length_prefixed(self.result))


def data_row(values: Iterable[bytes | None]) -> bytes:
    """A DataRow's wire bytes (what a masked row is re-encoded with)."""
    parts = [b""]  # replaced by the column count once it is known
    append = parts.append
    count = 0
    for value in values:
        count += 1
        if value is None:
            append(b"\xff\xff\xff\xff")
        else:
            append(I32.pack(len(value)))
            append(value)
    parts[0] = U16.pack(count)
    body = b"".join(parts)
    return b"D" + U32.pack(len(body) + 4) + body


def _decode_row_description(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "RowDescription", _TEXT)
    n = r.count(19)  # a NUL-terminated name and 18 bytes of attributes per column
    fields = []
    unpack = _FIELD.unpack_from
    for _ in range(n):
        name = r.cstr()
        start = r.pos
        if start + 18 > r.end:
            raise r.fail("truncated")
        table_oid, attr, type_oid, size, modifier, fmt = unpack(buf, start)
        if fmt != 0 and fmt != 1:
            # The masking layer keys text vs binary handling off this (HOSTILE H.48).
            raise r.fail(f"unsupported format code {fmt}")
        r.pos = start + 18
        fields.append(FieldDescription(name, table_oid, attr, type_oid, size, modifier, fmt))
    r.finish()
    return with_raw(RowDescription(tuple(fields)), raw)


_unpack_i32 = I32.unpack_from
# Building a DataRow through its slot descriptors instead of the frozen dataclass __init__ halves
# the construction cost; DataRow has no __post_init__, so nothing is skipped.
_new_object = object.__new__
_set_values: Callable[[DataRow, tuple[bytes | None, ...]], None] = DataRow.__dict__[
    "values"
].__set__


def _decode_data_row(buf: bytes, pos: int, raw: bytes) -> Message:
    # The hot path of result masking, so no Reader: struct.error from unpack_from stands in for
    # the per-column bounds check, and a value running past the end leaves pos != len(buf).
    end = len(buf)
    if pos + 2 > end:
        raise violation("invalid DataRow message: truncated")
    n = (buf[pos] << 8) | buf[pos + 1]
    pos += 2
    if n * 4 > end - pos:
        raise violation(f"invalid DataRow message: column count {n} exceeds the message body")
    values: list[bytes | None] = [None] * n
    unpack = _unpack_i32
    try:
        for i in range(n):
            (size,) = unpack(buf, pos)
            if size >= 0:
                start = pos + 4
                pos = start + size
                values[i] = buf[start:pos]
            elif size == -1:
                pos += 4
            else:
                raise violation(f"invalid DataRow message: negative value length {size}")
    except struct.error:
        raise violation("invalid DataRow message: truncated") from None
    if pos != end:
        problem = "value exceeds the message body" if pos > end else "trailing data"
        raise violation(f"invalid DataRow message: {problem}")
    row = _new_object(DataRow)
    _set_values(row, tuple(values))
    set_raw(row, raw)
    return row


def _decode_command_complete(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "CommandComplete", _TEXT)
    tag = r.cstr()
    r.finish()
    return with_raw(CommandComplete(tag), raw)


def _decode_parameter_description(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "ParameterDescription", _TEXT)
    n = r.count(4)
    oids = tuple(r.uint32() for _ in range(n))
    r.finish()
    return with_raw(ParameterDescription(oids), raw)


def _decode_function_call_response(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "FunctionCallResponse", _TEXT)
    result = r.nullable()
    r.finish()
    return with_raw(FunctionCallResponse(result), raw)


# --- errors and notices ---------------------------------------------------------------------------


class _Fields(BackendMessage):
    """ErrorResponse and NoticeResponse: a map of one-character field codes to strings."""

    __slots__ = ()
    fields: dict[str, str]
    default_sqlstate: ClassVar[str]
    default_severity: ClassVar[str]

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", self.default_sqlstate)

    @property
    def severity(self) -> str:
        # 'V' is never localised (9.6+); 'S' may be translated.
        return self.fields.get("V") or self.fields.get("S") or self.default_severity

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def detail(self) -> str | None:
        return self.fields.get("D")

    @property
    def hint(self) -> str | None:
        return self.fields.get("H")

    def encode(self) -> bytes:
        parts = []
        for code, value in self.fields.items():
            if len(code) != 1 or not 0 < ord(code) < 256:
                raise ValueError(f"field code must be one non-NUL byte, not {code!r}")
            parts.append(BYTE[ord(code)] + _cstr(value))
        return frame(self.msg_type, b"".join(parts) + b"\0")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    """Fields as sent; one without 'C' still decodes (``sqlstate`` is then XX000)."""

    msg_type: ClassVar[bytes] = b"E"
    default_sqlstate: ClassVar[str] = "XX000"
    default_severity: ClassVar[str] = "ERROR"

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    msg_type: ClassVar[bytes] = b"N"
    default_sqlstate: ClassVar[str] = "00000"
    default_severity: ClassVar[str] = "NOTICE"

    fields: dict[str, str]


def _decode_fields(
    cls: type[ErrorResponse | NoticeResponse],
) -> Callable[[bytes, int, bytes], Message]:
    what = cls.__name__

    def decode(buf: bytes, pos: int, raw: bytes) -> Message:
        r = Reader(buf, pos, what, _TEXT)
        fields: dict[str, str] = {}
        while (code := r.byte()) != b"\0":
            key = chr(code[0])
            if key in fields:
                # Clients disagree on which copy wins; the relay must see what the agent sees.
                raise r.fail(f"duplicate field {key!r}")
            fields[key] = r.cstr()
        r.finish()
        return with_raw(cls(fields), raw)

    return decode


@dataclass(frozen=True, slots=True)
class NotificationResponse(BackendMessage):
    msg_type: ClassVar[bytes] = b"A"

    pid: int
    channel: str
    payload: str

    def encode(self) -> bytes:
        return frame(b"A", I32.pack(self.pid) + _cstr(self.channel) + _cstr(self.payload))


def _decode_notification(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "NotificationResponse", _TEXT)
    pid = r.int32()
    channel = r.cstr()
    payload = r.cstr()
    r.finish()
    return with_raw(NotificationResponse(pid, channel, payload), raw)


# --- bodiless acknowledgements --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Empty(BackendMessage):
    def encode(self) -> bytes:
        return self.msg_type + b"\x00\x00\x00\x04"


@dataclass(frozen=True, slots=True)
class ParseComplete(_Empty):
    msg_type: ClassVar[bytes] = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(_Empty):
    msg_type: ClassVar[bytes] = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(_Empty):
    msg_type: ClassVar[bytes] = b"3"


@dataclass(frozen=True, slots=True)
class NoData(_Empty):
    msg_type: ClassVar[bytes] = b"n"


@dataclass(frozen=True, slots=True)
class PortalSuspended(_Empty):
    msg_type: ClassVar[bytes] = b"s"


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(_Empty):
    msg_type: ClassVar[bytes] = b"I"


def _decode_empty(cls: type[_Empty]) -> Callable[[bytes, int, bytes], Message]:
    def decode(buf: bytes, pos: int, raw: bytes) -> Message:
        if len(buf) != pos:
            raise violation(f"invalid {cls.__name__} message: trailing data")
        return with_raw(cls(), raw)

    return decode


# --- COPY -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CopyResponse(BackendMessage):
    format: int  # overall: 0 text, 1 binary
    column_formats: tuple[int, ...] = ()

    def encode(self) -> bytes:
        codes = b"".join(I16.pack(c) for c in self.column_formats)
        body = BYTE[self.format] + U16.pack(len(self.column_formats)) + codes
        return frame(self.msg_type, body)


@dataclass(frozen=True, slots=True)
class CopyInResponse(_CopyResponse):
    msg_type: ClassVar[bytes] = b"G"


@dataclass(frozen=True, slots=True)
class CopyOutResponse(_CopyResponse):
    msg_type: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True)
class CopyBothResponse(_CopyResponse):
    msg_type: ClassVar[bytes] = b"W"


def _decode_copy_response(cls: type[_CopyResponse]) -> Callable[[bytes, int, bytes], Message]:
    what = cls.__name__

    def decode(buf: bytes, pos: int, raw: bytes) -> Message:
        r = Reader(buf, pos, what, _TEXT)
        overall = r.byte()[0]
        if overall > 1:
            raise r.fail(f"unsupported format code {overall}")
        formats = r.format_codes()
        r.finish()
        return with_raw(cls(overall, formats), raw)

    return decode


DECODERS: dict[bytes, Callable[[bytes, int, bytes], Message]] = {
    b"R": decode_authentication,
    b"K": _decode_backend_key_data,
    b"S": _decode_parameter_status,
    b"Z": _decode_ready,
    b"T": _decode_row_description,
    b"D": _decode_data_row,
    b"C": _decode_command_complete,
    b"I": _decode_empty(EmptyQueryResponse),
    b"E": _decode_fields(ErrorResponse),
    b"N": _decode_fields(NoticeResponse),
    b"1": _decode_empty(ParseComplete),
    b"2": _decode_empty(BindComplete),
    b"3": _decode_empty(CloseComplete),
    b"n": _decode_empty(NoData),
    b"s": _decode_empty(PortalSuspended),
    b"t": _decode_parameter_description,
    b"G": _decode_copy_response(CopyInResponse),
    b"H": _decode_copy_response(CopyOutResponse),
    b"W": _decode_copy_response(CopyBothResponse),
    b"d": decode_copy_data,
    b"c": decode_copy_done,
    b"A": _decode_notification,
    b"v": _decode_negotiate,
    b"V": _decode_function_call_response,
}


def decode_backend(tag: bytes, body: bytes | memoryview, raw: bytes | None = None) -> Message:
    """Decode one backend message from its tag and body (as ``BackendDecoder.next_raw`` gives).

    Pass ``raw`` when you have it: decoding then reads straight from it, without copying the body.
    """
    if raw is None or len(raw) != len(body) + 5:
        raw = tag + U32.pack(len(body) + 4) + bytes(body)
    decoder = DECODERS.get(tag)
    if decoder is None:
        raise violation(f"unknown backend message type {tag!r}")
    return decoder(raw, 5, raw)


__all__ = [
    "BODY_LIMITS",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationOk",
    "AuthenticationRequest",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "BackendKeyData",
    "BindComplete",
    "CloseComplete",
    "CommandComplete",
    "CopyBothResponse",
    "CopyData",
    "CopyDone",
    "CopyInResponse",
    "CopyOutResponse",
    "DataRow",
    "EmptyQueryResponse",
    "ErrorResponse",
    "FieldDescription",
    "FunctionCallResponse",
    "NegotiateProtocolVersion",
    "NoData",
    "NoticeResponse",
    "NotificationResponse",
    "ParameterDescription",
    "ParameterStatus",
    "ParseComplete",
    "PortalSuspended",
    "ReadyForQuery",
    "RowDescription",
    "data_row",
    "decode_backend",
]
