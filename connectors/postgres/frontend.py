"""Frontend (client -> server) messages of the PostgreSQL v3 protocol, and their decoding.

Names follow the "Message Formats" chapter of the PostgreSQL documentation. Client text is decoded
as strict UTF-8: the gateway vets SQL, and text it cannot read the way the server will must be
refused (SQLSTATE 22021), not guessed at. The relay pins ``client_encoding=UTF8`` toward the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from gateway.errors import ProtocolError

from .authentication import (
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
    decode_password,
    parse_password,
    parse_sasl_initial,
    parse_sasl_response,
)
from .wire import (
    I32,
    U16,
    U32,
    CopyData,
    CopyDone,
    FrontendMessage,
    Message,
    Reader,
    cstring,
    decode_copy_data,
    decode_copy_done,
    format_codes,
    frame,
    length_prefixed,
    violation,
    with_raw,
)

PROTOCOL_3_0 = 3 << 16  # 196608
SSL_REQUEST_CODE = 80877103  # 1234.5679
GSSENC_REQUEST_CODE = 80877104  # 1234.5680
CANCEL_REQUEST_CODE = 80877102  # 1234.5678

#: PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a startup-phase packet, length word included.
MAX_STARTUP_PACKET = 10_000
#: More parameters than any real client sends; bounds the work a hostile StartupMessage causes.
MAX_STARTUP_PARAMS = 64
MAX_STARTUP_KEY = 256
#: Cancel keys are 4 bytes in protocol 3.0 and up to 256 bytes from protocol 3.2 on.
MIN_CANCEL_KEY = 4
MAX_CANCEL_KEY = 256

#: PostgreSQL's PQ_SMALL_MESSAGE_LIMIT (body bytes) for messages that carry only names/numbers.
SMALL_MESSAGE_LIMIT = 10_000
#: PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH for password / SASL / GSS responses.
AUTH_MESSAGE_LIMIT = 65_535

#: Per tag, the largest body the server itself would accept (None: the decoder's max_message_size).
#: A tag not listed here is not a frontend message and is refused before its body is buffered.
BODY_LIMITS: dict[bytes, int | None] = {
    b"Q": None,
    b"P": None,
    b"B": None,
    b"F": None,
    b"d": None,
    b"p": AUTH_MESSAGE_LIMIT,
    b"D": SMALL_MESSAGE_LIMIT,
    b"C": SMALL_MESSAGE_LIMIT,
    b"E": SMALL_MESSAGE_LIMIT,
    b"f": SMALL_MESSAGE_LIMIT,
    b"S": 0,
    b"H": 0,
    b"X": 0,
    b"c": 0,
}

_TEXT = "strict"


# --- startup phase (untagged) ---------------------------------------------------------------------


def _untagged(code: int, body: bytes = b"") -> bytes:
    return U32.pack(len(body) + 8) + U32.pack(code) + body


@dataclass(frozen=True, slots=True)
class StartupMessage(FrontendMessage):
    """The first packet of a session: protocol version and ``key=value`` parameters.

    ``params`` is a plain dict for convenience; treat it as read-only (``raw`` would go stale).
    """

    params: dict[str, str]
    protocol: int = PROTOCOL_3_0

    @property
    def user(self) -> str:
        return self.params["user"]

    @property
    def database(self) -> str:
        return self.params.get("database") or self.params["user"]

    def encode(self) -> bytes:
        if "" in self.params:
            raise ValueError("an empty parameter name would end the parameter list early")
        body = b"".join(cstring(k) + cstring(v) for k, v in self.params.items())
        return _untagged(self.protocol, body + b"\0")


@dataclass(frozen=True, slots=True)
class SSLRequest(FrontendMessage):
    def encode(self) -> bytes:
        return _untagged(SSL_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class GSSENCRequest(FrontendMessage):
    def encode(self) -> bytes:
        return _untagged(GSSENC_REQUEST_CODE)


@dataclass(frozen=True, slots=True)
class CancelRequest(FrontendMessage):
    pid: int
    secret_key: bytes

    def encode(self) -> bytes:
        return _untagged(CANCEL_REQUEST_CODE, I32.pack(self.pid) + self.secret_key)


def _decode_startup_params(r: Reader) -> dict[str, str]:
    params: dict[str, str] = {}
    while True:
        key = r.cbytes()
        if not key:
            break
        if len(params) >= MAX_STARTUP_PARAMS:
            raise r.fail(f"more than {MAX_STARTUP_PARAMS} parameters")
        if len(key) > MAX_STARTUP_KEY:
            raise r.fail("parameter name too long")
        name = r.text(key)
        if name in params:
            # Which copy wins differs between implementations; the gateway must not vet one value
            # while the server applies the other.
            raise r.fail(f"duplicate parameter {name!r}")
        params[name] = r.cstr()
    r.finish()
    if not params.get("user"):
        raise r.fail('no "user" parameter')
    return params


def decode_startup(buf: bytes, pos: int, raw: bytes) -> FrontendMessage:
    """Decode an untagged startup-phase packet whose code word starts at ``buf[pos]``."""
    r = Reader(buf, pos, "startup", _TEXT)
    code = r.uint32()
    message: FrontendMessage
    if code == SSL_REQUEST_CODE:
        r.finish()
        message = SSLRequest()
    elif code == GSSENC_REQUEST_CODE:
        r.finish()
        message = GSSENCRequest()
    elif code == CANCEL_REQUEST_CODE:
        pid = r.int32()
        key = r.rest()
        if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
            raise r.fail(f"cancel key of {len(key)} bytes")
        message = CancelRequest(pid, key)
    elif code >> 16 == 3:
        # Any 3.x is valid on the wire: the server answers a newer minor with
        # NegotiateProtocolVersion. Which minors to accept is the relay's decision.
        message = StartupMessage(_decode_startup_params(r), code)
    else:
        raise ProtocolError(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}", sqlstate="0A000"
        )
    return with_raw(message, raw)


# --- tagged phase ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query(FrontendMessage):
    """Simple query: one string that may hold several statements."""

    msg_type: ClassVar[bytes] = b"Q"

    query: str

    def encode(self) -> bytes:
        return frame(b"Q", cstring(self.query))


@dataclass(frozen=True, slots=True)
class Parse(FrontendMessage):
    msg_type: ClassVar[bytes] = b"P"

    name: str
    query: str
    param_types: tuple[int, ...] = ()

    def encode(self) -> bytes:
        types = b"".join(U32.pack(oid) for oid in self.param_types)
        body = cstring(self.name) + cstring(self.query) + U16.pack(len(self.param_types)) + types
        return frame(b"P", body)


def _effective_format(formats: tuple[int, ...], index: int) -> int:
    # The protocol's rule: no codes = all text, one code = applies to all, else one per item.
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[index]


@dataclass(frozen=True, slots=True)
class Bind(FrontendMessage):
    msg_type: ClassVar[bytes] = b"B"

    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def param_format(self, index: int) -> int:
        """Format code (0 text, 1 binary) of parameter ``index``."""
        return _effective_format(self.param_formats, index)

    def result_format(self, column: int) -> int:
        """Format code the server will use for result ``column`` (IndexError if none was sent)."""
        return _effective_format(self.result_formats, column)

    def encode(self) -> bytes:
        body = b"".join(
            (
                cstring(self.portal),
                cstring(self.statement),
                format_codes(self.param_formats),
                U16.pack(len(self.params)),
                b"".join(length_prefixed(p) for p in self.params),
                format_codes(self.result_formats),
            )
        )
        return frame(b"B", body)


def _check_kind(kind: str) -> None:
    if kind != "S" and kind != "P":
        raise ValueError(f"kind must be 'S' (statement) or 'P' (portal), not {kind!r}")


@dataclass(frozen=True, slots=True)
class Describe(FrontendMessage):
    """Describe a prepared statement (kind 'S') or a portal (kind 'P')."""

    msg_type: ClassVar[bytes] = b"D"

    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        _check_kind(self.kind)

    def encode(self) -> bytes:
        return frame(b"D", self.kind.encode("ascii") + cstring(self.name))


@dataclass(frozen=True, slots=True)
class Execute(FrontendMessage):
    msg_type: ClassVar[bytes] = b"E"

    portal: str = ""
    max_rows: int = 0  # 0 (or negative, as the server reads it) = no limit

    def encode(self) -> bytes:
        return frame(b"E", cstring(self.portal) + I32.pack(self.max_rows))


@dataclass(frozen=True, slots=True)
class Close(FrontendMessage):
    """Close a prepared statement (kind 'S') or a portal (kind 'P')."""

    msg_type: ClassVar[bytes] = b"C"

    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        _check_kind(self.kind)

    def encode(self) -> bytes:
        return frame(b"C", self.kind.encode("ascii") + cstring(self.name))


@dataclass(frozen=True, slots=True)
class Sync(FrontendMessage):
    msg_type: ClassVar[bytes] = b"S"

    def encode(self) -> bytes:
        return b"S\x00\x00\x00\x04"


@dataclass(frozen=True, slots=True)
class Flush(FrontendMessage):
    msg_type: ClassVar[bytes] = b"H"

    def encode(self) -> bytes:
        return b"H\x00\x00\x00\x04"


@dataclass(frozen=True, slots=True)
class Terminate(FrontendMessage):
    msg_type: ClassVar[bytes] = b"X"

    def encode(self) -> bytes:
        return b"X\x00\x00\x00\x04"


@dataclass(frozen=True, slots=True)
class CopyFail(FrontendMessage):
    msg_type: ClassVar[bytes] = b"f"

    message: str

    def encode(self) -> bytes:
        return frame(b"f", cstring(self.message))


@dataclass(frozen=True, slots=True)
class FunctionCall(FrontendMessage):
    """Fast-path function call; decoded so the relay can deny it (it bypasses SQL parsing)."""

    msg_type: ClassVar[bytes] = b"F"

    function_oid: int
    arg_formats: tuple[int, ...] = ()
    args: tuple[bytes | None, ...] = ()
    result_format: int = 0

    def encode(self) -> bytes:
        body = b"".join(
            (
                U32.pack(self.function_oid),
                format_codes(self.arg_formats),
                U16.pack(len(self.args)),
                b"".join(length_prefixed(a) for a in self.args),
                self.result_format.to_bytes(2, "big", signed=True),
            )
        )
        return frame(b"F", body)


# --- decoding of tagged messages ------------------------------------------------------------------


def _decode_query(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "Query", _TEXT)
    query = r.cstr()
    r.finish()
    return with_raw(Query(query), raw)


def _decode_parse(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "Parse", _TEXT)
    name = r.cstr()
    query = r.cstr()
    n = r.count(4)
    types = tuple(r.uint32() for _ in range(n))
    r.finish()
    return with_raw(Parse(name, query, types), raw)


def _values(r: Reader, what: str, formats: tuple[int, ...]) -> tuple[bytes | None, ...]:
    n = r.count(4)
    if len(formats) > 1 and len(formats) != n:
        raise r.fail(f"{len(formats)} {what} format codes for {n} {what}s")
    return tuple(r.nullable() for _ in range(n))


def _decode_bind(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "Bind", _TEXT)
    portal = r.cstr()
    statement = r.cstr()
    param_formats = r.format_codes()
    params = _values(r, "parameter", param_formats)
    result_formats = r.format_codes()
    r.finish()
    return with_raw(Bind(portal, statement, param_formats, params, result_formats), raw)


def _kind_and_name(buf: bytes, pos: int, what: str) -> tuple[str, str]:
    r = Reader(buf, pos, what, _TEXT)
    kind = r.byte()
    if kind != b"S" and kind != b"P":
        raise r.fail(f"kind {kind!r} is neither 'S' nor 'P'")
    name = r.cstr()
    r.finish()
    return kind.decode("ascii"), name


def _decode_describe(buf: bytes, pos: int, raw: bytes) -> Message:
    return with_raw(Describe(*_kind_and_name(buf, pos, "Describe")), raw)


def _decode_close(buf: bytes, pos: int, raw: bytes) -> Message:
    return with_raw(Close(*_kind_and_name(buf, pos, "Close")), raw)


def _decode_execute(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "Execute", _TEXT)
    portal = r.cstr()
    max_rows = r.int32()
    r.finish()
    return with_raw(Execute(portal, max_rows), raw)


def _empty(cls: type[FrontendMessage]) -> Callable[[bytes, int, bytes], Message]:
    def decode(buf: bytes, pos: int, raw: bytes) -> Message:
        if len(buf) != pos:
            raise violation(f"invalid {cls.__name__} message: trailing data")
        return with_raw(cls(), raw)

    return decode


def _decode_copy_fail(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "CopyFail", _TEXT)
    message = r.cstr()
    r.finish()
    return with_raw(CopyFail(message), raw)


def _decode_function_call(buf: bytes, pos: int, raw: bytes) -> Message:
    r = Reader(buf, pos, "FunctionCall", _TEXT)
    oid = r.uint32()
    arg_formats = r.format_codes()
    args = _values(r, "argument", arg_formats)
    result_format = r.format_code()
    r.finish()
    return with_raw(FunctionCall(oid, arg_formats, args, result_format), raw)


DECODERS: dict[bytes, Callable[[bytes, int, bytes], Message]] = {
    b"p": decode_password,
    b"Q": _decode_query,
    b"P": _decode_parse,
    b"B": _decode_bind,
    b"D": _decode_describe,
    b"E": _decode_execute,
    b"C": _decode_close,
    b"S": _empty(Sync),
    b"H": _empty(Flush),
    b"X": _empty(Terminate),
    b"d": decode_copy_data,
    b"c": decode_copy_done,
    b"f": _decode_copy_fail,
    b"F": _decode_function_call,
}


def decode_frontend(tag: bytes, body: bytes | memoryview, raw: bytes | None = None) -> Message:
    """Decode one frontend message from its tag and body (as ``FrontendDecoder.next_raw`` gives).

    ``tag`` is ``b""`` for a startup-phase packet (then ``body`` starts with the code word). Pass
    ``raw`` when you have it: decoding then reads straight from it, without copying the body.
    """
    header = len(tag) + 4
    if raw is None or len(raw) != len(body) + header:
        raw = tag + U32.pack(len(body) + 4) + bytes(body)
    if tag == b"":
        return decode_startup(raw, 4, raw)
    decoder = DECODERS.get(tag)
    if decoder is None:
        raise violation(f"unknown frontend message type {tag!r}")
    return decoder(raw, 5, raw)


__all__ = [
    "AUTH_MESSAGE_LIMIT",
    "BODY_LIMITS",
    "CANCEL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "MAX_STARTUP_PACKET",
    "MAX_STARTUP_PARAMS",
    "PROTOCOL_3_0",
    "SSL_REQUEST_CODE",
    "Bind",
    "CancelRequest",
    "Close",
    "CopyData",
    "CopyDone",
    "CopyFail",
    "Describe",
    "Execute",
    "Flush",
    "FunctionCall",
    "GSSENCRequest",
    "Parse",
    "PasswordMessage",
    "Query",
    "SASLInitialResponse",
    "SASLResponse",
    "SSLRequest",
    "StartupMessage",
    "Sync",
    "Terminate",
    "decode_frontend",
    "decode_startup",
    "parse_password",
    "parse_sasl_initial",
    "parse_sasl_response",
]
