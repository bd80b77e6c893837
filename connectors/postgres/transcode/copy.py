"""COPY data streams converted between a client encoding and UTF-8.

COPY data is a byte stream cut into CopyData messages anywhere, even inside a character, so a
``CopyTranscoder`` keeps the incomplete tail of one message for the next (at most three bytes for
text; for binary COPY, the incomplete tuple, bounded by ``max_message_size``). ``finish()`` at
CopyDone raises what PostgreSQL raises for a stream that ends inside a character.

Text and CSV data is converted whole: delimiters, quotes, backslashes and newlines are ASCII and
stay where they are. Binary COPY is converted field by field for text-like column types
(PostgreSQL's typsend/typreceive convert those), which the relay must supply: without them a
binary COPY in a non-UTF8 session is refused. A COPY with its own ``ENCODING`` option is not
converted by PostgreSQL with the client encoding, so the relay must not use a transcoder for it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..codec import DEFAULT_MAX_MESSAGE_SIZE
from ..wire import U32
from .encoding import (
    FEATURE_NOT_SUPPORTED,
    PROGRAM_LIMIT_EXCEEDED,
    ClientEncoding,
    TranscodeError,
    invalid_sequence,
)
from .values import convert_binary, needs_conversion

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(_SIGNATURE) + 8
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


class CopyTranscoder:
    """Converts one COPY stream (COPY FROM STDIN: ``to_server``; COPY TO STDOUT: not)."""

    __slots__ = (
        "_binary",
        "_columns",
        "_encoding",
        "_header_done",
        "_max",
        "_pending",
        "_text_oids",
        "_to_server",
    )

    def __init__(
        self,
        encoding: ClientEncoding,
        *,
        to_server: bool,
        binary: bool = False,
        column_types: Sequence[int] | None = None,
        text_oids: frozenset[int] = frozenset(),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if binary and column_types is None and not encoding.is_noop:
            raise TranscodeError(
                f'binary COPY cannot be converted to or from encoding "{encoding.name}" by the '
                "gateway without the column types",
                sqlstate=FEATURE_NOT_SUPPORTED,
                detail="Use text or CSV format, or client_encoding UTF8.",
            )
        self._encoding = encoding
        self._to_server = to_server
        self._binary = binary
        self._columns = tuple(column_types or ())
        self._text_oids = text_oids
        self._max = max_message_size
        self._pending = b""
        self._header_done = False

    def copy_data(self, raw: bytes) -> bytes | None:
        """One CopyData ('d') message in; the CopyData to forward, or None if nothing is complete.

        Returns ``raw`` itself when the encoding is a no-op or nothing changed.
        """
        if self._encoding.is_noop:
            return raw
        data = raw[5:]
        if self._binary:
            out = self._binary_data(data)
        else:
            out = self._text_data(data)
        if out is None:
            return None
        if out is data and not self._pending:
            return raw
        if len(out) + 4 > self._max:
            raise TranscodeError(
                f"COPY data would be {len(out) + 4} bytes after encoding conversion, over the "
                f"limit of {self._max}",
                sqlstate=PROGRAM_LIMIT_EXCEEDED,
            )
        return b"d" + U32.pack(len(out) + 4) + out

    def finish(self) -> None:
        """At CopyDone: refuse a stream that stopped inside a character or tuple."""
        if not self._pending:
            return
        if self._binary:
            raise TranscodeError("COPY data ended inside a binary tuple", sqlstate="22P04")
        source = self._encoding.name if self._to_server else "UTF8"
        raise invalid_sequence(source, self._pending, 0, len(self._pending))

    # text and CSV

    def _text_data(self, data: bytes) -> bytes | None:
        encoding = self._encoding
        pending = self._pending + data if self._pending else data
        cut = encoding.complete_prefix(pending, to_server=self._to_server)
        self._pending = pending[cut:]
        if cut == 0:
            return None
        whole = pending if cut == len(pending) else pending[:cut]
        out = encoding.to_server(whole) if self._to_server else encoding.to_client(whole)
        return data if out is whole and whole is data else out

    # binary

    def _binary_data(self, data: bytes) -> bytes | None:
        buf = self._pending + data
        if len(buf) > self._max:
            raise TranscodeError(
                f"a binary COPY tuple longer than {self._max} bytes cannot be converted",
                sqlstate=PROGRAM_LIMIT_EXCEEDED,
            )
        parts: list[bytes] = []
        pos = 0
        if not self._header_done:
            if len(buf) < _HEADER:
                self._pending = buf
                return None
            if buf[: len(_SIGNATURE)] != _SIGNATURE:
                raise TranscodeError("COPY file signature not recognized", sqlstate="22P04")
            extension = _I32.unpack_from(buf, len(_SIGNATURE) + 4)[0]
            if extension < 0:
                raise TranscodeError("invalid COPY file header (missing length)", sqlstate="22P04")
            if len(buf) < _HEADER + extension:
                self._pending = buf
                return None
            pos = _HEADER + extension
            parts.append(buf[:pos])
            self._header_done = True
        while True:
            end = self._tuple(buf, pos, parts)
            if end is None:
                break
            pos = end
        self._pending = buf[pos:]
        if not parts:
            return None
        return b"".join(parts)

    def _tuple(self, buf: bytes, pos: int, parts: list[bytes]) -> int | None:
        """Convert the tuple at ``pos`` into ``parts``; its end, or None if it is incomplete."""
        if pos + 2 > len(buf):
            return None
        count = _I16.unpack_from(buf, pos)[0]
        if count == -1:
            parts.append(buf[pos:])  # the trailer; anything after it PostgreSQL ignores
            return len(buf)
        if count != len(self._columns):
            raise TranscodeError(
                f"row field count is {count}, expected {len(self._columns)}", sqlstate="22P04"
            )
        fields = [buf[pos : pos + 2]]
        at = pos + 2
        convert = self._encoding.to_server if self._to_server else self._encoding.to_client
        for oid in self._columns:
            if at + 4 > len(buf):
                return None
            size = _I32.unpack_from(buf, at)[0]
            if size == -1:
                fields.append(buf[at : at + 4])
                at += 4
                continue
            if size < 0:
                raise TranscodeError("invalid field size", sqlstate="22P04")
            if at + 4 + size > len(buf):
                return None
            value = buf[at + 4 : at + 4 + size]
            if needs_conversion(oid, self._text_oids):
                value = convert_binary(value, oid, convert, self._encoding.name, self._text_oids)
            fields.append(_I32.pack(len(value)) + value)
            at += 4 + size
        parts.append(b"".join(fields))
        return at
