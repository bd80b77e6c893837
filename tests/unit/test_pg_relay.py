"""The relay's two directions, byte by byte, without sockets: what is forwarded, what the
client sees, and how replies are matched to requests."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.postgres.backend import FieldDescription
from connectors.postgres.codec import BackendDecoder, FrontendDecoder
from connectors.postgres.messages import (
    Bind,
    CopyData,
    CopyDone,
    BindComplete,
    Describe,
    ErrorResponse,
    Execute,
    Parse,
    ParseComplete,
    Query,
    Sync,
)
from connectors.postgres.layer import DENIED_PLACEHOLDER, PLACEHOLDER_STATEMENT, RelayLayer
from connectors.postgres.replies import (
    command_complete,
    data_row,
    error_response,
    ready_for_query,
    row_description,
)
from gateway.masking import Masker, builtin_detectors
from gateway.model import Action, Command, Decision


class FakeSession:
    """What the relay needs from a session: a verdict per command and somewhere to record."""

    def __init__(self, deny_kinds: set[str]) -> None:
        self.deny_kinds = deny_kinds
        self.masker = Masker(builtin_detectors(), ["*ssn*"])
        self.result_row_cap = 10
        self.records: list[tuple[str, Any]] = []

    def identity_expired(self) -> bool:
        return False

    def authorize(self, command: Command) -> Decision:
        if command.kinds & self.deny_kinds:
            return Decision(Action.DENY, "no drops", "not here")
        return Decision(Action.ALLOW, "ok", "")

    def record(self, kind: str, payload: Any, *, flush: bool = False) -> None:
        self.records.append((kind, payload))

    def flush(self) -> None:
        pass


def make_relay(deny: set[str] | None = None) -> tuple[RelayLayer, FakeSession]:
    session = FakeSession(deny or {"drop"})
    relay = RelayLayer(session, FrontendDecoder(startup=False), BackendDecoder())
    return relay, session


class Ended(Exception):
    """The layer ended the session (the test helpers raise it to stop)."""

    def __init__(self, end: object) -> None:
        super().__init__(str(end))
        self.end = end


def client_sends(relay: RelayLayer, data: bytes, *, may_wait: bool = False) -> bytes:
    step = relay.client_data(data)
    # Waiting for the server to answer an earlier block is legitimate (the fuzz below sends no
    # replies in step); the named tests here never wait.
    assert may_wait or (not step.stall and step.hold is None)
    if step.end is not None:
        raise Ended(step.end)
    return step.data


def server_sends(relay: RelayLayer, data: bytes) -> list[object]:
    step = relay.server_data(data)
    if step.end is not None:
        raise Ended(step.end)
    decoder = BackendDecoder()
    decoder.receive_data(step.data)
    messages = []
    while (m := decoder.next_message()) is not None:
        messages.append(m)
    return messages


def syntax_error() -> bytes:
    return error_response("ERROR", "42601", f'syntax error at or near "{DENIED_PLACEHOLDER}"')


def test_allowed_query_is_forwarded_as_the_bytes_it_came_in() -> None:
    relay, _ = make_relay()
    query = Query("select 1").encode()
    assert client_sends(relay, query) == query


def test_pipelined_denial_is_answered_in_order() -> None:
    relay, session = make_relay()
    forwarded = client_sends(relay, Query("select 1").encode() + Query("drop table t").encode())
    assert forwarded == Query("select 1").encode() + Query(DENIED_PLACEHOLDER).encode()
    replies = server_sends(
        relay,
        row_description(["?column?"]) + data_row([b"1"]) + command_complete("SELECT 1") + ready_for_query("I")
        + syntax_error() + ready_for_query("I"),
    )
    kinds = [type(m).__name__ for m in replies]
    assert kinds == ["RowDescription", "DataRow", "CommandComplete", "ReadyForQuery", "ErrorResponse", "ReadyForQuery"]
    error = replies[4]
    assert isinstance(error, ErrorResponse) and error.sqlstate == "42501"
    assert 'rule "no drops"' in error.message
    assert not relay.busy
    assert [k for k, _ in session.records] == ["query", "query", "result"]


def test_a_real_error_is_forwarded_not_mistaken_for_a_denial() -> None:
    relay, _ = make_relay()
    client_sends(relay, Query("select 1/0").encode())
    replies = server_sends(relay, error_response("ERROR", "22012", "division by zero") + ready_for_query("I"))
    assert isinstance(replies[0], ErrorResponse) and replies[0].sqlstate == "22012"


def test_extended_denial_skips_to_sync() -> None:
    relay, _ = make_relay()
    forwarded = client_sends(relay, Parse("", "drop table t").encode() + Bind("", "").encode()
                             + Execute("").encode() + Sync().encode())
    assert Parse("", DENIED_PLACEHOLDER).encode() in forwarded
    assert b"drop table" not in forwarded
    replies = server_sends(relay, syntax_error() + ready_for_query("I"))
    assert [type(m).__name__ for m in replies] == ["ErrorResponse", "ReadyForQuery"]
    assert replies[0].sqlstate == "42501"  # type: ignore[attr-defined]
    assert not relay.busy


def test_binary_results_use_the_bind_formats_and_a_statement_described_earlier() -> None:
    """asyncpg's shape: Describe the statement once, later Bind binary and Execute without
    describing again; the rows must still be masked by column."""
    relay, _ = make_relay()
    client_sends(relay, Parse("s", "select email, ssn, id from customers").encode()
                 + Describe("S", "s").encode() + Sync().encode())
    fields = (FieldDescription("email", type_oid=25), FieldDescription("ssn", type_oid=25),
              FieldDescription("id", type_oid=23))
    server_sends(relay, ParseComplete().encode() + b"t\x00\x00\x00\x06\x00\x00"
                 + row_description(fields) + ready_for_query("I"))
    client_sends(relay, Bind("", "s", (), (), (1,)).encode() + Execute("").encode() + Sync().encode())
    replies = server_sends(relay, BindComplete().encode()
                           + data_row([b"ada@example.com", b"123-45-6789", (7).to_bytes(4, "big")])
                           + command_complete("SELECT 1") + ready_for_query("I"))
    row = replies[1]
    # Binary text is text: masked in place; the column-masked ssn too; the int4 untouched.
    assert row.values == (b"a***@example.com", b"****", (7).to_bytes(4, "big"))  # type: ignore[attr-defined]


def test_text_rows_are_rebuilt_only_when_something_is_masked() -> None:
    relay, _ = make_relay()
    client_sends(relay, Query("select email from customers").encode())
    clean = data_row([b"nothing here"])
    replies = server_sends(relay, row_description(["note"]) + clean + data_row([b"ada@example.com"])
                           + command_complete("SELECT 2") + ready_for_query("I"))
    assert replies[1].raw == clean  # type: ignore[attr-defined]
    assert replies[2].values == (b"a***@example.com",)  # type: ignore[attr-defined]


def test_binary_copy_out_is_masked_not_refused() -> None:
    """Binary COPY is parsed (header, tuples, trailer) and masked field by field; a field whose
    type the relay does not know is NULLed when it holds a finding, never sent raw."""
    relay, _ = make_relay()
    client_sends(relay, Query("copy customers to stdout (format binary)").encode())
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    field = b"4111111111111111"
    tuple_ = (1).to_bytes(2, "big") + len(field).to_bytes(4, "big") + field
    trailer = b"\xff\xff"
    replies = server_sends(relay, b"H\x00\x00\x00\x09\x01\x00\x01\x00\x01"
                           + CopyData(header + tuple_).encode() + CopyData(trailer).encode()
                           + CopyDone().encode() + command_complete("COPY 1") + ready_for_query("I"))
    data = b"".join(m.data for m in replies if isinstance(m, CopyData))  # type: ignore[attr-defined]
    assert field not in data and data.endswith(trailer)
    assert (1).to_bytes(2, "big") + b"\xff\xff\xff\xff" in data  # the field is NULL


def test_copy_out_text_lines_are_masked() -> None:
    relay, _ = make_relay()
    client_sends(relay, Query("copy customers to stdout").encode())
    line = b"1\t4111111111111111\n"
    replies = server_sends(relay, b"H\x00\x00\x00\x07\x00\x00\x00" + b"d" + (len(line) + 4).to_bytes(4, "big") + line)
    assert b"4111111111111111" not in replies[1].data  # type: ignore[attr-defined]


# -- fuzzing: any order of well-formed messages, in either direction, never crashes the relay --

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connectors.postgres.messages import (  # noqa: E402
    Close,
    CloseComplete,
    CopyData,
    CopyDone,
    EmptyQueryResponse,
    NoData,
    NoticeResponse,
    PortalSuspended,
)
from gateway.errors import ProtocolError  # noqa: E402

_names = st.sampled_from(["", "s1", "p1"])
_values = st.lists(st.one_of(st.none(), st.binary(max_size=20), st.just(b"4111111111111111")), max_size=4)

CLIENT_MESSAGES = st.one_of(
    st.builds(lambda q: Query(q).encode(), st.sampled_from(["select 1", "drop table t", "delete from t", "", "select 1; select 2"])),
    st.builds(lambda n, q: Parse(n, q).encode(), _names, st.sampled_from(["select $1", "drop table t", "select 1"])),
    st.builds(lambda p, s, v, f: Bind(p, s, (), tuple(v), f).encode(), _names, _names, _values,
              st.sampled_from([(), (0,), (1,), (0, 1)])),
    st.builds(lambda k, n: Describe(k, n).encode(), st.sampled_from(["S", "P"]), _names),
    st.builds(lambda p: Execute(p).encode(), _names),
    st.builds(lambda k, n: Close(k, n).encode(), st.sampled_from(["S", "P"]), _names),
    st.just(Sync().encode()),
    st.builds(lambda d: CopyData(d).encode(), st.binary(max_size=20)),
)
SERVER_MESSAGES = st.one_of(
    st.builds(lambda n: row_description([f"c{i}" for i in range(n)]), st.integers(0, 3)),
    st.builds(data_row, _values),
    st.just(command_complete("SELECT 1")),
    st.builds(ready_for_query, st.sampled_from(["I", "T", "E"])),
    st.just(syntax_error()),
    st.just(error_response("ERROR", "22012", "division by zero 4111111111111111")),
    st.just(ParseComplete().encode()), st.just(BindComplete().encode()), st.just(CloseComplete().encode()),
    st.just(NoData().encode()), st.just(EmptyQueryResponse().encode()), st.just(PortalSuspended().encode()),
    st.just(b"t\x00\x00\x00\x06\x00\x00"),
    st.builds(lambda d: CopyData(d).encode(), st.binary(max_size=20)),
    st.just(CopyDone().encode()),
    st.just(NoticeResponse({"S": "NOTICE", "C": "00000", "M": "card 4111111111111111"}).encode()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.data()), max_size=25))
def test_any_order_of_messages_only_ends_in_a_protocol_error(steps: list[tuple[bool, st.DataObject]]) -> None:
    relay, _ = make_relay()
    for from_client, data in steps:
        try:
            if from_client:
                client_sends(relay, data.draw(CLIENT_MESSAGES), may_wait=True)
            else:
                for message in server_sends(relay, data.draw(SERVER_MESSAGES)):
                    # Nothing unmasked ever reaches the client.
                    assert b"4111111111111111" not in getattr(message, "raw", b"")
        except (ProtocolError, Ended):
            return


@pytest.mark.parametrize("sql", ["", "  ", "-- only a comment", "/* x */ ;"])
def test_an_empty_statement_is_forwarded_in_both_protocols(sql: str) -> None:
    """Nothing to judge: the server answers EmptyQueryResponse (asyncpg prepares "")."""
    relay, _ = make_relay()
    sent = client_sends(relay, Parse("", sql).encode() + Bind("", "").encode()
                        + Execute("").encode() + Sync().encode())
    assert Parse("", sql).encode() in sent
    replies = server_sends(relay, b"1\x00\x00\x00\x04" + b"2\x00\x00\x00\x04" + b"n\x00\x00\x00\x04"
                           + b"I\x00\x00\x00\x04" + ready_for_query("I"))
    assert [type(r).__name__ for r in replies] == [
        "ParseComplete", "BindComplete", "EmptyQueryResponse", "ReadyForQuery"]
    assert client_sends(relay, Query(sql).encode()) == Query(sql).encode()
