"""PostgreSQL codec properties (hypothesis): round trips, chunking invariance, and "only
ProtocolError may escape" for random and mutated input on both decoders."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    SASLInitialResponse,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    parse_sasl_initial,
)
from gateway.errors import ProtocolError

from .test_pg_codec import BACKEND_TABLE, FRONTEND_TABLE, STARTUP_TABLE

# --- strategies -----------------------------------------------------------------------------------

# No NUL (a protocol string cannot hold one) and no lone surrogates (not encodable as UTF-8).
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24)
name = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=12)
blob = st.binary(max_size=64)
nullable = st.none() | blob
int16 = st.integers(-(2**15), 2**15 - 1)
int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)
fmt = st.sampled_from([0, 1])
formats = st.lists(fmt, max_size=4).map(tuple)


@st.composite
def values_with_formats(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[bytes | None, ...]]:
    values = tuple(draw(st.lists(nullable, max_size=5)))
    count = draw(st.sampled_from([0, 1, len(values)]))
    codes = tuple(draw(st.lists(fmt, min_size=count, max_size=count)))
    return codes, values


@st.composite
def binds(draw: st.DrawFn) -> Bind:
    codes, values = draw(values_with_formats())
    return Bind(draw(name), draw(name), codes, values, draw(formats))


@st.composite
def function_calls(draw: st.DrawFn) -> FunctionCall:
    codes, values = draw(values_with_formats())
    return FunctionCall(draw(uint32), codes, values, draw(fmt))


startup_params = st.dictionaries(
    st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), min_size=1, max_size=16).filter(
        lambda k: k != "user"
    ),
    text,
    max_size=8,
).flatmap(lambda extra: st.builds(lambda user: {"user": user, **extra}, text.filter(bool)))

startup_messages = st.one_of(
    st.builds(
        StartupMessage, startup_params, st.integers(0, 0xFFFF).map(lambda minor: (3 << 16) | minor)
    ),
    st.just(SSLRequest()),
    st.just(GSSENCRequest()),
    st.builds(CancelRequest, int32, st.binary(min_size=4, max_size=256)),
)

frontend_messages = st.one_of(
    st.builds(Query, text),
    st.builds(Parse, name, text, st.lists(uint32, max_size=4).map(tuple)),
    binds(),
    st.builds(Describe, st.sampled_from("SP"), name),
    st.builds(Execute, name, int32),
    st.builds(Close, st.sampled_from("SP"), name),
    st.just(Sync()),
    st.just(Flush()),
    st.just(Terminate()),
    st.builds(CopyData, blob),
    st.just(CopyDone()),
    st.builds(CopyFail, text),
    function_calls(),
    st.builds(PasswordMessage, blob),
)

field_codes = st.sampled_from("SVCMDHPpqWstcdnFLR")
backend_messages = st.one_of(
    st.just(AuthenticationOk()),
    st.just(AuthenticationCleartextPassword()),
    st.builds(AuthenticationMD5Password, st.binary(min_size=4, max_size=4)),
    st.builds(AuthenticationSASL, st.lists(text.filter(bool), max_size=3).map(tuple)),
    st.builds(AuthenticationSASLContinue, blob),
    st.builds(AuthenticationSASLFinal, blob),
    st.builds(AuthenticationRequest, st.sampled_from([2, 7, 8, 9, 42, 2**32 - 1]), blob),
    st.builds(ParameterStatus, text, text),
    st.builds(BackendKeyData, int32, st.binary(min_size=4, max_size=256)),
    st.builds(NegotiateProtocolVersion, int32, st.lists(text, max_size=3).map(tuple)),
    st.builds(ReadyForQuery, st.sampled_from("ITE")),
    st.builds(
        RowDescription,
        st.lists(
            st.builds(FieldDescription, text, uint32, int16, uint32, int16, int32, fmt), max_size=4
        ).map(tuple),
    ),
    st.builds(DataRow, st.lists(nullable, max_size=6).map(tuple)),
    st.builds(CommandComplete, text),
    st.just(EmptyQueryResponse()),
    st.builds(ErrorResponse, st.dictionaries(field_codes, text, max_size=6)),
    st.builds(NoticeResponse, st.dictionaries(field_codes, text, max_size=6)),
    st.just(ParseComplete()),
    st.just(BindComplete()),
    st.just(CloseComplete()),
    st.just(NoData()),
    st.just(PortalSuspended()),
    st.builds(ParameterDescription, st.lists(uint32, max_size=4).map(tuple)),
    st.builds(CopyInResponse, fmt, formats),
    st.builds(CopyOutResponse, fmt, formats),
    st.builds(CopyBothResponse, fmt, formats),
    st.builds(CopyData, blob),
    st.just(CopyDone()),
    st.builds(NotificationResponse, int32, text, text),
    st.builds(FunctionCallResponse, nullable),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def decode_all(decoder: FrontendDecoder | BackendDecoder, chunks: list[bytes]) -> list[Message]:
    out = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (message := decoder.next_message()) is not None:
            out.append(message)
    return out


# --- round trips ----------------------------------------------------------------------------------


@given(st.lists(frontend_messages, max_size=8), st.lists(st.integers(0, 10**6), max_size=12))
def test_frontend_messages_round_trip_in_any_chunking(
    messages: list[Message], cuts: list[int]
) -> None:
    wire = b"".join(m.encode() for m in messages)
    decoded = decode_all(FrontendDecoder(startup=False), split(wire, cuts))
    assert decoded == messages
    assert [m.raw for m in decoded] == [m.encode() for m in messages]


@given(startup_messages)
def test_startup_packets_round_trip(message: Message) -> None:
    wire = message.encode()
    (decoded,) = decode_all(FrontendDecoder(), [wire])
    assert decoded == message
    assert decoded.raw == wire


@given(st.lists(backend_messages, max_size=8), st.lists(st.integers(0, 10**6), max_size=12))
def test_backend_messages_round_trip_in_any_chunking(
    messages: list[Message], cuts: list[int]
) -> None:
    wire = b"".join(m.encode() for m in messages)
    decoded = decode_all(BackendDecoder(), split(wire, cuts))
    assert decoded == messages
    assert [m.raw for m in decoded] == [m.encode() for m in messages]
    assert all(m.to_wire() == m.encode() for m in decoded)


@given(st.builds(SASLInitialResponse, text, nullable))
def test_sasl_initial_response_round_trips_through_password_message(
    message: SASLInitialResponse,
) -> None:
    (decoded,) = decode_all(FrontendDecoder(startup=False), [message.encode()])
    assert isinstance(decoded, PasswordMessage)
    assert parse_sasl_initial(decoded) == message


# --- only ProtocolError may escape ----------------------------------------------------------------


def _survives(make: Callable[[], FrontendDecoder | BackendDecoder], chunks: list[bytes]) -> None:
    decoder = make()
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while decoder.next_message() is not None:
                pass
    except ProtocolError as error:
        # Raised by a check, not by the decoder's safety net around an unexpected exception.
        assert error.__cause__ is None, repr(error.__cause__)
        assert decoder.broken
        try:
            decoder.next_message()
        except ProtocolError:
            pass
        else:
            raise AssertionError("a broken decoder returned a message") from None


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, value in edits:
        if not buf:
            break
        i = where % len(buf)
        if op == 0:
            buf[i] = value
        elif op == 1:
            del buf[i]
        else:
            buf.insert(i, value)
    return bytes(buf)


edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6
)
chunk_cuts = st.lists(st.integers(0, 10**6), max_size=8)
fuzz_settings = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])

CLIENT_STREAM = b"".join(d for _, d, _ in STARTUP_TABLE[:1]) + b"".join(
    d for _, d, _ in FRONTEND_TABLE
)
SERVER_STREAM = b"".join(d for _, d, _ in BACKEND_TABLE)


@fuzz_settings
@given(st.binary(max_size=512), chunk_cuts)
def test_random_bytes_to_client_decoder_raise_only_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    _survives(FrontendDecoder, split(data, cuts))
    _survives(lambda: FrontendDecoder(startup=False), split(data, cuts))


@fuzz_settings
@given(st.binary(max_size=512), chunk_cuts)
def test_random_bytes_to_server_decoder_raise_only_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    _survives(BackendDecoder, split(data, cuts))


@fuzz_settings
@given(edits, chunk_cuts)
def test_mutated_client_session_raises_only_protocol_error(
    changes: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    _survives(FrontendDecoder, split(_mutate(CLIENT_STREAM, changes), cuts))


@fuzz_settings
@given(edits, chunk_cuts)
def test_mutated_server_stream_raises_only_protocol_error(
    changes: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    _survives(BackendDecoder, split(_mutate(SERVER_STREAM, changes), cuts))


@fuzz_settings
@given(st.sampled_from([d for _, d, _ in FRONTEND_TABLE]), st.binary(max_size=64))
def test_random_body_under_each_client_tag_raises_only_protocol_error(
    sample: bytes, body: bytes
) -> None:
    framed = sample[:1] + (len(body) + 4).to_bytes(4, "big") + body
    _survives(lambda: FrontendDecoder(startup=False), [framed])


@fuzz_settings
@given(st.sampled_from([d for _, d, _ in BACKEND_TABLE]), st.binary(max_size=64))
def test_random_body_under_each_server_tag_raises_only_protocol_error(
    sample: bytes, body: bytes
) -> None:
    framed = sample[:1] + (len(body) + 4).to_bytes(4, "big") + body
    _survives(BackendDecoder, [framed])


@fuzz_settings
@given(st.binary(max_size=128))
def test_random_password_payloads_raise_only_protocol_error(data: bytes) -> None:
    from connectors.postgres.messages import parse_password, parse_sasl_response

    for parse in (parse_password, parse_sasl_initial, parse_sasl_response):
        try:
            parse(data)
        except ProtocolError as error:
            assert error.__cause__ is None
