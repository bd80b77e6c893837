"""Hostile and random values through the typed maskers: nothing but ProtocolError may escape, and
a card number anywhere in a value (any element, field or bound, at any depth) never comes back
in clear, whatever the server sends: well-formed, truncated, bit-flipped or made up."""

from __future__ import annotations

import re
import struct
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres.binary import BinaryArray, build_array, build_record
from connectors.postgres.pgtypes import BUILTIN, Kind, TypeDesc, TypeRegistry
from connectors.postgres.textvalues import format_array, format_record
from connectors.postgres.values import UNCHANGED, mask_binary_value, mask_text_value
from gateway.errors import ProtocolError
from gateway.masking import Masker, builtin_detectors
from tests.unit.test_pg_binary import encode_numeric

CARD = "4111111111111111"
CARD_BYTES = CARD.encode()
CARD_INT8 = struct.pack("!q", int(CARD))
CARD_NUMERIC = encode_numeric(Decimal(CARD))
MASKER = Masker(builtin_detectors())
COMPOSITE = 50002
REG = TypeRegistry({
    COMPOSITE: TypeDesc(Kind.COMPOSITE, fields=(25, 20, 1009)),  # (note text, n int8, tags text[])
    50001: TypeDesc(Kind.ENUM),
    50006: TypeDesc(Kind.OPAQUE),
})
EVERY_OID = sorted(BUILTIN) + [COMPOSITE, 50001, 50006, 0, 99999]


def leaks(out: object) -> bool:
    if not isinstance(out, bytes):
        return False
    return CARD_BYTES in out or CARD_INT8 in out or CARD_NUMERIC in out


# -- random bytes for every type: only UNCHANGED, bytes or None come back ------------------------


@settings(max_examples=1000, deadline=None)
@given(oid=st.sampled_from(EVERY_OID), value=st.binary(max_size=64), whole=st.booleans())
def test_random_binary_values_of_every_type_never_raise(oid: int, value: bytes, whole: bool) -> None:
    try:
        out = mask_binary_value(value, oid, REG, MASKER, whole=whole)
    except ProtocolError:
        return
    assert out is UNCHANGED or out is None or isinstance(out, bytes)


_LITERAL_CHARS = st.sampled_from(list('{}()[],"\\ \t\nNULemptyx1-:=.e') + [CARD])


@settings(max_examples=1000, deadline=None)
@given(oid=st.sampled_from(EVERY_OID), parts=st.lists(_LITERAL_CHARS, max_size=30))
def test_random_text_literals_of_every_type_never_raise_or_leak(oid: int, parts: list[str]) -> None:
    value = "".join(parts).encode()
    try:
        out = mask_text_value(value, oid, REG, MASKER)
    except ProtocolError:
        return
    assert out is UNCHANGED or out is None or isinstance(out, bytes)
    desc = REG.describe(oid) or TypeDesc(Kind.OPAQUE)
    if desc.kind is Kind.ARRAY and desc.elem:
        desc = REG.describe(desc.elem) or TypeDesc(Kind.OPAQUE)
    if out is UNCHANGED and desc.kind not in (Kind.HARMLESS, Kind.BOOL, Kind.BYTEA):
        # Forwarded as it came: no piece between the literal's punctuation holds a finding.
        for piece in re.split(r'[{}()\[\],"\\]', value.decode()):
            assert MASKER.mask_text(piece) is piece, piece


# -- well-formed nested binary values holding the card somewhere ---------------------------------

_TEXTS = st.one_of(st.text(max_size=8), st.just(f"card {CARD}"), st.just(CARD))
_INT8S = st.one_of(st.integers(-(2**63), 2**63 - 1), st.just(int(CARD)))


def _text_array(items: list[str | None]) -> bytes:
    elems = tuple(None if i is None else i.encode() for i in items)
    return build_array(BinaryArray(25, ((len(elems), 1),), elems), elems)


def _int8_array(items: list[int | None], dims: tuple[tuple[int, int], ...]) -> bytes:
    elems = tuple(None if i is None else struct.pack("!q", i) for i in items)
    return build_array(BinaryArray(20, dims, elems), elems)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[int, bytes]:
    """(type OID, binary value) of a text[], int8[] (up to 3 dimensions), numeric[], composite,
    array of composites, jsonb, int8range or int8multirange."""
    kind = draw(st.sampled_from(["text[]", "int8[]", "numeric[]", "composite", "composite[]",
                                 "jsonb", "range", "multirange"]))
    if kind == "text[]":
        return 1009, _text_array(draw(st.lists(st.one_of(st.none(), _TEXTS), max_size=5)))
    if kind == "int8[]":
        shape = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
        count = 1
        for size in shape:
            count *= size
        items = draw(st.lists(st.one_of(st.none(), _INT8S), min_size=count, max_size=count))
        lower = draw(st.integers(-5, 5))
        return 1016, _int8_array(items, tuple((s, lower) for s in shape))
    if kind == "numeric[]":
        nums = draw(st.lists(st.one_of(st.just(Decimal(CARD)), st.decimals(
            allow_nan=False, allow_infinity=False, places=2, min_value=-10**6, max_value=10**6)),
            max_size=4))
        elems = tuple(encode_numeric(n) for n in nums)
        return 1231, build_array(BinaryArray(1700, ((len(elems), 1),), elems), elems)
    if kind in ("composite", "composite[]"):
        records = []
        for _ in range(draw(st.integers(1, 3)) if kind == "composite[]" else 1):
            note = draw(st.one_of(st.none(), _TEXTS))
            number = draw(st.one_of(st.none(), _INT8S))
            tags = draw(st.lists(st.one_of(st.none(), _TEXTS), max_size=3))
            records.append(build_record([
                (25, None if note is None else note.encode()),
                (20, None if number is None else struct.pack("!q", number)),
                (1009, _text_array(tags)),
            ]))
        if kind == "composite":
            return COMPOSITE, records[0]
        return 50099, build_array(BinaryArray(COMPOSITE, ((len(records), 1),), tuple(records)),
                                  records)
    if kind == "jsonb":
        doc = draw(st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), _TEXTS, st.just(int(CARD))),
            lambda inner: st.one_of(st.lists(inner, max_size=3),
                                    st.dictionaries(_TEXTS, inner, max_size=3)),
            max_leaves=8,
        ))
        import json

        return 3802, b"\x01" + json.dumps(doc).encode()
    low, high = draw(_INT8S), draw(_INT8S)
    rng = b"\x02" + struct.pack("!iq", 8, low) + struct.pack("!iq", 8, high)
    if kind == "range":
        return 3926, rng
    return 4536, struct.pack("!ii", 1, len(rng)) + rng


REG.add(50099, TypeDesc(Kind.ARRAY, elem=COMPOSITE))


@settings(max_examples=800, deadline=None)
@given(typed_values())
def test_a_card_anywhere_in_a_binary_value_never_comes_back_in_clear(typed: tuple[int, bytes]) -> None:
    oid, value = typed
    out = mask_binary_value(value, oid, REG, MASKER)
    if out is UNCHANGED:
        assert not leaks(value)
    else:
        assert not leaks(out)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[int, bytes]:
    oid, value = draw(typed_values())
    how = draw(st.sampled_from(["truncate", "flip", "insert", "length", "extend"]))
    if not value:
        return oid, value
    at = draw(st.integers(0, len(value) - 1))
    if how == "truncate":
        return oid, value[:at]
    if how == "flip":
        return oid, value[:at] + bytes([value[at] ^ draw(st.integers(1, 255))]) + value[at + 1:]
    if how == "insert":
        return oid, value[:at] + draw(st.binary(min_size=1, max_size=6)) + value[at:]
    if how == "length":  # an int32 at a random place: a length or count past the end, negative...
        n = draw(st.sampled_from([-2, -1, 0, 1, 7, 2**31 - 1, -(2**31), 1 << 20]))
        return oid, value[:at] + struct.pack("!i", n) + value[at + 4:]
    return oid, value + draw(st.binary(min_size=1, max_size=8))


@settings(max_examples=1000, deadline=None)
@given(mutations())
def test_malformed_binary_values_only_fail_closed(mutated: tuple[int, bytes]) -> None:
    oid, value = mutated
    try:
        out = mask_binary_value(value, oid, REG, MASKER)
    except ProtocolError:
        return
    if out is UNCHANGED:
        assert not leaks(value)
    else:
        assert out is None or (isinstance(out, bytes) and not leaks(out))


def test_absurd_array_dimensions_are_nulled_without_allocating() -> None:
    header = struct.pack("!iiI", 6, 0, 20) + struct.pack("!ii", 2**31 - 1, 1) * 6
    assert mask_binary_value(header, 1016, REG, MASKER) is None
    seven = struct.pack("!iiI", 7, 0, 20) + struct.pack("!ii", 1, 1) * 7 + struct.pack("!iq", 8, 1)
    assert mask_binary_value(seven, 1016, REG, MASKER) is None
    negative = struct.pack("!iiI", 1, 0, 20) + struct.pack("!ii", -1, 1)
    assert mask_binary_value(negative, 1016, REG, MASKER) is None


def test_element_length_past_the_end_is_nulled() -> None:
    value = struct.pack("!iiI", 1, 0, 25) + struct.pack("!ii", 1, 1) + struct.pack("!i", 100) + CARD_BYTES
    assert mask_binary_value(value, 1009, REG, MASKER) is None


def test_record_field_count_past_the_end_is_nulled() -> None:
    assert mask_binary_value(struct.pack("!i", 2**31 - 1), 2249, REG, MASKER) is None
    assert mask_binary_value(struct.pack("!iIi", 1, 25, -5), 2249, REG, MASKER) is None


def test_nesting_past_the_depth_bound_is_nulled() -> None:
    # Array types 60000..60040, each an array of the next; 60040 holds text[] values.
    reg = TypeRegistry({60000 + i: TypeDesc(Kind.ARRAY, elem=60001 + i) for i in range(40)})
    reg.add(60040, TypeDesc(Kind.ARRAY, elem=1009))
    value = _text_array([f"card {CARD}"])
    for level in range(40, -1, -1):
        value = build_array(BinaryArray(60000 + level if level < 40 else 1009, ((1, 1),), (value,)),
                            [value])
    reg.add(59999, TypeDesc(Kind.ARRAY, elem=60000))
    out = mask_binary_value(value, 59999, reg, MASKER)
    # The levels past the bound are not read: they became a NULL element, the card is gone.
    assert isinstance(out, bytes) and not leaks(out) and out.endswith(b"\xff\xff\xff\xff")
    assert len(out) < len(value)
    # Shallow enough: masked element by element instead.
    shallow = build_array(BinaryArray(1009, ((1, 1),), (_text_array([f"card {CARD}"]),)),
                          [_text_array([f"card {CARD}"])])
    reg.add(59998, TypeDesc(Kind.ARRAY, elem=1009))
    out = mask_binary_value(shallow, 59998, reg, MASKER)
    assert isinstance(out, bytes) and b"****-****-****-1111" in out


# -- text literals holding the card --------------------------------------------------------------


@settings(max_examples=800, deadline=None)
@given(items=st.lists(st.one_of(st.none(), _TEXTS, st.sampled_from(["", "NULL", '"', "\\", "{}"])),
                      max_size=6),
       nested=st.booleans(), as_record=st.booleans())
def test_a_card_in_any_element_of_a_text_literal_never_comes_back(
    items: list[str | None], nested: bool, as_record: bool
) -> None:
    if as_record:
        literal, oid = format_record(items), 2249
    else:
        literal = format_array([items, items] if nested and items else items)  # type: ignore[list-item]
        oid = 1009
    out = mask_text_value(literal.encode(), oid, REG, MASKER)
    holds = any(i is not None and CARD in i for i in items)
    if not holds:
        assert out is UNCHANGED
    else:
        assert out is None or (isinstance(out, bytes) and CARD_BYTES not in out)
