"""PostgreSQL codec: tables of hand-built wire bytes and the messages they must decode to.

The bytes are written with struct.pack from the "Message Formats" chapter, never produced by the
code under test. Each table is also fed as one chunk and one byte at a time.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

from connectors.postgres.codec import BackendDecoder, FrontendDecoder
from connectors.postgres.messages import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationRequest,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Flush,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    decode_backend,
    decode_frontend,
)

# --- hand-built wire bytes ------------------------------------------------------------------------


def tagged(tag: bytes, body: bytes = b"") -> bytes:
    return tag + struct.pack("!I", len(body) + 4) + body


def untagged(code: int, body: bytes = b"") -> bytes:
    return struct.pack("!II", len(body) + 8, code) + body


def z(*strings: bytes) -> bytes:
    """NUL-terminated strings, concatenated."""
    return b"".join(s + b"\0" for s in strings)


def i16(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}h", *values)


def i32(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}i", *values)


def u32(*values: int) -> bytes:
    return struct.pack(f"!{len(values)}I", *values)


def field_bytes(
    name: bytes, table: int, attr: int, oid: int, size: int, mod: int, fmt: int
) -> bytes:
    return z(name) + struct.pack("!IhIhih", table, attr, oid, size, mod, fmt)


STARTUP_TABLE: list[tuple[str, bytes, Message]] = [
    (
        "StartupMessage",
        untagged(
            196608, z(b"user", b"alice", b"database", b"shop", b"application_name", b"") + b"\0"
        ),
        StartupMessage({"user": "alice", "database": "shop", "application_name": ""}),
    ),
    (
        "StartupMessage-3.2",
        untagged(196610, z(b"user", b"bob") + b"\0"),
        StartupMessage({"user": "bob"}, protocol=196610),
    ),
    ("SSLRequest", untagged(80877103), SSLRequest()),
    ("GSSENCRequest", untagged(80877104), GSSENCRequest()),
    (
        "CancelRequest-3.0",
        untagged(80877102, i32(4242) + b"\x01\x02\x03\x04"),
        CancelRequest(4242, b"\x01\x02\x03\x04"),
    ),
    (
        "CancelRequest-3.2",
        untagged(80877102, i32(7) + bytes(range(32))),
        CancelRequest(7, bytes(range(32))),
    ),
]

FRONTEND_TABLE: list[tuple[str, bytes, Message]] = [
    ("Query", tagged(b"Q", z(b"SELECT 1; SELECT 'caf\xc3\xa9'")), Query("SELECT 1; SELECT 'café'")),
    ("Query-empty", tagged(b"Q", z(b"")), Query("")),
    (
        "Parse",
        tagged(b"P", z(b"s1", b"SELECT $1::int, $2") + i16(2) + u32(23, 0xFFFFFFFF)),
        Parse("s1", "SELECT $1::int, $2", (23, 0xFFFFFFFF)),
    ),
    ("Parse-unnamed", tagged(b"P", z(b"", b"SELECT 1") + i16(0)), Parse("", "SELECT 1")),
    (
        "Bind",
        tagged(
            b"B",
            z(b"p1", b"s1")
            + i16(3, 0, 1, 0)
            + i16(3)
            + i32(2)
            + b"42"
            + i32(-1)
            + i32(0)
            + i16(1, 1),
        ),
        Bind("p1", "s1", (0, 1, 0), (b"42", None, b""), (1,)),
    ),
    (
        "Bind-one-format-for-all",
        tagged(
            b"B", z(b"", b"") + i16(1, 1) + i16(2) + i32(1) + b"\x07" + i32(1) + b"\x08" + i16(0)
        ),
        Bind("", "", (1,), (b"\x07", b"\x08"), ()),
    ),
    ("Describe-S", tagged(b"D", b"S" + z(b"s1")), Describe("S", "s1")),
    ("Describe-P", tagged(b"D", b"P" + z(b"")), Describe("P", "")),
    ("Execute", tagged(b"E", z(b"p1") + i32(100)), Execute("p1", 100)),
    ("Close-S", tagged(b"C", b"S" + z(b"s1")), Close("S", "s1")),
    ("Close-P", tagged(b"C", b"P" + z(b"p1")), Close("P", "p1")),
    ("Sync", tagged(b"S"), Sync()),
    ("Flush", tagged(b"H"), Flush()),
    ("CopyData", tagged(b"d", b"1\tone\n"), CopyData(b"1\tone\n")),
    ("CopyDone", tagged(b"c"), CopyDone()),
    ("CopyFail", tagged(b"f", z(b"aborted by client")), CopyFail("aborted by client")),
    (
        "FunctionCall",
        tagged(b"F", u32(1234) + i16(1, 1) + i16(2) + i32(4) + i32(9) + i32(-1) + i16(0)),
        FunctionCall(1234, (1,), (i32(9), None), 0),
    ),
    ("PasswordMessage", tagged(b"p", z(b"s3cret")), PasswordMessage(b"s3cret\0")),
    ("Terminate", tagged(b"X"), Terminate()),
]

BACKEND_TABLE: list[tuple[str, bytes, Message]] = [
    ("AuthenticationOk", tagged(b"R", i32(0)), AuthenticationOk()),
    ("AuthenticationCleartextPassword", tagged(b"R", i32(3)), AuthenticationCleartextPassword()),
    (
        "AuthenticationMD5Password",
        tagged(b"R", i32(5) + b"salt"),
        AuthenticationMD5Password(b"salt"),
    ),
    (
        "AuthenticationSASL",
        tagged(b"R", i32(10) + z(b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256", b"")),
        AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")),
    ),
    (
        "AuthenticationSASLContinue",
        tagged(b"R", i32(11) + b"r=abc,s=xyz,i=4096"),
        AuthenticationSASLContinue(b"r=abc,s=xyz,i=4096"),
    ),
    (
        "AuthenticationSASLFinal",
        tagged(b"R", i32(12) + b"v=sig"),
        AuthenticationSASLFinal(b"v=sig"),
    ),
    (
        "AuthenticationGSSContinue",
        tagged(b"R", i32(8) + b"token"),
        AuthenticationRequest(8, b"token"),
    ),
    ("AuthenticationGSS", tagged(b"R", i32(7)), AuthenticationRequest(7)),
    (
        "ParameterStatus",
        tagged(b"S", z(b"server_version", b"17.2")),
        ParameterStatus("server_version", "17.2"),
    ),
    (
        "BackendKeyData",
        tagged(b"K", i32(31337) + b"\xde\xad\xbe\xef"),
        BackendKeyData(31337, b"\xde\xad\xbe\xef"),
    ),
    ("BackendKeyData-3.2", tagged(b"K", i32(1) + b"k" * 32), BackendKeyData(1, b"k" * 32)),
    (
        "NegotiateProtocolVersion",
        tagged(b"v", i32(0, 1) + z(b"_pq_.x")),
        NegotiateProtocolVersion(0, ("_pq_.x",)),
    ),
    ("ReadyForQuery-I", tagged(b"Z", b"I"), ReadyForQuery("I")),
    ("ReadyForQuery-T", tagged(b"Z", b"T"), ReadyForQuery("T")),
    ("ReadyForQuery-E", tagged(b"Z", b"E"), ReadyForQuery("E")),
    (
        "RowDescription",
        tagged(
            b"T",
            i16(2)
            + field_bytes(b"id", 16384, 1, 23, 4, -1, 0)
            + field_bytes(b"card", 16384, 2, 25, -1, -1, 1),
        ),
        RowDescription(
            (
                FieldDescription("id", 16384, 1, 23, 4, -1, 0),
                FieldDescription("card", 16384, 2, 25, -1, -1, 1),
            )
        ),
    ),
    ("RowDescription-empty", tagged(b"T", i16(0)), RowDescription(())),
    (
        "DataRow",
        tagged(b"D", i16(3) + i32(1) + b"1" + i32(-1) + i32(16) + b"4111111111111111"),
        DataRow((b"1", None, b"4111111111111111")),
    ),
    ("DataRow-empty-value", tagged(b"D", i16(1) + i32(0)), DataRow((b"",))),
    ("DataRow-no-columns", tagged(b"D", i16(0)), DataRow(())),
    ("CommandComplete", tagged(b"C", z(b"SELECT 1")), CommandComplete("SELECT 1")),
    ("EmptyQueryResponse", tagged(b"I"), EmptyQueryResponse()),
    (
        "ErrorResponse",
        tagged(
            b"E",
            b"S"
            + z(b"ERROR")
            + b"V"
            + z(b"ERROR")
            + b"C"
            + z(b"42P01")
            + b"M"
            + z(b'relation "x" does not exist')
            + b"P"
            + z(b"15")
            + b"\0",
        ),
        ErrorResponse(
            {
                "S": "ERROR",
                "V": "ERROR",
                "C": "42P01",
                "M": 'relation "x" does not exist',
                "P": "15",
            }
        ),
    ),
    (
        "NoticeResponse",
        tagged(b"N", b"S" + z(b"NOTICE") + b"C" + z(b"00000") + b"M" + z(b"hello") + b"\0"),
        NoticeResponse({"S": "NOTICE", "C": "00000", "M": "hello"}),
    ),
    ("ParseComplete", tagged(b"1"), ParseComplete()),
    ("BindComplete", tagged(b"2"), BindComplete()),
    ("CloseComplete", tagged(b"3"), CloseComplete()),
    ("NoData", tagged(b"n"), NoData()),
    ("PortalSuspended", tagged(b"s"), PortalSuspended()),
    ("ParameterDescription", tagged(b"t", i16(2) + u32(23, 25)), ParameterDescription((23, 25))),
    ("CopyInResponse", tagged(b"G", b"\0" + i16(2, 0, 0)), CopyInResponse(0, (0, 0))),
    ("CopyOutResponse", tagged(b"H", b"\1" + i16(1, 1)), CopyOutResponse(1, (1,))),
    ("CopyBothResponse", tagged(b"W", b"\0" + i16(0)), CopyBothResponse(0, ())),
    ("CopyData", tagged(b"d", b"row\n"), CopyData(b"row\n")),
    ("CopyDone", tagged(b"c"), CopyDone()),
    (
        "NotificationResponse",
        tagged(b"A", i32(99) + z(b"jobs", b"{}")),
        NotificationResponse(99, "jobs", "{}"),
    ),
    ("FunctionCallResponse", tagged(b"V", i32(2) + b"ok"), FunctionCallResponse(b"ok")),
    ("FunctionCallResponse-null", tagged(b"V", i32(-1)), FunctionCallResponse(None)),
]


def _ids(table: list[tuple[str, bytes, Message]]) -> list[str]:
    return [name for name, _, _ in table]


def drain(decoder: FrontendDecoder | BackendDecoder) -> list[Message]:
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def fed_whole(decoder: FrontendDecoder | BackendDecoder, data: bytes) -> list[Message]:
    decoder.receive_data(data)
    return drain(decoder)


def fed_bytewise(decoder: FrontendDecoder | BackendDecoder, data: bytes) -> list[Message]:
    out = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        out.extend(drain(decoder))
    return out


def _check_single(decoded: list[Message], data: bytes, expected: Message) -> None:
    assert decoded == [expected]
    (message,) = decoded
    assert type(message) is type(expected)
    assert message.raw == data
    assert message.encode() == data
    assert message.to_wire() == data
    assert expected.encode() == data  # a message built by hand encodes to the same bytes


# --- tables, one message at a time ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "expected"), STARTUP_TABLE, ids=_ids(STARTUP_TABLE))
def test_startup_packet_decodes_and_round_trips(name: str, data: bytes, expected: Message) -> None:
    _check_single(fed_whole(FrontendDecoder(), data), data, expected)
    _check_single(fed_bytewise(FrontendDecoder(), data), data, expected)
    assert decode_frontend(b"", data[4:]) == expected


@pytest.mark.parametrize(("name", "data", "expected"), FRONTEND_TABLE, ids=_ids(FRONTEND_TABLE))
def test_frontend_message_decodes_and_round_trips(
    name: str, data: bytes, expected: Message
) -> None:
    _check_single(fed_whole(FrontendDecoder(startup=False), data), data, expected)
    _check_single(fed_bytewise(FrontendDecoder(startup=False), data), data, expected)
    assert type(expected).msg_type == data[:1]
    assert decode_frontend(data[:1], data[5:]) == expected
    assert decode_frontend(data[:1], memoryview(data)[5:], data).raw == data


@pytest.mark.parametrize(("name", "data", "expected"), BACKEND_TABLE, ids=_ids(BACKEND_TABLE))
def test_backend_message_decodes_and_round_trips(name: str, data: bytes, expected: Message) -> None:
    _check_single(fed_whole(BackendDecoder(), data), data, expected)
    _check_single(fed_bytewise(BackendDecoder(), data), data, expected)
    assert type(expected).msg_type == data[:1]
    assert decode_backend(data[:1], data[5:]) == expected
    assert decode_backend(data[:1], memoryview(data)[5:], data).raw == data


# --- whole tables as one stream -------------------------------------------------------------------

SESSION = b"".join(d for _, d, _ in STARTUP_TABLE[:1]) + b"".join(d for _, d, _ in FRONTEND_TABLE)
SESSION_MESSAGES = [STARTUP_TABLE[0][2]] + [m for _, _, m in FRONTEND_TABLE]
SERVER_STREAM = b"".join(d for _, d, _ in BACKEND_TABLE)
SERVER_MESSAGES = [m for _, _, m in BACKEND_TABLE]


def test_client_session_in_one_chunk_and_byte_by_byte() -> None:
    # StartupMessage switches the decoder to tagged messages by itself.
    assert fed_whole(FrontendDecoder(), SESSION) == SESSION_MESSAGES
    assert fed_bytewise(FrontendDecoder(), SESSION) == SESSION_MESSAGES


def test_server_stream_in_one_chunk_and_byte_by_byte() -> None:
    assert fed_whole(BackendDecoder(), SERVER_STREAM) == SERVER_MESSAGES
    assert fed_bytewise(BackendDecoder(), SERVER_STREAM) == SERVER_MESSAGES


@pytest.mark.parametrize("size", [2, 3, 7, 64, 1000])
def test_server_stream_in_uneven_chunks(size: int) -> None:
    decoder = BackendDecoder()
    out: list[Message] = []
    for i in range(0, len(SERVER_STREAM), size):
        decoder.receive_data(SERVER_STREAM[i : i + size])
        out.extend(drain(decoder))
    assert out == SERVER_MESSAGES
    assert [m.raw for m in out] == [d for _, d, _ in BACKEND_TABLE]


def test_next_raw_frames_without_decoding_and_decode_backend_agrees() -> None:
    decoder = BackendDecoder()
    decoder.receive_data(SERVER_STREAM)
    frames = []
    while (item := decoder.next_raw()) is not None:
        frames.append(item)
    assert [raw for _, _, raw in frames] == [d for _, d, _ in BACKEND_TABLE]
    assert [tag for tag, _, _ in frames] == [d[:1] for _, d, _ in BACKEND_TABLE]
    assert all(body == raw[5:] for _, body, raw in frames)
    assert [decode_backend(tag, body, raw) for tag, body, raw in frames] == SERVER_MESSAGES


def test_frontend_next_raw_marks_startup_packets_with_an_empty_tag() -> None:
    decoder = FrontendDecoder()
    decoder.receive_data(SESSION)
    tag, body, raw = decoder.next_raw() or (b"?", b"", b"")
    assert (tag, raw) == (b"", STARTUP_TABLE[0][1])
    assert body == raw[4:]
    assert not decoder.in_startup  # a StartupMessage ends the untagged phase, even via next_raw
    tags: list[bytes] = []
    while (item := decoder.next_raw()) is not None:
        assert decode_frontend(*item) == SESSION_MESSAGES[len(tags) + 1]
        tags.append(item[0])
    assert tags == [d[:1] for _, d, _ in FRONTEND_TABLE]


def test_next_raw_and_next_message_interleave() -> None:
    decoder = BackendDecoder()
    decoder.receive_data(SERVER_STREAM)
    out: list[Message] = []
    while True:
        item = decoder.next_raw() if len(out) % 2 else decoder.next_message()
        if item is None:
            break
        out.append(item if isinstance(item, Message) else decode_backend(*item))
    assert out == SERVER_MESSAGES


# --- raw bytes and re-encoding --------------------------------------------------------------------


def test_forwarding_keeps_the_bytes_as_they_came() -> None:
    # Non-canonical but valid: the relay forwards it exactly, it does not re-encode.
    data = tagged(b"E", b"M" + z(b"boom") + b"C" + z(b"XX001") + b"\0")
    (message,) = fed_whole(BackendDecoder(), data)
    assert message.to_wire() == data


def test_masked_row_is_never_forwarded_with_its_original_bytes() -> None:
    data = tagged(b"D", i16(1) + i32(16) + b"4111111111111111")
    (row,) = fed_whole(BackendDecoder(), data)
    assert isinstance(row, DataRow)
    masked = dataclasses.replace(row, values=(b"****************",))
    assert masked.raw == b""
    assert masked.to_wire() == tagged(b"D", i16(1) + i32(16) + b"****************")
    assert b"4111" not in masked.to_wire()


def test_raw_is_not_part_of_equality_or_repr() -> None:
    (row,) = fed_whole(BackendDecoder(), tagged(b"D", i16(1) + i32(1) + b"x"))
    assert row == DataRow((b"x",))
    assert "raw" not in repr(row)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.values = ()  # type: ignore[misc]


def test_encode_refuses_a_nul_inside_a_string() -> None:
    # A NUL would end the string early and shift every later field (message smuggling).
    with pytest.raises(ValueError):
        Query("SELECT 1\0; DROP TABLE t").encode()
    with pytest.raises(ValueError):
        ErrorResponse({"M": "a\0b"}).encode()


def test_constructors_refuse_values_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        Describe("X", "")
    with pytest.raises(ValueError):
        Close("", "")
    with pytest.raises(ValueError):
        ReadyForQuery("Q")
    with pytest.raises(ValueError):
        AuthenticationMD5Password(b"12345")
    with pytest.raises(ValueError):
        AuthenticationRequest(0)  # has its own class; would not round-trip


# --- message helpers ------------------------------------------------------------------------------


def test_bind_effective_formats_follow_the_protocol_rule() -> None:
    none = Bind("", "", (), (b"a", b"b"), ())
    one = Bind("", "", (1,), (b"a", b"b"), (1,))
    each = Bind("", "", (0, 1), (b"a", b"b"), (0, 1, 0))
    assert [none.param_format(i) for i in range(2)] == [0, 0]
    assert [none.result_format(i) for i in range(3)] == [0, 0, 0]
    assert [one.param_format(i) for i in range(2)] == [1, 1]
    assert [one.result_format(i) for i in range(5)] == [1] * 5
    assert [each.param_format(i) for i in range(2)] == [0, 1]
    assert [each.result_format(i) for i in range(3)] == [0, 1, 0]


def test_error_response_accessors_and_defaults() -> None:
    full = ErrorResponse(
        {"S": "FEHLER", "V": "ERROR", "C": "42501", "M": "nope", "D": "d", "H": "h"}
    )
    assert (full.sqlstate, full.severity, full.message, full.detail, full.hint) == (
        "42501",
        "ERROR",
        "nope",
        "d",
        "h",
    )
    bare = ErrorResponse({})
    assert (bare.sqlstate, bare.severity, bare.message, bare.detail) == ("XX000", "ERROR", "", None)
    assert NoticeResponse({}).severity == "NOTICE"


def test_error_response_without_sqlstate_is_decodable() -> None:
    # HOSTILE C.16: the relay decides what to do; the codec must not crash on it.
    (error,) = fed_whole(BackendDecoder(), tagged(b"E", b"M" + z(b"no code") + b"\0"))
    assert isinstance(error, ErrorResponse)
    assert error.sqlstate == "XX000"
    assert error.message == "no code"


def test_server_text_in_another_encoding_survives_byte_exact() -> None:
    data = tagged(b"E", b"C" + z(b"42000") + b"M" + z(b"caf\xe9 latin-1") + b"\0")
    (error,) = fed_whole(BackendDecoder(), data)
    assert isinstance(error, ErrorResponse)
    assert error.encode() == data


def test_startup_message_accessors() -> None:
    assert StartupMessage({"user": "u"}).database == "u"
    assert StartupMessage({"user": "u", "database": "d"}).database == "d"
    assert StartupMessage({"user": "u"}).user == "u"


def test_startup_message_refuses_an_empty_parameter_name() -> None:
    with pytest.raises(ValueError):
        StartupMessage({"user": "u", "": "x"}).encode()


def test_every_decodable_type_has_a_size_limit_and_vice_versa() -> None:
    from connectors.postgres import backend, frontend

    assert frontend.DECODERS.keys() == frontend.BODY_LIMITS.keys()
    assert backend.DECODERS.keys() == backend.BODY_LIMITS.keys()


# --- replies the gateway builds itself ------------------------------------------------------------


def test_reply_helpers_build_the_documented_bytes() -> None:
    from connectors.postgres.messages import (
        authentication_ok,
        backend_key_data,
        command_complete,
        data_row,
        error_response,
        notice_response,
        parameter_status,
        ready_for_query,
        row_description,
    )

    assert error_response("ERROR", "42501", "denied", hint="ask") == tagged(
        b"E",
        b"S"
        + z(b"ERROR")
        + b"V"
        + z(b"ERROR")
        + b"C"
        + z(b"42501")
        + b"M"
        + z(b"denied")
        + b"H"
        + z(b"ask")
        + b"\0",
    )
    assert notice_response("WARNING", "01000", "w", detail="d") == tagged(
        b"N",
        b"S"
        + z(b"WARNING")
        + b"V"
        + z(b"WARNING")
        + b"C"
        + z(b"01000")
        + b"M"
        + z(b"w")
        + b"D"
        + z(b"d")
        + b"\0",
    )
    assert ready_for_query() == b"Z\x00\x00\x00\x05I"
    assert ready_for_query("E") == b"Z\x00\x00\x00\x05E"
    assert authentication_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert parameter_status("TimeZone", "UTC") == tagged(b"S", z(b"TimeZone", b"UTC"))
    assert backend_key_data(7, 0xDEADBEEF) == tagged(b"K", i32(7) + b"\xde\xad\xbe\xef")
    assert backend_key_data(7, b"k" * 32) == tagged(b"K", i32(7) + b"k" * 32)
    assert row_description(["a", FieldDescription("b", type_oid=23, type_size=4)]) == tagged(
        b"T",
        i16(2) + field_bytes(b"a", 0, 0, 25, -1, -1, 0) + field_bytes(b"b", 0, 0, 23, 4, -1, 0),
    )
    assert data_row([b"x", None]) == tagged(b"D", i16(2) + i32(1) + b"x" + i32(-1))
    assert data_row(iter([])) == tagged(b"D", i16(0))
    assert command_complete("SELECT 0") == tagged(b"C", z(b"SELECT 0"))
    with pytest.raises(ValueError):
        error_response("ERROR", "4250", "bad sqlstate")
