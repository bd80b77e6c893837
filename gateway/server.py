"""One trio process serving every configured listener.

Each connection runs in its own task and is caught, logged and closed at its own boundary:
nothing may escape into ``serve_listeners``' nursery, whose docstring warns that would take the
whole server down. Shutdown stops accepting first, lets sessions finish for
``[gateway] shutdown_grace`` seconds, then cancels what is left (their recordings are still
closed and signed by the session context manager).
"""

from __future__ import annotations

import logging
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from gateway.admin import AdminServer
from gateway.config import ListenerConfig
from gateway.connector import ConnectionContext
from gateway.runtime import Gateway

log = logging.getLogger("wardgate.server")


@dataclass
class ServerState:
    """What ``serve`` reports through ``task_status.started`` (tests bind port 0)."""

    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    shutdown: Callable[[], None] = lambda: None
    connections: int = 0


def _peer_of(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        host, port = sock.getpeername()[:2]  # type: ignore[union-attr]
    except (AttributeError, OSError):
        return "unknown"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(gateway: Gateway, *, task_status: trio.TaskStatus[ServerState] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until :meth:`ServerState.shutdown` is called or the task is cancelled."""
    config = gateway.config
    state = ServerState()
    shutdown_requested = trio.Event()
    state.shutdown = shutdown_requested.set
    all_done = trio.Event()
    all_done.set()

    async def handle(stream: trio.SocketStream, listener: ListenerConfig) -> None:
        nonlocal all_done
        if state.connections >= config.limits.max_connections:
            # Over the cap: close at once rather than queue; the client sees a reset and retries.
            log.warning("connection limit %d reached; refusing", config.limits.max_connections)
            await trio.aclose_forcefully(stream)
            return
        state.connections += 1
        if all_done.is_set():
            all_done = trio.Event()
        ctx = ConnectionContext(
            connection_id=secrets.token_hex(6),
            listener=listener,
            peer=_peer_of(stream),
            gateway=gateway,
        )
        connector = gateway.connectors[listener.protocol]
        try:
            await connector.handle(stream, ctx)
        except* trio.Cancelled:
            raise
        except* Exception as group:
            for exc in group.exceptions:
                # A connector lets nothing escape on purpose: anything that does is a bug, and
                # its traceback is what the report needs.
                log.error(
                    "listener %s connection %s from %s ended with %s: %s",
                    listener.name, ctx.connection_id, ctx.peer, type(exc).__name__, exc,
                    exc_info=exc,
                )
        finally:
            await trio.aclose_forcefully(stream)
            state.connections -= 1
            if state.connections == 0:
                all_done.set()

    approvals = gateway.approvals
    if approvals is not None:
        # Before any listener: reviews left pending by a previous process are cancelled and
        # grants loaded, so the first statement is judged against the grants that still hold.
        await approvals.recover()
    admin = AdminServer(gateway) if config.admin is not None and approvals is not None else None

    async with trio.open_nursery() as outer:
        if approvals is not None:
            outer.start_soon(approvals.run)
        # Approvers' connections outlive the data listeners' grace period: a session finishing
        # during the grace may still be waiting for its approval.
        async with trio.open_nursery() as admin_connections:
            async with trio.open_nursery() as sessions:
                async with trio.open_nursery() as accepting:
                    if admin is not None:
                        await _start_admin(admin, state, accepting, admin_connections)
                    for listener in config.listeners.values():
                        socks = await trio.open_tcp_listeners(listener.port, host=listener.host)
                        bound = socks[0].socket.getsockname()
                        state.addresses[listener.name] = (bound[0], bound[1])
                        log.info("listener %s (%s) on %s:%d", listener.name, listener.protocol,
                                 bound[0], bound[1])  # fmt: skip

                        async def run(
                            cfg: ListenerConfig = listener, ls: list[trio.SocketListener] = socks
                        ) -> None:
                            async def handler(stream: trio.SocketStream) -> None:
                                await handle(stream, cfg)

                            await trio.serve_listeners(handler, ls, handler_nursery=sessions)

                        accepting.start_soon(run)
                    task_status.started(state)
                    await shutdown_requested.wait()
                    accepting.cancel_scope.cancel()
                log.info("no longer accepting; %d session(s) have %ss to finish",
                         state.connections, config.gateway.shutdown_grace)  # fmt: skip
                with trio.move_on_after(config.gateway.shutdown_grace):
                    await all_done.wait()
                sessions.cancel_scope.cancel()
            admin_connections.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def _start_admin(
    admin: AdminServer,
    state: ServerState,
    accepting: trio.Nursery,
    connections: trio.Nursery,
) -> None:
    settings = admin.gateway.config.admin
    if settings is None:
        return
    socks = await trio.open_tcp_listeners(settings.port, host=settings.host)
    bound = socks[0].socket.getsockname()
    state.addresses["admin"] = (bound[0], bound[1])
    log.info("admin API on %s:%d", bound[0], bound[1])

    async def run() -> None:
        await trio.serve_listeners(admin.handle, socks, handler_nursery=connections)

    accepting.start_soon(run)


async def serve_until_signalled(gateway: Gateway) -> None:
    """``wardgate serve``: SIGINT/SIGTERM start a graceful shutdown; a second one is immediate."""
    try:
        await _serve_with_signals(gateway)
    finally:
        with trio.CancelScope(shield=True):
            await gateway.aclose()


async def _serve_with_signals(gateway: Gateway) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def run_server(task_status: trio.TaskStatus[ServerState] = trio.TASK_STATUS_IGNORED) -> None:
                await serve(gateway, task_status=task_status)
                nursery.cancel_scope.cancel()  # graceful shutdown finished: stop watching signals

            state: ServerState = await nursery.start(run_server)
            for name, (host, port) in state.addresses.items():
                shown = f"[{host}]" if ":" in host else host
                if name == "admin":
                    print(f"wardgate: admin API on https://{shown}:{port}", flush=True)
                else:
                    print(f"wardgate: listener {name} on {host}:{port}", flush=True)
            received = 0
            async for signum in signals:
                received += 1
                if received == 1:
                    print(f"wardgate: {signal.Signals(signum).name}: shutting down "
                          f"(again to stop at once)", flush=True)
                    state.shutdown()
                else:
                    nursery.cancel_scope.cancel()
