"""What a protocol connector is, and what the core hands it for each connection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from gateway.config import ListenerConfig
    from gateway.runtime import Gateway


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """One accepted client connection, before anything is known about who is calling."""

    connection_id: str
    listener: ListenerConfig
    peer: str  # "host:port" of the client as the listener saw it
    gateway: Gateway


@runtime_checkable
class Connector(Protocol):
    """A protocol plugin. ``handle`` owns the client stream for the whole connection.

    The core has already applied the connection cap; the connector does the protocol's own
    negotiation (TLS upgrade, authentication with a token through
    ``ctx.gateway.authenticate``), opens a session with ``ctx.gateway.session(...)``, and relays.
    Exceptions escaping ``handle`` are logged and the connection is closed by the core, but a
    connector should answer its client natively first (an ErrorResponse, an ERR packet, a 4xx).
    """

    protocol: str

    async def handle(self, stream: trio.abc.Stream, ctx: ConnectionContext) -> None: ...
