"""Binary-format values rendered as text so they can be scanned (connectors/postgres/binary.py)."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.postgres.binary import number_text, numeric_text


def encode_numeric(value: Decimal) -> bytes:
    """PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits."""
    sign = 0x4000 if value < 0 else 0
    value = abs(value)
    exponent = value.as_tuple().exponent
    dscale = max(0, -exponent) if isinstance(exponent, int) else 0
    integer, _, fraction = f"{value:f}".partition(".")
    integer = integer.lstrip("0")
    # Pad the integer part on the left and the fraction on the right to whole groups of 4.
    integer = integer.rjust((len(integer) + 3) // 4 * 4, "0")
    fraction = fraction.ljust((len(fraction) + 3) // 4 * 4, "0")
    groups = [int(integer[i:i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i:i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[0] == 0:  # leading zero groups move the weight
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return struct.pack(f"!hhHH{len(groups)}H", len(groups), weight, sign, dscale, *groups)


@pytest.mark.parametrize("text", [
    "0", "1", "-1", "4111111111111111", "12345.678", "0.0001", "-0.5", "100000000", "3.14159265358979",
    "99990000", "0.00", "10.10",
])
def test_numeric_values_render_as_postgresql_prints_them(text: str) -> None:
    assert numeric_text(encode_numeric(Decimal(text))) == text


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10**20, max_value=10**20))
def test_numeric_round_trip(value: Decimal) -> None:
    assert Decimal(numeric_text(encode_numeric(value)) or "nan") == value


def test_special_numerics() -> None:
    assert numeric_text(struct.pack("!hhHH", 0, 0, 0xC000, 0)) == "NaN"
    assert numeric_text(struct.pack("!hhHH", 0, 0, 0xD000, 0)) == "Infinity"


@pytest.mark.parametrize("value", [
    b"", b"\x00" * 7,                                   # shorter than the header
    struct.pack("!hhHH", 2, 0, 0, 0) + b"\x00\x01",     # ndigits says 2, one present
    struct.pack("!hhHHH", 1, 0, 0, 0, 10000),           # a base-10000 digit out of range
    struct.pack("!hhHHH", 1, 0, 0x1234, 0, 1),          # unknown sign
])
def test_malformed_numerics_are_none_never_an_exception(value: bytes) -> None:
    assert numeric_text(value) is None


def test_integers_and_floats() -> None:
    assert number_text(20, (4111111111111111).to_bytes(8, "big", signed=True)) == "4111111111111111"
    assert number_text(23, (-5).to_bytes(4, "big", signed=True)) == "-5"
    assert number_text(21, (7).to_bytes(2, "big", signed=True)) == "7"
    assert number_text(701, struct.pack("!d", 4111111111111111.0)) == "4111111111111111"
    assert number_text(20, b"\x00") is None  # wrong width
    assert number_text(25, b"text") is None  # not a number type
