"""The server side of the PostgreSQL relay layer: replies matched to requests, masked and
converted for the client (see layer.py)."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import ProtocolError, RecordingError

from .backend import (
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    data_row,
    decode_backend,
)
from .copydata import BinaryCopyMasker, TextCopyMasker
from .copyplan import CopyPlan
from .edge import TranscodeError
from .frontend import (
    CopyData,
)
from .relaystate import (
    _ABORTED_FIRST,
    _ABORTED_MESSAGE,
    _PINNED,
    _ROLE_PARAMETERS,
    _S,
    _UNREPORTED,
    End,
    LayerState,
    Step,
    _desync,
    _Fatal,
    _recording_failed,
    _row_description,
)
from .replies import error_response, parameter_status
from .results import BUILTIN_TYPES, ResultSet
from .tracking import (
    BLOCK_ENDS,
    REMOVED,
    Change,
    Kind,
    Request,
)


class ServerSide(LayerState):
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
        if self.types is None:
            return ()
        if framed[0] == b"T":
            fields: tuple[FieldDescription, ...] | None = _row_description(*framed).fields
        elif framed[0] == b"D" and self.result is None:
            # The first row of an Execute whose statement was described earlier (a driver's
            # cached statement): its user types may have been forgotten since (DDL), and a
            # composite read against no description would be NULLed.
            fields = self._described_fields(self.tracker.head())
        else:
            return ()
        if not fields:
            return ()
        if self.types.generation != self._types_generation:
            self._types_generation = self.types.generation
            self._types_asked.clear()
        missing = self.types.missing(f.type_oid for f in fields)
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
            self.copy_in_active = False  # (a COPY FROM STDIN completes with CommandComplete)
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
            if answered.hidden_code:
                self._after_hidden_code()
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
                self.copy_in_active = True
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

    def _described_fields(self, head: Request | None) -> tuple[FieldDescription, ...] | None:
        """The fields a Describe told for the portal an Execute runs (or its statement)."""
        if head is None or head.kind is not Kind.EXECUTE or head.portal is None:
            return None
        portal = head.portal
        fields = self._fields.get(portal)
        if fields is None and portal.statement is not None:
            fields = self._fields.get(portal.statement)
        return fields

    def _result_for(
        self, head: Request | None, fields: tuple[FieldDescription, ...] | None,
        from_description: bool = False,
    ) -> ResultSet:
        formats: tuple[int, ...] | None = None
        lineage = self._current_lineage(head)
        if head is not None and head.kind is Kind.EXECUTE:
            formats = head.result_formats
            if fields is None:
                fields = self._described_fields(head)
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
        if head.kind is Kind.EXECUTE:
            if head.lineages:
                return head.lineages[0]
            statement = head.portal.statement if head.portal is not None else None
            return statement.lineage if statement is not None else None
        return None

    def _finish_result(self, head: Request | None, tag: str, completes: bool = True) -> None:
        result = self.result
        self.result = None
        self._shows_encoding = False
        if head is not None and head.kind is Kind.EXECUTE:
            self.tracker.pop()
            if completes:
                # What the statement did to the names now holds (a PREPARE run as a portal).
                self.tracker.commit(head.changes)
                if head.encoding_change is not None:
                    self.edge.switch_outbound(head.encoding_change)
            if head.hidden_code:
                self._after_hidden_code()
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
        self.copy_in_active = False  # an error ends COPY FROM STDIN too
        if head is not None and head.kind is Kind.QUERY:
            self._started(head)
        if head is not None and head.encoding_change is not None:
            head.encoding_change = None  # SET client_encoding failed: read the client as before
            self.edge.revert_inbound()
        if head is not None and head.hidden_code and head.kind is not Kind.QUERY:
            self._after_hidden_code()  # it may have changed names before it failed
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

    def _after_hidden_code(self) -> None:
        """Code the gateway cannot see ran: PL/pgSQL can PREPARE, DEALLOCATE, open and close
        cursors under any name, so with listed columns no name is trusted any more (a name
        swapped to a query over a listed column would be masked as the clean one it was). What
        such code runs, it could run itself; without listed columns a swapped name shows
        nothing that code could not return directly, so names are kept (drivers that cache
        statements would otherwise fail on every call after a user function)."""
        if self.guard.active:
            self.tracker.forget_names()

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
        if name in self._initial:
            changed = value != self._initial[name]
        else:  # first reported now: anything but its default is a change
            changed = value != _UNREPORTED.get(name)
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
        mask = self.session.masker.mask_text
        # Data and integrity errors quote the values they are about ("Failing row contains
        # (...)", "Key (ssn)=(...)", 'invalid input syntax ...: "..."'): with listed columns
        # there, what they quote may be one, so it is hidden whole (fail closed).
        head = self.tracker.head()
        # A statement that reads a listed column can fail quoting its value whatever the class
        # (a cast to regclass: 42P01 relation "..." does not exist): every quoted string goes.
        lineage = self._current_lineage(head) if self.guard.active else None
        reads = bool(getattr(lineage, "reads_masked", False))
        values_shown = reads or (self.guard.active
                                 and msg.sqlstate[:2] in _VALUE_QUOTING_CLASSES)
        # Code the gateway cannot see (a user function) may RAISE what it read from a listed
        # column in any field: with listed columns, what such code says is hidden whole.
        hidden_code = self.guard.active and head is not None and head.hidden_code
        for key, value in fields.items():
            if key in _CODE_FIELDS or (hidden_code and key in _LOCATION_FIELDS):
                continue
            if hidden_code:
                changed[key] = HIDDEN_BY_CODE
                continue
            masked = mask(value)  # every text field: a RAISE ... USING COLUMN = card is one
            if values_shown and key in _VALUE_FIELDS:
                masked = _hide_quoted_values(key, masked, every=reads)
            if masked != value:
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


#: ErrorResponse/NoticeResponse fields that are codes, not text (severity, SQLSTATE).
_CODE_FIELDS = frozenset("SVC")
#: Classes whose messages quote values: 22 data exception, 23 integrity constraint violation.
_VALUE_QUOTING_CLASSES = frozenset(("22", "23"))
_VALUE_FIELDS = frozenset("MDWH")
#: Where in the server's source a message comes from: file, line, routine (never data).
_LOCATION_FIELDS = frozenset("FLR")
HIDDEN_BY_CODE = "(hidden by wardgate: raised by code it cannot see, which may quote masked columns)"
_QUOTED = re.compile(r'"(?:[^"]|"")*"')
HIDDEN_DETAIL = "(detail hidden by wardgate: it may show values of masked columns)"


def _hide_quoted_values(key: str, text: str, *, every: bool = False) -> str:
    if key == "D":
        return HIDDEN_DETAIL
    if every:
        return _QUOTED.sub('"****"', text)
    # Messages and contexts quote identifiers too; values they quote follow ": " or "value ".
    return re.sub(r'(:\s*|value\s+)"(?:[^"]|"")*"', r'\1"****"', text)
