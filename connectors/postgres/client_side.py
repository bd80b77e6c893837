"""The client side of the PostgreSQL relay layer: every message judged before it is forwarded
(see layer.py)."""

from __future__ import annotations

from typing import Any

from gateway.errors import ProtocolError, RecordingError
from gateway.model import Action, Category, Command, Decision

from .classify import (
    as_running,
    classify,
    cursor_name,
    prepared_body,
    prepared_statement_name,
    requested_encoding,
)
from .copyplan import CopyPlan, copy_plan
from .edge import TranscodeError
from .frontend import (
    Bind,
    Close,
    CopyFail,
    Describe,
    Execute,
    FunctionCall,
    Parse,
    Query,
    decode_frontend,
)
from .guard import NeedRelations, Verdict
from .judging import (
    SessionExpired,
    command_records,
    decide,
    denial_reply,
    params_for_record,
)
from .relaystate import (
    _ABORTED_FIRST,
    _CONVERTED_IN,
    _ENCODING_NOOP,
    _EXTENDED_KINDS,
    _MULTI_STATEMENT_PARSE,
    _NOT_RECALLED,
    _P,
    _QUERY_DROPS,
    _RUNS,
    _S,
    AMBIGUOUS_RULE,
    DENIED_PLACEHOLDER,
    PLACEHOLDER_STATEMENT,
    End,
    Hold,
    LayerState,
    Step,
    _ambiguous,
    _parse_message,
    _recording_failed,
)
from .tracking import (
    ABSENT,
    AMBIGUOUS,
    REMOVED,
    STALL,
    Change,
    Kind,
    Portal,
    Prepared,
    Request,
)
from .transcode import client_encoding


class ClientSide(LayerState):
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
                    return Step(b"".join(out), stall=True,
                                stalled_at=self.tracker.answered_blocks)
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
        if self._barrier is not None and tag in _RUNS:
            barrier = self._barrier
            if not self.tracker.is_waiting(barrier):
                self._barrier = None
            elif self.tracker.will_be_answered(barrier):
                # Code the gateway cannot see just ran; what it changed (a setting such as
                # standard_conforming_strings, a prepared name) is known once its block is
                # answered: nothing runs after it until then.
                return STALL
            else:
                refusal = ("0A000", ("a statement after one that runs code wardgate cannot see "
                           "(a user function, DO, CALL) must wait for a Sync"))
                self._refuse_name(refusal)
                if tag == b"Q":
                    self.tracker.push(Request(Kind.QUERY, denial=refusal,
                                              changes=list(_QUERY_DROPS)))
                    out.append(Query(DENIED_PLACEHOLDER).encode())
                else:
                    self._placeholder(Request(Kind.EXECUTE, denial=refusal), out)
                return None
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
            if not self.copy_in_active:  # during COPY FROM STDIN the server ignores a Sync
                self.tracker.push(Request(Kind.SYNC))
            out.append(raw)
        elif tag in (b"H", b"d", b"c", b"f"):  # Flush, CopyData, CopyDone, CopyFail
            if tag in (b"c", b"f"):
                self.copy_in_active = False
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
        verdict = self._lineage(query.query, len(statements), _wants_types(statements))
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

    def _lineage(self, sql: str, count: int, types_wanted: bool = False
                 ) -> Verdict | NeedRelations:
        """What the statements show of masked columns, or the catalog entries to load first.
        A catalog that could not be read refuses the waiting statement (fail closed)."""
        if self._catalog_failure is not None:
            why, self._catalog_failure = self._catalog_failure, None
            return self.guard.catalog_failed(why, count)
        verdict = self.guard.judge(sql, count, types_wanted=types_wanted)
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
        if any(Category.UNKNOWN in c.categories for c in request.statements):
            request.hidden_code = True
            self._barrier = request
            # It may create temporary tables and types or change the search path unseen:
            # from now on unqualified names may not mean what the catalog connection says.
            self.guard.search_path_changed()
        self.tracker.push(request)
        if request.encoding_change is not None:
            self.edge.switch_inbound(request.encoding_change)

    def _note_allowed(self, request: Request, commands: tuple[Command, ...]) -> None:
        """Remember what an allowed command may legitimately change in what the server reports,
        and forget catalog answers DDL may make wrong (relations, user types)."""
        for command in commands:
            if Category.DDL in command.categories:
                self.guard.catalog_changed()
                if self.types is not None:
                    self.types.forget_user_types()
            if Category.ROLE in command.categories or "role_change" in command.flags:
                self._role_change_allowed = True
            if "search_path" in command.flags:
                self._search_path_change_allowed = True
                self.guard.search_path_changed()

    # -- extended query ---------------------------------------------------------------------
    def _parse(self, parse: Parse, raw: bytes, out: list[bytes]) -> Any:
        commands = classify(parse.query)
        verdict = self._lineage(parse.query, len(commands), _wants_types(commands))
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
        elif commands and "execute_prepared" in commands[0].flags:
            # EXECUTE p runs whatever p holds when its portal runs: judged then, not now.
            decision = Decision(Action.ALLOW, "wardgate.deferred", "judged when it runs")
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
        lineage = statement.lineage
        changes: list[Change] = []
        runs: list[str] = []
        if statement.source == "extended" and len(commands) == 1:
            # A Parse of SQL that names things (EXECUTE p, FETCH c, PREPARE, DEALLOCATE,
            # DECLARE, CLOSE, DISCARD ALL) acts when it runs: resolve and track it now.
            resolved = self._resolve(commands[0], [], runs)
            if resolved is STALL:
                return STALL
            if isinstance(resolved[0], str):
                self._refuse_name(resolved)
                self._placeholder(Request(Kind.EXECUTE, execute.portal, denial=resolved), out)
                return None
            command, recalled = resolved
            if recalled is not _NOT_RECALLED:
                lineage = recalled
            commands = (command,)
            changes = self._sql_changes(command, statement.lineage)
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
                          encoding_change=statement.encoding_change, changes=changes,
                          lineages=(lineage,), statements=commands)
        placeholder = Request(Kind.EXECUTE, execute.portal)
        prelude = self._describe_first(found, execute.portal)
        if decision.action is Action.REVIEW:
            # Held at Execute, where the parameters are known: the approval binds them.
            for describe in prelude:
                self.tracker.push(describe[0])
                out.append(describe[1])
            text = "\n".join((statement.sql, *runs))
            return Hold(commands[0], decision, text, params, record, raw, request,
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


def _wants_types(commands: tuple[Command, ...]) -> bool:
    """A COPY TO STDOUT: its rows are masked by column type (binary COPY needs them)."""
    return any("copy_to_stdout" in c.flags for c in commands)
