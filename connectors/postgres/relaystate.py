"""What both directions of the PostgreSQL relay layer share: the tracked names, the edge,
the column guard, the result being masked; and the layer's value types (Hold, End, Step).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import ProtocolError, RecordingError
from gateway.model import Command, Decision

from .backend import (
    FieldDescription,
    RowDescription,
    decode_backend,
)
from .catalog import CatalogCache
from .codec import BackendDecoder, FrontendDecoder
from .copydata import BinaryCopyMasker, TextCopyMasker
from .edge import ClientEdge
from .frontend import (
    Parse,
    decode_frontend,
)
from .guard import ColumnGuard, NeedRelations
from .judging import (
    SessionServices,
)
from .pgtypes import TypeRegistry
from .results import ResultSet
from .tracking import (
    REMOVED,
    Change,
    Kind,
    Namespace,
    ObjectTracker,
    Portal,
    Prepared,
    Request,
)
from .transcode import UTF8, ClientEncoding

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
#: Client messages that make the server run something.
_RUNS = frozenset((b"Q", b"E", b"F"))
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
_PINNED = {"client_encoding": ("UTF8", "UNICODE"), "server_encoding": ("UTF8", "UNICODE"),
           "standard_conforming_strings": ("on",)}
_ROLE_PARAMETERS = frozenset(("session_authorization", "is_superuser", "role"))
#: What a parameter the target did not report at start-up is taken to have been: a first report
#: of anything else is a change (fail closed); ``role`` starts as ``none``.
_UNREPORTED = {"role": "none"}


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
    stall: bool = False  # client side: wait until answered_blocks passes stalled_at, call again
    stalled_at: int = 0  # answered_blocks when it stalled (replies may arrive meanwhile)
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


def _recording_failed(exc: RecordingError) -> End:
    return End("recording failed", (
        "58030", f"session recording failed; ending the session (fail closed): {exc}"))


class LayerState:
    """The state of one session's relay layer (see layer.py)."""

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
                                 typed=catalog is not None,
                                 clock=clock)
        self.types = types
        self._types_asked: set[int] = set()  # OIDs looked up once: not asked again...
        self._types_generation = types.generation if types is not None else 0  # ...until then
        self._server_waiting: tuple[bytes, bytes, bytes] | None = None  # needs its types
        self._catalog_failure: str | None = None
        self._barrier: Request | None = None  # a request running code the gateway cannot see
        self.copy_in_active = False  # the server is in COPY FROM STDIN: it ignores Sync/Flush
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
