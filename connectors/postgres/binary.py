"""Reading PostgreSQL's binary value formats well enough to mask them (see values.py).

Numbers are rendered as the text the server would print, so they are scanned like any text
value; containers (array_send, record_send, range_send, multirange_send) are split into their
elements so each is masked by its own type, then put back together. Every parser here returns
None for malformed input, never raises: the caller NULLs what it cannot read (fail closed,
HOSTILE H.48).

``TEXT_LIKE``/``NUMERIC``/``HARMLESS`` are kept for the relay's bound-parameter rendering.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

TEXT_LIKE = frozenset(
    {
        18,  # char
        19,  # name
        25,  # text
        114,  # json
        142,  # xml
        705,  # unknown
        1042,  # bpchar
        1043,  # varchar
        3802,  # jsonb (a version byte, then text)
        17,  # bytea: scanned as UTF-8; undecodable content is NULLed
    }
)
NUMERIC = frozenset({20, 21, 23, 26, 700, 701, 1700})  # int8 int2 int4 oid float4 float8 numeric
#: Fixed-layout types whose values cannot spell a 13-digit number, an e-mail or a secret.
HARMLESS = frozenset(
    {
        16,  # bool
        1082,  # date
        1083,  # time
        1114,  # timestamp
        1184,  # timestamptz
        1186,  # interval
        1266,  # timetz
        2950,  # uuid
        869,  # inet
        650,  # cidr
        829,  # macaddr
        3220,  # pg_lsn
        28,  # xid
        5069,  # xid8? (kept harmless: a transaction id)
    }
)

_NUMERIC_HEADER = struct.Struct("!hhHH")
_NUMERIC_NAN, _NUMERIC_NEG, _NUMERIC_PINF, _NUMERIC_NINF = 0xC000, 0x4000, 0xD000, 0xF000
_MAX_NUMERIC_DIGITS = 32767  # base-10000 digits: the most an int16 count can say


def numeric_text(value: bytes) -> str | None:
    """Render a binary ``numeric`` as its decimal text, or None when malformed."""
    if len(value) < 8:
        return None
    ndigits, weight, sign, dscale = _NUMERIC_HEADER.unpack_from(value)
    if sign in (_NUMERIC_NAN, _NUMERIC_PINF, _NUMERIC_NINF):
        return {_NUMERIC_NAN: "NaN", _NUMERIC_PINF: "Infinity", _NUMERIC_NINF: "-Infinity"}[sign]
    if (
        ndigits > _MAX_NUMERIC_DIGITS
        or len(value) != 8 + 2 * ndigits
        or sign not in (0, _NUMERIC_NEG)
    ):
        return None
    digits = struct.unpack_from(f"!{ndigits}H", value, 8)
    if any(d > 9999 for d in digits):
        return None
    text = "".join(f"{d:04d}" for d in digits) or "0"
    # The first group holds 10000^weight; place the decimal point after it.
    point = (weight + 1) * 4
    if point <= 0:
        text = "0" * (-point) + text
        point = 0
    elif point > len(text):
        text = text + "0" * (point - len(text))
    integer, fraction = text[:point].lstrip("0") or "0", text[point:]
    fraction = (fraction + "0" * dscale)[:dscale] if dscale else ""
    rendered = f"{integer}.{fraction}" if fraction else integer
    return ("-" if sign == _NUMERIC_NEG else "") + rendered


def number_text(type_oid: int, value: bytes) -> str | None:
    """The text form of a binary number (None when malformed)."""
    try:
        if type_oid == 20 and len(value) == 8:
            return str(int.from_bytes(value, "big", signed=True))
        if type_oid == 23 and len(value) == 4:
            return str(int.from_bytes(value, "big", signed=True))
        if type_oid == 21 and len(value) == 2:
            return str(int.from_bytes(value, "big", signed=True))
        if type_oid == 26 and len(value) == 4:
            return str(int.from_bytes(value, "big"))
        if type_oid == 701 and len(value) == 8:
            return float_text(struct.unpack("!d", value)[0])
        if type_oid == 700 and len(value) == 4:
            return float_text(struct.unpack("!f", value)[0], single=True)
        if type_oid == 1700:
            return numeric_text(value)
        if type_oid == 790 and len(value) == 8:  # money: int8 in cents (lc_monetary's 2 digits)
            cents = int.from_bytes(value, "big", signed=True)
            sign = "-" if cents < 0 else ""
            whole, frac = divmod(abs(cents), 100)
            return f"{sign}{whole}.{frac:02d}"
    except (ValueError, ArithmeticError):
        return None
    return None


# --- containers: array_send, record_send, range_send, multirange_send --------------------------
#
# Parsers return None for anything malformed (the caller NULLs the value: fail closed) and never
# raise; builders produce what the matching *recv function accepts.

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_ARRAY_HEADER = struct.Struct("!iiI")  # ndim, flags (has nulls), element type
_DIM = struct.Struct("!ii")  # size, lower bound
#: PostgreSQL's MAXDIM.
MAX_ARRAY_DIMS = 6
#: Elements or fields in one value: PostgreSQL caps arrays at MaxArraySize (~134 million); every
#: element costs at least its 4-byte length, so a count past len(value) / 4 is malformed anyway.
MAX_ELEMENTS = 1 << 27

Element = bytes | None


@dataclass(frozen=True, slots=True)
class BinaryArray:
    """A decoded array_send value: dimensions (size, lower bound) and elements in order."""

    elem_oid: int
    dims: tuple[tuple[int, int], ...]
    elements: tuple[Element, ...]


def _length_prefixed(value: bytes, pos: int) -> tuple[Element, int] | None:
    """One int32-length-prefixed item (-1 = NULL) at ``pos``: (item, next position)."""
    if pos + 4 > len(value):
        return None
    (size,) = _I32.unpack_from(value, pos)
    pos += 4
    if size == -1:
        return None, pos
    if size < 0 or pos + size > len(value):
        return None
    return value[pos : pos + size], pos + size


def parse_array(value: bytes) -> BinaryArray | None:
    """Decode array_send output; None when malformed."""
    if len(value) < _ARRAY_HEADER.size:
        return None
    ndim, flags, elem_oid = _ARRAY_HEADER.unpack_from(value)
    if not 0 <= ndim <= MAX_ARRAY_DIMS or flags not in (0, 1):
        return None
    pos = _ARRAY_HEADER.size
    if pos + ndim * _DIM.size > len(value):
        return None
    dims = []
    count = 1 if ndim else 0
    for _ in range(ndim):
        size, lower = _DIM.unpack_from(value, pos)
        pos += _DIM.size
        if size < 0:
            return None
        dims.append((size, lower))
        count *= size
        if count > MAX_ELEMENTS or count * 4 > len(value) - pos:
            return None
    elements: list[Element] = []
    for _ in range(count):
        item = _length_prefixed(value, pos)
        if item is None:
            return None
        element, pos = item
        if element is None and not flags:
            return None  # a NULL element in an array that says it has none
        elements.append(element)
    if pos != len(value):
        return None
    return BinaryArray(elem_oid, tuple(dims), tuple(elements))


def build_array(array: BinaryArray, elements: Sequence[Element]) -> bytes:
    """array_send bytes for ``array``'s header with ``elements`` (the has-null flag recomputed)."""
    has_null = any(e is None for e in elements)
    parts = [_ARRAY_HEADER.pack(len(array.dims), 1 if has_null else 0, array.elem_oid)]
    parts.extend(_DIM.pack(size, lower) for size, lower in array.dims)
    append_fields(parts, elements)
    return b"".join(parts)


def append_fields(parts: list[bytes], items: Iterable[Element]) -> None:
    """Length-prefixed values (-1 for NULL), as arrays, records and binary COPY tuples hold them."""
    for item in items:
        if item is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_I32.pack(len(item)))
            parts.append(item)


def parse_record(value: bytes) -> list[tuple[int, Element]] | None:
    """Decode record_send output into (field type OID, field) pairs; None when malformed."""
    if len(value) < 4:
        return None
    (count,) = _I32.unpack_from(value)
    if count < 0 or count * 8 > len(value) - 4:
        return None
    pos = 4
    fields: list[tuple[int, Element]] = []
    for _ in range(count):
        if pos + 4 > len(value):
            return None
        (oid,) = _U32.unpack_from(value, pos)
        item = _length_prefixed(value, pos + 4)
        if item is None:
            return None
        field, pos = item
        fields.append((oid, field))
    if pos != len(value):
        return None
    return fields


def build_record(fields: Sequence[tuple[int, Element]]) -> bytes:
    parts = [_I32.pack(len(fields))]
    for oid, field in fields:
        parts.append(_U32.pack(oid))
        append_fields(parts, (field,))
    return b"".join(parts)


RANGE_EMPTY, RANGE_LB_INF, RANGE_UB_INF, RANGE_LB_NULL, RANGE_UB_NULL = 0x01, 0x08, 0x10, 0x20, 0x40
_NO_LOWER = RANGE_EMPTY | RANGE_LB_INF | RANGE_LB_NULL
_NO_UPPER = RANGE_EMPTY | RANGE_UB_INF | RANGE_UB_NULL


def parse_range(value: bytes) -> tuple[int, Element, Element] | None:
    """Decode range_send output into (flags, lower bound, upper bound); None when malformed.

    A bound that is absent (empty range, infinite, NULL) is None.
    """
    if not value:
        return None
    flags = value[0]
    pos = 1
    bounds: list[Element] = []
    for absent in (_NO_LOWER, _NO_UPPER):
        if flags & absent:
            bounds.append(None)
            continue
        item = _length_prefixed(value, pos)
        if item is None or item[0] is None:
            return None
        bounds.append(item[0])
        pos = item[1]
    if pos != len(value):
        return None
    return flags, bounds[0], bounds[1]


def parse_multirange(value: bytes) -> list[bytes] | None:
    """Decode multirange_send output into its ranges (each range_send bytes); None if malformed."""
    if len(value) < 4:
        return None
    (count,) = _I32.unpack_from(value)
    if count < 0 or count * 4 > len(value) - 4:
        return None
    pos = 4
    ranges: list[bytes] = []
    for _ in range(count):
        item = _length_prefixed(value, pos)
        if item is None or item[0] is None:
            return None
        ranges.append(item[0])
        pos = item[1]
    if pos != len(value):
        return None
    return ranges


# --- geometry: float8 coordinates --------------------------------------------------------------

_FIXED_POINTS = {600: 2, 601: 4, 603: 4, 628: 3, 718: 3}  # point lseg box line circle: float8s
_MAX_POINTS = 1 << 24


def geometry_floats(type_oid: int, value: bytes) -> tuple[float, ...] | None:
    """The float8 coordinates of a binary geometric value; None when malformed."""
    fixed = _FIXED_POINTS.get(type_oid)
    if fixed is not None:
        if len(value) != 8 * fixed:
            return None
        return struct.unpack(f"!{fixed}d", value)
    if type_oid == 602:  # path: closed flag, npts, points
        head = 5
    elif type_oid == 604:  # polygon: npts, points
        head = 4
    else:
        return None
    if len(value) < head:
        return None
    (npts,) = _I32.unpack_from(value, head - 4)
    if not 0 <= npts <= _MAX_POINTS or len(value) != head + 16 * npts:
        return None
    return struct.unpack_from(f"!{2 * npts}d", value, head)


def float_text(value: float, single: bool = False) -> str:
    """The shortest decimal text that reads back as ``value`` (as float8out/float4out print it),
    with exponents spelled out so a number such as 4.111111111111111e+15 is scanned as digits."""
    if not math.isfinite(value):
        return repr(value)
    if single:
        packed = struct.pack("!f", value)
        for digits in range(1, 10):
            text = f"{value:.{digits}g}"
            if struct.pack("!f", float(text)) == packed:
                break
    else:
        text = repr(value)
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")
