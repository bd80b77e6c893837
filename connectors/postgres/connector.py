"""The PostgreSQL connector: start-up negotiation with the agent, then the relay.

An agent connects like to any PostgreSQL server: ``dbname`` names the target, the password is
its token, ``user`` is only recorded. The gateway answers SSLRequest with its own certificate
(or accepts PostgreSQL 17 direct TLS), asks for the token as a password over TLS only, validates
it, dials the target with the gateway's credentials, and relays.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import trio

from gateway.connector import ConnectionContext
from gateway.errors import AuthenticationError, ProtocolError, RecordingError
from gateway.model import Identity, Target
from gateway.runtime import Gateway, SessionLimitError
from gateway.tls import TLSError, TLSStream

from .catalog_client import TargetCatalog
from .codec import FrontendDecoder
from .edge import ClientEdge, TranscodeError
from .messages import (
    AuthenticationCleartextPassword,
    CancelRequest,
    GSSENCRequest,
    PasswordMessage,
    SSLRequest,
    StartupMessage,
    parse_password,
)
from .relay import Relay
from .replies import (
    authentication_ok,
    backend_key_data,
    error_response,
    parameter_status,
    ready_for_query,
)
from .transcode import UTF8, ClientEncoding, client_encoding
from .upstream import FORWARDED_PARAMETERS, UpstreamError, dial

log = logging.getLogger("wardgate.postgres")

_TLS_RECORD_HANDSHAKE = 0x16  # first byte of a ClientHello: PostgreSQL 17 direct TLS
ALPN = b"postgresql"


class ClientRefused(Exception):
    """End the connection with a FATAL error before any session exists."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class _Client:
    stream: trio.abc.Stream
    decoder: FrontendDecoder
    tls: bool = False

    async def read(self) -> object:
        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message
            data = await self.stream.receive_some(65536)
            if not data:
                raise ClientRefused("08006", "client closed the connection")
            self.decoder.receive_data(data)


@dataclass
class _CancelTarget:
    target: Target
    pid: int
    secret: bytes
    relay: Relay | None = None  # set once the session relays: a held command can be cancelled


class PostgresConnector:
    protocol = "postgres"

    def __init__(self) -> None:
        # The agent gets the gateway's own cancel key; this maps it to the target's.
        self._cancel_keys: dict[tuple[int, bytes], _CancelTarget] = {}
        # Per target: its catalog, read on a connection of the gateway's own, for every session.
        self._catalogs: dict[str, TargetCatalog] = {}
        self._sessions: dict[str, int] = {}  # open sessions per target

    def _catalog(self, gw: Gateway, target: Target) -> TargetCatalog:
        found = self._catalogs.get(target.name)
        if found is None or found.target is not target:
            found = TargetCatalog(gw, target,
                                  max_message_size=gw.config.limits.max_message_bytes)
            self._catalogs[target.name] = found
        return found

    async def handle(self, stream: trio.abc.Stream, ctx: ConnectionContext) -> None:
        client = _Client(stream, FrontendDecoder(ctx.gateway.config.limits.max_message_bytes))
        try:
            await self._serve(client, ctx)
        finally:
            if client.tls:
                # A clean TLS close (close_notify): libpq reports a cancel whose connection ends
                # without one as failed, and every client is owed a proper goodbye.
                with trio.move_on_after(1):
                    await client.stream.aclose()

    async def _serve(self, client: _Client, ctx: ConnectionContext) -> None:
        gw = ctx.gateway
        limits = gw.config.limits
        try:
            with trio.move_on_after(limits.handshake_timeout) as handshake:
                startup = await self._negotiate(client, ctx)
            if handshake.cancelled_caught:
                log.info("%s: start-up deadline passed", ctx.peer)
                return
            if startup is None:
                return
            with trio.move_on_after(limits.auth_timeout) as auth:
                identity = await self._authenticate(client, ctx, startup)
            if auth.cancelled_caught:
                raise ClientRefused("28000", "authentication took too long")
            target = self._target_for(gw, identity, startup)
            encoding, reported = _client_encoding(startup)
            with trio.move_on_after(limits.handshake_timeout + limits.auth_timeout) as dialling:
                upstream = await dial(
                    gw, target, startup.params, max_message_size=limits.max_message_bytes
                )
            if dialling.cancelled_caught:
                raise ClientRefused("08001", f"target {target.name!r} did not answer in time")
            try:
                _check_reading_settings(target, upstream.parameters)
            except UpstreamError:
                await trio.aclose_forcefully(upstream.stream)
                raise
        except ClientRefused as refused:
            await _send_fatal(client.stream, refused.sqlstate, str(refused))
            return
        except UpstreamError as exc:
            await _send_fatal(client.stream, exc.sqlstate, str(exc))
            return
        except ProtocolError as exc:
            await _send_fatal(client.stream, exc.sqlstate, f"protocol violation: {exc}")
            return
        except TLSError as exc:
            log.info("%s: TLS handshake failed: %s", ctx.peer, exc)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("%s: the client went away during start-up", ctx.peer)
            return

        # The client is told the target's real backend pid (so pg_backend_pid(), pg_stat_activity
        # and NotificationResponse agree with it) and a secret of the gateway's own: the pair is
        # what routes a CancelRequest, and the target's secret never leaves the gateway.
        pid = upstream.key.pid if upstream.key is not None else secrets.randbits(31)
        cancel_key = (pid, secrets.token_bytes(4))
        while cancel_key in self._cancel_keys:
            cancel_key = (pid, secrets.token_bytes(4))
        entry: _CancelTarget | None = None
        catalog_used = False
        try:
            client_info = {
                "user": startup.params.get("user", ""),
                "application_name": startup.params.get("application_name", ""),
                "tls": client.tls,
                "dropped_parameters": sorted(
                    k
                    for k in startup.params
                    if k not in FORWARDED_PARAMETERS | {"user", "database", "client_encoding"}
                ),
            }
            async with gw.session(
                identity=identity,
                target=target,
                protocol="postgres",
                peer=ctx.peer,
                client=client_info,
            ) as session:
                if upstream.key is not None:
                    entry = _CancelTarget(target, upstream.key.pid, upstream.key.secret_key)
                    self._cancel_keys[cancel_key] = entry
                # The target runs in UTF8; the client is told the encoding it asked for, and
                # everything it is sent from here on is converted to it (edge.py).
                edge = ClientEdge(encoding, reported)
                hello = [
                    authentication_ok(),
                    *(parameter_status("client_encoding", reported)
                      if _parameter_name(m) == "client_encoding" else m
                      for m in upstream.parameter_messages),
                    *(edge.for_client(m) for m in upstream.notices),
                    backend_key_data(cancel_key[0], cancel_key[1]),
                    ready_for_query("I"),
                ]
                await client.stream.send_all(b"".join(hello))
                catalog = self._catalog(gw, target)
                self._sessions[target.name] = self._sessions.get(target.name, 0) + 1
                catalog_used = True
                relay = Relay(
                    session,
                    client.stream,
                    client.decoder,
                    upstream.stream,
                    upstream.decoder,
                    idle_timeout=limits.idle_timeout,
                    parameters=upstream.parameters,
                    encoding=encoding,
                    reported_encoding=reported,
                    catalog=catalog,
                )
                if entry is not None:
                    entry.relay = relay
                reason = await relay.run()
                session.record("disconnect", {"reason": reason})
        except SessionLimitError as exc:
            await _send_fatal(client.stream, "53300", str(exc))
        except RecordingError as exc:
            await _send_fatal(
                client.stream,
                "58030",
                f"session recording could not be written; refusing (fail closed): {exc}",
            )
        finally:
            self._cancel_keys.pop(cancel_key, None)
            await trio.aclose_forcefully(upstream.stream)
            if catalog_used:
                await self._session_ended(target)

    async def _session_ended(self, target: Target) -> None:
        """The catalog connection is closed with the last session of its target: it must not
        keep the database in use (DROP DATABASE, maintenance) while nobody works there."""
        left = self._sessions.get(target.name, 1) - 1
        if left > 0:
            self._sessions[target.name] = left
            return
        self._sessions.pop(target.name, None)
        catalog = self._catalogs.get(target.name)
        if catalog is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await catalog.aclose()

    # -- start-up ---------------------------------------------------------------------------
    async def _negotiate(self, client: _Client, ctx: ConnectionContext) -> StartupMessage | None:
        listener = ctx.listener
        first = await client.stream.receive_some(65536)
        if not first:
            return None
        if first[0] == _TLS_RECORD_HANDSHAKE:
            if listener.tls == "disabled":
                raise ClientRefused("08P01", "this listener does not offer TLS")
            await self._start_tls(client, ctx, prefix=bytes(first), direct=True)
        else:
            client.decoder.receive_data(first)
        while True:
            message = await client.read()
            if isinstance(message, (SSLRequest, GSSENCRequest)):
                if client.decoder.pending_bytes():
                    # CVE-2021-23214: bytes sent after the request but before the handshake
                    # were never protected by TLS; refuse rather than read them as start-up.
                    raise ClientRefused("08P01", "received unencrypted data after SSL request")
                if isinstance(message, GSSENCRequest) or client.tls or listener.tls == "disabled":
                    await client.stream.send_all(b"N")
                    continue
                await client.stream.send_all(b"S")
                await self._start_tls(client, ctx, prefix=b"", direct=False)
            elif isinstance(message, CancelRequest):
                await self._cancel(ctx.gateway, message)
                return None
            elif isinstance(message, StartupMessage):
                if not client.tls and listener.tls == "required":
                    raise ClientRefused(
                        "28000", "this wardgate listener requires TLS: connect with sslmode=require"
                    )
                return message
            else:
                raise ClientRefused("08P01", f"unexpected {type(message).__name__} during start-up")

    async def _start_tls(
        self, client: _Client, ctx: ConnectionContext, *, prefix: bytes, direct: bool
    ) -> None:
        context = ctx.gateway.server_tls(alpn=[ALPN])
        tls = TLSStream.server(client.stream, context, prefix=prefix)
        await tls.do_handshake()
        if direct and tls.selected_alpn != ALPN:
            # PostgreSQL 17 requires ALPN for direct TLS so a TLS-terminating proxy of some
            # other protocol cannot be confused with us.
            raise ClientRefused("08P01", 'direct TLS requires ALPN "postgresql"')
        client.stream = tls
        client.tls = True

    async def _authenticate(
        self, client: _Client, ctx: ConnectionContext, startup: StartupMessage
    ) -> Identity:
        if not client.tls and not ctx.listener.allow_cleartext_password:
            raise ClientRefused(
                "28000", "the token may only be sent over TLS: connect with sslmode=require"
            )
        await client.stream.send_all(AuthenticationCleartextPassword().encode())
        message = await client.read()
        if not isinstance(message, PasswordMessage):
            raise ClientRefused(
                "08P01", f"expected a password message, got {type(message).__name__}"
            )
        try:
            token = parse_password(message)
        except ProtocolError as exc:
            raise ClientRefused("28P01", f"password message malformed: {exc}") from exc
        try:
            return await ctx.gateway.authenticate(token.strip())
        except AuthenticationError as exc:
            log.info("%s: token rejected: %s", ctx.peer, exc)
            raise ClientRefused("28P01", f"token rejected: {exc}") from exc

    def _target_for(self, gw: Gateway, identity: Identity, startup: StartupMessage) -> Target:
        name = startup.params.get("database") or startup.params.get("user", "")
        target = gw.target(name)
        if target is None or target.protocol != "postgres":
            raise ClientRefused(
                "3D000", f'target "{name}" does not exist (dbname names a wardgate target)'
            )
        if not gw.policy.may_reach(identity, target.name, target.protocol):
            raise ClientRefused(
                "42501", f'no wardgate rule gives "{identity.subject}" access to target "{name}"'
            )
        return target

    async def _cancel(self, gw: Gateway, request: CancelRequest) -> None:
        entry = self._cancel_keys.get((request.pid, request.secret_key))
        if entry is None:
            return  # PostgreSQL ignores unknown keys silently; so do we
        if entry.relay is not None and entry.relay.cancel_held():
            # The statement was waiting for approval, not running: its review is cancelled and
            # the client gets 57014. Nothing runs on the target to cancel.
            return
        target = entry.target
        try:
            with trio.fail_after(gw.config.limits.handshake_timeout):
                sock = await trio.open_tcp_stream(target.host, target.port)
                async with sock:
                    await sock.send_all(CancelRequest(entry.pid, entry.secret).encode())
                    await sock.receive_some(1)  # the server closes when done
        except (OSError, trio.TooSlowError) as exc:
            log.warning("cancel for target %s failed: %s", target.name, exc)


def _client_encoding(startup: StartupMessage) -> tuple[ClientEncoding, str]:
    """The encoding the client asked for in its start-up packet (UTF8 when it asked none)."""
    requested = startup.params.get("client_encoding", "")
    if not requested:
        return UTF8, "UTF8"
    try:
        encoding = client_encoding(requested)
    except TranscodeError as exc:
        raise ClientRefused(exc.sqlstate, str(exc)) from exc
    return encoding, encoding.reported(requested)


def _parameter_name(message: bytes) -> str:
    """The name in a framed ParameterStatus message."""
    return message[5:].split(b"\x00", 1)[0].decode("utf-8", "replace")


def _check_reading_settings(target: Target, parameters: dict[str, str]) -> None:
    """The gateway parses statements and reads values assuming UTF-8 and standard-conforming
    strings. A database configured otherwise (ALTER DATABASE ... SET) would read the same bytes
    differently from the gateway, which could hide a statement inside a "string" (HOSTILE G.44):
    refuse rather than guess."""
    encoding = parameters.get("client_encoding", "").upper().replace("-", "")
    if encoding != "UTF8":
        raise UpstreamError(f"target {target.name!r} reports client_encoding {encoding or '?'}; wardgate needs UTF8")
    if parameters.get("standard_conforming_strings", "on") != "on":
        raise UpstreamError(
            f"target {target.name!r} has standard_conforming_strings off; wardgate parses "
            "statements as standard-conforming and refuses a target that reads them otherwise"
        )


async def _send_fatal(stream: trio.abc.Stream, sqlstate: str, message: str) -> None:
    with trio.move_on_after(5):
        try:
            await stream.send_all(error_response("FATAL", sqlstate, message))
        except (trio.BrokenResourceError, trio.ClosedResourceError, TLSError):
            pass
