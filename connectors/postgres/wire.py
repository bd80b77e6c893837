"""Wire primitives shared by both directions of the PostgreSQL v3 protocol.

Everything here is sans-IO: bytes in, values out. The message classes of each direction live in
``frontend.py`` and ``backend.py``; the incremental decoders in ``codec.py``.

Integer conventions follow what the PostgreSQL server and libpq actually do, not only what the
"Message Formats" page says: 16-bit *counts* (columns, parameters, format codes) are read unsigned
(``pq_getmsgint(msg, 2)`` and libpq's ``pqGetInt(.., 2)`` both yield 0..65535), so the gateway reads
a message exactly as the peer behind it will. A "negative" count is therefore 65535 and fails the
"count exceeds the body" check instead of being silently clamped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from gateway.errors import ProtocolError

I16 = struct.Struct("!h")
U16 = struct.Struct("!H")
I32 = struct.Struct("!i")
U32 = struct.Struct("!I")
I32_PAIR = struct.Struct("!ii")

#: One-byte ``bytes`` for every byte value, so a tag can be taken from a bytearray without a slice.
BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))

#: The SQLSTATE for malformed protocol input (``protocol_violation``).
PROTOCOL_VIOLATION = "08P01"
#: The SQLSTATE PostgreSQL uses for text that is not valid in the client encoding.
BAD_ENCODING = "22021"

NULL_LENGTH = b"\xff\xff\xff\xff"


def violation(message: str) -> ProtocolError:
    """A protocol violation; the caller raises it (so tracebacks point at the check)."""
    return ProtocolError(message, sqlstate=PROTOCOL_VIOLATION)


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every PostgreSQL message.

    ``raw`` holds the exact wire bytes a message was decoded from (tag, length and body), so the
    relay can forward unmodified messages as they came. It is not an ``__init__`` argument on
    purpose: ``dataclasses.replace(row, values=masked)`` yields a message whose ``raw`` is empty, so
    a changed message can never be forwarded with its original (unmasked) bytes by accident.
    """

    #: The one-byte message type ("tag"); ``b""`` for the untagged startup-phase packets.
    msg_type: ClassVar[bytes] = b""

    raw: bytes = field(default=b"", init=False, repr=False, compare=False)

    def encode(self) -> bytes:
        """Canonical wire bytes of this message (tag, length, body)."""
        raise NotImplementedError

    def to_wire(self) -> bytes:
        """The bytes to send: the original bytes if decoded and unchanged, else ``encode()``."""
        return self.raw or self.encode()


class FrontendMessage(Message):
    """A message a client (frontend) sends to the server."""

    __slots__ = ()


class BackendMessage(Message):
    """A message the server (backend) sends to a client."""

    __slots__ = ()


M = TypeVar("M", bound=Message)

# The slot descriptor of ``raw``: setting through it skips object.__setattr__'s frozen-dataclass
# detour and is measurably faster on the per-row path.
set_raw: Callable[[Message, bytes], None] = Message.__dict__["raw"].__set__


def with_raw(message: M, raw: bytes) -> M:
    """Attach the wire bytes a message was decoded from (``raw`` is frozen and not in __init__)."""
    set_raw(message, raw)
    return message


# --- encoding -------------------------------------------------------------------------------------


def frame(tag: bytes, body: bytes) -> bytes:
    """Tag + int32 length (which counts itself) + body."""
    return tag + U32.pack(len(body) + 4) + body


def cstring(value: str, errors: str = "strict") -> bytes:
    """A NUL-terminated UTF-8 string. An embedded NUL would shift every later field: refuse it."""
    data = value.encode("utf-8", errors)
    if b"\0" in data:
        raise ValueError("a protocol string cannot contain NUL")
    return data + b"\0"


def cbytes(value: bytes) -> bytes:
    if b"\0" in value:
        raise ValueError("a protocol string cannot contain NUL")
    return value + b"\0"


def length_prefixed(value: bytes | None) -> bytes:
    """int32 length + bytes, or length -1 for NULL (Bind parameters, DataRow values)."""
    if value is None:
        return NULL_LENGTH
    return I32.pack(len(value)) + value


def format_codes(codes: tuple[int, ...]) -> bytes:
    return U16.pack(len(codes)) + b"".join(I16.pack(c) for c in codes)


# --- decoding -------------------------------------------------------------------------------------


class Reader:
    """Reads the fields of one message body held in ``buf[pos:]``.

    Every read is bounds-checked against the end of the buffer and raises ProtocolError, never
    IndexError/struct.error; ``finish()`` rejects trailing junk. The buffer always ends where the
    message ends (the decoder hands over exactly one message), so no separate end offset is kept.
    """

    __slots__ = ("buf", "end", "errors", "pos", "what")

    def __init__(self, buf: bytes, pos: int, what: str, errors: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.what = what
        # "strict" for client text (refuse what we cannot vet), "surrogateescape" for the server's
        # text (never fail on a localised message, and round-trip it losslessly).
        self.errors = errors

    def fail(self, problem: str) -> ProtocolError:
        return violation(f"invalid {self.what} message: {problem}")

    def remaining(self) -> int:
        return self.end - self.pos

    def _need(self, size: int) -> int:
        pos = self.pos
        if pos + size > self.end:
            raise self.fail("truncated")
        self.pos = pos + size
        return pos

    def int16(self) -> int:
        value: int = I16.unpack_from(self.buf, self._need(2))[0]
        return value

    def uint16(self) -> int:
        value: int = U16.unpack_from(self.buf, self._need(2))[0]
        return value

    def int32(self) -> int:
        value: int = I32.unpack_from(self.buf, self._need(4))[0]
        return value

    def uint32(self) -> int:
        value: int = U32.unpack_from(self.buf, self._need(4))[0]
        return value

    def byte(self) -> bytes:
        return BYTE[self.buf[self._need(1)]]

    def take(self, size: int) -> bytes:
        start = self._need(size)
        return self.buf[start : start + size]

    def rest(self) -> bytes:
        start = self.pos
        self.pos = self.end
        return self.buf[start:]

    def cbytes(self) -> bytes:
        start = self.pos
        nul = self.buf.find(b"\0", start)
        if nul < 0:
            raise self.fail("string without terminating NUL")
        self.pos = nul + 1
        return self.buf[start:nul]

    def text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8", self.errors)
        except UnicodeDecodeError:
            raise ProtocolError(
                f"invalid {self.what} message: text is not valid UTF-8", sqlstate=BAD_ENCODING
            ) from None

    def cstr(self) -> str:
        return self.text(self.cbytes())

    def count(self, item_size: int) -> int:
        """A uint16 count of items at least ``item_size`` bytes long, checked against the body."""
        n = self.uint16()
        if n * item_size > self.end - self.pos:
            raise self.fail(f"count {n} exceeds the message body")
        return n

    def format_code(self) -> int:
        code = self.int16()
        if code != 0 and code != 1:
            # Only text (0) and binary (1) exist; anything else would leave the masking layer
            # guessing how a result column is encoded (HOSTILE H.48).
            raise self.fail(f"unsupported format code {code}")
        return code

    def format_codes(self) -> tuple[int, ...]:
        n = self.count(2)
        return tuple(self.format_code() for _ in range(n))

    def nullable(self) -> bytes | None:
        """int32 length + bytes; -1 is NULL, any other negative length is malformed."""
        size = self.int32()
        if size < 0:
            if size == -1:
                return None
            raise self.fail(f"negative value length {size}")
        return self.take(size)

    def finish(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} bytes of trailing data")


# --- messages both directions send ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyData(FrontendMessage, BackendMessage):
    """A chunk of COPY data stream (either direction)."""

    msg_type: ClassVar[bytes] = b"d"

    data: bytes

    def encode(self) -> bytes:
        return frame(b"d", self.data)


@dataclass(frozen=True, slots=True)
class CopyDone(FrontendMessage, BackendMessage):
    """End of a COPY data stream (either direction)."""

    msg_type: ClassVar[bytes] = b"c"

    def encode(self) -> bytes:
        return b"c\x00\x00\x00\x04"


def decode_copy_data(buf: bytes, pos: int, raw: bytes) -> Message:
    return with_raw(CopyData(buf[pos:]), raw)


def decode_copy_done(buf: bytes, pos: int, raw: bytes) -> Message:
    if len(buf) != pos:
        raise violation("invalid CopyDone message: trailing data")
    return with_raw(CopyDone(), raw)
