"""What the server holds under each prepared-statement and portal name, as far as it has said.

A decision may only take effect for exactly what the server will run. Names are where that goes
wrong: ``Parse s1`` is judged, forwarded, and then refused by the server (``42P05`` already
exists, a syntax error, a skipped message after an earlier error) — the name still holds what it
held before. So a name's content here changes only when the server **confirms** the message that
changed it (ParseComplete, BindComplete, CloseComplete, a PREPARE's CommandComplete), never when
the message is forwarded.

The client side judges messages before any of that is known. Within one block (the messages up to a
Sync, or one simple Query) a message only runs if every earlier message of the block succeeded, so
the block's own earlier changes are certain for it. Changes made by *earlier* blocks whose replies
have not been read yet are not: a lookup that could see one of them returns :data:`STALL`, and the
caller waits until the server has answered those blocks (their Sync makes the server flush, so the
wait always ends). A lookup may safely ignore pending *removals*: the name then holds either what it
was judged as, or nothing, and executing nothing fails in the server.

Sans-IO: no sockets, no clocks. One instance per session.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.model import Command

from .backend import FieldDescription
from .frontend import Bind


class Namespace(enum.Enum):
    STATEMENT = "S"  # Parse / PREPARE
    PORTAL = "P"  # Bind / DECLARE CURSOR


@dataclass(frozen=True, eq=False)
class Prepared:
    """A statement judged before the server holds it under a name (identity is what matters)."""

    sql: str
    commands: tuple[Command, ...]
    param_types: tuple[int, ...] = ()
    #: "sql" for PREPARE p AS ... / DECLARE c CURSOR FOR ..., "extended" for a Parse.
    source: str = "extended"
    #: Its Parse was denied (replaced by a placeholder): the server never holds it.
    refused: bool = False
    #: SET client_encoding: the relay's edge switches to this when it runs (see edge.py).
    encoding_change: Any = None
    #: What its rows show of masked columns (a lineage.StatementLineage; None: unknown).
    lineage: Any = None
    copy_plan: Any = None  # COPY ... TO STDOUT: how its rows are masked (copyplan.CopyPlan)


@dataclass(frozen=True, eq=False)
class Portal:
    """A portal: a bound statement (protocol Bind) or a cursor (SQL DECLARE)."""

    statement: Prepared | None  # None: the server may hold something wardgate never judged
    bind: Bind | None = None
    cursor: bool = False
    holdable: bool = False  # DECLARE ... WITH HOLD outlives its transaction


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


class _Stall:
    def __repr__(self) -> str:
        return "STALL" if self is STALL else "AMBIGUOUS"


ABSENT: Any = _Absent()  # the name holds nothing (as far as the server has said)
STALL: Any = _Stall()  # an unanswered earlier block may have changed the name: wait for it
#: An earlier message may or may not have changed the name, and the server will only say after
#: messages that come later: the message cannot be judged and is refused.
AMBIGUOUS: Any = _Stall()
#: A Change's value for "remove this name"; a Change's name of None means "every name".
REMOVED: Any = _Absent()

Value = Prepared | Portal


@dataclass(frozen=True)
class Change:
    namespace: Namespace
    #: None: every name in the namespace but the unnamed one (DEALLOCATE ALL and DISCARD ALL
    #: empty the server's table of named statements; the unnamed statement lives elsewhere).
    name: str | None
    value: Value | Any  # Prepared / Portal, or REMOVED

    def touches(self, namespace: Namespace, name: str) -> bool:
        if self.namespace is not namespace:
            return False
        return self.name == name or (self.name is None and name != "")


class Kind(enum.Enum):
    """What a forwarded client message is, for matching the server's replies to it."""

    PARSE = "parse"
    BIND = "bind"
    DESCRIBE_STATEMENT = "describe_s"
    DESCRIBE_PORTAL = "describe_p"
    EXECUTE = "execute"
    CLOSE = "close"
    SYNC = "sync"
    QUERY = "query"  # a simple Query, or the placeholder of a refused FunctionCall


#: Kinds that end a block: the server answers them with ReadyForQuery.
BLOCK_ENDS = frozenset((Kind.SYNC, Kind.QUERY))


@dataclass
class Request:
    """One forwarded client message whose replies have not all been read."""

    kind: Kind
    name: str = ""
    #: For a denied (replaced) message: what the client is told instead of the server's error.
    denial: tuple[str, str] | None = None  # (SQLSTATE, message)
    #: Changes this message makes when the server confirms it. A QUERY holds one list per
    #: statement (confirmed one by one by their CommandCompletes) after its ``start`` changes.
    changes: list[Change] = field(default_factory=list)
    statement_changes: list[list[Change]] = field(default_factory=list)
    portal: Portal | None = None  # EXECUTE / DESCRIBE_PORTAL: the portal as judged
    result_formats: tuple[int, ...] | None = None  # EXECUTE: the Bind's result formats
    internal: bool = False  # sent by the gateway itself: its replies are not forwarded
    statements_done: int = 0  # QUERY: statements the server finished
    started: bool = False  # QUERY: the server has begun it (it is not being skipped)
    payload: Any = None  # what the relay needs back with the replies (e.g. lineage)
    encoding_change: Any = None  # SET client_encoding / RESET ALL: switch the edge's replies
    #: It runs code the gateway cannot see (a user function, DO, CALL): when it is done, no name
    #: is trusted (that code may prepare, deallocate, open or close any of them).
    hidden_code: bool = False
    #: QUERY: the judged statements, one per result the server sends, in order, and what each
    #: one's rows show of masked columns.
    statements: tuple[Command, ...] = ()
    lineages: tuple[Any, ...] = ()
    copy_plans: tuple[Any, ...] = ()


class ObjectTracker:
    """Confirmed names and the queue of requests awaiting replies."""

    def __init__(self) -> None:
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.requests: deque[Request] = deque()
        #: Increases each time the server finishes a block: a stalled lookup may now answer.
        self.answered_blocks = 0
        self.skipping = False  # an error in the extended protocol: the server skips to Sync

    # -- client side ------------------------------------------------------------------------
    def push(self, request: Request) -> None:
        self.requests.append(request)

    def lookup(
        self, namespace: Namespace, name: str, extra: list[Change] | None = None
    ) -> Value | Any:
        """What ``name`` will hold when the next message runs: a Prepared/Portal, ABSENT, STALL
        or AMBIGUOUS. ``extra``: changes of earlier statements of the message being judged.

        Since the last Sync, the next message runs only if every extended-protocol message
        before it succeeded (a failure skips to Sync), so their changes are certain. A simple
        Query's are not: its failure skips nothing. An uncertain change is waited for (STALL)
        when the server is sure to answer it without more client messages, else AMBIGUOUS.
        Pending removals are ignored: the name then holds what it was judged as, or nothing.
        """
        for change in reversed(extra or ()):
            if change.touches(namespace, name):
                return ABSENT if change.value is REMOVED else change.value
        requests = self.requests
        crossed_sync = False
        for index in range(len(requests) - 1, -1, -1):
            request = requests[index]
            if request.kind is Kind.SYNC:
                crossed_sync = True
                continue
            for change in reversed(list(_changes_of(request))):
                if not change.touches(namespace, name):
                    continue
                if not crossed_sync and request.kind is not Kind.QUERY:
                    return ABSENT if change.value is REMOVED else change.value
                if change.value is REMOVED:
                    continue
                return STALL if self._will_be_answered(index) else AMBIGUOUS
        table = self.statements if namespace is Namespace.STATEMENT else self.portals
        return table.get(name, ABSENT)

    def _will_be_answered(self, index: int) -> bool:
        """Whether the server settles requests[index] without further client messages: a Sync
        after it ends any skipping, and a Query it reaches while not skipping is answered."""
        requests = self.requests
        if any(r.kind is Kind.SYNC for r in list(requests)[index + 1:]):
            return True
        if requests[index].kind is not Kind.QUERY:
            return False
        for earlier in range(index - 1, -1, -1):
            kind = requests[earlier].kind
            if kind is Kind.SYNC:
                return True
            if kind is not Kind.QUERY:
                return False  # an extended message before it may fail: the Query is skipped
        return not self.skipping

    # -- server side ------------------------------------------------------------------------
    def head(self) -> Request | None:
        return self.requests[0] if self.requests else None

    def pop(self) -> Request:
        return self.requests.popleft()

    def commit(self, changes: list[Change]) -> None:
        for change in changes:
            table: dict[str, Any] = (
                self.statements if change.namespace is Namespace.STATEMENT else self.portals
            )
            if change.name is None:
                unnamed = table.get("")
                table.clear()
                if unnamed is not None:
                    table[""] = unnamed
            elif isinstance(change.value, Prepared) and change.value.refused:
                continue  # a placeholder never creates anything
            elif change.value is REMOVED:
                table.pop(change.name, None)
            else:
                table[change.name] = change.value

    def forget_names(self) -> None:
        """Code the gateway cannot see ran: it may have prepared, deallocated, opened or closed
        any named statement or cursor (PL/pgSQL can), so none is trusted any more. The unnamed
        statement and portal are the protocol's alone."""
        for table in (self.statements, self.portals):
            unnamed = table.get("")
            table.clear()
            if unnamed is not None:
                table[""] = unnamed  # type: ignore[assignment]

    def is_waiting(self, request: Request) -> bool:
        return any(r is request for r in self.requests)

    def will_be_answered(self, request: Request) -> bool:
        """Whether the server settles ``request`` without further client messages."""
        for index, r in enumerate(self.requests):
            if r is request:
                return self._will_be_answered(index)
        return True

    def skip_to_sync(self) -> None:
        """The server reported an error in the extended protocol: it now ignores everything up
        to the next Sync (Query and FunctionCall included), so those requests get no replies and
        their changes never happen. The Sync's ReadyForQuery pops them."""
        self.skipping = True

    def block_answered(self, transaction_status: str) -> Request:
        """ReadyForQuery: pop the block's remaining requests (all of them up to the Sync when the
        server was skipping) and return the one it answers."""
        if self.skipping:
            self.skipping = False
            while True:
                request = self.pop()
                if request.kind is Kind.SYNC:
                    break
        else:
            request = self.pop()
        if transaction_status == "I":
            # Outside a transaction block every portal but a holdable cursor is gone; forgetting
            # one the server still holds is safe (it is then never executed through us).
            for name in [n for n, p in self.portals.items() if not p.holdable]:
                del self.portals[name]
        self.answered_blocks += 1
        return request

    def unanswered(self) -> Iterator[Request]:
        return iter(self.requests)


def _changes_of(request: Request) -> Iterator[Change]:
    yield from request.changes
    for statement in request.statement_changes:
        yield from statement


__all__ = [
    "ABSENT",
    "AMBIGUOUS",
    "BLOCK_ENDS",
    "REMOVED",
    "STALL",
    "Change",
    "FieldDescription",
    "Kind",
    "Namespace",
    "ObjectTracker",
    "Portal",
    "Prepared",
    "Request",
]
