"""Whole protocol messages rewritten between a client encoding and UTF-8 (transcode.messages/copy)."""

from __future__ import annotations

import struct
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres import backend, frontend
from connectors.postgres.transcode import (
    CopyTranscoder,
    DataRowTranscoder,
    TranscodeError,
    bind,
    client_encoding,
    close,
    command_complete,
    copy_fail,
    describe,
    error_response,
    execute,
    notification_response,
    parameter_status,
    parse,
    query,
    row_description,
)
from connectors.postgres.wire import BackendMessage, CopyData, FrontendMessage
from gateway.errors import ProtocolError

LATIN1 = client_encoding("LATIN1")
SJIS = client_encoding("SJIS")
UTF8 = client_encoding("UTF8")


def _i32(n: int) -> bytes:
    return struct.pack("!i", n)


FRONTEND = [
    (query, frontend.Query("SELECT 'é'"), frontend.Query("SELECT 'é'")),
    (parse, frontend.Parse("sté", "SELECT $1 || 'ü'", (25,)), None),
    (describe, frontend.Describe("S", "sté"), None),
    (close, frontend.Close("P", "porté"), None),
    (execute, frontend.Execute("porté", 10), None),
    (copy_fail, frontend.CopyFail("abandonné"), None),
]


@pytest.mark.parametrize(("rewrite", "message", "_unused"), FRONTEND)
def test_frontend_messages_decode_after_conversion_as_if_sent_in_utf8(
    rewrite: object, message: FrontendMessage, _unused: object
) -> None:
    utf8 = message.encode()
    latin1 = utf8.decode("utf-8").encode("latin-1")  # same text, the client's bytes
    assert callable(rewrite)
    converted = rewrite(LATIN1, latin1)
    assert converted == utf8
    assert frontend.decode_frontend(converted[:1], converted[5:], converted) == message


@pytest.mark.parametrize(("rewrite", "message", "_unused"), FRONTEND)
def test_ascii_and_noop_messages_come_back_as_the_same_object(
    rewrite: object, message: FrontendMessage, _unused: object
) -> None:
    assert callable(rewrite)
    ascii_raw = message.encode().decode().encode("ascii", "replace")
    assert rewrite(LATIN1, ascii_raw) is ascii_raw
    utf8 = message.encode()
    assert rewrite(UTF8, utf8) is utf8


def test_query_with_sjis_backslash_trail_reaches_the_target_without_a_backslash() -> None:
    body = b"SELECT '\x95\x5c'\0"
    raw = b"Q" + struct.pack("!I", len(body) + 4) + body
    out = query(SJIS, raw)
    message = frontend.decode_frontend(b"Q", out[5:], out)
    assert isinstance(message, frontend.Query)
    assert message.query == "SELECT '表'"
    assert b"\\" not in out


def test_query_with_an_invalid_sequence_is_refused_with_22021() -> None:
    body = b"SELECT '\x81'\0"
    with pytest.raises(TranscodeError) as caught:
        query(SJIS, b"Q" + struct.pack("!I", len(body) + 4) + body)
    assert caught.value.sqlstate == "22021"
    assert str(caught.value) == 'invalid byte sequence for encoding "SJIS": 0x81 0x27'


def test_truncated_multibyte_character_at_the_end_of_a_string_is_refused() -> None:
    body = b"SELECT 1 -- \x81\0"
    with pytest.raises(TranscodeError) as caught:
        query(SJIS, b"Q" + struct.pack("!I", len(body) + 4) + body)
    assert str(caught.value) == 'invalid byte sequence for encoding "SJIS": 0x81'


def test_bind_converts_text_parameters_and_text_typed_binary_ones_only() -> None:
    params = ("é".encode("latin-1"), "ü".encode("latin-1"), b"\xe9\x00\x00\x01", None)
    body = _bind_body(b"port\xe9", b"st\xe9", (0, 1, 1, 0), params, (1,))
    client = b"B" + struct.pack("!I", len(body) + 4) + body
    out = bind(LATIN1, client, (25, 1043, 23, 25))
    decoded = frontend.decode_frontend(b"B", out[5:], out)
    assert isinstance(decoded, frontend.Bind)
    assert decoded.portal == "porté" and decoded.statement == "sté"
    assert decoded.params == ("é".encode(), "ü".encode(), b"\xe9\x00\x00\x01", None)
    assert decoded.param_formats == (0, 1, 1, 0)
    assert decoded.result_formats == (1,)


def _bind_body(
    portal: bytes,
    statement: bytes,
    formats: tuple[int, ...],
    params: tuple[bytes | None, ...],
    result_formats: tuple[int, ...],
) -> bytes:
    parts = [portal + b"\0", statement + b"\0", struct.pack("!H", len(formats))]
    parts += [struct.pack("!h", f) for f in formats]
    parts.append(struct.pack("!H", len(params)))
    for p in params:
        parts.append(b"\xff\xff\xff\xff" if p is None else _i32(len(p)) + p)
    parts.append(struct.pack("!H", len(result_formats)))
    parts += [struct.pack("!h", f) for f in result_formats]
    return b"".join(parts)


def test_bind_converts_binary_text_arrays_element_by_element() -> None:
    element = "é".encode("latin-1")
    array = _i32(1) + _i32(0) + struct.pack("!I", 25) + _i32(2) + _i32(1)
    array += _i32(len(element)) + element + b"\xff\xff\xff\xff"
    body = _bind_body(b"", b"", (1,), (array,), ())
    out = bind(LATIN1, b"B" + struct.pack("!I", len(body) + 4) + body, (1009,))
    decoded = frontend.decode_frontend(b"B", out[5:], out)
    assert isinstance(decoded, frontend.Bind)
    value = decoded.params[0]
    assert value is not None and value.endswith(_i32(2) + "é".encode() + b"\xff\xff\xff\xff")


def test_bind_refuses_binary_xml_in_a_converting_session() -> None:
    body = _bind_body(b"", b"", (1,), ("<a>é</a>".encode("latin-1"),), ())
    with pytest.raises(TranscodeError) as caught:
        bind(LATIN1, b"B" + struct.pack("!I", len(body) + 4) + body, (142,))
    assert caught.value.sqlstate == "0A000"


def test_growth_past_the_servers_limit_for_the_type_is_refused_with_54000() -> None:
    # Describe bodies are capped at 10,000 bytes by the server; LATIN1 doubles high bytes.
    body = b"S" + b"\xe9" * 9000 + b"\0"
    with pytest.raises(TranscodeError) as caught:
        describe(LATIN1, b"D" + struct.pack("!I", len(body) + 4) + body)
    assert caught.value.sqlstate == "54000"


def test_growth_past_max_message_size_is_refused() -> None:
    body = b"\x80" * 2000 + b"\0"  # WIN1252 euro: one byte becomes three
    with pytest.raises(TranscodeError) as caught:
        query(client_encoding("WIN1252"), b"Q" + struct.pack("!I", len(body) + 4) + body,
              max_message_size=4096)
    assert caught.value.sqlstate == "54000"


# --- backend --------------------------------------------------------------------------------------

BACKEND = [
    (row_description, backend.RowDescription((backend.FieldDescription("prénom"),
                                              backend.FieldDescription("id", type_oid=23)))),
    (command_complete, backend.CommandComplete("SELECT 1")),
    (notification_response, backend.NotificationResponse(42, "canal_é", "charge ü")),
    (parameter_status, backend.ParameterStatus("application_name", "café")),
    (error_response, backend.ErrorResponse({"S": "ERROR", "C": "42P01",
                                            "M": 'relation "clé" does not exist'})),
    (error_response, backend.NoticeResponse({"S": "NOTICE", "M": "déjé"})),
]


@pytest.mark.parametrize(("rewrite", "message"), BACKEND)
def test_backend_messages_reach_the_client_in_its_encoding(
    rewrite: object, message: BackendMessage
) -> None:
    assert callable(rewrite)
    utf8 = message.encode()
    out = rewrite(LATIN1, utf8)
    expected = utf8[5:].replace("é".encode(), b"\xe9").replace("ü".encode(), b"\xfc")
    assert out[5:] == expected
    assert struct.unpack("!I", out[1:5])[0] == len(out) - 1


def test_error_with_an_unmappable_character_becomes_postgresqls_22p05() -> None:
    raw = backend.ErrorResponse({"S": "ERROR", "M": 'relation "€" does not exist'}).encode()
    with pytest.raises(TranscodeError) as caught:
        error_response(LATIN1, raw)
    assert caught.value.sqlstate == "22P05"


def test_data_rows_convert_text_values_and_text_typed_binary_values() -> None:
    rows = DataRowTranscoder(LATIN1, (0, 1, 1), (25, 25, 17))
    raw = backend.data_row(["é".encode(), "ü".encode(), "é".encode(), None])
    with pytest.raises(ProtocolError):  # four values for three columns
        rows.data_row(raw)
    raw = backend.data_row(["é".encode(), "ü".encode(), "é".encode()])
    out = rows.data_row(raw)
    decoded = backend.decode_backend(b"D", out[5:], out)
    assert isinstance(decoded, backend.DataRow)
    assert decoded.values == (b"\xe9", b"\xfc", "é".encode())  # bytea untouched


def test_ascii_rows_are_forwarded_as_they_came() -> None:
    rows = DataRowTranscoder(SJIS, (), (23, 25))
    raw = backend.data_row([b"1", b"abc"])
    assert rows.data_row(raw) is raw


def test_data_row_with_unmappable_text_is_22p05() -> None:
    rows = DataRowTranscoder(LATIN1, (), (25,))
    with pytest.raises(TranscodeError) as caught:
        rows.data_row(backend.data_row(["€".encode()]))
    assert str(caught.value) == (
        'character with byte sequence 0xe2 0x82 0xac in encoding "UTF8" has no equivalent in '
        'encoding "LATIN1"'
    )


# --- COPY -----------------------------------------------------------------------------------------


def test_copy_in_carries_a_character_split_across_messages() -> None:
    copy = CopyTranscoder(SJIS, to_server=True)
    first = copy.copy_data(CopyData(b"1\t\x95").encode())
    second = copy.copy_data(CopyData(b"\x5c\n").encode())
    copy.finish()
    assert first is not None and second is not None
    assert first[5:] + second[5:] == "1\t表\n".encode()


def test_copy_in_ending_inside_a_character_is_refused_at_copy_done() -> None:
    copy = CopyTranscoder(SJIS, to_server=True)
    assert copy.copy_data(CopyData(b"\x95").encode()) is None
    with pytest.raises(TranscodeError) as caught:
        copy.finish()
    assert str(caught.value) == 'invalid byte sequence for encoding "SJIS": 0x95'


def test_copy_in_refuses_nul_and_invalid_sequences() -> None:
    copy = CopyTranscoder(SJIS, to_server=True)
    with pytest.raises(TranscodeError):
        copy.copy_data(CopyData(b"a\x00b\n").encode())
    copy = CopyTranscoder(SJIS, to_server=True)
    with pytest.raises(TranscodeError):
        copy.copy_data(CopyData(b"\x81\x27\n").encode())


def test_copy_out_converts_and_splits_utf8_safely() -> None:
    copy = CopyTranscoder(LATIN1, to_server=False)
    data = "é\n".encode()
    first = copy.copy_data(CopyData(data[:1]).encode())
    second = copy.copy_data(CopyData(data[1:]).encode())
    assert first is None and second is not None and second[5:] == b"\xe9\n"


def test_ascii_copy_data_is_forwarded_as_it_came() -> None:
    raw = CopyData(b"1\tabc\n").encode()
    assert CopyTranscoder(SJIS, to_server=True).copy_data(raw) is raw


def test_binary_copy_without_column_types_is_refused() -> None:
    with pytest.raises(TranscodeError) as caught:
        CopyTranscoder(LATIN1, to_server=True, binary=True)
    assert caught.value.sqlstate == "0A000"
    CopyTranscoder(UTF8, to_server=True, binary=True)  # nothing to convert: fine


def test_binary_copy_converts_text_columns_given_their_types() -> None:
    header = b"PGCOPY\n\xff\r\n\x00" + _i32(0) + _i32(0)
    row = struct.pack("!h", 2) + _i32(4) + _i32(7) + _i32(1) + b"\xe9"
    trailer = struct.pack("!h", -1)
    stream = header + row + trailer
    copy = CopyTranscoder(LATIN1, to_server=True, binary=True, column_types=(23, 25))
    out = b""
    for i in range(len(stream)):  # one byte at a time
        chunk = copy.copy_data(CopyData(stream[i : i + 1]).encode())
        if chunk is not None:
            out += chunk[5:]
    copy.finish()
    assert out == header + struct.pack("!h", 2) + _i32(4) + _i32(7) + _i32(2) + "é".encode() + (
        trailer
    )


@settings(max_examples=100, deadline=None)
@given(text=st.text(st.sampled_from("aé€表\t\n\\'"), max_size=30), cuts=st.lists(st.integers(0, 60)))
def test_copy_in_is_independent_of_how_the_stream_is_cut(text: str, cuts: list[int]) -> None:
    encoding = client_encoding("SJIS") if "€" not in text else client_encoding("GB18030")
    try:
        client = encoding.to_client(text.encode())
    except TranscodeError:
        return
    points = sorted({c for c in cuts if c < len(client)} | {0, len(client)})
    copy = CopyTranscoder(encoding, to_server=True)
    out = b""
    for start, end in pairwise(points):
        chunk = copy.copy_data(CopyData(client[start:end]).encode())
        if chunk is not None:
            out += chunk[5:]
    copy.finish()
    assert out == text.encode()
