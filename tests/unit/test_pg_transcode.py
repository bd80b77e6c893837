"""Client encodings: names, conversions and PostgreSQL's error wording (transcode.encoding)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres.transcode import (
    REFUSED,
    SUPPORTED,
    ClientEncoding,
    TranscodeError,
    client_encoding,
)
from connectors.postgres.transcode.encoding import _converter

# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("UTF8", "UTF8"),
        ("utf-8", "UTF8"),
        ("Unicode", "UTF8"),
        ("LATIN1", "LATIN1"),
        ("ISO-8859-1", "LATIN1"),
        ("iso_8859_1", "LATIN1"),
        ("latin 9", "LATIN9"),
        ("ISO8859-15", "LATIN9"),
        ("WIN1252", "WIN1252"),
        ("windows-1252", "WIN1252"),
        ("KOI8-R", "KOI8R"),
        ("koi8", "KOI8R"),
        ("win", "WIN1251"),
        ("alt", "WIN866"),
        ("Shift_JIS", "SJIS"),
        ("mskanji", "SJIS"),
        ("windows-932", "SJIS"),
        ("win950", "BIG5"),
        ("cp936", None),  # not an alias PostgreSQL knows
        ("win936", "GBK"),
        ("win949", "UHC"),
        ("gb-18030", "GB18030"),
        ("euc-jp", "EUC_JP"),
        ("EUC_JIS_2004", "EUC_JIS_2004"),
        ("shift-jis-2004", "SHIFT_JIS_2004"),
        ("tcvn5712", "WIN1258"),
        ("vscii", "WIN1258"),
        ("ISO_8859_5", "ISO_8859_5"),
        ("sql_ascii", "SQL_ASCII"),
    ],
)
def test_names_normalise_as_postgresql_does(name: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(TranscodeError) as caught:
            client_encoding(name)
        assert caught.value.sqlstate == "22023"
    else:
        assert client_encoding(name).name == canonical


def test_unknown_name_is_refused_with_postgresqls_wording() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("klingon")
    assert str(caught.value) == 'invalid value for parameter "client_encoding": "klingon"'
    assert caught.value.sqlstate == "22023"


def test_name_of_namedatalen_bytes_is_unknown_even_if_it_normalises() -> None:
    with pytest.raises(TranscodeError):
        client_encoding("LATIN1" + "-" * 60)


def test_mule_internal_is_refused_as_postgresql_refuses_it() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("MULE_INTERNAL")
    assert caught.value.sqlstate == "0A000"
    assert caught.value.detail == "Conversion between MULE_INTERNAL and UTF8 is not supported."


def test_euc_tw_is_refused_with_a_reason() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("EUC_TW")
    assert caught.value.sqlstate == "0A000"
    assert caught.value.detail is not None and "EUC_TW" in caught.value.detail
    assert set(REFUSED) == {"MULE_INTERNAL", "EUC_TW"}


def test_unicode_spelled_exactly_is_reported_back() -> None:
    assert client_encoding("UNICODE").reported("UNICODE") == "UNICODE"
    assert client_encoding("unicode").reported("unicode") == "UTF8"
    assert client_encoding("latin1").reported("latin1") == "LATIN1"


def test_refused_encodings_cannot_be_built_directly() -> None:
    with pytest.raises(ValueError):
        ClientEncoding("EUC_TW")


# --- conversions and error text -------------------------------------------------------------------

CONVERSIONS = [
    ("LATIN1", "é€", None),
    ("LATIN1", "é", b"\xe9"),
    ("WIN1252", "€", b"\x80"),
    ("LATIN9", "€", b"\xa4"),
    ("KOI8R", "Ж", b"\xf6"),
    ("WIN866", "Ж", b"\x86"),
    ("SJIS", "表", b"\x95\x5c"),
    ("SJIS", "～", b"\x81\x60"),
    ("SJIS", "①", b"\x87\x40"),
    ("BIG5", "許", b"\xb3\x5c"),
    ("GBK", "縗'", b"\xbf\x5c'"),
    ("GBK", "€", b"\x80"),
    ("UHC", "한", b"\xc7\xd1"),
    ("GB18030", "€", b"\xa2\xe3"),
    ("GB18030", "😀", b"\x949\xfc6"),
    ("EUC_JP", "日本", b"\xc6\xfc\xcb\xdc"),
    ("EUC_KR", "한", b"\xc7\xd1"),
    ("EUC_CN", "中", b"\xd6\xd0"),
    ("SHIFT_JIS_2004", "\\", b"\\"),
    ("UTF8", "é", "é".encode()),
    ("SQL_ASCII", "é", "é".encode()),
]


@pytest.mark.parametrize(("name", "text", "client"), CONVERSIONS)
def test_conversion_table(name: str, text: str, client: bytes | None) -> None:
    encoding = client_encoding(name)
    if client is None:
        with pytest.raises(TranscodeError):
            encoding.to_client(text.encode())
        return
    assert encoding.to_client(text.encode()) == client
    if name != "GBK" or client != b"\x80":  # PostgreSQL writes 0x80 for the euro, reads nothing
        assert encoding.to_server(client) == text.encode()


ERRORS = [
    ("SJIS", b"\x81\x27", "22021", 'invalid byte sequence for encoding "SJIS": 0x81 0x27'),
    ("SJIS", b"ab\x81", "22021", 'invalid byte sequence for encoding "SJIS": 0x81'),
    ("SJIS", b"\x85\x40", "22P05",
     'character with byte sequence 0x85 0x40 in encoding "SJIS" has no equivalent in encoding "UTF8"'),
    ("SJIS", b"\xf0\x40", "22P05",
     'character with byte sequence 0xf0 0x40 in encoding "SJIS" has no equivalent in encoding "UTF8"'),
    ("LATIN1", b"a\x00b", "22021", 'invalid byte sequence for encoding "LATIN1": 0x00'),
    ("WIN1252", b"\x81", "22P05",
     'character with byte sequence 0x81 in encoding "WIN1252" has no equivalent in encoding "UTF8"'),
    ("GBK", b"\xbf\x27", "22P05",
     'character with byte sequence 0xbf 0x27 in encoding "GBK" has no equivalent in encoding "UTF8"'),
    ("GBK", b"\x8d\x20", "22021", 'invalid byte sequence for encoding "GBK": 0x8d 0x20'),
    ("BIG5", b"\xa4\x00", "22021", 'invalid byte sequence for encoding "BIG5": 0xa4 0x00'),
    ("GB18030", b"\x81\x30\x81", "22021",
     'invalid byte sequence for encoding "GB18030": 0x81 0x30 0x81'),
    ("EUC_JP", b"\x8f\xa1", "22021", 'invalid byte sequence for encoding "EUC_JP": 0x8f 0xa1'),
    ("JOHAB", b"\x88\x61", "22021", 'invalid byte sequence for encoding "JOHAB": 0x88 0x61'),
    ("EUC_CN", b"\x8f\xa1\xa1", "22021",
     'invalid byte sequence for encoding "EUC_CN": 0x8f 0xa1 0xa1'),
]


@pytest.mark.parametrize(("name", "data", "sqlstate", "message"), ERRORS)
def test_to_server_errors_carry_postgresqls_sqlstate_and_wording(
    name: str, data: bytes, sqlstate: str, message: str
) -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding(name).to_server(data)
    assert (caught.value.sqlstate, str(caught.value)) == (sqlstate, message)


def test_to_client_unmappable_names_the_utf8_bytes() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("LATIN1").to_client("x€".encode())
    assert caught.value.sqlstate == "22P05"
    assert str(caught.value) == (
        'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in '
        'encoding "LATIN1"'
    )


def test_to_client_refuses_invalid_utf8_from_the_target() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("LATIN1").to_client(b"a\xc3")
    assert caught.value.sqlstate == "22021"
    assert str(caught.value) == 'invalid byte sequence for encoding "UTF8": 0xc3'


def test_unchanged_values_come_back_as_the_same_object() -> None:
    data = b"SELECT 1"
    for name in SUPPORTED:
        encoding = client_encoding(name)
        assert encoding.to_server(data) is data
        assert encoding.to_client(data) is data
    utf8 = "é".encode()
    assert client_encoding("UTF8").to_server(utf8) is utf8


def test_sql_ascii_is_a_no_op_like_utf8() -> None:
    encoding = client_encoding("SQL_ASCII")
    assert encoding.is_noop
    assert encoding.to_server(b"\xc3\xa9") == b"\xc3\xa9"


# --- hostile: CVE-2006-2313/2314 ------------------------------------------------------------------

#: Client encodings whose second byte can be an ASCII byte.
ASCII_TRAILING = ("SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB")
#: The only two-byte characters PostgreSQL itself reads as ASCII (JIS X 0213 puts REVERSE
#: SOLIDUS and TILDE there); measured, re-checked by the server test.
ASCII_FROM_TWO_BYTES = {("SHIFT_JIS_2004", b"\x81\x5f"): b"\\", ("SHIFT_JIS_2004", b"\x81\xb0"): b"~"}


@pytest.mark.parametrize("name", ASCII_TRAILING)
def test_no_trailing_byte_becomes_a_quote_or_backslash(name: str) -> None:
    encoding = client_encoding(name)
    for lead in range(0x80, 0x100):
        for trail in b"'\\\";":
            code = bytes((lead, trail))
            try:
                text = encoding.to_server(code).decode()
            except TranscodeError:
                continue  # a lead byte with a quote after it is refused, never split
            if (name, code) in ASCII_FROM_TWO_BYTES:
                continue
            if len(text) == 1:
                assert not text.isascii(), (name, code)  # one character owns both bytes
            else:
                # Only a lead byte that is a whole character by itself (SJIS kana) may be
                # followed by the real ASCII character.
                assert text == encoding.to_server(bytes((lead,))).decode() + chr(trail)


@pytest.mark.parametrize("name", ASCII_TRAILING)
def test_every_two_byte_character_reads_as_non_ascii(name: str) -> None:
    encoding = client_encoding(name)
    for lead in range(0x80, 0x100):
        for trail in range(1, 0x100):
            code = bytes((lead, trail))
            try:
                text = encoding.to_server(code).decode()
            except TranscodeError:
                continue
            if len(text) == 1:
                assert not text.isascii() or (name, code) in ASCII_FROM_TWO_BYTES, (name, code)


def test_gbk_bf5c27_keeps_one_real_quote() -> None:
    out = client_encoding("GBK").to_server(b"SELECT '\xbf\x5c' OR 1=1 --'")
    assert out == "SELECT '縗' OR 1=1 --'".encode()
    assert out.count(b"'") == 3 and b"\\" not in out  # 0x5C was the character's own byte


def test_lead_byte_then_quote_is_refused_not_split() -> None:
    with pytest.raises(TranscodeError) as caught:
        client_encoding("SJIS").to_server(b"SELECT '\x81'; DROP TABLE t; --'")
    assert caught.value.sqlstate == "22021"


def test_shift_jis_2004_ascii_bytes_stay_ascii_where_python_reads_yen() -> None:
    # Python's shift_jis_2004 reads 0x5C as YEN SIGN; PostgreSQL (and the gateway) as backslash.
    encoding = client_encoding("SHIFT_JIS_2004")
    assert encoding.to_server(b"E'\\'' \x82\xa0") == "E'\\'' あ".encode()
    assert encoding.to_client("E'\\'' あ".encode()) == b"E'\\'' \x82\xa0"


def test_sjis_writes_yen_as_backslash_as_postgresql_does() -> None:
    assert client_encoding("SJIS").to_client("¥あ".encode()) == b"\\\x82\xa0"


def test_nul_is_refused_in_every_encoding() -> None:
    for name in SUPPORTED:
        if client_encoding(name).is_noop:
            continue
        with pytest.raises(TranscodeError) as caught:
            client_encoding(name).to_server(b"\xe9\x00")
        assert caught.value.sqlstate == "22021"


def test_lone_surrogates_cannot_come_out_of_to_server() -> None:
    # UTF-8 never carries surrogates; every conversion's output must be valid strict UTF-8.
    for name in ("SJIS", "GB18030", "LATIN1", "EUC_JP", "BIG5"):
        encoding = client_encoding(name)
        for lead in range(0x80, 0x100, 7):
            for trail in range(0x30, 0x100, 3):
                try:
                    encoding.to_server(bytes((lead, trail))).decode("utf-8")
                except TranscodeError:
                    pass


def test_surrogate_escaped_bytes_from_the_target_are_refused() -> None:
    with pytest.raises(TranscodeError):
        client_encoding("SJIS").to_client(b"\xed\xa0\x80")


# --- properties -----------------------------------------------------------------------------------


def _repertoire(name: str) -> list[str]:
    """Characters that survive to_client then to_server unchanged (a sample of the BMP)."""
    encoding = client_encoding(name)
    found = []
    for point in (*range(0x20, 0x800), *range(0xE00, 0xE80), *range(0x2000, 0x3400), *range(0x4E00, 0xA000, 13),
                  *range(0xAC00, 0xD7A4, 17), *range(0xFF00, 0xFFF0)):
        char = chr(point)
        try:
            back = encoding.to_server(encoding.to_client(char.encode()))
        except TranscodeError:
            continue
        if back == char.encode():
            found.append(char)
    return found


_NON_NOOP = tuple(n for n in SUPPORTED if not client_encoding(n).is_noop)
_REPERTOIRES = {name: _repertoire(name) for name in _NON_NOOP}


@pytest.mark.parametrize("name", _NON_NOOP)
def test_every_encoding_has_a_repertoire_beyond_ascii(name: str) -> None:
    assert sum(1 for c in _REPERTOIRES[name] if not c.isascii()) >= 60


@settings(max_examples=40, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", _NON_NOOP)
def test_round_trip_text_client_bytes_utf8(name: str, data: st.DataObject) -> None:
    text = data.draw(st.text(st.sampled_from(_REPERTOIRES[name]), max_size=40))
    encoding = client_encoding(name)
    client = encoding.to_client(text.encode())
    assert encoding.to_server(client) == text.encode()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("name", ("SJIS", "SHIFT_JIS_2004", "EUC_JP", "EUC_JIS_2004", "EUC_KR",
                                  "BIG5", "UHC", "GBK", "GB18030", "JOHAB"))
def test_fast_path_agrees_with_the_character_by_character_path(
    name: str, data: st.DataObject
) -> None:
    converter = _converter(name)
    raw = data.draw(st.binary(max_size=24))
    try:
        fast = client_encoding(name).to_server(raw)
    except TranscodeError as error:
        fast_error = (error.sqlstate, str(error))
        try:
            converter._exact_to_server(raw)
        except TranscodeError as exact:
            # The structure check runs first in both; an unmappable character may be found in
            # either order only if there are two, so compare the class of failure.
            assert exact.sqlstate in ("22021", "22P05")
            return
        assert fast_error[0] == "22021"  # structure errors are raised before the exact path
        return
    assert fast == converter._exact_to_server(raw) or raw.isascii()


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64), name=st.sampled_from(_NON_NOOP))
def test_only_transcode_errors_escape(raw: bytes, name: str) -> None:
    encoding = client_encoding(name)
    for convert in (encoding.to_server, encoding.to_client):
        try:
            convert(raw)
        except TranscodeError:
            pass
