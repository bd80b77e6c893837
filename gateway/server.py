"""One trio process serving every configured listener.

Each connection runs in its own task and is caught, logged and closed at its own boundary:
nothing may escape into ``serve_listeners``' nursery, whose docstring warns that would take the
whole server down. Shutdown stops accepting first, lets sessions finish for
``[gateway] shutdown_grace`` seconds, then cancels what is left (their recordings are still
closed and signed by the session context manager).
"""

from __future__ import annotations

import errno
import functools
import logging
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from gateway.admin import AdminServer
from gateway.config import Config, ListenerConfig
from gateway.config_schema import table_label
from gateway.connector import ConnectionContext
from gateway.errors import GatewayError
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
    """Serve until :meth:`ServerState.shutdown` is called or the task is cancelled.

    Raises GatewayError, before serving anything, when a port cannot be bound.
    """
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
    admin = AdminServer(gateway) if config.admin is not None and approvals is not None else None
    # Every port is bound before anything else happens: a port in use stops start-up before
    # recover() cancels the pending reviews of a gateway still running there, and before any
    # other listener accepts a connection that would then be cut.
    bound = await bind_listeners(config, admin=admin is not None)
    try:
        for name, socks in bound.items():
            host, port = socks[0].socket.getsockname()[:2]
            state.addresses[name] = (host, port)
        if approvals is not None:
            # Before any listener accepts: reviews left pending by a previous process are
            # cancelled and grants loaded, so the first statement is judged against the grants
            # that still hold.
            await approvals.recover()

        async with trio.open_nursery() as outer:
            if approvals is not None:
                outer.start_soon(approvals.run)
            # Approvers' connections outlive the data listeners' grace period: a session
            # finishing during the grace may still be waiting for its approval.
            async with trio.open_nursery() as admin_connections:
                async with trio.open_nursery() as sessions:
                    async with trio.open_nursery() as accepting:
                        if admin is not None:
                            log.info("admin API on %s:%d", *state.addresses[ADMIN])
                            accepting.start_soon(functools.partial(
                                trio.serve_listeners, admin.handle, bound[ADMIN],
                                handler_nursery=admin_connections,
                            ))  # fmt: skip
                        for listener in config.listeners.values():
                            host, port = state.addresses[listener.name]
                            log.info("listener %s (%s) on %s:%d",
                                     listener.name, listener.protocol, host, port)  # fmt: skip

                            async def handler(
                                stream: trio.SocketStream, cfg: ListenerConfig = listener
                            ) -> None:
                                await handle(stream, cfg)

                            accepting.start_soon(functools.partial(
                                trio.serve_listeners, handler, bound[listener.name],
                                handler_nursery=sessions,
                            ))  # fmt: skip
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
    finally:
        for socks in bound.values():
            for sock in socks:
                sock.socket.close()  # serve_listeners closed those it served; the rest are ours


ADMIN = "admin"  # the admin API's name in ServerState.addresses (no listener may take it)


async def bind_listeners(config: Config, *, admin: bool) -> dict[str, list[trio.SocketListener]]:
    """Bind the admin API (when ``admin``) and every listener, or none of them.

    Raises GatewayError naming the listener, its address and the ``bind`` key to change when a
    port cannot be bound; sockets already bound are closed first, so nothing is left half-open.
    """
    wanted: list[tuple[str, str, int, str, str]] = []  # name, host, port, what, protocol
    if admin and config.admin is not None:
        wanted.append((ADMIN, config.admin.host, config.admin.port, "admin API", ""))
    for listener in config.listeners.values():
        what = f'listener "{listener.name}"'
        wanted.append((listener.name, listener.host, listener.port, what, listener.protocol))
    bound: dict[str, list[trio.SocketListener]] = {}
    try:
        for name, host, port, what, protocol in wanted:
            try:
                bound[name] = await trio.open_tcp_listeners(port, host=host)
            except OSError as exc:
                raise _bind_error(config, name, host, port, what, protocol, exc) from exc
    except BaseException:
        for socks in bound.values():
            for sock in socks:
                sock.socket.close()
        raise
    return bound


# Who else usually holds a protocol's port, for the "address already in use" hint.
_USUAL_OCCUPANT = {"postgres": "PostgreSQL", "mysql": "MySQL or MariaDB", "ssh": "sshd"}


def _bind_error(
    config: Config, name: str, host: str, port: int, what: str, protocol: str, exc: OSError
) -> GatewayError:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if name == ADMIN:
        table, origin = "[admin]", config.origin("admin", "bind")
    else:
        table, origin = table_label(("listeners", name)), config.origin("listeners", name, "bind")
    where = f"{table} bind" + (f" in {origin}" if origin else "")
    if isinstance(exc, socket.gaierror):
        reason = f'cannot resolve host "{host}" ({exc.strerror or exc})'
        fix = f"use an IP address or a resolvable name in {where}"
    elif exc.errno == errno.EADDRINUSE:
        other = f" or {_USUAL_OCCUPANT[protocol]}" if protocol in _USUAL_OCCUPANT else ""
        reason = f"address already in use (another wardgate{other}?)"
        fix = f"stop that process or change {where}"
    elif exc.errno == errno.EACCES and 0 < port < 1024:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        fix = f"use a port above 1023 in {where}"
    elif exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        reason = f"{(exc.strerror or str(exc)).lower()} ({host} is not an address of this machine)"
        fix = f"use one of this machine's addresses (or 0.0.0.0) in {where}"
    else:
        reason = (exc.strerror or str(exc)).lower()
        fix = f"check {where}"
    return GatewayError(f"{what} cannot listen on {address}: {reason}; {fix}")


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
