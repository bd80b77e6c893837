"""The target's catalog, read by the gateway on a connection of its own and shared by sessions.

Lineage (``lineage.py``) needs to know what a relation name means, its columns in order and a
view's definition; typed masking (``values.py``) needs what a user type's OID is. Both are read
here, with the gateway's credentials and the target user's default search path, on a connection
no agent statement ever runs on (so an agent's search_path or operators cannot steer the answer),
and cached per target (``CatalogCache`` / ``TypeRegistry``) for every session to read.

Relations a session made itself (temp tables, uncommitted DDL) are not visible here: lineage
calls them opaque and their columns are masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from gateway.errors import ProtocolError
from gateway.model import Target
from gateway.runtime import Gateway

from .backend import CommandComplete, DataRow, ErrorResponse, ReadyForQuery
from .catalog import CatalogCache, RelationName, parse_relation_rows, relations_query
from .frontend import Query, Terminate
from .pgtypes import TypeRegistry, parse_type_rows, types_query
from .upstream import Upstream, UpstreamError, dial

log = logging.getLogger("wardgate.postgres")

#: How long one catalog query may take before the statement that needed it is refused.
QUERY_TIMEOUT = 10.0
_MAX_ROWS = 100_000
#: User types are described again at most this often (DDL by other sessions).
TYPES_TTL = 60.0


class CatalogUnavailable(Exception):
    """The catalog could not be read; the message is safe to show an agent."""


class TargetCatalog:
    """One target's catalog: relations (for lineage) and user types (for typed masking)."""

    def __init__(self, gateway: Gateway, target: Target, *, max_message_size: int) -> None:
        self._gateway = gateway
        self.target = target
        self._target = target
        self._max_message_size = max_message_size
        self.relations = CatalogCache()
        self.types = TypeRegistry()
        self._types_read_at: float | None = None
        self._connection: Upstream | None = None
        self._lock = trio.Lock()

    async def load_relations(self, names: Iterable[RelationName]) -> None:
        """Read what ``names`` mean (and what their views read) into the shared cache."""
        rows = await self._query(relations_query(names))
        try:
            answer = parse_relation_rows(rows)
        except ProtocolError as exc:
            raise CatalogUnavailable(f"the target's catalog answer was not understood: {exc}") \
                from exc
        self.relations.store(answer, trio.current_time())

    def expire_types(self, now: float) -> None:
        """User types are described again after TYPES_TTL (DDL by other sessions)."""
        if self._types_read_at is not None and now - self._types_read_at > TYPES_TTL:
            self._types_read_at = None
            self.types.forget_user_types()

    async def load_types(self, oids: Iterable[int]) -> None:
        """Describe type OIDs a result uses (and the types they are built from). A failure
        leaves them unknown: their values are then masked as opaque (fail closed)."""
        try:
            self.types.add_all(parse_type_rows(await self._query(types_query(oids))))
            if self._types_read_at is None:
                self._types_read_at = trio.current_time()
        except (CatalogUnavailable, ProtocolError) as exc:
            log.warning("target %s: types %s not read: %s", self._target.name,
                        ", ".join(map(str, oids)), exc)

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()

    # -- the connection ---------------------------------------------------------------------
    async def _query(self, sql: str) -> list[tuple[str | None, ...]]:
        async with self._lock:
            for attempt in (1, 2):  # a connection that went away is dialled again, once
                try:
                    with trio.fail_after(QUERY_TIMEOUT):
                        connection = await self._connect()
                        return await _run(connection, sql)
                except CatalogUnavailable:
                    raise
                except (UpstreamError, ProtocolError, OSError, trio.BrokenResourceError,
                        trio.ClosedResourceError, trio.TooSlowError) as exc:
                    await self._drop()
                    if attempt == 2:
                        raise CatalogUnavailable(
                            f"the catalog of target {self._target.name!r} could not be read "
                            f"({exc or type(exc).__name__})") from exc
        raise AssertionError("unreachable")

    async def _connect(self) -> Upstream:
        if self._connection is None:
            self._connection = await dial(
                self._gateway, self._target, {"application_name": "wardgate catalog"},
                max_message_size=self._max_message_size,
            )
        return self._connection

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with trio.move_on_after(1):
                try:
                    await connection.stream.send_all(Terminate().encode())
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
            await trio.aclose_forcefully(connection.stream)


async def _run(connection: Upstream, sql: str) -> list[tuple[str | None, ...]]:
    """One simple Query: its rows as text (None for NULL). An ErrorResponse is raised."""
    await connection.stream.send_all(Query(sql).encode())
    rows: list[tuple[str | None, ...]] = []
    failure: str | None = None
    decoder = connection.decoder
    while True:
        message = decoder.next_message()
        if message is None:
            data = await connection.stream.receive_some(65536)
            if not data:
                raise UpstreamError("the catalog connection closed")
            decoder.receive_data(data)
            continue
        if isinstance(message, DataRow):
            if len(rows) >= _MAX_ROWS:
                raise CatalogUnavailable("the catalog answer has too many rows")
            rows.append(tuple(None if v is None else bytes(v).decode("utf-8", "replace")
                              for v in message.values))
        elif isinstance(message, ErrorResponse):
            failure = f"{message.sqlstate} {message.message}"
        elif isinstance(message, ReadyForQuery):
            if failure is not None:
                raise CatalogUnavailable(f"the target refused the catalog query: {failure}")
            return rows
        elif isinstance(message, CommandComplete):
            continue
        # RowDescription, notices, parameter reports: nothing to keep.
