"""Client encodings at the relay's edge: the target stays UTF8, the client gets its own."""

from __future__ import annotations

from connectors.postgres.codec import BackendDecoder, FrontendDecoder
from connectors.postgres.frontend import Bind, Execute, Parse, Query, Sync
from connectors.postgres.layer import RelayLayer
from connectors.postgres.messages import ParameterStatus
from connectors.postgres.replies import (
    command_complete,
    data_row,
    error_response,
    parameter_status,
    ready_for_query,
    row_description,
)
from connectors.postgres.transcode import client_encoding
from tests.unit.test_pg_relay import FakeSession


def layer(encoding: str = "UTF8") -> tuple[RelayLayer, FakeSession]:
    session = FakeSession({"drop"})
    enc = client_encoding(encoding)
    return RelayLayer(session, FrontendDecoder(startup=False), BackendDecoder(), encoding=enc,
                      reported_encoding=enc.name), session


def frames(data: bytes) -> list[object]:
    decoder = BackendDecoder()
    decoder.receive_data(data)
    out = []
    while (m := decoder.next_message()) is not None:
        out.append(m)
    return out


def latin1_query(text: str) -> bytes:
    body = text.encode("latin-1") + b"\x00"
    return b"Q" + (len(body) + 4).to_bytes(4, "big") + body


def test_set_client_encoding_is_answered_at_the_edge_and_the_target_stays_utf8() -> None:
    relay, session = layer()
    step = relay.client_data(Query("SET client_encoding TO 'LATIN1'").encode())
    assert step.data == Query("SET client_encoding TO 'UTF8'").encode()
    # The statement after it is read in LATIN1, as the server would read it.
    step = relay.client_data(latin1_query("select 'é'"))
    assert step.data == Query("select 'é'").encode()
    replies = frames(relay.server_data(command_complete("SET") + ready_for_query("I")).data)
    assert replies[0].tag == "SET"  # type: ignore[attr-defined]
    assert replies[1] == ParameterStatus("client_encoding", "LATIN1")  # before ReadyForQuery
    step = relay.server_data(row_description(["?column?"]) + data_row(["é".encode()])
                             + command_complete("SELECT 1") + ready_for_query("I"))
    assert "é".encode("latin-1") in step.data and "é".encode() not in step.data
    assert [k for k, _ in session.records].count("query") == 2


def test_reset_all_returns_to_the_start_up_encoding() -> None:
    relay, _ = layer("SJIS")
    relay.client_data(Query("SET client_encoding TO 'LATIN1'").encode())
    relay.server_data(command_complete("SET") + ready_for_query("I"))
    assert relay.client_data(Query("RESET ALL").encode()).data == Query("RESET ALL").encode()
    replies = frames(relay.server_data(command_complete("RESET") + ready_for_query("I")).data)
    assert ParameterStatus("client_encoding", "SJIS") in replies


def test_an_unknown_or_unconvertible_encoding_is_refused_in_place() -> None:
    relay, _ = layer()
    for name, sqlstate in (("KLINGON", "22023"), ("MULE_INTERNAL", "0A000"), ("EUC_TW", "0A000")):
        step = relay.client_data(Query(f"SET client_encoding TO '{name}'").encode())
        assert b"client_encoding" not in step.data  # never reaches the target
        replies = frames(relay.server_data(
            error_response("ERROR", "42601", "syntax error") + ready_for_query("I")).data)
        assert replies[0].sqlstate == sqlstate  # type: ignore[attr-defined]
    assert relay.edge.inbound.name == "UTF8"


def test_set_client_encoding_inside_a_longer_message_is_refused() -> None:
    relay, _ = layer()
    step = relay.client_data(Query("SET client_encoding TO 'LATIN1'; select 1").encode())
    assert b"LATIN1" not in step.data
    replies = frames(relay.server_data(
        error_response("ERROR", "42601", "syntax error") + ready_for_query("I")).data)
    assert replies[0].sqlstate == "0A000"  # type: ignore[attr-defined]


def test_extended_protocol_set_client_encoding_switches_when_it_runs() -> None:
    relay, _ = layer()
    step = relay.client_data(Parse("", "SET client_encoding TO 'WIN1251'").encode()
                             + Bind("", "").encode() + Execute("").encode() + Sync().encode())
    assert b"WIN1251" not in step.data and b"'UTF8'" in step.data
    step = relay.server_data(b"1\x00\x00\x00\x04" + b"2\x00\x00\x00\x04"
                             + row_description([]) * 0 + b"n\x00\x00\x00\x04"
                             + command_complete("SET") + ready_for_query("I"))
    assert ParameterStatus("client_encoding", "WIN1251") in frames(step.data)


def test_bytes_invalid_in_the_client_encoding_get_the_servers_error_and_nothing_runs() -> None:
    relay, session = layer("SJIS")
    text = b"select '\x81'\x00"  # a lead byte followed by a quote: no such character
    bad = b"Q" + (len(text) + 4).to_bytes(4, "big") + text
    step = relay.client_data(bad)
    assert step.data == Query("WARDGATE_DENIED").encode()
    replies = frames(relay.server_data(
        error_response("ERROR", "42601", "syntax error") + ready_for_query("I")).data)
    assert replies[0].sqlstate == "22021"  # type: ignore[attr-defined]
    assert not [p for k, p in session.records if k == "query"]


def test_a_value_the_client_encoding_cannot_hold_ends_the_session_with_22P05() -> None:
    relay, _ = layer("LATIN1")
    relay.client_data(Query("select 1").encode())
    step = relay.server_data(row_description(["x"]) + data_row(["€".encode()])
                             + command_complete("SELECT 1") + ready_for_query("I"))
    assert step.end is not None and step.end.fatal is not None
    assert step.end.fatal[0] == "22P05"


def test_the_targets_client_encoding_report_is_rewritten_for_the_client() -> None:
    relay, _ = layer("LATIN1")
    replies = frames(relay.server_data(parameter_status("client_encoding", "UTF8")).data)
    assert replies == [ParameterStatus("client_encoding", "LATIN1")]
