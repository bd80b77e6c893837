"""Incremental, sans-IO decoders for both directions of the PostgreSQL v3 protocol (h11-style).

Usage (the relay owns the socket)::

    decoder.receive_data(chunk)
    while (message := decoder.next_message()) is not None:
        ...

``next_message()`` returns None when it needs more bytes. A truncated message simply waits; only
a violated bound or malformed content raises ``ProtocolError`` (SQLSTATE 08P01 unless said
otherwise), and from then on the decoder is broken: every later call raises the same error, so a
caller cannot resynchronise on attacker-chosen bytes.

Bounds are checked on the 5-byte header, before the body is buffered (HOSTILE C.15, J.58): a length
below 4, negative, above ``max_message_size`` or above what the server itself accepts for that
message type is refused, and so is an unknown type byte. As long as the caller drains the decoder
after each ``receive_data`` (the loop above), it holds at most one incomplete message of at most
``max_message_size`` bytes plus the latest chunk; ``receive_data`` refuses to grow beyond that.

Fast path: ``next_raw()`` frames without decoding and returns ``(tag, body, raw)``; forward ``raw``
untouched, or call ``decode_backend(tag, body, raw)`` / ``decode_frontend(...)`` for the few message
types the relay must read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from gateway.errors import ProtocolError

from . import backend, frontend
from .wire import BYTE, I32, U32, Message, violation

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
_MIN_MAX_MESSAGE_SIZE = 1024
#: Compact the buffer only when the consumed prefix is large and at least half of it, so bytes are
#: moved O(1) times on average instead of once per message.
_COMPACT_AT = 64 * 1024
#: A partial message up to this size is joined with the next chunk into a new bytes object; a
#: larger one moves to an in-place bytearray, so a message trickled in byte by byte costs linear
#: rather than quadratic copying.
_JOIN_LIMIT = 8 * 1024

_unpack_i32 = I32.unpack_from
_unpack_u32 = U32.unpack_from

RawMessage = tuple[bytes, bytes, bytes]  # (tag, body, raw)
_DecodeFn = Callable[[bytes, int, bytes], Message]


def _length_limits(limits: dict[bytes, int | None], max_message_size: int) -> list[int]:
    """Per type byte, the largest length word accepted; -1 marks a type that does not exist."""
    table = [-1] * 256
    for tag, body_limit in limits.items():
        table[tag[0]] = (
            max_message_size if body_limit is None else min(body_limit + 4, max_message_size)
        )
    return table


class _Decoder:
    __slots__ = ("_buf", "_decoders", "_error", "_limits", "_max", "_pos", "_side")

    def __init__(
        self,
        max_message_size: int,
        limits: dict[bytes, int | None],
        decoders: dict[bytes, _DecodeFn],
        side: str,
    ) -> None:
        if max_message_size < _MIN_MAX_MESSAGE_SIZE:
            raise ValueError(f"max_message_size must be at least {_MIN_MAX_MESSAGE_SIZE}")
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._max = max_message_size
        self._limits = _length_limits(limits, max_message_size)
        self._error: ProtocolError | None = None
        self._decoders = decoders
        self._side = side

    # -- buffer ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the peer. ``b""`` is a no-op (EOF is the caller's business)."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        buf = self._buf
        pos = self._pos
        left = len(buf) - pos
        if left == 0:
            # Drained: adopt the chunk itself (no copy for bytes), so messages are cut out of an
            # immutable bytes object, which is about twice as fast as copying out of a bytearray.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if left > self._max + 1:
            # More than one maximum-size message is waiting: the caller stopped draining.
            self._fail(f"more than {self._max} bytes buffered without a complete message")
        if isinstance(buf, bytes):
            if left <= _JOIN_LIMIT:
                # A small partial message: one copy of it plus the chunk, linear in the input.
                self._buf = buf[pos:] + data
                self._pos = 0
                return
            # A large message arriving piecewise: append in place, never re-copy what is held.
            grow = bytearray(memoryview(buf)[pos:])
            self._pos = 0
        else:
            grow = buf
            if pos >= _COMPACT_AT and pos * 2 >= len(grow):
                del grow[:pos]
                self._pos = 0
        grow += data
        self._buf = grow

    def pending_bytes(self) -> int:
        """How many received bytes are not yet consumed by a returned message."""
        return len(self._buf) - self._pos

    def take_pending(self) -> bytes:
        """Remove and return the unconsumed bytes (e.g. to hand them to a TLS layer)."""
        data = bytes(self._buf[self._pos :])
        self._buf = b""
        self._pos = 0
        return data

    @property
    def broken(self) -> bool:
        """True once a ProtocolError was raised; the stream cannot be trusted any more."""
        return self._error is not None

    def _fail(self, message: str) -> NoReturn:
        self._error = violation(message)
        raise self._error

    # -- framing -----------------------------------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        """The raw bytes of the next tagged message, or None if it is incomplete."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 5:
            if avail and self._limits[buf[pos]] < 0:
                self._unknown(buf[pos])
            return None
        tag = buf[pos]
        length = _unpack_i32(buf, pos + 1)[0]
        if not 4 <= length <= self._limits[tag]:
            self._bad_length(tag, length)
        end = pos + 1 + length
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[pos:end])  # no copy beyond the slice when buf is bytes

    def _unknown(self, tag: int) -> NoReturn:
        self._fail(f"unknown {self._side} message type {BYTE[tag]!r}")

    def _bad_length(self, tag: int, length: int) -> NoReturn:
        limit = self._limits[tag]
        if limit < 0:
            self._unknown(tag)
        if length < 0:
            problem = "is negative"
        elif length < 4:
            problem = "is below 4"
        else:
            problem = f"exceeds the limit of {limit} bytes"
        self._fail(f"{self._side} message {BYTE[tag]!r}: length {length} {problem}")

    def _decoded(self, decode: _DecodeFn, raw: bytes, pos: int) -> Message:
        try:
            return decode(raw, pos, raw)
        except ProtocolError as error:
            self._error = error
            raise
        except (ValueError, IndexError, OverflowError) as error:
            # A decoder bug must still end in a clean protocol error, never a crashed handler.
            # (The fuzz tests assert this path is never taken: such errors carry a __cause__.)
            self._error = violation(f"malformed {self._side} message")
            raise self._error from error


class FrontendDecoder(_Decoder):
    """Decodes what a client sends: untagged startup-phase packets, then tagged messages.

    The decoder starts in the startup phase (``length + code``: StartupMessage, SSLRequest,
    GSSENCRequest, CancelRequest). Returning a StartupMessage switches it to tagged messages (no
    untagged packet can follow one); ``startup_done()`` does the same explicitly and is idempotent.
    After SSLRequest/GSSENCRequest the phase does not change: the client must wait for the
    one-byte answer, so ``pending_bytes() > 0`` at that point means bytes were pipelined before
    the TLS handshake (HOSTILE A.1, CVE-2021-23214) and the caller must refuse them.
    """

    __slots__ = ("_max_startup", "_startup")

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        *,
        max_startup_size: int = frontend.MAX_STARTUP_PACKET,
        startup: bool = True,
    ) -> None:
        super().__init__(max_message_size, frontend.BODY_LIMITS, frontend.DECODERS, "frontend")
        self._startup = startup
        self._max_startup = max_startup_size

    @property
    def in_startup(self) -> bool:
        return self._startup

    def startup_done(self) -> None:
        """Switch to tagged messages (after an accepted StartupMessage)."""
        self._startup = False

    def _next_startup_frame(self) -> bytes | None:
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < 4:
            return None
        length = _unpack_i32(buf, pos)[0]
        if not 8 <= length <= self._max_startup:
            self._fail(f"invalid startup packet length {length}")
        end = pos + length
        if end > len(buf):
            return None
        self._pos = end
        raw = bytes(buf[pos:end])
        if _unpack_u32(raw, 4)[0] >> 16 == 3:
            self._startup = False
        return raw

    def next_raw(self) -> RawMessage | None:
        """Frame the next message without decoding it: ``(tag, body, raw)`` or None.

        ``tag`` is ``b""`` for a startup-phase packet (its body then starts with the code word).
        The type byte and length are already validated; the body is not.
        """
        if self._startup:
            raw = self._next_startup_frame()
            return None if raw is None else (b"", raw[4:], raw)
        raw = self._next_frame()
        if raw is None:
            return None
        return BYTE[raw[0]], raw[5:], raw

    def next_message(self) -> Message | None:
        """The next fully decoded and validated message, or None if more bytes are needed."""
        if self._startup:
            raw = self._next_startup_frame()
            if raw is None:
                return None
            return self._decoded(frontend.decode_startup, raw, 4)
        raw = self._next_frame()
        if raw is None:
            return None
        return self._decoded(self._decoders[BYTE[raw[0]]], raw, 5)


class BackendDecoder(_Decoder):
    """Decodes what a server sends (always tagged messages).

    Before TLS, call ``read_ssl_response()`` for the one-byte answer to SSLRequest/GSSENCRequest.
    After b"S", ``pending_bytes() > 0`` means the server (or a MITM) sent plaintext after the
    answer, before the TLS handshake: the caller must abort (HOSTILE A.2, CVE-2021-23222).
    """

    __slots__ = ()

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        super().__init__(max_message_size, backend.BODY_LIMITS, backend.DECODERS, "backend")

    def read_ssl_response(self) -> bytes | None:
        """Consume the one-byte answer to SSLRequest/GSSENCRequest, or None if none arrived yet.

        Returns b"S"/b"G" (go ahead with TLS/GSS), b"N" (refused) or b"E" (the start of an
        ErrorResponse from a server that did not understand the request: the caller must not
        show its text, since it arrived unauthenticated). Anything else is a ProtocolError.
        """
        if self._error is not None:
            raise self._error
        if self._pos >= len(self._buf):
            return None
        answer = BYTE[self._buf[self._pos]]
        if answer not in (b"S", b"N", b"G", b"E"):
            self._fail(f"invalid answer {answer!r} to an encryption request")
        self._pos += 1
        return answer

    def next_raw(self) -> RawMessage | None:
        """Frame the next message without decoding it: ``(tag, body, raw)`` or None.

        The type byte and length are already validated; the body is not.
        """
        raw = self._next_frame()
        if raw is None:
            return None
        return BYTE[raw[0]], raw[5:], raw

    def next_message(self) -> Message | None:
        """The next fully decoded and validated message, or None if more bytes are needed."""
        raw = self._next_frame()
        if raw is None:
            return None
        return self._decoded(self._decoders[BYTE[raw[0]]], raw, 5)


__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "BackendDecoder", "FrontendDecoder", "RawMessage"]
