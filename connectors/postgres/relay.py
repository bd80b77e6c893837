"""The relay: every client message judged before it reaches the target, every reply masked.

Two tasks, one per direction. The client-side task parses each message, decides, records the
decision (flushed before anything is forwarded) and forwards the bytes as they came. A denied
statement is not forwarded: it is replaced by a statement that fails to parse, so the target
answers exactly where the denied one would have (its error aborts the transaction and, in the
extended protocol, skips to Sync, just as a real permission error does), and the server-side
task substitutes the denial for that error. Replies therefore stay in order however deeply a
client pipelines, which injecting replies from the client side could not guarantee.

The server-side task matches replies to requests with a FIFO of what was forwarded, the way a
PostgreSQL driver does: that is how it knows which result formats and column names a DataRow
belongs to.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from gateway.errors import ProtocolError, RecordingError
from gateway.model import Action, Command, Decision
from gateway.session import Session

from .backend import ErrorResponse, FieldDescription, NoticeResponse, RowDescription, decode_backend
from .binary import NUMERIC, TEXT_LIKE, number_text
from .classify import classify, classify_with_prepared, prepared_statement_name
from .codec import BackendDecoder, FrontendDecoder
from .frontend import Bind, Close, Describe, Execute, Parse, Query, decode_frontend
from .lineage import masked_column_uses
from .replies import error_response, notice_response
from .results import ResultSet

log = logging.getLogger("wardgate.postgres")

#: What a denied statement is replaced with: it cannot parse, so it cannot run, and the target's
#: syntax error marks the exact place in the reply stream where the denial belongs.
DENIED_PLACEHOLDER = "WARDGATE_DENIED"
DENIED_PORTAL = "wardgate_denied_portal"
#: Client bytes kept while a command is held (a well-behaved client sends nothing meanwhile).
_MAX_HELD_BYTES = 1 << 20
_CHUNK = 65536


def _params_for_record(bind: Bind | None, param_types: tuple[int, ...]) -> list[Any]:
    """Bound parameters as an auditor reads them: text, numbers rendered, other binary as bytes."""
    if bind is None:
        return []
    out: list[Any] = []
    for i, value in enumerate(bind.params):
        oid = param_types[i] if i < len(param_types) else 0
        if value is None:
            out.append(None)
        elif bind.param_format(i) == 0 or oid in TEXT_LIKE:
            out.append(str(value, "utf-8", "replace"))
        elif oid in NUMERIC and (number := number_text(oid, value)) is not None:
            out.append(number)
        else:
            out.append(bytes(value))
    return out


# Drivers repeat the same Parse and RowDescription bytes for every execution of a statement;
# decoding each once is a measurable share of a pgbench transaction. Keyed by the exact bytes,
# and the decoded messages are immutable, so a hit is exactly what decoding would produce.
@functools.lru_cache(maxsize=1024)
def _row_description(tag: bytes, body: bytes, raw: bytes) -> RowDescription:
    return decode_backend(tag, body, raw)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1024)
def _parse_message(tag: bytes, body: bytes, raw: bytes) -> Parse:
    return decode_frontend(tag, body, raw)  # type: ignore[return-value]


@functools.lru_cache(maxsize=2048)
def _command_records(commands: tuple[Command, ...]) -> list[dict[str, Any]]:
    # Classification is cached per SQL text, so the same Command objects come back for repeated
    # statements; their record form is cached too. The msgpack packer never mutates it.
    return [c.to_record() for c in commands]


@dataclass
class Statement:
    sql: str
    commands: tuple[Command, ...]
    decision: Decision
    param_types: tuple[int, ...] = ()


@dataclass
class Pending:
    """One forwarded request whose reply has not been fully seen yet."""

    kind: str  # query | parse | bind | describe_s | describe_p | execute | close | sync | function
    name: str = ""
    denial: Decision | None = None
    statement: str = ""
    result_formats: tuple[int, ...] | None = None
    # The error the target answers the placeholder of a denied request with: a syntax error for
    # a replaced statement, "no such portal" for a replaced Execute.
    placeholder_sqlstate: str = "42601"


@dataclass
class _Hold:
    """A command waiting for a human: what to forward if approved, and what approval binds."""

    kind: str  # "query" | "execute"
    raw: bytes
    command: Command
    decision: Decision
    text: str
    params: list[Any]
    record: dict[str, Any]
    commands: tuple[Command, ...] = ()
    execute: Execute | None = None
    statement: str = ""
    result_formats: tuple[int, ...] = ()


class Relay:
    def __init__(
        self,
        session: Session,
        client: trio.abc.Stream,
        client_decoder: FrontendDecoder,
        server: trio.abc.Stream,
        server_decoder: BackendDecoder,
        *,
        idle_timeout: float,
    ) -> None:
        self.session = session
        self.client = client
        self.client_decoder = client_decoder
        self.server = server
        self.server_decoder = server_decoder
        self.idle_timeout = idle_timeout
        self._last_client_activity = 0.0
        self._client_busy: trio.Event | None = None
        self.pending: deque[Pending] = deque()
        # client side
        self.statements: dict[str, Statement] = {}
        self.portals: dict[str, tuple[str, Bind]] = {}
        self.sql_prepared: dict[str, Command] = {}
        # server side
        self.statement_fields: dict[str, tuple[FieldDescription, ...] | None] = {}
        self.portal_fields: dict[str, tuple[FieldDescription, ...] | None] = {}
        self.result: ResultSet | None = None
        self.transaction_status = "I"
        self.copy_out_binary = False

    # -- plumbing ---------------------------------------------------------------------------
    # Only the server-side task writes to the client while relaying, so no lock (and none of
    # its scheduler round trips) sits on the hot path; a task that must end the session with a
    # FATAL returns it, and run() sends it once both directions have stopped.

    async def run(self) -> str:
        """Relay until either side closes; returns why the session ended."""
        end: _End | None = None
        self._last_client_activity = trio.current_time()
        async with trio.open_nursery() as nursery:

            def finish(result: _End) -> None:
                nonlocal end
                if end is None:
                    end = result
                nursery.cancel_scope.cancel()

            async def client_side() -> None:
                finish(await self._client_to_server())

            async def server_side() -> None:
                finish(await self._server_to_client())

            async def idle_watch() -> None:
                finish(await self._idle_watchdog())

            nursery.start_soon(client_side)
            nursery.start_soon(server_side)
            nursery.start_soon(idle_watch)
        assert end is not None
        final = end.to_client
        if end.fatal is not None:
            final += error_response("FATAL", end.fatal[0], end.fatal[1])
        if final:
            with trio.move_on_after(5):
                try:
                    await self.client.send_all(final)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        return end.reason

    async def _send_client(self, data: bytes) -> None:
        # Only the reply path writes to the client, except a notice while a command is held.
        # This costs no scheduler round trip when nobody else is sending (a trio.Lock costs
        # two), which is every time but during a hold.
        while self._client_busy is not None:
            await self._client_busy.wait()
        done = trio.Event()
        self._client_busy = done
        try:
            await self.client.send_all(data)
        finally:
            self._client_busy = None
            done.set()

    async def _idle_watchdog(self) -> _End:
        # One sleeping task per session instead of a cancel scope around every receive.
        while True:
            deadline = self._last_client_activity + self.idle_timeout
            if trio.current_time() >= deadline and self.pending:
                # Waiting on the target (a long query) is not idleness.
                self._last_client_activity = trio.current_time()
                continue
            if trio.current_time() >= deadline:
                return _End("idle timeout", ("57P05", "terminating connection due to idle timeout (wardgate)"))
            await trio.sleep_until(deadline)

    # -- client -> server -------------------------------------------------------------------
    async def _client_to_server(self) -> _End:
        decoder = self.client_decoder
        while True:
            data = await self.client.receive_some(_CHUNK)
            if not data:
                return _End("client closed")
            self._last_client_activity = trio.current_time()
            out: list[bytes] = []
            try:
                decoder.receive_data(data)
                while (framed := decoder.next_raw()) is not None:
                    tag, body, raw = framed
                    verdict = self._from_client(tag, body, raw, out)
                    if isinstance(verdict, _Hold):
                        if out:  # what came before the held command goes first
                            await self.server.send_all(b"".join(out))
                            out = []
                        decision = await self._hold(verdict)
                        if verdict.kind == "query":
                            self._decided_query(verdict.raw, verdict.commands, decision, verdict.record, out)
                        else:
                            self._decided_execute(verdict, decision, out)
                    elif verdict is not None:
                        if out:
                            await self.server.send_all(b"".join(out))
                        return _End(verdict)
            except ProtocolError as exc:
                return _End(f"protocol error: {exc}", (exc.sqlstate, f"protocol violation: {exc}"))
            except RecordingError as exc:
                return _End("recording failed", (
                    "58030", f"session recording failed; ending the session (fail closed): {exc}"))
            except _SessionExpired:
                return _End("token expired", ("28000", "the token has expired; reconnect with a fresh token"))
            except _ClientGone:
                return _End("client closed while a command waited for approval")
            if out:
                await self.server.send_all(b"".join(out))

    def _from_client(
        self, tag: bytes, body: bytes, raw: bytes, out: list[bytes]
    ) -> str | _Hold | None:
        """Handle one client message; append what to forward. A string result ends the relay;
        a _Hold must be decided (by a human) before anything after it is handled."""
        if tag == b"Q":
            return self._query(decode_frontend(tag, body, raw), raw, out)  # type: ignore[arg-type]
        elif tag == b"P":
            self._parse(_parse_message(tag, body, raw), raw, out)
        elif tag == b"B":
            bind: Bind = decode_frontend(tag, body, raw)  # type: ignore[assignment]
            self.portals[bind.portal] = (bind.statement, bind)
            self.pending.append(Pending("bind", bind.portal))
            out.append(raw)
        elif tag == b"E":
            return self._execute(decode_frontend(tag, body, raw), raw, out)  # type: ignore[arg-type]
        elif tag == b"D":
            describe: Describe = decode_frontend(tag, body, raw)  # type: ignore[assignment]
            kind = "describe_s" if describe.kind == "S" else "describe_p"
            statement = ""
            if kind == "describe_p" and describe.name in self.portals:
                statement = self.portals[describe.name][0]
            self.pending.append(Pending(kind, describe.name, statement=statement))
            out.append(raw)
        elif tag == b"C":
            close: Close = decode_frontend(tag, body, raw)  # type: ignore[assignment]
            if close.kind == "S":
                self.statements.pop(close.name, None)
            else:
                self.portals.pop(close.name, None)
            self.pending.append(Pending("close", close.name))
            out.append(raw)
        elif tag == b"S":
            self.pending.append(Pending("sync"))
            out.append(raw)
        elif tag in (b"H", b"d", b"c", b"f"):  # Flush, CopyData, CopyDone, CopyFail
            out.append(raw)
        elif tag == b"X":
            out.append(raw)
            return "client terminated"
        elif tag == b"F":
            # A fast-path function call can run any function by OID (lo_export, ...): no
            # statement to judge, so it is refused.
            decision = Decision(
                Action.DENY,
                "wardgate.fastpath",
                "fast-path function calls are not allowed through wardgate",
            )
            self.session.record(
                "query",
                {"sql": "<fast-path function call>", "decision": decision.to_record()},
                flush=True,
            )
            self.pending.append(Pending("query", denial=decision))
            out.append(Query(DENIED_PLACEHOLDER).encode())
        else:
            raise ProtocolError(f"unexpected message {tag!r} after start-up")
        return None

    def _judge(self, sql: str) -> tuple[tuple[Command, ...], Decision]:
        if self.session.identity_expired():
            raise _SessionExpired
        commands = (
            classify_with_prepared(sql, self.sql_prepared) if self.sql_prepared else classify(sql)
        )
        if not commands:
            return commands, Decision(Action.ALLOW, "wardgate.empty", "empty query")
        # The connector's own rules come first so that, among equal verdicts, they name the reason.
        decisions = self._connector_rules(commands)
        decisions.extend(self.session.authorize(c) for c in commands)
        decision = Decision.strictest(decisions)
        return commands, decision

    def _connector_rules(self, commands: tuple[Command, ...]) -> list[Decision]:
        """Rules no configuration can lift: they keep masking and identity intact."""
        out: list[Decision] = []
        masker = self.session.masker
        for c in commands:
            if "lexer_setting" in c.flags:
                # client_encoding / standard_conforming_strings change how bytes and strings
                # are read: masking and classification both rely on the pinned values.
                out.append(Decision(
                    Action.DENY, "wardgate.encoding",
                    "client_encoding (UTF8) and string-literal settings are pinned by the gateway",
                ))
            if masker.column_globs:
                used = masked_column_uses(c.text, masker.column_is_masked)
                if used:
                    out.append(Decision(
                        Action.DENY, "wardgate.masking",
                        f"masked column(s) {', '.join(used)} may only be selected as they are: "
                        "not renamed, computed with, filtered, sorted or copied",
                    ))
        return out

    def _remember_prepared(self, commands: tuple[Command, ...]) -> None:
        for c in commands:
            name = prepared_statement_name(c)
            if "prepare" in c.kinds and name is not None:
                self.sql_prepared[name] = c
            elif "deallocate" in c.kinds:
                if name:
                    self.sql_prepared.pop(name, None)
                else:
                    self.sql_prepared.clear()
            elif "discard" in c.kinds:
                self.sql_prepared.clear()

    def _query(self, query: Query, raw: bytes, out: list[bytes]) -> _Hold | None:
        commands, decision = self._judge(query.query)
        record = {
            "sql": query.query,
            "protocol": "simple",
            "commands": _command_records(commands),
        }
        if decision.action is Action.REVIEW:
            # The whole message is what will run, so the whole message is what is approved.
            return _Hold("query", raw, commands[0], decision, query.query, [], record, commands)
        self._decided_query(raw, commands, decision, record, out)
        return None

    def _decided_query(self, raw: bytes, commands: tuple[Command, ...], decision: Decision,
                       record: dict[str, Any], out: list[bytes]) -> None:
        self.session.record("query", {**record, "decision": decision.to_record()}, flush=True)
        if decision.allowed:
            self._remember_prepared(commands)
            self.pending.append(Pending("query"))
            out.append(raw)
        else:
            self.pending.append(Pending("query", denial=decision))
            out.append(Query(DENIED_PLACEHOLDER).encode())

    def _parse(self, parse: Parse, raw: bytes, out: list[bytes]) -> None:
        commands, decision = self._judge(parse.query)
        if len(commands) > 1:
            # The extended protocol runs one statement; PostgreSQL rejects more, but never let
            # the gateway be the one that forwards it.
            decision = Decision(
                Action.DENY,
                "wardgate.multi_statement",
                "a prepared statement may hold only one statement",
            )
        self.statements[parse.name] = Statement(parse.query, commands, decision, parse.param_types)
        if decision.action is not Action.DENY:
            # Preparing runs nothing: a statement that needs review is held at Execute, where
            # its parameters are known and the approval can be bound to them.
            self.pending.append(Pending("parse", parse.name))
            out.append(raw)
            return
        self.session.record(
            "query",
            {
                "sql": parse.query,
                "protocol": "extended",
                "statement": parse.name,
                "decision": decision.to_record(),
                "commands": _command_records(commands),
            },
            flush=True,
        )
        self.pending.append(Pending("parse", parse.name, denial=decision))
        out.append(Parse(parse.name, DENIED_PLACEHOLDER, parse.param_types).encode())

    def _execute(self, execute: Execute, raw: bytes, out: list[bytes]) -> _Hold | None:
        if self.session.identity_expired():
            raise _SessionExpired
        statement_name, bind = self.portals.get(execute.portal, ("", None))
        statement = self.statements.get(statement_name)
        formats = bind.result_formats if bind is not None else ()
        if statement is not None and statement.decision.action is not Action.DENY:
            params = _params_for_record(bind, statement.param_types)
            record = {
                "sql": statement.sql,
                "protocol": "extended",
                "statement": statement_name,
                "params": params,
                "commands": _command_records(statement.commands),
            }
            if statement.decision.action is Action.REVIEW:
                # Held at Execute, where the parameters are known: the approval binds them.
                return _Hold("execute", raw, statement.commands[0], statement.decision,
                             statement.sql, params, record, statement.commands, execute,
                             statement_name, formats)
            self.session.record("query", {**record, "decision": statement.decision.to_record()},
                                flush=True)
        # An Execute of a denied or unknown statement is forwarded: the target never prepared
        # it, so it fails there and nothing runs.
        self.pending.append(
            Pending("execute", execute.portal, statement=statement_name, result_formats=formats)
        )
        out.append(raw)
        return None

    def _decided_execute(self, hold: _Hold, decision: Decision, out: list[bytes]) -> None:
        self.session.record("query", {**hold.record, "decision": decision.to_record()}, flush=True)
        assert hold.execute is not None
        if decision.allowed:
            self.pending.append(Pending("execute", hold.execute.portal, statement=hold.statement,
                                        result_formats=hold.result_formats))
            out.append(hold.raw)
            return
        # Nothing may run: execute a portal that cannot exist instead; the target's "no such
        # portal" error is where the denial goes, and it skips to Sync as a real error would.
        self.pending.append(Pending("execute", DENIED_PORTAL, denial=decision,
                                    placeholder_sqlstate="34000"))
        out.append(Execute(DENIED_PORTAL).encode())

    async def _hold(self, hold: _Hold) -> Decision:
        """Wait for the human decision while still noticing a client that goes away."""
        buffered: list[bytes] = []

        async def notice(review_id: str) -> None:
            await self._send_client(notice_response(
                "NOTICE", "00000",
                f"wardgate: waiting for approval of review {review_id} ({hold.decision.reason})",
                hint=f"an approver runs: wardgate review approve {review_id}",
            ))

        try:
            decision = await self._wait_for_decision(hold, notice, buffered)
        except BaseExceptionGroup as group:
            _, rest = group.split(_ClientGone)
            if rest is not None:
                raise rest from None
            raise _ClientGone from None
        for chunk in buffered:
            self.client_decoder.receive_data(chunk)
        self._last_client_activity = trio.current_time()
        return decision

    async def _wait_for_decision(
        self, hold: _Hold, notice: Callable[[str], Awaitable[None]], buffered: list[bytes]
    ) -> Decision:
        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                # Nothing else reads the client while we wait; a close must cancel the review.
                total = 0
                while total < _MAX_HELD_BYTES:
                    data = await self.client.receive_some(_CHUNK)
                    if not data:
                        raise _ClientGone
                    buffered.append(bytes(data))
                    total += len(data)
                await trio.sleep_forever()

            nursery.start_soon(watch_client)
            decision = await self.session.request_approval(
                hold.command, hold.decision, text=hold.text, params=hold.params, on_waiting=notice
            )
            nursery.cancel_scope.cancel()
        return decision

    # -- server -> client -------------------------------------------------------------------
    async def _server_to_client(self) -> _End:
        decoder = self.server_decoder
        while True:
            data = await self.server.receive_some(_CHUNK)
            if not data:
                return _End("target closed")
            # A long query streaming results is not an idle session.
            self._last_client_activity = trio.current_time()
            out: list[bytes] = []
            try:
                decoder.receive_data(data)
                while (framed := decoder.next_raw()) is not None:
                    self._from_server(framed[0], framed[1], framed[2], out)
            except ProtocolError as exc:
                return _End(f"target protocol error: {exc}",
                            ("08P01", f"the target sent an invalid reply: {exc}"), b"".join(out))
            except RecordingError as exc:
                return _End("recording failed", (
                    "58030", f"session recording failed; ending the session (fail closed): {exc}"))
            except _CopyOutBinary:
                return _End("binary copy refused", (
                    "42501", "binary COPY output cannot be masked; the session was ended (fail closed)"))
            if out:
                await self._send_client(b"".join(out))

    def _head(self) -> Pending | None:
        return self.pending[0] if self.pending else None

    def _from_server(self, tag: bytes, body: bytes, raw: bytes, out: list[bytes]) -> None:
        if tag == b"D":
            if self.result is None:
                self.result = self._result_for_head(None)
            out.append(self.result.mask_row(body, raw))
        elif tag == b"T":
            rd = _row_description(tag, body, raw)
            head = self._head()
            if head is not None and head.kind == "describe_s":
                self.statement_fields[head.name] = rd.fields
                self.pending.popleft()
            elif head is not None and head.kind == "describe_p":
                self.portal_fields[head.name] = rd.fields
                self.pending.popleft()
            else:
                self.result = self._result_for_head(rd.fields, from_description=True)
            out.append(raw)
        elif tag == b"C":
            tag_text = decode_backend(tag, body, raw).tag  # type: ignore[attr-defined]
            self._finish_result(tag_text)
            out.append(raw)
        elif tag in (b"I", b"s"):  # EmptyQueryResponse, PortalSuspended
            self._finish_result("" if tag == b"I" else "suspended")
            out.append(raw)
        elif tag == b"Z":
            self.transaction_status = decode_backend(tag, body, raw).status  # type: ignore[attr-defined]
            self.result = None
            while self.pending:
                if self.pending.popleft().kind in ("sync", "query"):
                    break
            # No flush here: decisions were flushed before forwarding; results ride along with
            # the next decision or the one-second timer.
            out.append(raw)
        elif tag == b"E":
            self._error(body, raw, out)
        elif tag == b"N":
            out.append(self._masked_fields(body, raw))
        elif tag in (b"1", b"2", b"3"):  # ParseComplete, BindComplete, CloseComplete
            head = self._head()
            if head is not None and head.kind in ("parse", "bind", "close"):
                self.pending.popleft()
                if head.kind == "parse":
                    self.statement_fields.pop(head.name, None)
            out.append(raw)
        elif tag == b"t":  # ParameterDescription: the RowDescription/NoData follows
            out.append(raw)
        elif tag == b"n":  # NoData
            head = self._head()
            if head is not None and head.kind in ("describe_s", "describe_p"):
                target = self.statement_fields if head.kind == "describe_s" else self.portal_fields
                target[head.name] = None
                self.pending.popleft()
            out.append(raw)
        elif tag == b"H":  # CopyOutResponse
            if body[:1] == b"\x01":
                raise _CopyOutBinary
            self.result = ResultSet(self.session.masker, None, None, self.session.result_row_cap)
            out.append(raw)
        elif tag == b"d":  # CopyData out: one text line per message, masked like any text
            out.append(self._copy_line(body, raw))
        else:
            # ParameterStatus, NotificationResponse, CopyIn/Both responses, CopyDone,
            # BackendKeyData: nothing to hide or judge.
            out.append(raw)

    def _result_for_head(
        self, fields: tuple[FieldDescription, ...] | None, from_description: bool = False
    ) -> ResultSet:
        head = self._head()
        formats: tuple[int, ...] | None = None
        if head is not None and head.kind == "execute":
            formats = head.result_formats
            if fields is None:
                fields = self.portal_fields.get(head.name) or self.statement_fields.get(
                    head.statement
                )
        if from_description:
            formats = None  # a RowDescription in a result carries the real formats
        return ResultSet(self.session.masker, fields, formats, self.session.result_row_cap)

    def _finish_result(self, tag: str) -> None:
        result = self.result
        self.result = None
        head = self._head()
        if head is not None and head.kind == "execute":
            self.pending.popleft()
        if result is not None:
            self.session.record("result", result.summary(tag))
        elif tag:
            self.session.record("result", {"columns": [], "rows": [], "row_count": 0, "tag": tag})

    def _error(self, body: bytes, raw: bytes, out: list[bytes]) -> None:
        error: ErrorResponse = decode_backend(b"E", body, raw)  # type: ignore[assignment]
        self.result = None
        head = self._head()
        if head is not None and head.denial is not None and error.sqlstate == head.placeholder_sqlstate:
            denial = head.denial
            head.denial = None
            message = f'permission denied by wardgate rule "{denial.rule}": {denial.reason}'
            out.append(error_response("ERROR", "42501", message))
        else:
            self.session.record(
                "error",
                {
                    "sqlstate": error.sqlstate,
                    "message": self.session.masker.mask_text(error.message),
                },
            )
            out.append(self._masked_fields(body, raw, error))
        # In the extended protocol the target now skips everything up to Sync.
        if head is not None and head.kind not in ("query", "sync"):
            while self.pending and self.pending[0].kind not in ("sync", "query"):
                self.pending.popleft()

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


@dataclass
class _End:
    """Why a relay direction stopped, and what the client must still be told."""

    reason: str
    fatal: tuple[str, str] | None = None  # (SQLSTATE, message) of a FATAL to send last
    to_client: bytes = b""  # replies already processed that the client must still get


class _ClientGone(Exception):
    pass


class _SessionExpired(Exception):
    pass


class _CopyOutBinary(Exception):
    pass
