"""The trio side of the relay: two directions, an idle watchdog, approval holds and stalls.

Every decision is taken by the sans-IO :class:`~connectors.postgres.layer.RelayLayer`; this module
only moves bytes. Only the server-side task writes to the client while relaying (a notice while a
command is held is the exception), so no lock sits on the hot path; a direction that must end the
session returns an :class:`End`, and :meth:`Relay.run` sends its last words once both directions
have stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from gateway.errors import ProtocolError
from gateway.model import Action, Decision
from gateway.session import Session
from gateway.tls import TLSError

from .catalog_client import CatalogUnavailable, TargetCatalog
from .codec import BackendDecoder, FrontendDecoder
from .guard import NeedRelations
from .judging import CANCELLED_MESSAGE, CANCELLED_RULE
from .layer import DENIED_PLACEHOLDER, End, Hold, RelayLayer, Step
from .replies import error_response, notice_response
from .transcode import UTF8, ClientEncoding

log = logging.getLogger("wardgate.postgres")

#: Client bytes kept while a command is held (a well-behaved client sends nothing meanwhile).
_MAX_HELD_BYTES = 1 << 20
_CHUNK = 65536

__all__ = ["DENIED_PLACEHOLDER", "Relay"]


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
        parameters: dict[str, str] | None = None,
        encoding: ClientEncoding = UTF8,
        reported_encoding: str = "UTF8",
        catalog: TargetCatalog | None = None,
    ) -> None:
        self.session = session
        self.client = client
        self.server = server
        self.catalog = catalog
        self.layer = RelayLayer(
            session, client_decoder, server_decoder, parameters=parameters, encoding=encoding,
            reported_encoding=reported_encoding,
            catalog=catalog.relations if catalog is not None else None,
            types=catalog.types if catalog is not None else None,
            clock=trio.current_time,
        )
        self.idle_timeout = idle_timeout
        self._last_client_activity = 0.0
        self._client_busy: trio.Event | None = None
        self._progress = trio.Event()  # set when the server finished a block
        self._answered_seen = 0
        self._cancel_hold: trio.Event | None = None  # set by a CancelRequest while holding

    # -- plumbing ---------------------------------------------------------------------------
    async def run(self) -> str:
        """Relay until either side closes; returns why the session ended."""
        end: End | None = None
        self._last_client_activity = trio.current_time()
        async with trio.open_nursery() as nursery:

            def finish(result: End) -> None:
                nonlocal end
                if end is None:
                    end = result
                nursery.cancel_scope.cancel()

            async def client_side() -> None:
                try:
                    finish(await self._client_to_server())
                except (trio.BrokenResourceError, trio.ClosedResourceError, TLSError):
                    finish(End("connection lost (reset or closed mid-message)"))

            async def server_side() -> None:
                try:
                    finish(await self._server_to_client())
                except (trio.BrokenResourceError, trio.ClosedResourceError, TLSError):
                    finish(End("connection lost (reset or closed mid-message)"))

            async def idle_watch() -> None:
                finish(await self._idle_watchdog())

            nursery.start_soon(client_side)
            nursery.start_soon(server_side)
            nursery.start_soon(idle_watch)
        assert end is not None
        final = end.to_client
        if end.fatal is not None:
            final += self.layer.edge.for_client(
                error_response("FATAL", end.fatal[0], end.fatal[1]))
        if final:
            with trio.move_on_after(5):
                try:
                    await self.client.send_all(final)
                except (trio.BrokenResourceError, trio.ClosedResourceError, TLSError):
                    pass
        return end.reason

    def cancel_held(self) -> bool:
        """A CancelRequest for this session: a command waiting for approval is cancelled (the
        client gets 57014, as for a cancelled statement). True when one was waiting."""
        if self._cancel_hold is None:
            return False
        self._cancel_hold.set()
        return True

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

    async def _idle_watchdog(self) -> End:
        # One sleeping task per session instead of a cancel scope around every receive.
        while True:
            deadline = self._last_client_activity + self.idle_timeout
            if trio.current_time() >= deadline and self.layer.busy:
                # Waiting on the target (a long query) is not idleness.
                self._last_client_activity = trio.current_time()
                continue
            if trio.current_time() >= deadline:
                return End("idle timeout",
                           ("57P05", "terminating connection due to idle timeout (wardgate)"))
            await trio.sleep_until(deadline)

    # -- client -> server -------------------------------------------------------------------
    async def _client_to_server(self) -> End:
        # Messages that arrived with the password (one TLS record, one read) are answered now.
        step = self.layer.client_data()
        while True:
            if step.data:
                await self.server.send_all(step.data)
            if step.end is not None:
                return step.end
            if step.hold is not None:
                step = await self._held(step.hold)
                continue
            if step.need is not None:
                # Lineage needs catalog entries first (read on the catalog's own connection).
                await self._load_catalog(step.need)
                step = self.layer.client_data()
                continue
            if step.stall:
                # An unanswered earlier block may change what a name holds: wait for it (it may
                # have been answered while the bytes before the stall were being sent).
                while self.layer.answered_blocks == step.stalled_at:
                    await self._progress.wait()
                step = self.layer.client_data()
                continue
            data = await self.client.receive_some(_CHUNK)
            if not data:
                return End("client closed")
            self._last_client_activity = trio.current_time()
            step = self.layer.client_data(data)

    async def _held(self, hold: Hold) -> Step:
        """Wait for people to decide; bytes the client sends meanwhile are kept and judged after."""
        buffered: list[bytes] = []
        gone = False
        self._cancel_hold = cancel = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                decision: Decision | None = None

                async def watch_client() -> None:
                    nonlocal gone
                    total = 0
                    while total < _MAX_HELD_BYTES:
                        data = await self.client.receive_some(_CHUNK)
                        if not data:
                            gone = True
                            nursery.cancel_scope.cancel()
                            return
                        buffered.append(bytes(data))
                        total += len(data)
                    await trio.sleep_forever()

                async def watch_cancel() -> None:
                    nonlocal decision
                    await cancel.wait()
                    decision = Decision(Action.DENY, CANCELLED_RULE, CANCELLED_MESSAGE)
                    nursery.cancel_scope.cancel()

                async def ask() -> None:
                    nonlocal decision
                    decision = await self.session.request_approval(
                        hold.command, hold.decision, text=hold.text, params=hold.params,
                        on_waiting=self._waiting_notice(hold),
                    )
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_client)
                nursery.start_soon(watch_cancel)
                nursery.start_soon(ask)
        finally:
            self._cancel_hold = None
        if gone or decision is None:
            return Step(end=End("client closed while a command waited for approval"))
        step = self.layer.decided(hold, decision)
        try:
            for chunk in buffered:
                self.layer.client_decoder.receive_data(chunk)
        except ProtocolError as exc:
            return Step(step.data, end=End(f"protocol error: {exc}",
                                           (exc.sqlstate, f"protocol violation: {exc}")))
        self._last_client_activity = trio.current_time()
        if step.end is not None:
            return step
        more = self.layer.client_data()
        return Step(step.data + more.data, hold=more.hold, stall=more.stall,
                    stalled_at=more.stalled_at, need=more.need, end=more.end)

    async def _load_catalog(self, need: NeedRelations) -> None:
        if self.catalog is None:
            self.layer.catalog_failed("no catalog connection is configured for this target")
            return
        try:
            await self.catalog.load_relations(need.names)
        except CatalogUnavailable as exc:
            log.warning("session %s: %s", self.session.id, exc)
            self.layer.catalog_failed(str(exc))

    def _waiting_notice(self, hold: Hold) -> Callable[[str], Awaitable[None]]:
        async def notice(review_id: str) -> None:
            await self._send_client(self.layer.edge.for_client(notice_response(
                "NOTICE", "00000",
                f"wardgate: waiting for approval of review {review_id} ({hold.decision.reason})",
                hint=f"an approver runs: wardgate review approve {review_id}",
            )))

        return notice

    # -- server -> client -------------------------------------------------------------------
    async def _server_to_client(self) -> End:
        while True:
            data = await self.server.receive_some(_CHUNK)
            if not data:
                # After a Terminate the target's EOF often arrives before the client side
                # reports the end: the client ended this session, not the target.
                return End("client terminated" if self.layer.terminated else "target closed")
            # A long query streaming results is not an idle session.
            self._last_client_activity = trio.current_time()
            if self.catalog is not None:
                self.catalog.expire_types(trio.current_time())
            step = self.layer.server_data(data)
            while step.need_types and step.end is None:
                if step.data:
                    await self._send_client(step.data)
                if self.catalog is not None:
                    await self.catalog.load_types(step.need_types)
                step = self.layer.server_data(b"")
            if self.layer.answered_blocks != self._answered_seen:
                self._answered_seen = self.layer.answered_blocks
                self._progress.set()
                self._progress = trio.Event()
            if step.end is not None:
                return step.end
            if step.data:
                await self._send_client(step.data)
