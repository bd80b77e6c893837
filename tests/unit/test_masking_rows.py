"""RowMasker: the per-row fast path, column masks, fail-closed decoding and binary-format rows."""

from __future__ import annotations

import pytest

from gateway.errors import ProtocolError
from gateway.masking import Masker, RowMasker, builtin_detectors

COLUMNS = ["id", "name", "card", "user_password", "note"]


@pytest.fixture
def rows() -> RowMasker:
    return Masker(builtin_detectors(), ["*password*", "*ssn*"]).for_columns(COLUMNS)


def test_masked_columns_flags(rows: RowMasker) -> None:
    assert rows.names == tuple(COLUMNS)
    assert rows.masked_columns == (False, False, False, True, False)
    assert rows.binary_null_columns == (3,)


def test_clean_row_returns_none(rows: RowMasker) -> None:
    assert rows.mask_text_values([b"1", b"Alice", b"n/a", None, b"2024-01-15 12:30:45"]) is None


def test_all_null_row_returns_none(rows: RowMasker) -> None:
    assert rows.mask_text_values([None] * 5) is None


def test_card_value_is_masked_other_values_kept(rows: RowMasker) -> None:
    values: list[bytes | None] = [b"1", b"Alice", b"4111 1111 1111 1111", None, b"ok"]
    out = rows.mask_text_values(values)
    assert out == [b"1", b"Alice", b"****-****-****-1111", None, b"ok"]
    assert out is not None and out[0] is values[0] and out[1] is values[1]
    assert values[2] == b"4111 1111 1111 1111"  # the input row is not modified


def test_column_masked_value_becomes_stars_and_null_stays_null(rows: RowMasker) -> None:
    assert rows.mask_text_values([b"1", b"A", b"x", b"hunter2", b"y"]) == [
        b"1",
        b"A",
        b"x",
        b"****",
        b"y",
    ]
    assert rows.mask_text_values([b"1", b"A", b"x", None, b"y"]) is None


def test_already_masked_column_value_counts_as_unchanged(rows: RowMasker) -> None:
    assert rows.mask_text_values([b"1", b"A", b"x", b"****", b"y"]) is None


def test_undecodable_value_fails_closed(rows: RowMasker) -> None:
    # Bytes that are not valid in the row's encoding cannot be scanned: they are masked whole.
    out = rows.mask_text_values([b"1", b"\xff\xfe4111111111111111", b"x", None, b"y"])
    assert out == [b"1", b"****", b"x", None, b"y"]


def test_other_encodings(rows: RowMasker) -> None:
    latin = "José 4111111111111111".encode("latin-1")
    out = rows.mask_text_values([b"1", latin, b"x", None, b"y"], encoding="latin-1")
    assert out is not None and out[1] == "José ****-****-****-1111".encode("latin-1")

    utf16 = "4111111111111111".encode("utf-16-le")
    out = rows.mask_text_values(
        [None, None, utf16, "pw".encode("utf-16-le"), None], encoding="utf-16-le"
    )
    assert out == [
        None,
        None,
        "****-****-****-1111".encode("utf-16-le"),
        "****".encode("utf-16-le"),
        None,
    ]


def test_buffer_values_are_accepted(rows: RowMasker) -> None:
    frame = b"__4111111111111111__"
    view = memoryview(frame)[2:18]
    out = rows.mask_text_values([b"1", b"A", view, None, b"y"])  # type: ignore[list-item]
    assert out is not None and out[2] == b"****-****-****-1111"


@pytest.mark.parametrize("width", [0, 4, 6])
def test_row_wider_or_narrower_than_description_is_a_protocol_error(
    rows: RowMasker, width: int
) -> None:
    # HOSTILE C.16: a DataRow wider than its RowDescription; a nameless value cannot be
    # column-masked, so the row is refused instead of forwarded.
    with pytest.raises(ProtocolError, match="values but the result describes"):
        rows.mask_text_values([b"x"] * width)
    with pytest.raises(ProtocolError):
        rows.mask_binary_values([b"x"] * width, [True] * width)


# --- binary format (HOSTILE H.48) --------------------------------------------------------------


def test_binary_column_masked_is_nulled(rows: RowMasker) -> None:
    values = [b"\x00\x00\x00\x01", b"Alice", b"x", b"hunter2", b"y"]
    assert rows.mask_binary_values(values, [False, True, True, True, True]) == [
        b"\x00\x00\x00\x01",
        b"Alice",
        b"x",
        None,
        b"y",
    ]


def test_binary_text_value_with_finding_is_nulled_not_rewritten(rows: RowMasker) -> None:
    # A rewritten value would change its length inside a typed binary field: NULL it instead.
    values = [b"\x00\x01", b"Alice", b"4111111111111111", None, b"mail bob@example.com"]
    assert rows.mask_binary_values(values, [False, True, True, True, True]) == [
        b"\x00\x01",
        b"Alice",
        None,
        None,
        None,
    ]


def test_binary_scanned_value_that_is_not_utf8_is_nulled(rows: RowMasker) -> None:
    values = [b"\xff\xfe", b"\xff\xfe", None, None, None]
    assert rows.mask_binary_values(values, [False, True, False, False, False]) == [
        b"\xff\xfe",
        None,
        None,
        None,
        None,
    ]


def test_binary_clean_row_returns_none(rows: RowMasker) -> None:
    values = [b"\x00\x00\x00\x2a", b"Alice", b"n/a", None, b"\xff"]
    assert rows.mask_binary_values(values, [False, True, True, True, False]) is None


def test_binary_scan_flags_must_match_the_row(rows: RowMasker) -> None:
    with pytest.raises(ValueError, match="scan_columns"):
        rows.mask_binary_values([None] * 5, [True] * 4)


# What PostgreSQL prints for ordinary numeric, float, bigint, timestamp, uuid and bytea values
# with long digit runs. Masking any of them would corrupt a COPY round trip or a
# read-modify-write: the client would store "1.****-****-****-0000" back.
ORDINARY_ROW = [
    b"1.00000000000000",  # numeric(30,14)
    b"0.4111111111111111",
    b"4.111111111111111e+15",  # float8
    b"1.2345678901234567e-05",
    b"9223372036854775807",  # bigint max
    b"20261201123045123456",
    b"2026-12-01 12:30:45.123456+00",
    b"7f3c2a10-5b8e-4d2f-9c1a-0e6b7d8f9a21",
    b"\\x34313131313131313131313131313131",  # bytea of the text "4111111111111111"
    b"{1.00000000000000,2.50000000000000}",  # numeric[]
]


def test_ordinary_numbers_in_a_row_are_forwarded_untouched() -> None:
    rows = Masker(builtin_detectors()).for_columns([f"c{i}" for i in range(len(ORDINARY_ROW))])
    assert rows.mask_text_values(ORDINARY_ROW) is None


def test_copy_line_of_ordinary_numbers_is_the_same_object() -> None:
    line = "\t".join(v.decode() for v in ORDINARY_ROW) + "\n"
    assert Masker(builtin_detectors()).mask_text(line) is line


def test_copy_line_with_a_card_masks_only_the_card() -> None:
    line = "42\t4111111111111111\t1.00000000000000\t2026-12-01 12:30:45.123456+00\n"
    assert Masker(builtin_detectors()).mask_text(line) == (
        "42\t****-****-****-1111\t1.00000000000000\t2026-12-01 12:30:45.123456+00\n"
    )
