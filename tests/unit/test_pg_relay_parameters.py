"""What the target reports (ParameterStatus) is checked against what the gateway judged.

The parser reads statements as UTF8 with standard_conforming_strings on; the policy judged every
role and search_path change. A report that moves away from either, however the change was made
(a function, ``UPDATE pg_settings``, ``ALTER ... SET`` taking effect, hidden code), ends the
session with a FATAL, recorded; a change a judged statement made passes.
"""

from __future__ import annotations

import pytest

from connectors.postgres.codec import BackendDecoder, FrontendDecoder
from connectors.postgres.frontend import Query
from connectors.postgres.layer import RelayLayer
from connectors.postgres.messages import ParameterStatus
from connectors.postgres.replies import command_complete, parameter_status, ready_for_query
from tests.unit.test_pg_relay import FakeSession

START = {"client_encoding": "UTF8", "server_encoding": "UTF8",
         "standard_conforming_strings": "on", "session_authorization": "app",
         "is_superuser": "off", "search_path": '"$user", public'}


def layer() -> RelayLayer:
    return RelayLayer(FakeSession({"drop"}), FrontendDecoder(startup=False), BackendDecoder(),
                      parameters=dict(START))


def reply_to(relay: RelayLayer, sql: str, status: bytes, tag: str = "SET"):  # type: ignore[no-untyped-def]
    relay.client_data(Query(sql).encode())
    return relay.server_data(command_complete(tag) + status + ready_for_query("I"))


@pytest.mark.parametrize("name, value, sqlstate", [
    ("standard_conforming_strings", "off", "08P01"),
    ("client_encoding", "SJIS", "08P01"),
    ("server_encoding", "LATIN1", "08P01"),
    ("session_authorization", "postgres", "42501"),
    ("is_superuser", "on", "42501"),
    ("role", "admin", "42501"),
    ("search_path", "evil, pg_catalog", "42501"),
])
def test_a_report_the_gateway_did_not_judge_ends_the_session(name: str, value: str,
                                                            sqlstate: str) -> None:
    # A plain SELECT (a function could have made the change unseen).
    step = reply_to(layer(), "select 1", parameter_status(name, value), tag="SELECT 1")
    assert step.end is not None and step.end.fatal is not None
    assert step.end.fatal[0] == sqlstate and name in step.end.fatal[1]


@pytest.mark.parametrize("sql, name, value", [
    ("SET ROLE admin", "role", "admin"),
    ("SET SESSION AUTHORIZATION postgres", "session_authorization", "postgres"),
    ("SELECT set_config('role', 'admin', false)", "is_superuser", "on"),
    ("SET search_path = other, public", "search_path", "other, public"),
])
def test_a_change_a_judged_statement_made_passes(sql: str, name: str, value: str) -> None:
    step = reply_to(layer(), sql, parameter_status(name, value))
    assert step.end is None
    decoder = BackendDecoder()
    decoder.receive_data(step.data)
    seen = []
    while (message := decoder.next_message()) is not None:
        seen.append(message)
    assert ParameterStatus(name, value) in seen


def test_an_unchanged_report_is_not_a_change() -> None:
    step = reply_to(layer(), "select 1", parameter_status("session_authorization", "app"),
                    tag="SELECT 1")
    assert step.end is None
