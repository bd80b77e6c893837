"""Binary-format values whose bytes PostgreSQL converts between client and server encodings.

PostgreSQL converts a binary value only where the type's send/receive function does
(``pq_sendtext``/``pq_getmsgtext``): text-like types carry their text in the client encoding on
the wire, everything else (integers, bytea, uuid, ...) is the same in every encoding. Arrays and
records name their element/field types in the value itself, so they are converted recursively.

Types the gateway cannot follow are refused rather than passed on half-converted: ``xml`` (its
binary form declares its own encoding), ``tsvector``/``tsquery`` (lexemes inside a structure).
Types it does not know at all (enums, domains, extension types such as citext: OIDs differ per
database) pass unchanged; the relay may add their OIDs to ``text_oids``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from .encoding import FEATURE_NOT_SUPPORTED, TranscodeError

#: Types whose whole binary value is text (text, varchar, bpchar, name, json, unknown, cstring).
TEXT_OIDS = frozenset({25, 1043, 1042, 19, 114, 705, 2275})
#: A version byte, then text (jsonb, jsonpath).
VERSIONED_TEXT_OIDS = frozenset({3802, 4072})
RECORD_OIDS = frozenset({2249})
#: Arrays (element OID inside the value): _text _varchar _bpchar _name _json _jsonb _jsonpath
#: _cstring _record; other arrays are converted too when their element type is text-like.
ARRAY_OIDS = frozenset({1009, 1015, 1014, 1003, 199, 3807, 4073, 1263, 2287})
#: Binary forms the gateway refuses to convert (see the module docstring).
REFUSED_OIDS = frozenset({142, 3614, 3615, 143, 3643, 3645})

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
#: Nesting bound for arrays of records of arrays...: far above any real value, below recursion.
_MAX_DEPTH = 16

Convert = Callable[[bytes], bytes]


def _malformed(what: str) -> TranscodeError:
    # The server would answer "insufficient data left in message" (08P01) for the same bytes.
    return TranscodeError(f"malformed binary {what} value", sqlstate="08P01")


def needs_conversion(oid: int, text_oids: frozenset[int] = frozenset()) -> bool:
    """Whether a binary value of type ``oid`` may hold converted text."""
    return (
        oid in TEXT_OIDS
        or oid in text_oids
        or oid in VERSIONED_TEXT_OIDS
        or oid in RECORD_OIDS
        or oid in ARRAY_OIDS
        or oid in REFUSED_OIDS
    )


def convert_binary(
    value: bytes,
    oid: int,
    convert: Convert,
    encoding: str,
    text_oids: frozenset[int] = frozenset(),
    depth: int = 0,
) -> bytes:
    """Convert one binary value of type ``oid`` with ``convert`` (to_server or to_client).

    Returns ``value`` itself when nothing changes (plain ASCII text, or a type without text).
    """
    if oid in TEXT_OIDS or oid in text_oids:
        return convert(value)
    if oid in VERSIONED_TEXT_OIDS:
        if not value:
            raise _malformed("jsonb")
        body = value[1:]
        new = convert(body)
        return value if new is body else value[:1] + new
    if value.isascii():
        return value  # no text byte to convert; arrays/records of ASCII text stay as they are
    if oid in REFUSED_OIDS:
        raise TranscodeError(
            f"binary-format values of type {oid} cannot be converted to or from encoding "
            f'"{encoding}" by the gateway',
            sqlstate=FEATURE_NOT_SUPPORTED,
            detail="Request this column or parameter in text format.",
        )
    if depth >= _MAX_DEPTH:
        raise _malformed("nested")
    if oid in ARRAY_OIDS:
        return _convert_array(value, convert, encoding, text_oids, depth)
    if oid in RECORD_OIDS:
        return _convert_record(value, convert, encoding, text_oids, depth)
    return value


def _convert_array(
    value: bytes, convert: Convert, encoding: str, text_oids: frozenset[int], depth: int
) -> bytes:
    # ndim, has-nulls flag, element OID, then (size, lower bound) per dimension, then elements.
    if len(value) < 12:
        raise _malformed("array")
    ndim = _I32.unpack_from(value, 0)[0]
    element = _U32.unpack_from(value, 8)[0]
    if not 0 <= ndim <= 6 or len(value) < 12 + 8 * ndim:
        raise _malformed("array")
    if not needs_conversion(element, text_oids):
        return value
    pos = 12 + 8 * ndim
    count = 1 if ndim else 0
    for d in range(ndim):
        count *= max(_I32.unpack_from(value, 12 + 8 * d)[0], 0)
    parts = [value[:pos]]
    pos = _convert_items(
        value,
        pos,
        count,
        lambda _i: element,
        parts,
        convert,
        encoding,
        text_oids,
        depth,
        with_oids=False,
    )
    if pos != len(value):
        raise _malformed("array")
    out = b"".join(parts)
    return value if out == value else out


def _convert_record(
    value: bytes, convert: Convert, encoding: str, text_oids: frozenset[int], depth: int
) -> bytes:
    # ncolumns, then per column: type OID, length (-1 NULL), bytes.
    if len(value) < 4:
        raise _malformed("record")
    count = _I32.unpack_from(value, 0)[0]
    if count < 0 or count * 8 > len(value) - 4:
        raise _malformed("record")
    parts = [value[:4]]
    pos = _convert_items(
        value, 4, count, lambda _i: 0, parts, convert, encoding, text_oids, depth, with_oids=True
    )
    if pos != len(value):
        raise _malformed("record")
    out = b"".join(parts)
    return value if out == value else out


def _convert_items(
    value: bytes,
    pos: int,
    count: int,
    oid_of: Callable[[int], int],
    parts: list[bytes],
    convert: Convert,
    encoding: str,
    text_oids: frozenset[int],
    depth: int,
    *,
    with_oids: bool,
) -> int:
    end = len(value)
    for index in range(count):
        oid = oid_of(index)
        if with_oids:
            if pos + 4 > end:
                raise _malformed("record")
            oid = _U32.unpack_from(value, pos)[0]
            parts.append(value[pos : pos + 4])
            pos += 4
        if pos + 4 > end:
            raise _malformed("array")
        size = _I32.unpack_from(value, pos)[0]
        pos += 4
        if size == -1:
            parts.append(b"\xff\xff\xff\xff")
            continue
        if size < 0 or pos + size > end:
            raise _malformed("array")
        item = value[pos : pos + size]
        pos += size
        new = convert_binary(item, oid, convert, encoding, text_oids, depth + 1)
        parts.append(_I32.pack(len(new)) + new)
    return pos
