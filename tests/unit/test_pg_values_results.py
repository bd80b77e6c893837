"""ResultSet (connectors/postgres/results.py) masks DataRows by column type in both formats:
clean rows leave as the bytes they came in, numbers are NULLed rather than turned into text."""

from __future__ import annotations

import struct

import pytest

from connectors.postgres.backend import FieldDescription, data_row, decode_backend
from connectors.postgres.binary import BinaryArray, build_array, parse_array
from connectors.postgres.pgtypes import Kind, TypeDesc, TypeRegistry
from connectors.postgres.results import ResultSet
from gateway.errors import ProtocolError
from gateway.masking import Masker, builtin_detectors

CARD = "4111111111111111"
MASKED = "****-****-****-1111"
MASKER = Masker(builtin_detectors(), ["*ssn*"])


def fields(*spec: tuple[str, int], binary: bool = False) -> list[FieldDescription]:
    return [FieldDescription(name, type_oid=oid, format=1 if binary else 0) for name, oid in spec]


def send(rs: ResultSet, values: list[bytes | None]) -> tuple[bytes, tuple[bytes | None, ...]]:
    raw = data_row(values)
    out = rs.mask_row(raw[5:], raw)
    decoded = decode_backend(b"D", out[5:], out)
    return out, tuple(None if v is None else bytes(v) for v in decoded.values)  # type: ignore[attr-defined]


def test_a_clean_text_row_is_forwarded_as_its_own_bytes() -> None:
    rs = ResultSet(MASKER, fields(("id", 23), ("name", 25), ("born", 1082)), None, 10)
    raw = data_row([b"1", b"Ada", b"2024-01-01"])
    assert rs.mask_row(raw[5:], raw) is raw


def test_text_numbers_with_a_finding_become_null_not_text() -> None:
    rs = ResultSet(MASKER, fields(("card", 20), ("note", 25)), None, 10)
    _, values = send(rs, [CARD.encode(), f"card {CARD}".encode()])
    assert values == (None, f"card {MASKED}".encode())
    assert rs.nulled_values == 1 and rs.masked_rows == 1


def test_binary_rows_are_masked_by_type_not_nulled_wholesale() -> None:
    arr = build_array(BinaryArray(20, ((2, 1),), (struct.pack("!q", 1), struct.pack("!q", int(CARD)))),
                      [struct.pack("!q", 1), struct.pack("!q", int(CARD))])
    rs = ResultSet(MASKER, fields(("email", 25), ("ids", 1016), ("ok", 16), ("doc", 3802),
                                  binary=True), None, 10)
    _, values = send(rs, [b"ada@example.com", arr, b"\x01", b'\x01{"n": 1}'])
    assert values[0] == b"a***@example.com"
    parsed = parse_array(values[1] or b"")
    assert parsed is not None and parsed.elements == (struct.pack("!q", 1), None)
    assert values[2:] == (b"\x01", b'\x01{"n": 1}')


def test_result_formats_from_bind_decide_per_column() -> None:
    rs = ResultSet(MASKER, fields(("n", 20), ("m", 20)), [0, 1], 10)
    _, values = send(rs, [CARD.encode(), struct.pack("!q", int(CARD))])
    assert values == (None, None)
    assert rs.nulled_binary == 1


def test_column_masks_hide_positions_whatever_their_names() -> None:
    rs = ResultSet(MASKER, fields(("x", 25), ("y", 20), ("z", 3802)), None, 10,
                   column_masks=[True, True, True])
    _, values = send(rs, [b"Ada", b"42", b'{"a": 1}'])
    assert values == (b"****", None, b'"****"')


def test_named_sensitive_columns_are_hidden_whole_in_binary_too() -> None:
    rs = ResultSet(MASKER, fields(("ssn", 25), ("ssn_digits", 20), binary=True), None, 10)
    _, values = send(rs, [b"078-05-1120", struct.pack("!q", 78051120)])
    assert values == (b"****", None)


def test_user_types_need_the_registry_else_they_are_opaque() -> None:
    spec = fields(("mood", 70001), binary=True)
    assert send(ResultSet(MASKER, spec, None, 10), [b"happy"])[1] == (None,)
    reg = TypeRegistry({70001: TypeDesc(Kind.ENUM)})
    raw = data_row([b"happy"])
    assert ResultSet(MASKER, spec, None, 10, registry=reg).mask_row(raw[5:], raw) is raw


def test_rows_without_a_description_are_scanned_as_opaque_text() -> None:
    rs = ResultSet(MASKER, None, None, 10)
    _, values = send(rs, [b"hello", CARD.encode()])
    assert values == (b"hello", None)


def test_a_row_wider_than_its_description_is_a_protocol_error() -> None:
    rs = ResultSet(MASKER, fields(("a", 25)), None, 10)
    raw = data_row([b"1", b"2"])
    with pytest.raises(ProtocolError):
        rs.mask_row(raw[5:], raw)


def test_recorded_rows_hold_the_masked_values() -> None:
    rs = ResultSet(MASKER, fields(("card", 20), ("note", 25)), None, 1)
    send(rs, [CARD.encode(), f"x {CARD}".encode()])
    send(rs, [b"1", b"y"])
    summary = rs.summary("SELECT 2")
    assert summary["rows"] == [[None, f"x {MASKED}"]]
    assert summary["row_count"] == 2 and summary["nulled_values"] == 1
