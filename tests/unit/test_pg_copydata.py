"""COPY TO STDOUT masking (connectors/postgres/copydata.py): options from the parsed statement,
text and CSV rows field by field, and the binary stream however it is split."""

from __future__ import annotations

import itertools
import json
import struct

import pglast.parser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres.copydata import (
    BINARY_SIGNATURE,
    BinaryCopyMasker,
    CopyOptions,
    TextCopyMasker,
    UnsupportedCopy,
)
from connectors.postgres.pgtypes import TypeRegistry
from gateway.errors import ProtocolError
from gateway.masking import Masker, builtin_detectors

CARD = "4111111111111111"
MASKED = "****-****-****-1111"
MASKER = Masker(builtin_detectors())
REG = TypeRegistry()


def copy_stmt(sql: str) -> dict[str, object]:
    stmt: dict[str, object] = json.loads(pglast.parser.parse_sql_json(sql))["stmts"][0]["stmt"]
    return stmt


OPTION_CASES = [
    ("copy t to stdout", CopyOptions()),
    ("copy t to stdout with (format csv)", CopyOptions(format="csv", delimiter=",", null="")),
    ("copy t to stdout with csv header", CopyOptions(format="csv", delimiter=",", null="", header=True)),
    ("copy t to stdout (format csv, header true, delimiter ';', null 'NULL', quote '''', escape '\\')",
     CopyOptions(format="csv", delimiter=";", null="NULL", quote="'", escape="\\", header=True)),
    ("copy t to stdout with (header)", CopyOptions(header=True)),
    ("copy t to stdout (format text, header false)", CopyOptions()),
    ("copy t to stdout delimiter '|' null as 'x'", CopyOptions(delimiter="|", null="x")),
    ("copy (select 1) to stdout binary", CopyOptions(format="binary")),
    ("copy t to stdout (format binary)", CopyOptions(format="binary")),
    ("copy t to stdout (encoding 'LATIN1')", CopyOptions(encoding="iso8859-1")),
    ("copy t to stdout (format csv, force_quote *)", CopyOptions(format="csv", delimiter=",", null="")),
]


@pytest.mark.parametrize(("sql", "expected"), OPTION_CASES)
def test_options_come_from_the_parsed_statement(sql: str, expected: CopyOptions) -> None:
    assert CopyOptions.from_statement(copy_stmt(sql)) == expected
    inner = copy_stmt(sql)["CopyStmt"]
    assert isinstance(inner, dict)
    assert CopyOptions.from_statement(inner) == expected


@pytest.mark.parametrize("sql", [
    "copy t to stdout (encoding 'EUC_TW')",
    "copy t to stdout (delimiter '||')",
])
def test_options_that_cannot_be_masked_are_refused(sql: str) -> None:
    with pytest.raises(UnsupportedCopy):
        CopyOptions.from_statement(copy_stmt(sql))


# id int4, name text, card int8, note text, born date
TYPES = [23, 25, 20, 25, 1082]


def text_masker(options: CopyOptions, masks: list[bool] | None = None) -> TextCopyMasker:
    return TextCopyMasker(options, TYPES, masks, REG, MASKER)


TEXT_ROWS = [
    ("1\tAda\t42\tnothing\t2024-01-01\n", None),  # clean: the same object back
    (f"1\tAda\t{CARD}\tnote\t2024-01-01\n", "1\tAda\t\\N\tnote\t2024-01-01\n"),
    (f"1\tAda\t42\tcard {CARD}\t2024-01-01\n", f"1\tAda\t42\tcard {MASKED}\t2024-01-01\n"),
    (f"1\ta\\tb\t42\tline\\n{CARD}\\\\\t\\N\n", f"1\ta\\tb\t42\tline\\n{MASKED}\\\\\t\\N\n"),
    (f"1\t\\N\t\\N\t{CARD}\t\\N\n", f"1\t\\N\t\\N\t{MASKED}\t\\N\n"),
]


@pytest.mark.parametrize(("row", "expected"), TEXT_ROWS)
def test_text_copy_rows_are_masked_field_by_field(row: str, expected: str | None) -> None:
    masker = text_masker(CopyOptions())
    payload = row.encode()
    out = masker.mask(payload)
    if expected is None:
        assert out is payload
    else:
        assert out.decode() == expected


def test_text_copy_header_is_passed_through_and_whole_columns_hidden() -> None:
    masker = text_masker(CopyOptions(header=True), masks=[False, True, False, False, False])
    header = b"id\tname\tcard\tnote\tborn\n"
    assert masker.mask(header) is header
    assert masker.mask(b"1\tAda\t42\tx\t2024-01-01\n") == b"1\t****\t42\tx\t2024-01-01\n"
    assert masker.mask(b"1\t\\N\t42\tx\t2024-01-01\n") == b"1\t\\N\t42\tx\t2024-01-01\n"


def test_text_copy_other_delimiter_and_null_string() -> None:
    masker = text_masker(CopyOptions(delimiter="|", null="NIL"))
    out = masker.mask(f"1|a\\|b|{CARD}|card {CARD}|NIL\n".encode())
    assert out == f"1|a\\|b|NIL|card {MASKED}|NIL\n".encode()


def test_text_copy_masked_value_gets_copy_escapes() -> None:
    masker = TextCopyMasker(CopyOptions(), [25], None, REG, Masker(builtin_detectors(), ()))
    # A replacement next to a tab and a backslash: the output still splits into one field.
    out = masker.mask(f"x\\t{CARD}\\\\y\n".encode())
    assert out == f"x\\t{MASKED}\\\\y\n".encode()


def test_text_copy_floats_and_money_are_scanned_as_the_digits_they_are() -> None:
    # 4.111111111111111e+15 holds no digit run a raw scan of the row would see.
    masker = TextCopyMasker(CopyOptions(), [701, 790, 25], None, REG, MASKER)
    out = masker.mask(b"4.111111111111111e+15\t$4,111,111,111,111,111.00\tx\n")
    assert out == b"\\N\t\\N\tx\n"


def test_a_row_of_the_wrong_width_is_a_protocol_error() -> None:
    masker = text_masker(CopyOptions())
    with pytest.raises(ProtocolError):
        masker.mask(f"1\t{CARD}\n".encode())


CSV = CopyOptions(format="csv", delimiter=",", null="")

CSV_ROWS = [
    ('1,Ada,42,"a, b",2024-01-01\n', None),
    (f'1,Ada,{CARD},x,2024-01-01\n', '1,Ada,,x,2024-01-01\n'),
    (f'1,"Ada",42,"line\n{CARD} ""q""",\n', f'1,"Ada",42,"line\n{MASKED} ""q""",\n'),
    (f'1,"",42,{CARD},\n', f'1,"",42,{MASKED},\n'),  # "" is an empty string, not NULL
    (f'"1","x","42","{CARD}","2024-01-01"\n', f'"1","x","42","{MASKED}","2024-01-01"\n'),  # FORCE_QUOTE kept
]


@pytest.mark.parametrize(("row", "expected"), CSV_ROWS)
def test_csv_copy_rows_keep_their_quoting(row: str, expected: str | None) -> None:
    masker = text_masker(CSV)
    payload = row.encode()
    out = masker.mask(payload)
    if expected is None:
        assert out is payload
    else:
        assert out.decode() == expected


def test_csv_with_another_quote_and_escape() -> None:
    opts = CopyOptions(format="csv", delimiter=";", null="NULL", quote="'", escape="\\")
    masker = text_masker(opts, masks=[False, True, False, False, False])
    out = masker.mask(f"1;'it\\'s';{CARD};'a;b {CARD}';NULL\n".encode())
    assert out == f"1;'****';NULL;'a;b {MASKED}';NULL\n".encode()  # quoted before, quoted after


def test_csv_whole_json_column_stays_valid_json() -> None:
    masker = TextCopyMasker(CSV, [3802], [True], REG, MASKER)
    assert masker.mask(b'"{""a"": 1}"\n') == b'"""****"""\n'


def test_csv_unterminated_quote_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        text_masker(CSV).mask(b'1,"open\n')


# -- binary --------------------------------------------------------------------------------------

BIN_TYPES = [23, 25, 20]


def tuple_bytes(fields: list[bytes | None]) -> bytes:
    out = struct.pack("!h", len(fields))
    for f in fields:
        out += b"\xff\xff\xff\xff" if f is None else struct.pack("!i", len(f)) + f
    return out


HEADER = BINARY_SIGNATURE + struct.pack("!ii", 0, 0)
TRAILER = b"\xff\xff"
ROW_CLEAN = tuple_bytes([struct.pack("!i", 1), b"Ada", struct.pack("!q", 42)])
ROW_CARD = tuple_bytes([struct.pack("!i", 2), f"card {CARD}".encode(), struct.pack("!q", int(CARD))])
ROW_CARD_MASKED = tuple_bytes([struct.pack("!i", 2), f"card {MASKED}".encode(), None])


def binary_masker(**kwargs: int) -> BinaryCopyMasker:
    return BinaryCopyMasker(BIN_TYPES, None, REG, MASKER, **kwargs)


def test_binary_copy_as_the_server_splits_it() -> None:
    """copyto.c: header with the first tuple, one tuple per message, the trailer alone."""
    masker = binary_masker()
    first = HEADER + ROW_CLEAN
    assert masker.feed(first) is first
    assert masker.feed(ROW_CARD) == ROW_CARD_MASKED
    assert masker.feed(ROW_CLEAN) is ROW_CLEAN
    assert masker.feed(TRAILER) is TRAILER
    masker.finish()
    assert masker.rows == 3 and masker.masked_rows == 1


def test_binary_copy_of_no_rows_header_and_trailer_in_one_message() -> None:
    masker = binary_masker()
    only = HEADER + TRAILER
    assert masker.feed(only) is only
    masker.finish()


STREAM = HEADER + ROW_CLEAN + ROW_CARD + ROW_CLEAN + ROW_CARD + TRAILER
MASKED_STREAM = HEADER + ROW_CLEAN + ROW_CARD_MASKED + ROW_CLEAN + ROW_CARD_MASKED + TRAILER


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_binary_copy_split_anywhere_gives_the_same_masked_stream(cuts: list[int]) -> None:
    points = sorted(set(cuts) | {0, len(STREAM)})
    masker = binary_masker()
    out = b"".join(masker.feed(STREAM[a:b]) for a, b in itertools.pairwise(points))
    masker.finish()
    assert out == MASKED_STREAM


def test_binary_copy_one_byte_at_a_time() -> None:
    masker = binary_masker()
    out = b"".join(masker.feed(STREAM[i : i + 1]) for i in range(len(STREAM)))
    masker.finish()
    assert out == MASKED_STREAM


@pytest.mark.parametrize("stream", [
    HEADER + ROW_CLEAN,  # no trailer
    HEADER + ROW_CLEAN[:-3],  # cut mid-tuple
    HEADER[:5],
])
def test_binary_copy_cut_short_is_a_protocol_error(stream: bytes) -> None:
    masker = binary_masker()
    masker.feed(stream)
    with pytest.raises(ProtocolError):
        masker.finish()


@pytest.mark.parametrize("stream", [
    b"PGCOPY\n\xff\r\n\x01" + struct.pack("!ii", 0, 0),  # wrong signature
    BINARY_SIGNATURE + struct.pack("!ii", 1 << 16, 0),  # OIDs (pre-12 servers)
    BINARY_SIGNATURE + struct.pack("!ii", 0, -1),  # negative extension
    HEADER + tuple_bytes([b"x"]),  # one field for three columns
    HEADER + struct.pack("!hi", 3, -7),  # negative field length
    HEADER + TRAILER + ROW_CLEAN,  # data after the trailer
])
def test_malformed_binary_copy_is_a_protocol_error(stream: bytes) -> None:
    with pytest.raises(ProtocolError):
        binary_masker().feed(stream)


def test_binary_copy_holds_back_a_bounded_amount() -> None:
    masker = binary_masker(max_buffer=1024)
    masker.feed(HEADER)
    with pytest.raises(ProtocolError):
        # A field that says it is 1 MiB long, sent in pieces: refused before it is all held.
        masker.feed(struct.pack("!hi", 3, 4) + b"\x00\x00\x00\x01" + struct.pack("!i", 1 << 20))
        for _ in range(10):
            masker.feed(b"x" * 200)


def test_binary_copy_header_extension_is_skipped() -> None:
    masker = binary_masker()
    stream = BINARY_SIGNATURE + struct.pack("!ii", 0, 3) + b"abc" + ROW_CARD + TRAILER
    assert masker.feed(stream) == BINARY_SIGNATURE + struct.pack("!ii", 0, 3) + b"abc" + ROW_CARD_MASKED + TRAILER


def test_binary_copy_whole_columns() -> None:
    masker = BinaryCopyMasker(BIN_TYPES, [False, True, True], REG, MASKER)
    out = masker.feed(HEADER + ROW_CLEAN + TRAILER)
    assert out == HEADER + tuple_bytes([struct.pack("!i", 1), b"****", None]) + TRAILER


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=5), st.booleans())
def test_random_copy_data_only_raises_protocol_errors(chunks: list[bytes], with_header: bool) -> None:
    masker = binary_masker()
    try:
        if with_header:
            masker.feed(HEADER)
        for chunk in chunks:
            masker.feed(chunk)
        masker.finish()
    except ProtocolError:
        pass
    text = text_masker(CSV)
    try:
        for chunk in chunks:
            text.mask(chunk)
    except ProtocolError:
        pass


# -- random rows: the masked row still splits into the same fields, a card never survives ---------

_FIELD = st.one_of(
    st.none(),
    st.text(alphabet=st.sampled_from(list('ab ,;\t\n\r"\\\'|N.') + ["é"]), max_size=8),
    st.just(f"card {CARD}"),
    st.just(CARD),
)


def csv_row(fields: list[str | None]) -> str:
    """CopyAttributeOutCSV for the defaults: quote when needed, "" for an empty string."""
    out = []
    for f in fields:
        if f is None:
            out.append("")
        elif f == "" or any(c in f for c in ',"\n\r') or f == "\\.":
            out.append('"' + f.replace('"', '""') + '"')
        else:
            out.append(f)
    return ",".join(out) + "\n"


def text_row(fields: list[str | None]) -> str:
    escapes = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
               "\v": "\\v"}
    return "\t".join("\\N" if f is None else "".join(escapes.get(c, c) for c in f)
                     for f in fields) + "\n"


@settings(max_examples=500, deadline=None)
@given(st.lists(_FIELD, min_size=1, max_size=5), st.booleans())
def test_random_rows_keep_their_fields_and_lose_the_card(fields: list[str | None], csv_format: bool) -> None:
    import csv
    import io

    types = [25] * len(fields)
    if csv_format:
        masker = TextCopyMasker(CSV, types, None, REG, MASKER)
        out = masker.mask(csv_row(fields).encode()).decode()
        parsed = next(csv.reader(io.StringIO(out, newline=""))) or [""]  # csv reads "\n" as []
        # csv reads NULL and "" alike as ""; compare through that lens
        expected = ["" if f is None else f for f in fields]
    else:
        masker = TextCopyMasker(CopyOptions(), types, None, REG, MASKER)
        out = masker.mask(text_row(fields).encode()).decode()
        assert out.endswith("\n")
        parsed = [None if raw == "\\N" else _unescape(raw) for raw in _split_tabs(out[:-1])]
        expected = list(fields)
    assert len(parsed) == len(fields)
    for got, want in zip(parsed, expected, strict=True):
        if want is not None and CARD in want:
            assert got is not None and CARD not in got and "1111" in got
        else:
            assert got == want


def _split_tabs(line: str) -> list[str]:
    fields, current, i = [], [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            current.append(line[i : i + 2])
            i += 2
        elif line[i] == "\t":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(line[i])
            i += 1
    fields.append("".join(current))
    return fields


def _unescape(raw: str) -> str:
    table = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v"}
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            out.append(table.get(raw[i + 1], raw[i + 1]))
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
