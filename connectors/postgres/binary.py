"""Reading binary-format result values well enough to scan them for sensitive data.

A binary value cannot be masked in place (a masked card number is no longer an int8), so the
relay NULLs it when it must be hidden. To decide, numbers are rendered as text and scanned like
any text value; text-like types are scanned as UTF-8; types that cannot carry a card number, an
SSN, an e-mail or a secret pass untouched; everything else (arrays, composites, user types) is
opaque and NULLed whenever masking is active: fail closed (HOSTILE H.48).
"""

from __future__ import annotations

import struct
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
_MAX_NUMERIC_DIGITS = 4096  # base-10000 digits; far above what PostgreSQL can produce


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
            return format(Decimal(struct.unpack("!d", value)[0]), "f")
        if type_oid == 700 and len(value) == 4:
            return format(Decimal(struct.unpack("!f", value)[0]), "f")
        if type_oid == 1700:
            return numeric_text(value)
    except (ValueError, ArithmeticError):
        return None
    return None
