"""Decision binding and reply matching, as properties over any interleaving of client messages.

A client message stream is played twice: once through the relay layer to a model server that runs
whatever reaches it, once straight to a model server that itself refuses the statements the policy
refuses (tests/support/pgmodel.py). Whatever the interleaving of Parse/Bind/Describe/Execute/Close/
Sync/Flush/Query/FunctionCall, server errors, re-used names and held reviews:

* nothing the policy denies, and no held statement that was not approved, ever runs;
* the client sees the same replies (message types and SQLSTATEs) as from the refusing server:
  every denial reaches it as the denial, in its place, and nothing is out of step;
* no card number reaches the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from connectors.postgres.backend import ErrorResponse
from connectors.postgres.codec import BackendDecoder, FrontendDecoder
from connectors.postgres.frontend import (
    Bind,
    Close,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    Parse,
    Query,
    Sync,
)
from connectors.postgres.layer import AMBIGUOUS_RULE, RelayLayer
from gateway.masking import Masker, builtin_detectors
from gateway.model import Action, Category, Command, Decision
from tests.support.pgmodel import CARD, ModelServer

DENIED_WORDS = ("drop",)  # the policy denies these outright
HELD = "delete"  # the policy holds these; the harness approves texts holding "ok"
REFUSED_ON_REVIEW = ("where no",)


class ReviewingSession:
    """Denies drops and unknown statements, holds deletes for review, allows the rest."""

    def __init__(self) -> None:
        self.masker = Masker(builtin_detectors(), ["*ssn*"])
        self.result_row_cap = 10
        self.records: list[tuple[str, Any]] = []

    def identity_expired(self) -> bool:
        return False

    def authorize(self, command: Command) -> Decision:
        if "drop" in command.kinds or Category.UNKNOWN in command.categories:
            return Decision(Action.DENY, "no drops", "not here")
        if "delete" in command.kinds:
            return Decision(Action.REVIEW, "deletes wait", "a person approves deletes")
        return Decision(Action.ALLOW, "ok", "")

    def record(self, kind: str, payload: Any, *, flush: bool = False) -> None:
        self.records.append((kind, payload))


@dataclass
class Run:
    client_sees: list[tuple[str, str]] = field(default_factory=list)
    raw_to_client: bytes = b""
    approved: list[str] = field(default_factory=list)
    ambiguous: bool = False  # a name was refused as ambiguous (a Query inside a pipeline)


def shape(data: bytes) -> list[tuple[str, str]]:
    decoder = BackendDecoder()
    decoder.receive_data(data)
    out = []
    while (m := decoder.next_message()) is not None:
        out.append((type(m).__name__, m.sqlstate if isinstance(m, ErrorResponse) else ""))
    return out


def through_gateway(
    stream: bytes | list[bytes], splits: list[int], server: ModelServer
) -> tuple[Run, ReviewingSession]:
    """Play ``stream`` through a relay layer to ``server``. A list is fed message by message,
    each answered before the next is sent (lock step); bytes are fed at once and the replies
    trickle back in chunks of the ``splits`` sizes only when the layer must wait for them."""
    session = ReviewingSession()
    layer = RelayLayer(session, FrontendDecoder(startup=False), BackendDecoder())
    run = Run()
    pending_replies = bytearray()
    to_client = bytearray()
    cuts = iter(splits)

    def deliver(everything: bool) -> None:
        nonlocal pending_replies
        while pending_replies:
            size = len(pending_replies) if everything else max(1, next(cuts, 7))
            chunk, pending_replies = bytes(pending_replies[:size]), pending_replies[size:]
            step = layer.server_data(chunk)
            to_client.extend(step.data)
            assert step.end is None, step.end
            if not everything:
                return

    def play(data: bytes) -> None:
        step = layer.client_data(data)
        for _ in range(10_000):
            pending_replies.extend(server.feed(step.data))
            assert step.end is None or step.end.reason == "client terminated", step.end
            if step.hold is not None:
                hold = step.hold
                approve = "ok" in hold.text
                if approve:
                    run.approved.append(hold.text)
                verdict = Decision(Action.ALLOW if approve else Action.DENY, "deletes wait",
                                   "approved" if approve else "denied by a person")
                step = layer.decided(hold, verdict)
                pending_replies.extend(server.feed(step.data))
                step = layer.client_data()
                continue
            if step.stall:
                before = layer.answered_blocks
                while layer.answered_blocks == before:
                    assert pending_replies, "stalled with nothing left to answer: deadlock"
                    deliver(everything=False)
                step = layer.client_data()
                continue
            return
        raise AssertionError("the layer did not settle")

    if isinstance(stream, list):
        for message in stream:
            play(message)
            deliver(everything=True)
    else:
        play(stream)
        deliver(everything=True)
    run.ambiguous = any(
        kind == "query" and payload["decision"]["rule"] == AMBIGUOUS_RULE
        for kind, payload in session.records
    )
    run.raw_to_client = bytes(to_client)
    run.client_sees = shape(run.raw_to_client)
    return run, session


def straight_to_refusing_server(stream: bytes) -> list[tuple[str, str]]:
    server = ModelServer(deny=DENIED_WORDS, deny_execute=REFUSED_ON_REVIEW)
    return shape(server.feed(stream))


# -- the vocabulary ---------------------------------------------------------------------------
STATEMENTS = [
    "select 1", "select card from t", "select fail", "select missing_table",
    "drop table t", "delete from t where ok", "delete from t where no",
    "BEGIN", "COMMIT",
]
QUERIES = STATEMENTS + [
    "PREPARE a AS select 1", "PREPARE a AS delete from t where ok",
    "PREPARE a AS delete from t where no", "PREPARE b AS select card from t",
    "EXECUTE a", "EXECUTE b", "DEALLOCATE a", "DEALLOCATE ALL",
    "select 1; select 2", "select 1; drop table t", "",
]
names = st.sampled_from(["", "a", "b"])
portals = st.sampled_from(["", "p"])
MESSAGE = st.one_of(
    st.builds(lambda q: Query(q).encode(), st.sampled_from(QUERIES)),
    st.builds(lambda n, q: Parse(n, q).encode(), names,
              st.sampled_from(STATEMENTS + ["select 1; select 2"])),
    # (Into the unnamed statement only: a statement named "a" holding "EXECUTE a" is a loop
    # the gateway refuses and the model does not.)
    st.builds(lambda q: Parse("", q).encode(), st.sampled_from(
        ["PREPARE a AS select 1", "PREPARE a AS delete from t where no", "EXECUTE a",
         "DEALLOCATE a"])),
    st.builds(lambda p, s: Bind(p, s).encode(), portals, names),
    st.builds(lambda k, n: Describe(k, n).encode(), st.sampled_from(["S", "P"]), names),
    st.builds(lambda p: Execute(p).encode(), portals),
    st.builds(lambda k, n: Close(k, n).encode(), st.sampled_from(["S", "P"]), names),
    st.just(Sync().encode()), st.just(Sync().encode()), st.just(Flush().encode()),
    st.just(FunctionCall(1234, (), (), 0).encode()),
)


# Drivers speak in blocks (Parse/Bind/Describe/Execute ... Sync) and reuse few names: the shapes
# where a name's content is confused across blocks are made likely, not left to chance.
ONE_NAME = st.sampled_from(["a", "a", ""])
REUSED = st.sampled_from(["select 1", "delete from t where no", "delete from t where ok",
                          "drop table t", "select missing_table", "select fail"])
# SQL that names things, sent through the extended protocol: it acts when its portal runs.
NAMING = st.sampled_from(["PREPARE a AS select 1", "PREPARE a AS delete from t where no",
                          "PREPARE a AS delete from t where ok", "EXECUTE a", "DEALLOCATE a",
                          "DEALLOCATE ALL"])
EXTENDED = st.one_of(
    st.builds(lambda n, q: Parse(n, q).encode(), ONE_NAME, REUSED),
    st.builds(lambda q: Parse("", q).encode() + Bind("", "").encode() + Execute("").encode(),
              NAMING),
    st.builds(lambda s: Bind("", s).encode() + Execute("").encode(), ONE_NAME),
    st.builds(lambda s: Bind("", s).encode() + Describe("P", "").encode() + Execute("").encode(),
              ONE_NAME),
    st.builds(lambda n: Close("S", n).encode(), ONE_NAME),
    st.builds(lambda q: Query(q).encode(), st.sampled_from(QUERIES)),
)
BLOCK = st.lists(EXTENDED, min_size=1, max_size=4).map(lambda ms: b"".join(ms) + Sync().encode())
STREAM = st.one_of(
    st.lists(MESSAGE, max_size=30).map(b"".join),
    st.lists(st.one_of(BLOCK, BLOCK, MESSAGE), max_size=10).map(b"".join),
)


@settings(max_examples=3000, deadline=None)
@given(STREAM, st.lists(st.integers(1, 64), max_size=60))
def test_what_runs_is_what_was_judged_and_every_denial_arrives_in_place(
    messages: bytes, splits: list[int]
) -> None:
    stream = messages + Sync().encode()
    server = ModelServer()
    run, _ = through_gateway(stream, splits, server)
    check(stream, run, server)


def check(stream: bytes, run: Run, server: ModelServer) -> None:
    # Nothing denied ran; a held statement ran only as often as it was approved.
    assert not [sql for sql in server.executed if "drop" in sql or "where no" in sql]
    for sql in {s for s in server.executed if HELD in s}:
        ran = server.executed.count(sql)
        approvals = sum(1 for text in run.approved if text.endswith(sql) or sql in text)
        assert ran <= approvals, (sql, ran, run.approved)
    assert "<fast-path call>" not in server.executed
    assert CARD not in run.raw_to_client
    if run.ambiguous:
        # A simple Query inside an unsynced extended pipeline changed a name a later message
        # uses: refused (0A000), the one place the client's view may differ from the server's.
        event("ambiguous name refused")
        return
    # The client saw what a server refusing those statements would have shown it.
    assert run.client_sees == straight_to_refusing_server(stream)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(BLOCK, BLOCK, MESSAGE), max_size=10))
def test_binding_holds_when_every_message_is_answered_before_the_next(
    messages: list[bytes]
) -> None:
    """The same properties when replies arrive between messages: names then come from what the
    server confirmed, not from what was sent."""
    server = ModelServer()
    run, _ = through_gateway([*messages, Sync().encode()], [], server)
    check(b"".join(messages) + Sync().encode(), run, server)


# -- named cases: each spelling of "a decision bound to what the server did not accept" --------
def lockstep(*messages: bytes) -> tuple[Run, ModelServer, ReviewingSession]:
    server = ModelServer()
    run, session = through_gateway([*messages], [], server)
    return run, server, session


def pipelined(*messages: bytes) -> tuple[Run, ModelServer, ReviewingSession]:
    server = ModelServer()
    run, session = through_gateway(b"".join(messages), [], server)
    return run, server, session


def statement_block(name: str, sql: str) -> bytes:
    return Parse(name, sql).encode() + Sync().encode()


def execute_block(statement: str) -> bytes:
    return (Bind("", statement).encode() + Describe("P", "").encode() + Execute("").encode()
            + Sync().encode())


DELETE_NO = "delete from t where no"


def test_reparse_refused_with_42P05_keeps_the_held_statement() -> None:
    """Parse s1 = DELETE (held at Execute) is accepted; Parse s1 = SELECT is refused by the
    server (42P05): s1 is still the DELETE, and its Execute is held (and here denied)."""
    for play in (lockstep, pipelined):
        run, server, _ = play(statement_block("a", DELETE_NO), statement_block("a", "select 1"),
                              execute_block("a"))
        assert ("ErrorResponse", "42P05") in run.client_sees
        assert DELETE_NO not in server.executed
        assert ("ErrorResponse", "42501") in run.client_sees


def test_unnamed_statement_refused_by_the_server_is_not_what_later_binds_run() -> None:
    # The unnamed DELETE is replaced by a Parse the server refuses (42P01), which drops it.
    run, server, _ = lockstep(statement_block("", DELETE_NO),
                              statement_block("", "select missing_table"), execute_block(""))
    assert DELETE_NO not in server.executed
    assert run.client_sees.count(("ErrorResponse", "26000")) == 1  # nothing left to bind


def test_a_parse_skipped_after_an_error_leaves_the_old_unnamed_statement() -> None:
    # Block 2 fails before its Parse: the server skips it, the unnamed statement is still the
    # DELETE, and block 3 binds that (held), not the skipped SELECT.
    skipped = Bind("", "nothing").encode() + Parse("", "select 1").encode() + Sync().encode()
    for play in (lockstep, pipelined):
        run, server, session = play(statement_block("", DELETE_NO), skipped, execute_block(""))
        assert DELETE_NO not in server.executed
        held = [p for k, p in session.records if k == "query" and p.get("sql") == DELETE_NO]
        assert held and held[-1]["decision"]["action"] == "deny"


def test_sql_prepare_refused_keeps_the_old_statement() -> None:
    for play in (lockstep, pipelined):
        run, server, _ = play(Query(f"PREPARE a AS {DELETE_NO}").encode(),
                              Query("PREPARE a AS select 1").encode(), Query("EXECUTE a").encode())
        assert ("ErrorResponse", "42P05") in run.client_sees
        assert DELETE_NO not in server.executed
        assert run.client_sees[-2] == ("ErrorResponse", "42501")


def test_a_sql_prepared_held_statement_is_held_when_the_protocol_executes_it() -> None:
    run, server, _ = lockstep(Query(f"PREPARE a AS {DELETE_NO}").encode(), execute_block("a"))
    assert DELETE_NO not in server.executed
    assert ("ErrorResponse", "42501") in run.client_sees
    run, server, _ = lockstep(Query("PREPARE a AS delete from t where ok").encode(),
                              execute_block("a"), execute_block("a"))
    assert server.executed.count("delete from t where ok") == 2 == len(run.approved)


def test_a_protocol_prepared_statement_is_judged_when_sql_executes_it() -> None:
    run, server, _ = lockstep(statement_block("a", DELETE_NO), Query("EXECUTE a").encode())
    assert DELETE_NO not in server.executed
    assert run.client_sees[-2] == ("ErrorResponse", "42501")


def test_a_portal_runs_the_statement_it_was_bound_to_not_the_name_s_new_one() -> None:
    """Bind p to the unnamed SELECT, then re-Parse the unnamed statement as a DELETE: Execute p
    runs the SELECT and is judged as the SELECT."""
    run, server, session = pipelined(
        Query("BEGIN").encode(),
        Parse("", "select 1").encode() + Bind("p", "").encode() + Sync().encode(),
        Parse("", DELETE_NO).encode() + Execute("p").encode() + Sync().encode(),
        Query("COMMIT").encode(),
    )
    assert server.executed == ["BEGIN", "select 1", "COMMIT"]
    judged = [p["sql"] for k, p in session.records if k == "query" and "params" in p]
    assert judged == ["select 1"]


def test_execute_of_names_wardgate_never_saw_is_refused_with_the_servers_sqlstate() -> None:
    run, server, _ = lockstep(Query("EXECUTE nope").encode(), Execute("nope").encode()
                              + Sync().encode(), Query("FETCH 1 FROM c").encode())
    assert [s for _, s in run.client_sees if s] == ["26000", "34000", "34000"]
    assert server.executed == []


def test_after_a_denied_function_call_the_next_denial_still_reads_as_a_denial() -> None:
    run, server, _ = pipelined(FunctionCall(1234).encode(), Query("drop table t").encode(),
                               Parse("", "drop table t").encode() + Sync().encode(),
                               Parse("", "select missing_table").encode()
                               + FunctionCall(99).encode() + Query("drop table t").encode()
                               + Sync().encode(),
                               FunctionCall(99).encode(), Query("drop table t").encode())
    errors = [s for _, s in run.client_sees if s]
    # fast path, drop, drop (Parse); the failed block skips its call and Query; call, drop
    assert errors == ["42501", "42501", "42501", "42P01", "42501", "42501"]
    assert "<fast-path call>" not in server.executed


def test_a_name_a_query_may_have_changed_inside_an_unsynced_pipeline_is_refused() -> None:
    run, server, session = pipelined(
        Parse("", "select 1").encode(), Query("PREPARE a AS select 1").encode(),
        Bind("", "a").encode(), Execute("").encode(), Sync().encode())
    assert ("ErrorResponse", "0A000") in run.client_sees
    assert any(p["decision"]["rule"] == AMBIGUOUS_RULE for k, p in session.records
               if k == "query")
    assert server.executed == ["select 1"] or server.executed == []


def test_sql_prepare_through_the_extended_protocol_is_tracked_like_a_query() -> None:
    """PREPARE/DEALLOCATE/EXECUTE sent as Parse/Bind/Execute change and use the same names."""
    def run(sql: str) -> bytes:
        return Parse("", sql).encode() + Bind("", "").encode() + Execute("").encode() + \
            Sync().encode()

    for play in (lockstep, pipelined):
        result, server, _ = play(Query("PREPARE a AS select 1").encode(), run("DEALLOCATE a"),
                                 run(f"PREPARE a AS {DELETE_NO}"), Query("EXECUTE a").encode())
        assert DELETE_NO not in server.executed
        assert result.client_sees[-2] == ("ErrorResponse", "42501")
        result, server, _ = play(run(f"PREPARE a AS {DELETE_NO}"), run("EXECUTE a"))
        assert DELETE_NO not in server.executed
