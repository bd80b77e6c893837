"""The PostgreSQL relay as a sans-IO layer: client bytes and server bytes in; bytes to each side,
holds for approval, stalls and an end out. The trio driver (``relay.py``) owns the sockets.

Client side: every message is judged before it is forwarded. A denied one is replaced by a
placeholder the server cannot run (a statement that fails to parse), so the server answers exactly
where the denied message would have been answered (its error aborts the transaction and, in the
extended protocol, skips to Sync, as a real permission error does), and the server side puts the
denial in place of that error. Replies therefore stay in order however deeply a client pipelines.

What a name (prepared statement, portal) holds is tracked in :mod:`.tracking` and changes only when
the server confirms it; Execute, EXECUTE and FETCH are judged as what the name holds then, and a
lookup that depends on an earlier, unanswered block stalls until the server has answered it.

Server side: replies are matched to requests as the server produces them (including skipping to
Sync after an error in the extended protocol, where Query and FunctionCall are skipped too); rows,
notices, notifications and COPY data are masked; every ParameterStatus is checked against what the
parser assumes.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProtocolError, RecordingError
from gateway.model import Action, Category, Command, Decision

from .backend import (
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    RowDescription,
    data_row,
    decode_backend,
)
from .catalog import CatalogCache
from .classify import (
    as_running,
    classify,
    cursor_name,
    prepared_body,
    prepared_statement_name,
    requested_encoding,
)
from .codec import BackendDecoder, FrontendDecoder
from .copydata import BinaryCopyMasker, TextCopyMasker
from .copyplan import CopyPlan, copy_plan
from .edge import ClientEdge, TranscodeError
from .frontend import (
    Bind,
    Close,
    CopyData,
    CopyFail,
    Describe,
    Execute,
    FunctionCall,
    Parse,
    Query,
    decode_frontend,
)
from .guard import ColumnGuard, NeedRelations, Verdict
from .judging import (
    SessionExpired,
    SessionServices,
    command_records,
    decide,
    denial_reply,
    params_for_record,
)
from .pgtypes import TypeRegistry
from .replies import error_response, parameter_status
from .results import BUILTIN_TYPES, ResultSet
from .tracking import (
    ABSENT,
    AMBIGUOUS,
    BLOCK_ENDS,
    REMOVED,
    STALL,
    Change,
    Kind,
    Namespace,
    ObjectTracker,
    Portal,
    Prepared,
    Request,
)
from .transcode import UTF8, ClientEncoding, client_encoding

#: What a denied statement is replaced with: it cannot parse, so it cannot run, and the target's
#: syntax error marks the exact place in the reply stream where the denial belongs.
DENIED_PLACEHOLDER = "WARDGATE_DENIED"
#: The statement name a placeholder for a denied Bind/Execute is parsed under. Parsing fails
#: before any name is looked at, so nothing is created or replaced, whatever the name holds.
PLACEHOLDER_STATEMENT = "wardgate_denied"

_S, _P = Namespace.STATEMENT, Namespace.PORTAL
#: A simple Query destroys the unnamed statement and the unnamed portal (protocol docs, 55.2.3).
_QUERY_DROPS = (Change(_S, "", REMOVED), Change(_P, "", REMOVED))
_MULTI_STATEMENT_PARSE = ("42601", "cannot insert multiple commands into a prepared statement")
#: Client messages whose text is in the client encoding.
_CONVERTED_IN = frozenset((b"Q", b"P", b"B", b"D", b"C", b"E", b"d", b"c", b"f"))
_EXTENDED_KINDS = {b"P": Kind.PARSE, b"B": Kind.BIND, b"D": Kind.DESCRIBE_PORTAL,
                   b"C": Kind.CLOSE, b"E": Kind.EXECUTE}
#: What the target runs for SET client_encoding: nothing (it stays UTF8), with the same reply.
_ENCODING_NOOP = "SET client_encoding TO 'UTF8'"
_NOT_RECALLED = object()  # a statement that is not EXECUTE/FETCH: its own lineage applies
_ABORTED_FIRST = object()  # a Query refused for a name: in an aborted transaction, say 25P02
_ABORTED_MESSAGE = (
    "current transaction is aborted, commands ignored until end of transaction block"
)


AMBIGUOUS_RULE = "wardgate.ambiguous"


def _ambiguous(what: str, name: str) -> tuple[str, str]:
    return ("0A000", (f'wardgate cannot tell what {what} "{name}" holds here: a simple Query '
                      "earlier in this pipeline may have changed it, and the server only says "
                      "after a Sync; send Sync before reusing the name"))
#: Parameters the server reports that must keep the value the gateway's parser relies on.
_PINNED = {"client_encoding": ("UTF8", "UNICODE"), "standard_conforming_strings": ("on",)}
_ROLE_PARAMETERS = frozenset(("session_authorization", "is_superuser", "role"))


@functools.lru_cache(maxsize=1024)
def _row_description(tag: bytes, body: bytes, raw: bytes) -> RowDescription:
    # Drivers repeat the same RowDescription bytes for every execution of a statement; decoding
    # each once is a measurable share of a pgbench transaction. The message is immutable.
    return decode_backend(tag, body, raw)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1024)
def _parse_message(tag: bytes, body: bytes, raw: bytes) -> Parse:
    return decode_frontend(tag, body, raw)  # type: ignore[return-value]


@dataclass
class Hold:
    """A command waiting for a human: what to forward if approved, and what approval binds."""

    command: Command
    decision: Decision
    text: str
    params: list[Any]
    record: dict[str, Any]
    raw: bytes
    request: Request  # pushed (and ``raw`` forwarded) when approved
    placeholder: bytes  # forwarded instead when not
    placeholder_request: Request


@dataclass
class End:
    """Why the relay stopped, and what the client must still be told."""

    reason: str
    fatal: tuple[str, str] | None = None  # (SQLSTATE, message) of a FATAL to send last
    to_client: bytes = b""  # replies already processed that the client must still get


@dataclass
class Step:
    """What one call produced: bytes for the other side, and whether it must wait."""

    data: bytes = b""
    hold: Hold | None = None  # client side: ask people, then call decided()
    stall: bool = False  # client side: wait until answered_blocks grows, then call again
    need: NeedRelations | None = None  # client side: load these into the catalog, call again
    need_types: tuple[int, ...] = ()  # server side: describe these type OIDs, call again
    end: End | None = None


class _Fatal(Exception):
    def __init__(self, reason: str, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.sqlstate = reason, sqlstate


def _desync(reply: str, head: Request | None) -> ProtocolError:
    expected = head.kind.value if head is not None else "nothing"
    return ProtocolError(f"the target sent {reply} while wardgate expected a reply to {expected}",
                         sqlstate="08P01")


class RelayLayer:
    def __init__(
        self,
        session: SessionServices,
        client_decoder: FrontendDecoder,
        server_decoder: BackendDecoder,
        *,
        parameters: dict[str, str] | None = None,
        encoding: ClientEncoding = UTF8,
        reported_encoding: str = "UTF8",
        catalog: CatalogCache | None = None,
        types: TypeRegistry | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.session = session
        self.edge = ClientEdge(encoding, reported_encoding)
        masker = session.masker
        # Without a catalog (tests, or masking by detectors only) columns are matched by name.
        self.guard = ColumnGuard(catalog if catalog is not None else CatalogCache(),
                                 masker.column_is_masked,
                                 active=catalog is not None and bool(masker.column_globs),
                                 clock=clock)
        self.types = types
        self._types_asked: set[int] = set()  # OIDs looked up once: never asked again
        self._server_waiting: tuple[bytes, bytes, bytes] | None = None  # needs its types
        self._catalog_failure: str | None = None
        self.client_decoder = client_decoder
        self.server_decoder = server_decoder
        self.tracker = ObjectTracker()
        self.transaction_status = "I"
        self.parameters = dict(parameters or {})
        self._initial = dict(self.parameters)
        self._waiting: tuple[bytes, bytes, bytes] | None = None  # a stalled message
        self.terminated = False  # the client sent Terminate: the target's EOF follows from it
        self._role_change_allowed = False
        self._search_path_change_allowed = False
        # Fields a Describe told for a statement or portal (the objects, not their names).
        self._fields: weakref.WeakKeyDictionary[Prepared | Portal, tuple[FieldDescription, ...]]
        self._fields = weakref.WeakKeyDictionary()
        self._described: weakref.WeakSet[Prepared | Portal] = weakref.WeakSet()
        self.result: ResultSet | None = None
        self._shows_encoding = False  # the current result is SHOW client_encoding / ALL
        self._copy_out: TextCopyMasker | BinaryCopyMasker | None = None

    @property
    def answered_blocks(self) -> int:
        return self.tracker.answered_blocks

    @property
    def busy(self) -> bool:
        """Requests are waiting for replies (a long query is not an idle session)."""
        return bool(self.tracker.requests)

    # == client -> server ==================================================================
    def client_data(self, data: bytes | bytearray = b"") -> Step:
        """Feed client bytes (may be empty, to go on after a stall or hold) and judge them."""
        out: list[bytes] = []
        try:
            if data:
                self.client_decoder.receive_data(data)
            while True:
                framed = self._waiting or self.client_decoder.next_raw()
                if framed is None:
                    return Step(b"".join(out))
                self._waiting = None
                verdict = self._from_client(*framed, out)
                if verdict is STALL:
                    self._waiting = framed
                    return Step(b"".join(out), stall=True)
                if isinstance(verdict, NeedRelations):
                    self._waiting = framed
                    return Step(b"".join(out), need=verdict)
                if isinstance(verdict, Hold):
                    return Step(b"".join(out), hold=verdict)
                if isinstance(verdict, str):
                    return Step(b"".join(out), end=End(verdict))
        except ProtocolError as exc:
            return Step(b"".join(out), end=End(f"protocol error: {exc}",
                                              (exc.sqlstate, f"protocol violation: {exc}")))
        except RecordingError as exc:
            return Step(b"".join(out), end=_recording_failed(exc))
        except SessionExpired:
            return Step(b"".join(out), end=End(
                "token expired", ("28000", "the token has expired; reconnect with a fresh token")))

    def decided(self, hold: Hold, decision: Decision) -> Step:
        """The people's verdict on ``hold``: forward it once, or its placeholder."""
        try:
            self.session.record("query", {**hold.record, "decision": decision.to_record()},
                                flush=True)
        except RecordingError as exc:
            return Step(end=_recording_failed(exc))
        if decision.allowed:
            self._note_allowed(hold.request, (hold.command,))
            self._push_forwarded(hold.request)
            return Step(hold.raw)
        hold.placeholder_request.denial = denial_reply(decision)
        self.tracker.push(hold.placeholder_request)
        return Step(hold.placeholder)

    def _from_client(self, tag: bytes, body: bytes, raw: bytes, out: list[bytes]) -> Any:
        """One client message: append what to forward; STALL, a Hold, or a string (the end)."""
        if not self.edge.inbound.is_noop and tag in _CONVERTED_IN:
            converted = self._to_utf8(tag, raw, out)
            if converted is None:
                return None
            raw, body = converted, converted[5:]
        if tag == b"Q":
            return self._query(decode_frontend(tag, body, raw), raw, out)  # type: ignore[arg-type]
        if tag == b"P":
            return self._parse(_parse_message(tag, body, raw), raw, out)
        if tag == b"B":
            return self._bind(decode_frontend(tag, body, raw), raw, out)  # type: ignore[arg-type]
        if tag == b"E":
            return self._execute(decode_frontend(tag, body, raw), raw, out)  # type: ignore[arg-type]
        if tag == b"D":
            describe: Describe = decode_frontend(tag, body, raw)  # type: ignore[assignment]
            if describe.kind == "S":
                found = self.tracker.lookup(_S, describe.name)
                request = Request(Kind.DESCRIBE_STATEMENT, describe.name)
            else:
                found = self.tracker.lookup(_P, describe.name)
                request = Request(Kind.DESCRIBE_PORTAL, describe.name)
            if isinstance(found, (Prepared, Portal)):  # a stall only loses a cached description
                request.payload = found
                self._described.add(found)
            self.tracker.push(request)
            out.append(raw)
        elif tag == b"C":
            close: Close = decode_frontend(tag, body, raw)  # type: ignore[assignment]
            namespace = _S if close.kind == "S" else _P
            self.tracker.push(Request(Kind.CLOSE, close.name,
                                      changes=[Change(namespace, close.name, REMOVED)]))
            out.append(raw)
        elif tag == b"S":
            self.tracker.push(Request(Kind.SYNC))
            out.append(raw)
        elif tag in (b"H", b"d", b"c", b"f"):  # Flush, CopyData, CopyDone, CopyFail
            if raw:
                out.append(raw)
        elif tag == b"X":
            self.terminated = True
            out.append(raw)
            return "client terminated"
        elif tag == b"F":
            # A fast-path function call can run any function by OID (lo_export, ...): no
            # statement to judge, so it is refused.
            decision = Decision(Action.DENY, "wardgate.fastpath",
                                "fast-path function calls are not allowed through wardgate")
            self.session.record("query", {"sql": "<fast-path function call>",
                                          "decision": decision.to_record()}, flush=True)
            # In its place, a call of a function that cannot exist (OID 0): it fails as the
            # refused call would, and unlike a Query it leaves the unnamed statement alone.
            self.tracker.push(Request(Kind.QUERY, denial=denial_reply(decision)))
            out.append(FunctionCall(0).encode())
        else:
            raise ProtocolError(f"unexpected message {tag!r} after start-up")
        return None

    def _to_utf8(self, tag: bytes, raw: bytes, out: list[bytes]) -> bytes | None:
        """The client message in UTF-8, or None when it cannot be read in the client encoding:
        then an error takes its place, as the server's conversion error would."""
        edge = self.edge
        if tag in (b"d", b"c", b"f") and edge.copy_in_error is not None:
            out.append(CopyFail(edge.copy_in_error).encode())  # the server ends the COPY
            edge.copy_in_error, edge.copy_in_failed = None, True
            return None
        if tag in (b"d", b"c", b"f") and (edge.copy_in_failed or edge.copy_in is None):
            return b"" if edge.copy_in_failed else raw  # after a failed COPY: the rest is gone
        try:
            if tag == b"c":
                edge.copy_done()
                return raw
            if tag == b"B":
                return self._bind_to_utf8(raw)
            return edge.to_server(tag, raw)
        except TranscodeError as exc:
            if tag in (b"d", b"c", b"f"):
                # The server ends the COPY with this message in an ErrorResponse.
                edge.copy_in_failed, edge.copy_in = True, None
                out.append(CopyFail(str(exc)).encode())
                return None
            refusal = (exc.sqlstate, str(exc))
            if tag == b"Q":
                self.tracker.push(Request(Kind.QUERY, denial=refusal, changes=list(_QUERY_DROPS)))
                out.append(Query(DENIED_PLACEHOLDER).encode())
            else:
                self._placeholder(Request(_EXTENDED_KINDS[tag], denial=refusal), out)
            return None

    def _bind_to_utf8(self, raw: bytes) -> bytes:
        """Bind: binary parameters of text types are converted too, which needs the statement's
        parameter types (known once the names are read)."""
        converted = self.edge.to_server(b"B", raw)
        bind: Bind = decode_frontend(b"B", converted[5:], converted)  # type: ignore[assignment]
        if not any(bind.param_format(i) == 1 for i in range(len(bind.params))):
            return converted
        found = self.tracker.lookup(_S, bind.statement)
        types = found.param_types if isinstance(found, Prepared) else ()
        return self.edge.to_server(b"B", raw, types) if types else converted

    def _encoding_change(self, commands: tuple[Command, ...]) -> tuple[Any, Any]:
        """(EncodingChange or None, refusal or None) for SET client_encoding / RESET ALL."""
        sets = [c for c in commands if "client_encoding" in c.flags]
        if sets:
            if len(commands) > 1:
                return None, ("0A000", ("wardgate needs SET client_encoding in a message of "
                                        "its own (it converts the client's encoding itself)"))
            name = requested_encoding(sets[0]) or ""
            if not name:
                return self.edge.startup, None
            try:
                encoding = client_encoding(name)
            except TranscodeError as exc:
                return None, (exc.sqlstate, str(exc))
            return (encoding, encoding.reported(name)), None
        if any(c.flags & {"reset_all", "discard_all"} for c in commands):
            return self.edge.startup, None  # RESET ALL resets client_encoding as well
        return None, None

    # -- simple query -----------------------------------------------------------------------
    def _query(self, query: Query, raw: bytes, out: list[bytes]) -> Any:
        if self.session.identity_expired():
            raise SessionExpired
        statements = classify(query.query)
        verdict = self._lineage(query.query, len(statements))
        if isinstance(verdict, NeedRelations):
            return verdict
        extra: list[Change] = list(_QUERY_DROPS)
        judged: list[Command] = []
        per_statement: list[list[Change]] = []
        lineages: list[Any] = []
        copy_plans: list[CopyPlan | None] = []
        refusal: tuple[str, str] | None = None
        runs: list[str] = []  # what EXECUTE/FETCH names hold: an approver must see it
        for index, command in enumerate(statements):
            lineage = verdict.statements[index] if index < len(verdict.statements) else None
            resolved = self._resolve(command, extra, runs)
            if resolved is STALL:
                return STALL
            if isinstance(resolved[0], str):  # (SQLSTATE, message): the name cannot run
                refusal = refusal or resolved
            else:
                command, recalled = resolved
                if recalled is not _NOT_RECALLED:
                    lineage = recalled  # EXECUTE p / FETCH c show what p / c were judged as
            changes = self._sql_changes(command, lineage)
            extra.extend(changes)
            per_statement.append(changes)
            judged.append(command)
            lineages.append(lineage)
            plan = copy_plan(command, lineage)
            if isinstance(plan, str):
                refusal = refusal or ("0A000", plan)
            copy_plans.append(plan if isinstance(plan, CopyPlan) else None)
        commands = tuple(judged)
        change, encoding_refusal = self._encoding_change(commands)
        refusal = refusal or encoding_refusal
        record = {"sql": query.query, "protocol": "simple", "commands": command_records(commands)}
        placeholder = Request(Kind.QUERY, changes=list(_QUERY_DROPS))
        if refusal is not None:
            rule = AMBIGUOUS_RULE if refusal[0] == "0A000" else "wardgate.names"
            decision = Decision(Action.DENY, rule, refusal[1])
            self.session.record("query", {**record, "decision": decision.to_record()}, flush=True)
            placeholder.denial = refusal
            placeholder.payload = _ABORTED_FIRST
            self.tracker.push(placeholder)
            out.append(Query(DENIED_PLACEHOLDER).encode())
            return None
        decision = decide(self.session, commands, names_check=not self.guard.active)
        if verdict.refusal is not None:
            decision = Decision.strictest([verdict.refusal, decision])
        request = Request(Kind.QUERY, changes=list(_QUERY_DROPS), statement_changes=per_statement,
                          encoding_change=change, statements=commands, lineages=tuple(lineages),
                          copy_plans=tuple(copy_plans))
        if change is not None and any("client_encoding" in c.flags for c in commands):
            raw = Query(_ENCODING_NOOP).encode()
        if decision.action is Action.REVIEW:
            # The whole message is what will run, so the whole message is what is approved,
            # with what each name it executes holds.
            text = "\n".join((query.query, *runs))
            return Hold(commands[0], decision, text, [], record, raw, request,
                        Query(DENIED_PLACEHOLDER).encode(), placeholder)
        self.session.record("query", {**record, "decision": decision.to_record()}, flush=True)
        if decision.allowed:
            self._note_allowed(request, commands)
            self._push_forwarded(request)
            out.append(raw)
        else:
            placeholder.denial = denial_reply(decision)
            self.tracker.push(placeholder)
            out.append(Query(DENIED_PLACEHOLDER).encode())
        return None

    def _lineage(self, sql: str, count: int) -> Verdict | NeedRelations:
        """What the statements show of masked columns, or the catalog entries to load first.
        A catalog that could not be read refuses the waiting statement (fail closed)."""
        if self._catalog_failure is not None:
            why, self._catalog_failure = self._catalog_failure, None
            return self.guard.catalog_failed(why, count)
        verdict = self.guard.judge(sql, count)
        if isinstance(verdict, Verdict) and any(
            lineage is not None and lineage.changes_catalog for lineage in verdict.statements
        ):
            self.guard.catalog_changed()
        return verdict

    def catalog_failed(self, why: str) -> None:
        """The driver could not load what a NeedRelations step asked for."""
        self._catalog_failure = why

    def _resolve(self, command: Command, extra: list[Change], runs: list[str]) -> Any:
        """EXECUTE p / FETCH c as what the name holds: a Command, STALL, or a refusal. What the
        name holds is appended to ``runs``."""
        if "execute_prepared" in command.flags:
            name = prepared_statement_name(command) or ""
            found = self.tracker.lookup(_S, name, extra)
            if found is STALL:
                return STALL
            if found is AMBIGUOUS:
                return _ambiguous("prepared statement", name)
            if isinstance(found, Prepared) and not found.refused:
                runs.append(f"-- {name} is: {found.commands[0].text}")
                return as_running(command, found.commands[0]), found.lineage
            return ("26000", f'prepared statement "{name}" does not exist')
        if command.kinds & {"fetch", "move"}:
            name = cursor_name(command) or ""
            found = self.tracker.lookup(_P, name, extra)
            if found is STALL:
                return STALL
            if found is AMBIGUOUS:
                return _ambiguous("cursor", name)
            if isinstance(found, Portal) and found.statement is not None:
                runs.append(f"-- cursor {name} is: {found.statement.sql}")
                return as_running(command, found.statement.commands[0]), found.statement.lineage
            # A cursor a function opened (a refcursor) holds a query nobody judged.
            return ("34000", (f'cursor "{name}" does not exist (or was not opened through '
                              "wardgate, which cannot judge its query)"))
        return command, _NOT_RECALLED

    @staticmethod
    def _sql_changes(command: Command, lineage: Any = None) -> list[Change]:
        """What a SQL statement does to the names (PREPARE, DEALLOCATE, DECLARE, CLOSE, ...).
        A name defined here keeps the lineage of what it holds (``lineage.inner``)."""
        kinds, flags = command.kinds, command.flags
        inner = lineage.inner if lineage is not None else None
        if "prepare" in kinds:
            name = prepared_statement_name(command)
            if name is not None:
                body = prepared_body(command)
                return [Change(_S, name, Prepared(command.text, (body,), source="sql",
                                                  lineage=inner))]
        if "deallocate" in kinds:
            return [Change(_S, prepared_statement_name(command), REMOVED)]
        if "discard_all" in flags:
            return [Change(_S, None, REMOVED), Change(_P, None, REMOVED)]
        if "declare" in kinds:
            portal = Portal(Prepared(command.text, (command,), source="sql", lineage=inner),
                            cursor=True, holdable="holdable" in flags)
            return [Change(_P, cursor_name(command) or "", portal)]
        if "close" in kinds:
            return [Change(_P, cursor_name(command), REMOVED)]
        return []

    def _push_forwarded(self, request: Request) -> None:
        """Push a request that is forwarded as it is: an encoding it switches to applies to
        the client's very next message (the server reads that one in the new encoding)."""
        self.tracker.push(request)
        if request.encoding_change is not None:
            self.edge.switch_inbound(request.encoding_change)

    def _note_allowed(self, request: Request, commands: tuple[Command, ...]) -> None:
        """Remember what an allowed command may legitimately change in what the server reports."""
        for command in commands:
            if Category.ROLE in command.categories or "role_change" in command.flags:
                self._role_change_allowed = True
            if "search_path" in command.flags:
                self._search_path_change_allowed = True
                self.guard.search_path_changed()

    # -- extended query ---------------------------------------------------------------------
    def _parse(self, parse: Parse, raw: bytes, out: list[bytes]) -> Any:
        commands = classify(parse.query)
        verdict = self._lineage(parse.query, len(commands))
        if isinstance(verdict, NeedRelations):
            return verdict
        refusal: tuple[str, str] | None = None
        change, refusal = self._encoding_change(commands) if len(commands) == 1 else (None, None)
        if refusal is not None:
            decision = Decision(Action.DENY, "wardgate.encoding", refusal[1])
        elif verdict.refusal is not None and len(commands) == 1:
            decision = verdict.refusal
        elif len(commands) > 1:
            # The server refuses it too, with this error; the gateway never forwards it.
            refusal = _MULTI_STATEMENT_PARSE
            decision = Decision(Action.DENY, "wardgate.multi_statement", refusal[1])
        else:
            decision = decide(self.session, commands, names_check=not self.guard.active)
        if decision.action is not Action.DENY:
            # Preparing runs nothing: a statement that needs review is held at Execute, where
            # its parameters are known and the approval can be bound to them.
            lineage = verdict.statements[0] if verdict.statements else None
            plan = copy_plan(commands[0], lineage) if commands else None
            if isinstance(plan, str):
                decision = Decision(Action.DENY, "wardgate.copy", plan)
                refusal = ("0A000", plan)
            else:
                prepared = Prepared(parse.query, commands, parse.param_types,
                                    encoding_change=change, lineage=lineage, copy_plan=plan)
        if decision.action is not Action.DENY:
            self.tracker.push(Request(Kind.PARSE, parse.name,
                                      changes=[Change(_S, parse.name, prepared)]))
            if change is not None and "client_encoding" in commands[0].flags:
                raw = Parse(parse.name, _ENCODING_NOOP, parse.param_types).encode()
            out.append(raw)
            return
        self.session.record("query", {
            "sql": parse.query, "protocol": "extended", "statement": parse.name,
            "decision": decision.to_record(), "commands": command_records(commands),
        }, flush=True)
        refused = Prepared(parse.query, commands, parse.param_types, refused=True)
        self.tracker.push(Request(Kind.PARSE, parse.name, denial=refusal or denial_reply(decision),
                                  changes=[Change(_S, parse.name, refused)]))
        # Under the client's own name: like the real failure, it drops an unnamed statement.
        out.append(Parse(parse.name, DENIED_PLACEHOLDER, parse.param_types).encode())
        return None

    def _bind(self, bind: Bind, raw: bytes, out: list[bytes]) -> Any:
        found = self.tracker.lookup(_S, bind.statement)
        if found is STALL:
            return STALL
        if found is AMBIGUOUS:
            # Bind itself runs nothing, but the portal it makes would hold an unknown statement.
            refusal = _ambiguous("prepared statement", bind.statement)
            self._refuse_name(refusal)
            self._placeholder(Request(Kind.BIND, bind.portal, denial=refusal), out)
            return None
        statement = found if isinstance(found, Prepared) and not found.refused else None
        portal = Portal(statement, bind)
        self.tracker.push(Request(Kind.BIND, bind.portal,
                                  changes=[Change(_P, bind.portal, portal)]))
        out.append(raw)
        return None

    def _execute(self, execute: Execute, raw: bytes, out: list[bytes]) -> Any:
        if self.session.identity_expired():
            raise SessionExpired
        found = self.tracker.lookup(_P, execute.portal)
        if found is STALL:
            return STALL
        if found is AMBIGUOUS:
            refusal = _ambiguous("portal", execute.portal)
            self._refuse_name(refusal)
            self._placeholder(Request(Kind.EXECUTE, execute.portal, denial=refusal), out)
            return None
        if not isinstance(found, Portal) or found.statement is None:
            # Nothing wardgate judged can be under this name: never let the server run it.
            refusal = ("34000", f'portal "{execute.portal}" does not exist')
            if found is not ABSENT:
                refusal = ("34000", (f'portal "{execute.portal}" was not bound through '
                                     "wardgate to a statement it judged"))
            self._placeholder(Request(Kind.EXECUTE, execute.portal, denial=refusal), out)
            return None
        statement = found.statement
        if statement.refused:  # its Parse was refused in this block: the server skips this
            self._placeholder(Request(Kind.EXECUTE, execute.portal), out)
            return None
        commands = statement.commands
        # Judged again: grants expire, policies reload.
        decision = decide(self.session, commands, names_check=not self.guard.active)
        params = params_for_record(found.bind, statement.param_types)
        record: dict[str, Any] = {
            "sql": statement.sql,
            "protocol": "extended",
            "statement": found.bind.statement if found.bind is not None else "",
            "params": params,
            "commands": command_records(commands),
        }
        formats = found.bind.result_formats if found.bind is not None else ()
        request = Request(Kind.EXECUTE, execute.portal, portal=found, result_formats=formats,
                          encoding_change=statement.encoding_change)
        placeholder = Request(Kind.EXECUTE, execute.portal)
        prelude = self._describe_first(found, execute.portal)
        if decision.action is Action.REVIEW:
            # Held at Execute, where the parameters are known: the approval binds them.
            for describe in prelude:
                self.tracker.push(describe[0])
                out.append(describe[1])
            return Hold(commands[0], decision, statement.sql, params, record, raw, request,
                        Parse(PLACEHOLDER_STATEMENT, DENIED_PLACEHOLDER).encode(), placeholder)
        self.session.record("query", {**record, "decision": decision.to_record()}, flush=True)
        if not decision.allowed:
            placeholder.denial = denial_reply(decision)
            self._placeholder(placeholder, out)
            return None
        for describe in prelude:
            self.tracker.push(describe[0])
            out.append(describe[1])
        self._note_allowed(request, commands)
        self._push_forwarded(request)
        out.append(raw)
        return None

    def _describe_first(self, portal: Portal, name: str) -> list[tuple[Request, bytes]]:
        """Column names are how columns are masked: when the client never described this portal
        (nor its statement), the gateway describes it itself and keeps the reply."""
        if portal in self._described or (
            portal.statement is not None and portal.statement in self._described
        ):
            return []
        self._described.add(portal)
        request = Request(Kind.DESCRIBE_PORTAL, name, internal=True, payload=portal)
        return [(request, Describe("P", name).encode())]

    def _refuse_name(self, refusal: tuple[str, str]) -> None:
        decision = Decision(Action.DENY, AMBIGUOUS_RULE, refusal[1])
        self.session.record("query", {"sql": None, "protocol": "extended",
                                      "decision": decision.to_record()}, flush=True)

    def _placeholder(self, request: Request, out: list[bytes]) -> None:
        """A denied extended message: an error in its place, and nothing created or replaced."""
        self.tracker.push(request)
        out.append(Parse(PLACEHOLDER_STATEMENT, DENIED_PLACEHOLDER).encode())

    # == server -> client ==================================================================
    def server_data(self, data: bytes | bytearray) -> Step:
        """Feed target bytes; return what the client gets (and an end, if the session must)."""
        out: list[bytes] = []
        try:
            self.server_decoder.receive_data(data)
            edge = self.edge
            while (framed := self._server_waiting or self.server_decoder.next_raw()) is not None:
                self._server_waiting = None
                missing = self._unknown_types(framed)
                if missing:
                    # Rows of a type the gateway cannot read yet: describe it first (on the
                    # catalog's own connection), then go on with this very message.
                    self._server_waiting = framed
                    return Step(b"".join(out), need_types=missing)
                start = len(out)
                self._from_server(framed[0], framed[1], framed[2], out)
                if not edge.outbound.is_noop:
                    try:
                        out[start:] = [edge.to_client(m, self.result) for m in out[start:]]
                    except TranscodeError as exc:
                        # The server would have failed the statement mid-result; the target
                        # already ran it, so the session cannot go on as if it had not.
                        raise _Fatal("value not representable in client_encoding", exc.sqlstate,
                                     f"{exc}; the session was ended (use client_encoding UTF8 "
                                     "for data outside it)") from exc
        except ProtocolError as exc:
            return Step(end=End(f"target protocol error: {exc}",
                                ("08P01", f"the target sent an invalid reply: {exc}"),
                                b"".join(out)))
        except RecordingError as exc:
            return Step(end=_recording_failed(exc))
        except _Fatal as exc:
            return Step(end=End(exc.reason, (exc.sqlstate, str(exc)), b"".join(out)))
        return Step(b"".join(out))

    def _unknown_types(self, framed: tuple[bytes, bytes, bytes]) -> tuple[int, ...]:
        if self.types is None or framed[0] != b"T":
            return ()
        rd = _row_description(*framed)
        missing = self.types.missing(f.type_oid for f in rd.fields)
        missing = tuple(oid for oid in missing if oid not in self._types_asked)
        self._types_asked.update(missing)
        return missing

    def _from_server(self, tag: bytes, body: bytes, raw: bytes, out: list[bytes]) -> None:
        tracker = self.tracker
        head = tracker.head()
        if tag == b"D":
            if self.result is None:
                self.result = self._result_for(head, None)
            row = self.result.mask_row(body, raw)
            if self._shows_encoding:
                row = self._client_encoding_row(row)
            out.append(row)
        elif tag == b"T":
            rd = _row_description(tag, body, raw)
            if head is not None and head.kind in (Kind.DESCRIBE_STATEMENT, Kind.DESCRIBE_PORTAL):
                if head.payload is not None:
                    self._fields[head.payload] = rd.fields
                tracker.pop()
                if not head.internal:
                    out.append(raw)
            elif head is not None and head.kind is Kind.QUERY:
                self._started(head)
                self.result = self._result_for(head, rd.fields, from_description=True)
                self._shows_encoding = self._current_statement_flag(head, "shows_client_encoding")
                out.append(raw)
            else:
                raise _desync("a RowDescription", head)
        elif tag == b"n":  # NoData
            if head is None or head.kind not in (Kind.DESCRIBE_STATEMENT, Kind.DESCRIBE_PORTAL):
                raise _desync("NoData", head)
            tracker.pop()
            if not head.internal:
                out.append(raw)
        elif tag == b"t":  # ParameterDescription: the RowDescription/NoData follows
            if head is None or head.kind is not Kind.DESCRIBE_STATEMENT:
                raise _desync("a ParameterDescription", head)
            out.append(raw)
        elif tag in (b"1", b"2", b"3"):  # ParseComplete, BindComplete, CloseComplete
            expected = {b"1": Kind.PARSE, b"2": Kind.BIND, b"3": Kind.CLOSE}[tag]
            if head is None or head.kind is not expected:
                raise _desync(f"{expected.value} complete", head)
            tracker.commit(tracker.pop().changes)
            out.append(raw)
        elif tag == b"C":
            tag_text = decode_backend(tag, body, raw).tag  # type: ignore[attr-defined]
            self._finish_result(head, tag_text)
            out.append(raw)
        elif tag in (b"I", b"s"):  # EmptyQueryResponse, PortalSuspended
            self._finish_result(head, "" if tag == b"I" else "suspended", completes=False)
            out.append(raw)
        elif tag == b"Z":
            if tracker.skipping:
                if not any(r.kind is Kind.SYNC for r in tracker.unanswered()):
                    raise _desync("ReadyForQuery", None)  # skipping ends only at a Sync
            elif head is None or head.kind not in BLOCK_ENDS:
                raise _desync("ReadyForQuery", head)
            self.transaction_status = decode_backend(tag, body, raw).status  # type: ignore[attr-defined]
            answered = tracker.block_answered(self.transaction_status)
            if answered.kind is Kind.QUERY:
                self._started(answered)
                if answered.encoding_change is not None:
                    self.edge.switch_outbound(answered.encoding_change)
            self.result = None
            if self.edge.report_due:  # as the server reports a changed setting: before Z
                self.edge.report_due = False
                out.append(parameter_status("client_encoding", self.edge.reported))
            # No flush here: decisions were flushed before forwarding; results ride along with
            # the next decision or the one-second timer.
            out.append(raw)
        elif tag == b"E":
            self._error(head, body, raw, out)
        elif tag == b"N":
            out.append(self._masked_fields(body, raw))
        elif tag == b"A":
            out.append(self._notification(body, raw))
        elif tag == b"S":
            if self._parameter_status(body, raw) == "client_encoding":
                # The target's is always UTF8; the client is told its own.
                out.append(parameter_status("client_encoding", self.edge.reported))
            else:
                out.append(raw)
        elif tag == b"H":  # CopyOutResponse
            if head is None or head.kind not in (Kind.EXECUTE, Kind.QUERY):
                raise _desync("a CopyOutResponse", head)
            if head.kind is Kind.QUERY:
                self._started(head)
            binary = body[:1] == b"\x01"
            self.edge.start_copy_out(binary=binary)
            self._copy_out = self._copy_masker(head, binary, int.from_bytes(body[1:3], "big"))
            self.result = ResultSet(self.session.masker, None, None, self.session.result_row_cap)
            out.append(raw)
        elif tag == b"d":  # CopyData out: one row per message (binary: any split)
            data = self._copy_data(body, raw)
            if data:
                out.append(data)
        elif tag in (b"c", b"G"):  # CopyDone, CopyInResponse
            if tag == b"c" and isinstance(self._copy_out, BinaryCopyMasker):
                self._copy_out.finish()  # a stream cut short is a broken target
            if tag == b"c":
                self._copy_out = None
            if tag == b"G":
                if head is not None and head.kind is Kind.QUERY:
                    self._started(head)
                try:
                    self.edge.start_copy_in(binary=body[:1] == b"\x01")
                except TranscodeError as exc:  # binary COPY FROM in another encoding
                    self.edge.copy_in_error = str(exc)
            out.append(raw)
        elif tag == b"W":
            raise _Fatal("copy both refused", "0A000",
                         "CopyBoth (replication) is not relayed by wardgate")
        else:  # FunctionCallResponse (never requested), BackendKeyData, authentication
            raise _desync(f"message {tag!r}", head)

    @staticmethod
    def _current_statement_flag(head: Request, flag: str) -> bool:
        index = head.statements_done
        return index < len(head.statements) and flag in head.statements[index].flags

    def _client_encoding_row(self, row: bytes) -> bytes:
        """SHOW client_encoding / SHOW ALL: the target says UTF8; the client's is reported."""
        values = list(decode_backend(b"D", row[5:], row).values)  # type: ignore[attr-defined]
        if len(values) == 1:
            values[0] = self.edge.reported.encode()
        elif values and values[0] == b"client_encoding":
            values[1] = self.edge.reported.encode()
        else:
            return row
        return data_row(values)

    def _started(self, request: Request) -> None:
        """The server began this Query (it was not skipped): it dropped the unnamed objects."""
        if not request.started:
            request.started = True
            self.tracker.commit(request.changes)

    def _result_for(
        self, head: Request | None, fields: tuple[FieldDescription, ...] | None,
        from_description: bool = False,
    ) -> ResultSet:
        formats: tuple[int, ...] | None = None
        lineage = self._current_lineage(head)
        if head is not None and head.kind is Kind.EXECUTE:
            formats = head.result_formats
            portal = head.portal
            if fields is None and portal is not None:
                fields = self._fields.get(portal)
                if fields is None and portal.statement is not None:
                    fields = self._fields.get(portal.statement)
        if from_description:
            formats = None  # a RowDescription in a result carries the real formats
        masks = self.guard.column_masks(lineage, fields) if fields is not None else None
        return ResultSet(self.session.masker, fields, formats, self.session.result_row_cap,
                         registry=self.types, column_masks=masks, by_name=masks is None)

    @staticmethod
    def _current_lineage(head: Request | None) -> Any:
        """The lineage of the statement whose result is arriving (None: not known)."""
        if head is None:
            return None
        if head.kind is Kind.QUERY:
            index = head.statements_done
            return head.lineages[index] if index < len(head.lineages) else None
        if head.kind is Kind.EXECUTE and head.portal is not None:
            statement = head.portal.statement
            return statement.lineage if statement is not None else None
        return None

    def _finish_result(self, head: Request | None, tag: str, completes: bool = True) -> None:
        result = self.result
        self.result = None
        self._shows_encoding = False
        if head is not None and head.kind is Kind.EXECUTE:
            self.tracker.pop()
            if completes and head.encoding_change is not None:
                self.edge.switch_outbound(head.encoding_change)
        elif head is not None and head.kind is Kind.QUERY:
            self._started(head)
            if completes and head.statements_done < len(head.statement_changes):
                # This statement finished: what it did to the names now holds (PREPARE, ...).
                self.tracker.commit(head.statement_changes[head.statements_done])
                head.statements_done += 1
        else:
            raise _desync("a command completion", head)
        if result is not None:
            self.session.record("result", result.summary(tag))
        elif tag:
            self.session.record("result", {"columns": [], "rows": [], "row_count": 0, "tag": tag})

    def _error(self, head: Request | None, body: bytes, raw: bytes, out: list[bytes]) -> None:
        error: ErrorResponse = decode_backend(b"E", body, raw)  # type: ignore[assignment]
        self.result = None
        if head is not None and head.kind is Kind.QUERY:
            self._started(head)
        if head is not None and head.encoding_change is not None:
            head.encoding_change = None  # SET client_encoding failed: read the client as before
            self.edge.revert_inbound()
        if head is not None and head.denial is not None:
            # The placeholder failed where the denied message would have run: whatever the
            # server said about it (a syntax error, 25P02 in an aborted transaction), nothing
            # ran, and the client is told the denial.
            sqlstate, message = head.denial
            head.denial = None
            if head.payload is _ABORTED_FIRST and self.transaction_status == "E":
                # The server checks for an aborted transaction before it looks a name up.
                sqlstate, message = "25P02", _ABORTED_MESSAGE
            out.append(error_response("ERROR", sqlstate, message))
        else:
            self.session.record("error", {
                "sqlstate": error.sqlstate,
                "message": self.session.masker.mask_text(error.message),
            })
            out.append(self._masked_fields(body, raw, error))
        if head is not None and head.kind not in BLOCK_ENDS and error.severity != "FATAL":
            if head.kind is Kind.PARSE and head.name == "":
                # A Parse into the unnamed statement drops the old one before it parses.
                self.tracker.commit([Change(_S, "", REMOVED)])
            self.tracker.skip_to_sync()

    def _parameter_status(self, body: bytes, raw: bytes) -> str:
        status: ParameterStatus = decode_backend(b"S", body, raw)  # type: ignore[assignment]
        name, value = status.name, status.value
        pinned = _PINNED.get(name)
        if pinned is not None and value.upper().replace("-", "") not in {
            p.upper() for p in pinned
        }:
            raise _Fatal(f"target changed {name}", "08P01",
                         f"the target now reports {name} = {value!r}; wardgate reads statements "
                         f"and values assuming {pinned[0]} and ends the session (fail closed)")
        changed = value != self._initial.get(name, value)
        if name in _ROLE_PARAMETERS and changed and not self._role_change_allowed:
            raise _Fatal(f"target changed {name}", "42501",
                         f"the session's {name} changed to {value!r} without a role change "
                         "that wardgate judged; the session was ended (fail closed)")
        if name == "search_path" and changed and not self._search_path_change_allowed:
            raise _Fatal("target changed search_path", "42501",
                         "the session's search_path changed without a statement wardgate "
                         "judged as changing it; the session was ended (fail closed)")
        self.parameters[name] = value
        return name

    def _notification(self, body: bytes, raw: bytes) -> bytes:
        note: NotificationResponse = decode_backend(b"A", body, raw)  # type: ignore[assignment]
        mask = self.session.masker.mask_text
        channel, payload = mask(note.channel), mask(note.payload)
        if channel is note.channel and payload is note.payload:
            return raw
        return NotificationResponse(note.pid, channel, payload).encode()

    def _masked_fields(
        self, body: bytes, raw: bytes, message: ErrorResponse | NoticeResponse | None = None
    ) -> bytes:
        msg = message if message is not None else decode_backend(raw[:1], body, raw)
        assert isinstance(msg, (ErrorResponse, NoticeResponse))
        fields = msg.fields
        changed = {}
        for key in ("M", "D", "H", "W", "q"):
            value = fields.get(key)
            if value is not None:
                masked = self.session.masker.mask_text(value)
                if masked is not value:
                    changed[key] = masked
        if not changed:
            return raw
        return type(msg)({**fields, **changed}).encode()

    def _copy_masker(self, head: Request | None, binary: bool, columns: int
                     ) -> TextCopyMasker | BinaryCopyMasker | None:
        """How this COPY's rows are masked: column by column by the statement's options and
        lineage (its columns' types and which ones hide whole), or, with no plan, line by line
        (text) or as opaque values (binary)."""
        plan: CopyPlan | None = None
        if head is not None and head.kind is Kind.QUERY:
            index = head.statements_done
            plan = head.copy_plans[index] if index < len(head.copy_plans) else None
        elif head is not None and head.kind is Kind.EXECUTE and head.portal is not None:
            statement = head.portal.statement
            plan = statement.copy_plan if statement is not None else None
        types: list[int] = list(plan.types) if plan is not None else []
        masks: list[bool] = list(plan.masks) if plan is not None else []
        # A plan that does not match the columns the server sends fails closed: hide the rest.
        types = (types + [0] * columns)[:columns]
        rest = plan.rest_masked if plan is not None else False
        masks = (masks + [rest] * columns)[:columns]
        registry = self.types if self.types is not None else BUILTIN_TYPES
        if binary:
            return BinaryCopyMasker(types, masks, registry, self.session.masker)
        if plan is None or plan.options is None:
            return None
        return TextCopyMasker(plan.options, types, masks, registry, self.session.masker)

    def _copy_data(self, body: bytes, raw: bytes) -> bytes:
        masker = self._copy_out
        if masker is None:
            return self._copy_line(body, raw)
        if isinstance(masker, BinaryCopyMasker):
            masked = masker.feed(body)
        else:
            masked = masker.mask(body)
            if self.result is not None:
                text = str(masked, "utf-8", "replace")
                self.result.add_copy_line(text, masked=masked is not body)
        if masked is body:
            return raw
        if not masked:
            return b""
        return CopyData(masked).encode()

    def _copy_line(self, body: bytes, raw: bytes) -> bytes:
        try:
            text: str | None = str(body, "utf-8")
        except UnicodeDecodeError:
            text = None  # cannot be scanned: hidden whole (fail closed)
        masked = "****\n" if text is None else self.session.masker.mask_text(text)
        if self.result is not None:
            self.result.add_copy_line(masked, masked=masked is not text)
        if masked is text:
            return raw
        data = masked.encode("utf-8")
        return b"d" + (len(data) + 4).to_bytes(4, "big") + data


def _recording_failed(exc: RecordingError) -> End:
    return End("recording failed", (
        "58030", f"session recording failed; ending the session (fail closed): {exc}"))
