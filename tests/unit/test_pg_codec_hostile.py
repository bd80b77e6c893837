"""PostgreSQL codec against hostile peers (HOSTILE.md A.1, A.2, C.13, C.15, C.16, H.48, J.58).

Each test is named after what it attacks. The rules under test: a bound is enforced on the header,
before the body is buffered; a truncated message waits and never raises; malformed content raises
ProtocolError (SQLSTATE 08P01 unless noted) and leaves the decoder broken for good.
"""

from __future__ import annotations

import struct

import pytest

from connectors.postgres.codec import DEFAULT_MAX_MESSAGE_SIZE, BackendDecoder, FrontendDecoder
from connectors.postgres.messages import (
    CopyData,
    DataRow,
    FunctionCall,
    PasswordMessage,
    Query,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
    parse_password,
    parse_sasl_initial,
    parse_sasl_response,
)
from gateway.errors import ProtocolError

from .test_pg_codec import (
    BACKEND_TABLE,
    FRONTEND_TABLE,
    STARTUP_TABLE,
    i16,
    i32,
    tagged,
    u32,
    untagged,
    z,
)


def frontend(data: bytes, *, startup: bool = False) -> FrontendDecoder:
    decoder = FrontendDecoder(startup=startup)
    decoder.receive_data(data)
    return decoder


def backend(data: bytes) -> BackendDecoder:
    decoder = BackendDecoder()
    decoder.receive_data(data)
    return decoder


def refused(decoder: FrontendDecoder | BackendDecoder, sqlstate: str = "08P01") -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        while decoder.next_message() is not None:
            pass
    assert info.value.sqlstate == sqlstate
    assert decoder.broken
    # Broken for good: no resynchronising on attacker-chosen bytes.
    with pytest.raises(ProtocolError):
        decoder.next_message()
    with pytest.raises(ProtocolError):
        decoder.next_raw()
    with pytest.raises(ProtocolError):
        decoder.receive_data(tagged(b"S"))
    return info.value


def startup_packet(*pairs: bytes, code: int = 196608, terminator: bool = True) -> bytes:
    return untagged(code, z(*pairs) + (b"\0" if terminator else b""))


# --- C.15 / J.58: lengths -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 3, -1, -(2**31), 2**31 - 1, DEFAULT_MAX_MESSAGE_SIZE + 1])
def test_bad_length_is_refused_from_the_header_alone(length: int) -> None:
    header = b"Q" + struct.pack("!i", length)
    error = refused(frontend(header))
    assert "length" in str(error)
    error = refused(backend(b"D" + struct.pack("!i", length)))
    assert "length" in str(error)


def test_gigabyte_length_is_refused_before_any_body_is_buffered() -> None:
    # J.58: 1 GB length; the decoder must not wait for (or hold) the body.
    decoder = frontend(b"Q" + struct.pack("!I", 2**30))
    refused(decoder)
    assert decoder.pending_bytes() == 5


def test_length_above_a_custom_maximum_is_refused() -> None:
    decoder = BackendDecoder(max_message_size=4096)
    decoder.receive_data(b"D" + struct.pack("!I", 4097))
    refused(decoder)
    decoder = BackendDecoder(max_message_size=4096)
    decoder.receive_data(tagged(b"d", b"x" * 4092))  # exactly the limit is fine
    assert isinstance(decoder.next_message(), CopyData)


@pytest.mark.parametrize("tag", [b"S", b"H", b"X", b"c"])
def test_bodiless_message_with_a_body_length_is_refused_from_the_header(tag: bytes) -> None:
    refused(frontend(tag + struct.pack("!I", 5)))


@pytest.mark.parametrize(
    ("tag", "length"), [(b"D", 10_005), (b"E", 10_005), (b"C", 10_005), (b"p", 65_540)]
)
def test_small_message_beyond_the_servers_own_limit_is_refused(tag: bytes, length: int) -> None:
    # PostgreSQL caps these (PQ_SMALL_MESSAGE_LIMIT, PG_MAX_AUTH_TOKEN_LENGTH); so do we.
    refused(frontend(tag + struct.pack("!I", length)))


@pytest.mark.parametrize(("tag", "length"), [(b"Z", 6), (b"1", 5), (b"K", 300), (b"I", 5)])
def test_fixed_size_backend_message_with_another_length_is_refused(tag: bytes, length: int) -> None:
    refused(backend(tag + struct.pack("!I", length)))


@pytest.mark.parametrize("length", [0, 4, 7, -8, 10_001, 2**31 - 1])
def test_bad_startup_packet_length_is_refused(length: int) -> None:
    refused(frontend(struct.pack("!i", length), startup=True))


@pytest.mark.parametrize(
    ("name", "data"),
    [*((n, d) for n, d, _ in FRONTEND_TABLE), *((n, d) for n, d, _ in STARTUP_TABLE)],
)
def test_truncated_client_message_waits_without_raising(name: str, data: bytes) -> None:
    decoder = FrontendDecoder(startup=not data[:1].isalpha())
    decoder.receive_data(data[:-1])
    assert decoder.next_message() is None
    assert decoder.next_raw() is None
    assert decoder.pending_bytes() == len(data) - 1
    decoder.receive_data(data[-1:])
    assert decoder.next_message() is not None


@pytest.mark.parametrize(("name", "data"), [(n, d) for n, d, _ in BACKEND_TABLE])
def test_truncated_server_message_waits_without_raising(name: str, data: bytes) -> None:
    for cut in range(len(data)):
        decoder = backend(data[:cut])
        assert decoder.next_message() is None
        assert decoder.pending_bytes() == cut


def test_caller_that_stops_draining_cannot_grow_the_buffer_without_bound() -> None:
    decoder = BackendDecoder(max_message_size=4096)
    for _ in range(2):
        decoder.receive_data(tagged(b"d", b"x" * 4000))
    with pytest.raises(ProtocolError):
        decoder.receive_data(tagged(b"d", b"x" * 4000))


def test_large_message_trickled_in_small_chunks_decodes() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    data = tagged(b"d", payload) + tagged(b"c")
    decoder = BackendDecoder()
    out = []
    for i in range(0, len(data), 1000):
        decoder.receive_data(data[i : i + 1000])
        while (message := decoder.next_message()) is not None:
            out.append(message)
    assert [type(m).__name__ for m in out] == ["CopyData", "CopyDone"]
    assert isinstance(out[0], CopyData) and out[0].data == payload


def test_medium_message_fed_one_byte_at_a_time_decodes() -> None:
    data = tagged(b"Q", b"S" * 20_000 + b"\0")
    decoder = FrontendDecoder(startup=False)
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        if i < len(data) - 1:
            assert decoder.next_message() is None
    assert decoder.next_message() == Query("S" * 20_000)


# --- unknown message types ------------------------------------------------------------------------


@pytest.mark.parametrize("tag", [b"Z", b"T", b"\x00", b"\x16", b"\xff", b"q"])
def test_unknown_client_message_type_is_refused_at_its_first_byte(tag: bytes) -> None:
    error = refused(frontend(tag))
    assert "unknown" in str(error)


@pytest.mark.parametrize("tag", [b"Q", b"P", b"B", b"X", b"\x00", b"\x16", b"p"])
def test_unknown_server_message_type_is_refused_at_its_first_byte(tag: bytes) -> None:
    refused(backend(tag))


# --- A.1 / A.2: bytes around the TLS switch -------------------------------------------------------


def test_bytes_pipelined_after_ssl_request_are_detectable() -> None:
    # CVE-2021-23214: SSLRequest and StartupMessage in one segment, before the ClientHello.
    startup = startup_packet(b"user", b"mallory")
    decoder = frontend(untagged(80877103) + startup, startup=True)
    assert decoder.next_message() == SSLRequest()
    assert decoder.in_startup  # the caller switches to TLS; nothing is parsed from the plaintext
    assert decoder.pending_bytes() == len(startup)
    assert decoder.take_pending() == startup
    assert decoder.pending_bytes() == 0


def test_ssl_request_alone_leaves_nothing_pending() -> None:
    decoder = frontend(untagged(80877103), startup=True)
    assert decoder.next_message() == SSLRequest()
    assert decoder.pending_bytes() == 0


def test_plaintext_after_the_servers_tls_yes_is_detectable() -> None:
    # CVE-2021-23222: 'S' followed by a plaintext ErrorResponse before the ServerHello.
    injected = tagged(b"E", b"M" + z(b"please re-enter your password") + b"\0")
    decoder = backend(b"S" + injected)
    assert decoder.read_ssl_response() == b"S"
    assert decoder.pending_bytes() == len(injected)


@pytest.mark.parametrize("answer", [b"S", b"N", b"G", b"E"])
def test_encryption_answer_is_one_byte(answer: bytes) -> None:
    decoder = BackendDecoder()
    assert decoder.read_ssl_response() is None
    decoder.receive_data(answer)
    assert decoder.read_ssl_response() == answer
    assert decoder.pending_bytes() == 0


def test_garbage_answer_to_ssl_request_is_refused() -> None:
    with pytest.raises(ProtocolError):
        backend(b"\x16").read_ssl_response()


# --- C.13: startup parameters ---------------------------------------------------------------------


def test_startup_with_ten_thousand_params_is_refused_by_size() -> None:
    pairs = [p for i in range(10_000) for p in (b"k%d" % i, b"v")]
    refused(frontend(startup_packet(*pairs), startup=True))


def test_startup_with_too_many_params_within_the_size_limit_is_refused() -> None:
    pairs = [p for i in range(65) for p in (b"k%d" % i, b"v")]
    refused(frontend(startup_packet(b"user", b"u", *pairs), startup=True))


def test_startup_without_user_is_refused() -> None:
    refused(frontend(startup_packet(b"database", b"db"), startup=True))
    refused(frontend(startup_packet(b"user", b""), startup=True))


def test_startup_without_terminator_is_refused() -> None:
    refused(frontend(startup_packet(b"user", b"u", terminator=False), startup=True))


def test_startup_with_a_dangling_key_is_refused() -> None:
    refused(frontend(untagged(196608, z(b"user", b"u", b"options")), startup=True))


def test_startup_with_bytes_after_the_terminator_is_refused() -> None:
    refused(frontend(untagged(196608, z(b"user", b"u") + b"\0junk"), startup=True))


def test_startup_with_duplicate_keys_is_refused() -> None:
    # Vetting one `role`/`options` while the server applies the other would be a bypass.
    refused(
        frontend(
            startup_packet(b"user", b"u", b"options", b"-c a=1", b"options", b"-c role=x"),
            startup=True,
        )
    )


def test_startup_with_a_huge_key_is_refused() -> None:
    refused(frontend(startup_packet(b"user", b"u", b"k" * 300, b"v"), startup=True))


def test_startup_with_invalid_utf8_is_refused() -> None:
    refused(frontend(startup_packet(b"user", b"\xff\xfe"), startup=True), sqlstate="22021")


@pytest.mark.parametrize("code", [131072, 65536, (4 << 16), 80877105, 0])
def test_unsupported_protocol_version_is_refused(code: int) -> None:
    refused(frontend(startup_packet(b"user", b"u", code=code), startup=True), sqlstate="0A000")


@pytest.mark.parametrize("extra", [b"x", b"\0\0\0\0"])
def test_ssl_request_with_a_body_is_refused(extra: bytes) -> None:
    refused(frontend(untagged(80877103, extra), startup=True))
    refused(frontend(untagged(80877104, extra), startup=True))


@pytest.mark.parametrize("key", [b"", b"abc", b"k" * 257])
def test_cancel_request_with_a_bad_key_length_is_refused(key: bytes) -> None:
    refused(frontend(untagged(80877102, i32(1) + key), startup=True))


def test_startup_message_switches_the_decoder_to_tagged_messages() -> None:
    decoder = frontend(startup_packet(b"user", b"u") + tagged(b"Q", z(b"SELECT 1")), startup=True)
    assert isinstance(decoder.next_message(), StartupMessage)
    assert not decoder.in_startup
    decoder.startup_done()  # idempotent
    assert decoder.next_message() == Query("SELECT 1")


def test_explicit_startup_done_switches_phases() -> None:
    decoder = FrontendDecoder()
    decoder.startup_done()
    decoder.receive_data(tagged(b"S"))
    assert decoder.next_message() is not None


# --- C.15: malformed content ----------------------------------------------------------------------


def test_bind_with_three_format_codes_and_two_params_is_refused() -> None:
    body = z(b"", b"") + i16(3, 0, 0, 0) + i16(2) + i32(1) + b"a" + i32(1) + b"b" + i16(0)
    refused(frontend(tagged(b"B", body)))


def test_bind_param_count_beyond_the_body_is_refused() -> None:
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(500) + i32(1) + b"a" + i16(0))))


def test_bind_negative_param_count_is_refused() -> None:
    # Read unsigned as PostgreSQL does: 0xFFFF params cannot fit the body.
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(-1) + i16(0))))


def test_bind_param_length_below_minus_one_is_refused() -> None:
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(1) + i32(-2) + i16(0))))


def test_bind_param_longer_than_the_body_is_refused() -> None:
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(1) + i32(100) + b"abc" + i16(0))))


@pytest.mark.parametrize("code", [-1, 2, 257])
def test_bind_result_format_other_than_text_or_binary_is_refused(code: int) -> None:
    # H.48: the masking layer must always know how a result column is encoded.
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(0) + i16(1, code))))


def test_bind_param_format_other_than_text_or_binary_is_refused() -> None:
    refused(frontend(tagged(b"B", z(b"", b"") + i16(1, 3) + i16(0) + i16(0))))


def test_bind_with_trailing_junk_is_refused() -> None:
    refused(frontend(tagged(b"B", z(b"", b"") + i16(0) + i16(0) + i16(0) + b"!")))


def test_string_without_nul_is_refused() -> None:
    refused(frontend(tagged(b"Q", b"SELECT 1")))
    refused(frontend(tagged(b"P", z(b"s") + b"SELECT 1")))


def test_query_with_a_second_hidden_string_is_refused() -> None:
    refused(frontend(tagged(b"Q", z(b"SELECT 1", b"DROP TABLE t"))))


def test_query_in_invalid_utf8_is_refused() -> None:
    refused(frontend(tagged(b"Q", z(b"SELECT '\xc0\xaf'"))), sqlstate="22021")


def test_parse_type_count_beyond_the_body_is_refused() -> None:
    refused(frontend(tagged(b"P", z(b"", b"SELECT $1") + i16(3) + u32(23))))


@pytest.mark.parametrize("kind", [b"X", b"s", b"\0"])
def test_describe_and_close_of_unknown_kind_are_refused(kind: bytes) -> None:
    refused(frontend(tagged(b"D", kind + z(b""))))
    refused(frontend(tagged(b"C", kind + z(b""))))


def test_execute_without_row_limit_is_refused() -> None:
    refused(frontend(tagged(b"E", z(b""))))


def test_function_call_is_decoded_so_it_can_be_denied() -> None:
    body = u32(2396) + i16(0) + i16(1) + i32(3) + b"abc" + i16(1)
    assert frontend(tagged(b"F", body)).next_message() == FunctionCall(2396, (), (b"abc",), 1)
    refused(frontend(tagged(b"F", u32(2396) + i16(2, 0, 0) + i16(1) + i32(0) + i16(0))))


def test_data_row_with_more_columns_than_bytes_is_refused() -> None:
    refused(backend(tagged(b"D", i16(3) + i32(1) + b"a")))


def test_data_row_with_count_65535_is_refused() -> None:
    refused(backend(tagged(b"D", i16(-1) + i32(-1) * 10)))


def test_data_row_value_longer_than_the_body_is_refused() -> None:
    refused(backend(tagged(b"D", i16(2) + i32(1) + b"a" + i32(2**31 - 1) + b"abcd")))
    refused(backend(tagged(b"D", i16(1) + i32(5) + b"abc")))


def test_data_row_with_negative_value_length_is_refused() -> None:
    refused(backend(tagged(b"D", i16(1) + i32(-2))))


def test_data_row_with_trailing_junk_is_refused() -> None:
    refused(backend(tagged(b"D", i16(1) + i32(1) + b"a" + b"junk")))


def test_data_row_with_half_a_length_is_refused() -> None:
    refused(backend(tagged(b"D", i16(2) + i32(1) + b"a" + b"\0\0")))


def test_row_description_with_unknown_format_is_refused() -> None:
    field = z(b"c") + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 2)
    refused(backend(tagged(b"T", i16(1) + field)))


def test_row_description_with_truncated_field_is_refused() -> None:
    refused(backend(tagged(b"T", i16(1) + z(b"c") + b"\0" * 17)))
    refused(backend(tagged(b"T", i16(2) + z(b"c") + b"\0" * 18)))


def test_error_response_with_duplicate_field_is_refused() -> None:
    refused(backend(tagged(b"E", b"C" + z(b"42501") + b"C" + z(b"00000") + b"\0")))


def test_error_response_without_final_nul_is_refused() -> None:
    refused(backend(tagged(b"E", b"C" + z(b"42501"))))
    refused(backend(tagged(b"E", b"C" + z(b"42501") + b"\0junk")))


def test_ready_for_query_with_unknown_status_is_refused() -> None:
    refused(backend(tagged(b"Z", b"X")))


def test_authentication_with_short_or_long_body_is_refused() -> None:
    refused(backend(tagged(b"R", b"\0\0")))
    refused(backend(tagged(b"R", i32(0) + b"x")))
    refused(backend(tagged(b"R", i32(5) + b"abc")))
    refused(backend(tagged(b"R", i32(10) + z(b"SCRAM-SHA-256"))))  # no list terminator


def test_backend_key_data_with_a_bad_key_length_is_refused() -> None:
    refused(backend(tagged(b"K", i32(1) + b"abc")))


def test_negotiate_protocol_version_with_a_bad_count_is_refused() -> None:
    refused(backend(tagged(b"v", i32(0, -1))))
    refused(backend(tagged(b"v", i32(0, 5) + z(b"a"))))


def test_copy_response_with_unknown_format_is_refused() -> None:
    refused(backend(tagged(b"G", b"\2" + i16(0))))
    refused(backend(tagged(b"H", b"\0" + i16(1, 7))))


def test_parameter_description_count_beyond_the_body_is_refused() -> None:
    refused(backend(tagged(b"t", i16(2) + u32(23))))


# --- the 'p' payloads -----------------------------------------------------------------------------


def test_password_payloads_parse_by_exchange() -> None:
    assert parse_password(PasswordMessage(b"hunter2\0")) == "hunter2"
    initial = PasswordMessage(z(b"SCRAM-SHA-256") + i32(5) + b"n,,n=")
    assert parse_sasl_initial(initial) == SASLInitialResponse("SCRAM-SHA-256", b"n,,n=")
    assert parse_sasl_initial(z(b"SCRAM-SHA-256") + i32(-1)) == SASLInitialResponse(
        "SCRAM-SHA-256", None
    )
    assert parse_sasl_response(b"c=biws,r=x,p=y") == SASLResponse(b"c=biws,r=x,p=y")
    assert SASLInitialResponse("SCRAM-SHA-256", b"n,,n=").encode() == tagged(b"p", initial.data)


def test_sasl_parse_keeps_the_raw_bytes_of_the_message() -> None:
    data = tagged(b"p", z(b"SCRAM-SHA-256") + i32(1) + b"x")
    message = frontend(data).next_message()
    assert isinstance(message, PasswordMessage)
    assert parse_sasl_initial(message).raw == data


@pytest.mark.parametrize(
    "data",
    [
        b"no-nul",
        b"two\0strings\0",
        z(b"SCRAM-SHA-256") + i32(10) + b"short",
        z(b"M") + i32(-5),
        b"M",
    ],
)
def test_malformed_password_payloads_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_password(data)
    with pytest.raises(ProtocolError):
        parse_sasl_initial(data)


def test_data_row_decoded_values_are_plain_bytes() -> None:
    (row,) = [backend(tagged(b"D", i16(1) + i32(2) + b"ok")).next_message()]
    assert isinstance(row, DataRow)
    assert type(row.values[0]) is bytes
