"""Typed value masking (connectors/postgres/values.py): tables of (type, value) -> masked value,
in text and binary format, and the whole-column rules."""

from __future__ import annotations

import struct

import pytest

from connectors.postgres.binary import (
    BinaryArray,
    build_array,
    build_record,
    parse_array,
    parse_record,
)
from connectors.postgres.pgtypes import Kind, TypeDesc, TypeRegistry
from connectors.postgres.values import (
    UNCHANGED,
    ValueMasker,
    dump_json,
    mask_binary_value,
    mask_text_value,
)
from gateway.masking import Masker, builtin_detectors

CARD = "4111111111111111"
MASKED_CARD = "****-****-****-1111"
MASKER = Masker(builtin_detectors())
REG = TypeRegistry({
    50001: TypeDesc(Kind.ENUM),
    50002: TypeDesc(Kind.COMPOSITE, fields=(23, 25, 20)),  # (id int4, note text, card int8)
    50003: TypeDesc(Kind.RANGE, elem=25),  # a range over text
    50004: TypeDesc(Kind.TEXT),  # citext
    50005: TypeDesc(Kind.ARRAY, elem=50002),
    50006: TypeDesc(Kind.OPAQUE),  # hstore
    50007: TypeDesc(Kind.NUMBER, base=20),  # a domain over int8
})


def text(oid: int, value: str, *, whole: bool = False) -> object:
    out = mask_text_value(value.encode(), oid, REG, MASKER, whole=whole)
    return out.decode() if isinstance(out, bytes) else out


def i32(n: int) -> bytes:
    return struct.pack("!i", n)


def i64(n: int) -> bytes:
    return struct.pack("!q", n)


def array(elem: int, items: list[bytes | None], dims: tuple[tuple[int, int], ...] | None = None) -> bytes:
    return build_array(BinaryArray(elem, dims or ((len(items), 1),), tuple(items)), items)


def record(fields: list[tuple[int, bytes | None]]) -> bytes:
    return build_record(fields)


# -- text format ----------------------------------------------------------------------------------

TEXT_CASES = [
    # text-like: inline, as today
    (25, f"card {CARD}", f"card {MASKED_CARD}"),
    (1043, "nothing here", UNCHANGED),
    (50004, f"{CARD}", MASKED_CARD),  # citext
    # numbers: a finding NULLs them, never text in a number column
    (20, CARD, None),
    (20, "42", UNCHANGED),
    (1700, f"{CARD}.00", None),
    (1700, "19.99", UNCHANGED),
    (701, "4.111111111111111e+15", None),  # the exponent hides the digits from a plain scan
    (701, "1e+300", UNCHANGED),
    (790, "$4,111,111,111,111,111.00", None),  # money: separators dropped for the scan
    (790, "$19.99", UNCHANGED),
    (50007, CARD, None),  # a domain over int8 is an int8
    # harmless: never scanned
    (1082, "2024-01-15", UNCHANGED),
    (2950, "41111111-1111-1111-1111-111111111111", UNCHANGED),
    (16, "t", UNCHANGED),
    # json/jsonb: strings inline, numbers null, keys too, re-serialised only when changed
    (3802, '{"a": 1, "b": [1, 2]}', UNCHANGED),
    (3802, f'{{"a": "{CARD}", "n": {CARD}}}', f'{{"a": "{MASKED_CARD}", "n": null}}'),
    (114, f'{{"k{CARD}":true}}', f'{{"k{MASKED_CARD}": true}}'),
    (114, '{"a":"\\u0034111111111111111"}', f'{{"a": "{MASKED_CARD}"}}'),
    (114, '{"a":"\\u0041"}', UNCHANGED),  # an escape, nothing behind it
    (3802, '{"a": "line\\nline"}', UNCHANGED),
    (114, '{"u": "https:\\/\\/bob:hunter2@db.example"}', '{"u": "https://bob:****@db.example"}'),
    (3802, '{"s": "{\\"password\\": \\"hunter2\\"}"}', '{"s": "{\\"password\\": \\"****\\"}"}'),
    (114, '{"password": "hunter2", "n": 1.50}', '{"password": "****", "n": 1.50}'),
    (114, '{"a": 1, "a": 2, "c": "' + CARD + '"}', f'{{"a": 1, "a": 2, "c": "{MASKED_CARD}"}}'),
    (3802, f'{{"a": "{CARD}", broken', None),  # unparseable: NULL
    (114, '{"n": 4.111111111111111e15, "m": 1e3}', '{"n": null, "m": 1e3}'),
    (114, '{"name": "e", "m": 1e3}', UNCHANGED),
    # bytea: hex and escape output, the bytes replaced
    (17, "\\x" + f"ab {CARD}".encode().hex(), "\\x" + f"ab {MASKED_CARD}".encode().hex()),
    (17, "\\x00ff", UNCHANGED),
    (17, f"\\001 {CARD}\\\\", f"\\001 {MASKED_CARD}\\\\"),
    (17, "\\xzz", None),
    # arrays: element by element, with the literal's quoting
    (1009, f'{{ok,"card {CARD}",NULL}}', f'{{ok,"card {MASKED_CARD}",NULL}}'),
    (1009, '{"a b","q\\"x",NULL,""}', UNCHANGED),
    (1016, f"{{1,{CARD}}}", "{1,NULL}"),
    (1016, f"[0:1]={{1,{CARD}}}", "[0:1]={1,NULL}"),
    (1016, f"{{{{1,2}},{{3,{CARD}}}}}", "{{1,2},{3,NULL}}"),
    (1009, f"{{{CARD}}}", f"{{{MASKED_CARD}}}"),
    (1182, f"{{2024-01-01,{CARD}}}", UNCHANGED),  # date[]: harmless elements, not even parsed
    (1009, "{unclosed", None),
    (1009, "{{{{{{{1}}}}}}}", None),  # seven dimensions: PostgreSQL allows six
    (2277, f"{{1,{CARD}}}", "{1,NULL}"),  # anyarray: element type unknown, a finding NULLs
    # composites: typed fields when the catalog described them, else a finding NULLs the field
    (50002, f'(1,"card {CARD}",{CARD})', f'(1,"card {MASKED_CARD}",)'),
    (50002, "(1,x,2)", UNCHANGED),
    (2249, f'(1,"card {CARD}",x)', "(1,,x)"),
    (2249, "(1,4.111111111111111e+15)", "(1,)"),
    (50005, f'{{"(1,x,{CARD})",NULL}}', '{"(1,x,)",NULL}'),
    # ranges and multiranges: a bound with a finding NULLs the whole value
    (3926, f"[1,{CARD})", None),
    (3926, "[1,10)", UNCHANGED),
    (3926, "empty", UNCHANGED),
    (50003, f'[a,"card {CARD}")', None),
    (4536, f"{{[1,3),[5,{CARD})}}", None),
    (4536, "{[1,3),[5,7)}", UNCHANGED),
    (4536, "{}", UNCHANGED),
    # enums, opaque and unknown types: scanned, a finding NULLs
    (50001, f"card {CARD}", None),
    (50001, "happy", UNCHANGED),
    (50006, f'"card"=>"{CARD}"', None),
    (99999, CARD, None),
    (99999, "hello", UNCHANGED),
    (600, f"({CARD},0)", None),
]


@pytest.mark.parametrize(("oid", "value", "expected"), TEXT_CASES)
def test_text_format_values_are_masked_by_type(oid: int, value: str, expected: object) -> None:
    assert text(oid, value) == expected


WHOLE_CASES = [
    (25, "Ada", "****"),
    (25, "****", UNCHANGED),
    (50004, "x", "****"),
    (114, '{"a": 1}', '"****"'),
    (3802, '{"a": 1}', '"****"'),
    (20, "42", None),
    (1009, "{a}", None),
    (1082, "2024-01-01", None),
    (50002, "(1,x,2)", None),
]


@pytest.mark.parametrize(("oid", "value", "expected"), WHOLE_CASES)
def test_whole_columns_become_a_mask_or_null(oid: int, value: str, expected: object) -> None:
    assert text(oid, value, whole=True) == expected


def test_undecodable_text_is_hidden_whole() -> None:
    assert mask_text_value(b"\xff\xfe", 25, REG, MASKER) == b"****"
    assert mask_text_value(b"\xff\xfe", 20, REG, MASKER) is None


def test_a_masker_without_detectors_changes_nothing_but_whole_columns() -> None:
    bare = Masker([])
    assert mask_text_value(CARD.encode(), 20, REG, bare) is UNCHANGED
    assert mask_binary_value(b"\x01\x02", 50006, REG, bare) is UNCHANGED
    assert mask_text_value(b"x", 25, REG, bare, whole=True) == b"****"


# -- binary format --------------------------------------------------------------------------------

BINARY_CASES = [
    (25, f"card {CARD}".encode(), f"card {MASKED_CARD}".encode()),
    (25, b"clean", UNCHANGED),
    (25, b"\xff", b"****"),
    (20, i64(int(CARD)), None),
    (20, i64(42), UNCHANGED),
    (20, b"\x00", None),  # wrong width: malformed
    (701, struct.pack("!d", float(CARD)), None),
    (700, struct.pack("!f", 0.1), UNCHANGED),
    (790, i64(int(CARD) * 100), None),
    (16, b"\x01", UNCHANGED),
    (16, CARD.encode(), None),  # a bool of 16 bytes is not a bool: NULL, not forwarded unread
    (2950, bytes(16), UNCHANGED),
    (1082, i32(0), UNCHANGED),
    (3802, b"\x01" + f'{{"a": "{CARD}"}}'.encode(), b"\x01" + f'{{"a": "{MASKED_CARD}"}}'.encode()),
    (3802, b"\x02{}", None),  # unknown jsonb version
    (114, b'{"n": ' + CARD.encode() + b"}", b'{"n": null}'),
    (17, b"\x00\xff card " + CARD.encode(), b"\x00\xff card " + MASKED_CARD.encode()),
    (17, b"\x00\xff", UNCHANGED),
    (50001, f"card {CARD}".encode(), None),
    (50001, b"happy", UNCHANGED),
    (50006, b"\x00\x00\x00\x00", None),  # opaque in binary: NULLed while detectors are on
    (99999, b"anything", None),
    (600, struct.pack("!dd", float(CARD), 0.0), None),
    (600, struct.pack("!dd", 1.5, 2.0), UNCHANGED),
    (600, b"\x00" * 15, None),
]


@pytest.mark.parametrize(("oid", "value", "expected"), BINARY_CASES)
def test_binary_format_values_are_masked_by_type(oid: int, value: bytes, expected: object) -> None:
    assert mask_binary_value(value, oid, REG, MASKER) == expected


def test_binary_text_array_masks_elements_inline_and_numbers_to_null_elements() -> None:
    value = array(25, [b"ok", f"card {CARD}".encode(), None])
    masked = mask_binary_value(value, 1009, REG, MASKER)
    assert isinstance(masked, bytes)
    parsed = parse_array(masked)
    assert parsed is not None and parsed.elements == (b"ok", f"card {MASKED_CARD}".encode(), None)

    ints = array(20, [i64(1), i64(int(CARD))], dims=((1, 0), (2, 5)))
    masked = mask_binary_value(ints, 1016, REG, MASKER)
    assert isinstance(masked, bytes)
    parsed = parse_array(masked)
    assert parsed is not None
    assert parsed.elements == (i64(1), None)
    assert parsed.dims == ((1, 0), (2, 5))  # dimensions and lower bounds kept
    assert masked[4:8] == i32(1)  # the has-null flag is set


def test_binary_array_whose_header_names_another_element_type_is_nulled() -> None:
    # An int8[] column whose value claims bool elements: not what the column is, NULLed.
    value = array(16, [CARD.encode()])
    assert mask_binary_value(value, 1016, REG, MASKER) is None


def test_binary_composite_masks_field_by_field() -> None:
    value = record([(23, i32(1)), (25, f"card {CARD}".encode()), (20, i64(int(CARD)))])
    masked = mask_binary_value(value, 50002, REG, MASKER)
    assert isinstance(masked, bytes)
    assert parse_record(masked) == [(23, i32(1)), (25, f"card {MASKED_CARD}".encode()), (20, None)]
    # record (anonymous): the same, by the OIDs the value carries
    assert mask_binary_value(value, 2249, REG, MASKER) == masked


def test_binary_composite_with_other_fields_than_the_catalog_says_is_nulled() -> None:
    value = record([(16, CARD.encode()), (25, b"x"), (20, i64(1))])
    assert mask_binary_value(value, 50002, REG, MASKER) is None


def test_binary_ranges_and_multiranges_are_nulled_on_a_finding() -> None:
    clean = b"\x02" + i32(8) + i64(1) + i32(8) + i64(10)  # [1,10)
    card = b"\x02" + i32(8) + i64(1) + i32(8) + i64(int(CARD))
    assert mask_binary_value(clean, 3926, REG, MASKER) is UNCHANGED
    assert mask_binary_value(card, 3926, REG, MASKER) is None
    assert mask_binary_value(b"\x01", 3926, REG, MASKER) is UNCHANGED  # empty
    assert mask_binary_value(b"\x18", 3926, REG, MASKER) is UNCHANGED  # (,)
    multi = i32(2) + i32(len(clean)) + clean + i32(len(card)) + card
    assert mask_binary_value(multi, 4536, REG, MASKER) is None
    assert mask_binary_value(i32(1) + i32(len(clean)) + clean, 4536, REG, MASKER) is UNCHANGED


def test_whole_binary_values() -> None:
    vm = ValueMasker(REG, MASKER)
    assert vm.binary(b"x", 25, whole=True) == b"****"
    assert vm.binary(b"\x01{}", 3802, whole=True) == b'\x01"****"'
    assert vm.binary(b"{}", 114, whole=True) == b'"****"'
    assert vm.binary(i64(1), 20, whole=True) is None


def test_jsonb_style_serialisation() -> None:
    from connectors.postgres.textvalues import JsonNumber as _Number
    from connectors.postgres.textvalues import JsonObject as _Object

    tree = _Object([("a", _Number("1")), ("b", [_Number("1"), _Number("2.50")]), ("c", None),
                    ("d", True), ("e", "x\n\"y\"")])
    assert dump_json(tree) == '{"a": 1, "b": [1, 2.50], "c": null, "d": true, "e": "x\\n\\"y\\""}'


def test_json_nested_too_deeply_is_nulled() -> None:
    deep = "[" * 5000 + f'"{CARD}"' + "]" * 5000
    assert text(3802, deep) is None
    # Deep but clean, no escapes: nothing to parse, forwarded.
    assert text(3802, "[" * 5000 + "]" * 5000) is UNCHANGED
