"""A sans-IO model of a PostgreSQL backend, for property tests of the relay's binding and reply
matching. It implements the protocol rules the relay relies on, as postgres.c does:

* after an error in an extended-protocol message, every message but Sync is ignored until Sync
  (Query and FunctionCall included), and ReadyForQuery follows the Sync;
* a simple Query (one that runs) destroys the unnamed statement and portal; a Parse into the unnamed
  statement drops the old one before parsing; a Parse of an existing named statement fails 42P05;
  binding an existing named portal fails 42P03; PREPARE/EXECUTE/DEALLOCATE share the statement
  namespace with Parse/Bind;
* portals end with their transaction: at a Sync outside BEGIN ... COMMIT they are gone;
* in an aborted transaction everything but COMMIT/ROLLBACK fails 25P02, after a syntax error check.

SQL is a tiny fixed vocabulary (the tests draw from it). What the model *runs* is logged in
``executed``, so a test can check that nothing the gateway denied ever ran.

With ``deny`` set, it plays a server that itself refuses those statements (42501 at Parse/Query,
like a permission error), and with ``deny_execute`` statements refused when they run (a review
that was denied): the reference a client would see without the gateway. It refuses a whole Query
message when any statement in it is refused, as the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.postgres.codec import FrontendDecoder
from connectors.postgres.frontend import Bind, Close, Describe, Execute, Parse, Query
from connectors.postgres.replies import (
    command_complete,
    data_row,
    error_response,
    ready_for_query,
    row_description,
)

CARD = b"4111111111111111"
PLACEHOLDER_WORD = "WARDGATE_DENIED"


def _error(sqlstate: str, message: str = "error") -> bytes:
    return error_response("ERROR", sqlstate, message)


@dataclass
class ModelServer:
    deny: tuple[str, ...] = ()  # words whose statements this server refuses itself (reference)
    deny_execute: tuple[str, ...] = ()  # refused when run, not when prepared (a denied review)
    statements: dict[str, str] = field(default_factory=dict)
    portals: dict[str, tuple[str, tuple[bytes | None, ...]]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    skipping: bool = False
    status: str = "I"  # I, T (in BEGIN), E (aborted)

    def __post_init__(self) -> None:
        self._decoder = FrontendDecoder(startup=False)

    def feed(self, data: bytes) -> bytes:
        self._decoder.receive_data(data)
        out: list[bytes] = []
        while (message := self._decoder.next_message()) is not None:
            tag = message.msg_type  # type: ignore[attr-defined]
            if tag == b"S":
                self.skipping = False
                if self.status == "I":
                    self.portals.clear()  # the implicit transaction ended
                out.append(ready_for_query(self.status))
                continue
            if self.skipping and tag != b"X":
                continue  # Query and FunctionCall too
            if tag == b"Q":
                out.append(self._query(message.query))  # type: ignore[attr-defined]
            elif tag == b"P":
                out.append(self._parse(message))  # type: ignore[arg-type]
            elif tag == b"B":
                out.append(self._bind(message))  # type: ignore[arg-type]
            elif tag == b"D":
                out.append(self._describe(message))  # type: ignore[arg-type]
            elif tag == b"E":
                out.append(self._execute(message))  # type: ignore[arg-type]
            elif tag == b"C":
                close: Close = message  # type: ignore[assignment]
                (self.statements if close.kind == "S" else self.portals).pop(close.name, None)
                out.append(b"3\x00\x00\x00\x04")
            elif tag == b"F":
                if message.function_oid == 0:  # type: ignore[attr-defined]
                    out.append(_error("42883") + self._after_query_error())  # no such function
                elif self.deny:  # a refused call is an error like any other: it aborts a BEGIN
                    out.append(_error("42501") + self._after_query_error())
                else:
                    self.executed.append("<fast-path call>")
                    out.append(b"V\x00\x00\x00\x08\xff\xff\xff\xff" + ready_for_query(self.status))
        return b"".join(out)

    # -- extended ---------------------------------------------------------------------------
    def _fail_extended(self, sqlstate: str) -> bytes:
        self.skipping = True
        if self.status == "T":
            self.status = "E"
        return _error(sqlstate)

    def _refused(self, sql: str) -> bool:
        return any(word in sql for word in self.deny)

    def _parse(self, parse: Parse) -> bytes:
        if parse.name == "":
            self.statements.pop("", None)
        sql = parse.query
        if PLACEHOLDER_WORD in sql or ";" in sql.rstrip(";"):
            return self._fail_extended("42601")  # syntax error / multiple commands
        if self._refused(sql):
            return self._fail_extended("42501")
        if self.status == "E" and not _exits_transaction(sql):
            return self._fail_extended("25P02")
        if "missing_table" in sql:
            return self._fail_extended("42P01")
        if parse.name and parse.name in self.statements:
            return self._fail_extended("42P05")
        self.statements[parse.name] = sql
        return b"1\x00\x00\x00\x04"

    def _bind(self, bind: Bind) -> bytes:
        sql = self.statements.get(bind.statement)
        if sql is None:
            return self._fail_extended("26000")
        if self.status == "E" and not _exits_transaction(sql):
            return self._fail_extended("25P02")
        if bind.portal and bind.portal in self.portals:
            return self._fail_extended("42P03")
        self.portals[bind.portal] = (sql, bind.params)
        return b"2\x00\x00\x00\x04"

    def _describe(self, describe: Describe) -> bytes:
        if describe.kind == "S":
            sql = self.statements.get(describe.name)
            if sql is None:
                return self._fail_extended("26000")
            prefix = b"t\x00\x00\x00\x06\x00\x00"
        else:
            portal = self.portals.get(describe.name)
            if portal is None:
                return self._fail_extended("34000")
            sql, prefix = portal[0], b""
        return prefix + (row_description(["card"]) if _returns_rows(sql) else b"n\x00\x00\x00\x04")

    def _execute(self, execute: Execute) -> bytes:
        portal = self.portals.get(execute.portal)
        if portal is None:
            return self._fail_extended("34000")
        sql = portal[0]
        if self.status == "E" and not _exits_transaction(sql):
            return self._fail_extended("25P02")
        if self._refused_in_query(sql) and not self._refused(sql):
            return self._fail_extended("42501")  # a denied review, or EXECUTE of one
        outcome = self._statement(sql, description=False)
        if isinstance(outcome, str):
            return self._fail_extended(outcome)
        return outcome

    # -- simple -----------------------------------------------------------------------------
    def _query(self, text: str) -> bytes:
        self.statements.pop("", None)
        self.portals.pop("", None)
        if PLACEHOLDER_WORD in text:
            return _error("42601") + self._after_query_error()
        out: list[bytes] = []
        implicit = self.status == "I"
        statements = [s.strip() for s in text.split(";") if s.strip()]
        if any(self._refused_in_query(sql) for sql in statements):
            return _error("42501") + self._after_query_error(implicit)
        for sql in statements:
            if self.status == "E" and not _exits_transaction(sql):
                return b"".join(out) + _error("25P02") + self._after_query_error(implicit)
            outcome = self._statement(sql)
            if isinstance(outcome, str):
                return b"".join(out) + _error(outcome) + self._after_query_error(implicit)
            out.append(outcome)
        if not out:
            out.append(b"I\x00\x00\x00\x04")  # EmptyQueryResponse
        if implicit and self.status == "I":
            self.portals.clear()
        return b"".join(out) + ready_for_query(self.status)

    def _refused_in_query(self, sql: str) -> bool:
        if self._refused(sql):
            return True
        words = sql.split()
        if words[0].upper() == "PREPARE":
            return False  # preparing runs nothing; its EXECUTE is what is refused
        if words[0].upper() == "EXECUTE":
            sql = self.statements.get(words[1], "")
        return any(word in sql for word in self.deny_execute)

    def _after_query_error(self, implicit: bool = True) -> bytes:
        if self.status == "T":
            self.status = "E"
        if implicit and self.status == "I":
            self.portals.clear()
        return ready_for_query(self.status)

    def _statement(self, sql: str, *, description: bool = True) -> bytes | str:
        """The replies of one statement (of a Query, or a portal's), or its error's SQLSTATE."""
        words = sql.split()
        verb = words[0].upper()
        if verb == "PREPARE":
            name = words[1]
            if name in self.statements:
                return "42P05"
            self.statements[name] = sql.split(" AS ", 1)[1]
            return command_complete("PREPARE")
        if verb == "EXECUTE":
            body = self.statements.get(words[1])
            if body is None:
                return "26000"
            return self._run(body, rows=True, description=description) or "22012"
        if verb == "DEALLOCATE":
            if words[1].upper() == "ALL":
                self.statements = {k: v for k, v in self.statements.items() if k == ""}
            elif self.statements.pop(words[1], None) is None:
                return "26000"
            return command_complete("DEALLOCATE")
        if "missing_table" in sql:
            return "42P01"
        return self._run(sql, rows=True, description=description) or "22012"

    def _run(self, sql: str, *, rows: bool, description: bool) -> bytes | None:
        self.executed.append(sql)
        verb = sql.split()[0].upper()
        if verb == "BEGIN":
            self.status = "T"
            return command_complete("BEGIN")
        if verb in ("COMMIT", "ROLLBACK"):
            self.status = "I"
            self.portals = {}
            return command_complete(verb)
        if "fail" in sql:
            return None
        if _returns_rows(sql):
            head = row_description(["card"]) if description else b""
            return head + data_row([CARD]) + command_complete("SELECT 1")
        return command_complete(verb)


def _returns_rows(sql: str) -> bool:
    return sql.split()[0].upper() == "SELECT"


def _exits_transaction(sql: str) -> bool:
    return sql.split()[0].upper() in ("COMMIT", "ROLLBACK")
