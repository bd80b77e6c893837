"""Dialling the target: TLS negotiation, a startup packet built from an allowlist, and the
gateway's own credentials (SCRAM-SHA-256, MD5 or cleartext).

The agent never sees these credentials and none of its startup parameters reach the backend
unless they are on the allowlist (HOSTILE C.13: ``options``, ``replication`` and role settings
are the classic ways to widen a session).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

import scramp  # type: ignore[import-untyped]
import trio

from gateway.errors import ProtocolError
from gateway.model import Target
from gateway.runtime import Gateway
from gateway.tls import TLSError, TLSStream

from .codec import BackendDecoder
from .messages import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    ErrorResponse,
    Message,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    StartupMessage,
)

log = logging.getLogger("wardgate.postgres")

#: Client startup parameters that may reach the backend. Everything else (options, replication,
#: role, search_path, session_authorization, ...) is dropped.
FORWARDED_PARAMETERS = {
    "application_name",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "extra_float_digits",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
}
#: SCRAM iteration counts above this are refused rather than computed: a hostile backend could
#: otherwise make the gateway burn CPU (HOSTILE C.16). PostgreSQL's default is 4096.
MAX_SCRAM_ITERATIONS = 1_000_000
_ITERATIONS = re.compile(rb"(?:^|,)i=(\d{1,12})(?:,|$)")


class UpstreamError(Exception):
    """The target could not be reached or refused the gateway; message safe for the agent."""

    def __init__(self, message: str, sqlstate: str = "08006") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Upstream:
    stream: trio.abc.Stream
    decoder: BackendDecoder
    parameters: dict[str, str] = field(default_factory=dict)
    parameter_messages: list[bytes] = field(default_factory=list)
    key: BackendKeyData | None = None
    tls: bool = False
    notices: list[bytes] = field(default_factory=list)


def startup_parameters(target: Target, client_params: dict[str, str]) -> dict[str, str]:
    params = {k: v for k, v in client_params.items() if k in FORWARDED_PARAMETERS}
    params["user"] = target.user or ""
    params["database"] = target.database or target.user or ""
    # Pinned so that every value flowing back is UTF-8 the masker can read (HOSTILE H.50).
    params["client_encoding"] = "UTF8"
    # Pinned for every session and the catalog connection alike, so that both resolve
    # unqualified names the same way: a role's or database's default (ALTER ROLE ... SET
    # search_path, which anyone allowed to run it can change for every later session) never
    # applies through the gateway. A start-up parameter overrides those defaults.
    params["search_path"] = target_search_path(target)
    return params


#: PostgreSQL's own default.
DEFAULT_SEARCH_PATH = '"$user", public'


def target_search_path(target: Target) -> str:
    """``[targets.X.options] search_path``: the search path of every session to the target."""
    value = target.options.get("search_path", DEFAULT_SEARCH_PATH)
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise UpstreamError(f"target {target.name!r}: options.search_path must be a non-empty "
                            "string such as '\"$user\", public'")
    return value


async def _read(stream: trio.abc.Stream, decoder: BackendDecoder) -> Message:
    while True:
        message = decoder.next_message()
        if message is not None:
            return message
        data = await stream.receive_some(65536)
        if not data:
            raise UpstreamError("the target closed the connection during start-up")
        decoder.receive_data(data)


async def _negotiate_tls(
    gateway: Gateway, target: Target, sock: trio.SocketStream
) -> trio.abc.Stream | None:
    """SSLRequest, then exactly one byte. Returns the TLS stream, or None for plaintext."""
    await sock.send_all(SSLRequest().encode())
    # Read one byte only: anything the server sends after 'S' stays in the socket and is fed to
    # the TLS handshake, which then fails; plaintext after 'S' can never be read as a reply
    # (HOSTILE A.2, CVE-2021-23222).
    answer = await sock.receive_some(1)
    if answer == b"S":
        context = gateway.client_tls(target)
        assert context is not None  # tls != "disable" here
        tls = TLSStream.client(
            sock,
            context,
            server_hostname=target.host,
            verify_hostname=target.tls == "verify-full",
        )
        try:
            await tls.do_handshake()
        except TLSError as exc:
            raise UpstreamError(f"TLS to target {target.name!r} failed: {exc}") from exc
        return tls
    if answer == b"N":
        if target.tls == "prefer":
            return None
        # HOSTILE A.3: a MITM answering N must not make us send credentials in clear.
        raise UpstreamError(
            f"target {target.name!r} refused TLS, which its tls = {target.tls!r} requires"
        )
    raise UpstreamError(f"target {target.name!r} answered the TLS request with {answer!r}")


async def dial(
    gateway: Gateway, target: Target, client_params: dict[str, str], *, max_message_size: int
) -> Upstream:
    """Connect and authenticate as the gateway. Raises UpstreamError with an agent-safe message."""
    try:
        sock = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise UpstreamError(
            f"target {target.name!r} is unreachable: {exc.strerror or exc}"
        ) from exc
    stream: trio.abc.Stream = sock
    try:
        tls = False
        if target.tls != "disable":
            wrapped = await _negotiate_tls(gateway, target, sock)
            if wrapped is not None:
                stream, tls = wrapped, True
        decoder = BackendDecoder(max_message_size)
        up = Upstream(stream, decoder, tls=tls)
        await stream.send_all(StartupMessage(startup_parameters(target, client_params)).encode())
        await _authenticate(up, target)
        return up
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


async def _authenticate(up: Upstream, target: Target) -> None:
    scram: scramp.ScramClient | None = None
    scram_verified = False
    while True:
        try:
            message = await _read(up.stream, up.decoder)
        except ProtocolError as exc:
            raise UpstreamError(f"target {target.name!r} sent a malformed message: {exc}") from exc
        if isinstance(message, AuthenticationOk):
            continue
        if isinstance(message, ParameterStatus):
            up.parameters[message.name] = message.value
            up.parameter_messages.append(message.to_wire())
        elif isinstance(message, BackendKeyData):
            up.key = message
        elif isinstance(message, NoticeResponse):
            up.notices.append(message.to_wire())
        elif isinstance(message, NegotiateProtocolVersion):
            continue
        elif isinstance(message, ReadyForQuery):
            if scram is not None and not scram_verified:
                raise UpstreamError(f"target {target.name!r} skipped the SCRAM server proof")
            return
        elif isinstance(message, ErrorResponse):
            log.warning(
                "target %s refused start-up: %s %s", target.name, message.sqlstate, message.message
            )
            raise UpstreamError(
                f"target {target.name!r} refused the gateway's connection "
                f"(SQLSTATE {message.sqlstate}); the operator can see the detail in the gateway log",
                sqlstate="08004",
            )
        elif isinstance(message, AuthenticationCleartextPassword):
            await up.stream.send_all(PasswordMessage(_password(target) + b"\0").encode())
        elif isinstance(message, AuthenticationMD5Password):
            user = (target.user or "").encode()
            inner = hashlib.md5(_password(target) + user).hexdigest().encode()
            digest = b"md5" + hashlib.md5(inner + message.salt).hexdigest().encode()
            await up.stream.send_all(PasswordMessage(digest + b"\0").encode())
        elif isinstance(message, AuthenticationSASL):
            if "SCRAM-SHA-256" not in message.mechanisms:
                raise UpstreamError(
                    f"target {target.name!r} offers only {', '.join(message.mechanisms)}; "
                    "wardgate speaks SCRAM-SHA-256"
                )
            scram = scramp.ScramClient(
                ["SCRAM-SHA-256"], target.user or "", _password(target).decode()
            )
            first = scram.get_client_first().encode()
            await up.stream.send_all(SASLInitialResponse("SCRAM-SHA-256", first).encode())
        elif isinstance(message, AuthenticationSASLContinue):
            if scram is None:
                raise UpstreamError(f"target {target.name!r} sent SCRAM data out of turn")
            m = _ITERATIONS.search(message.data)
            if m is None or not 1 <= int(m.group(1)) <= MAX_SCRAM_ITERATIONS:
                raise UpstreamError(
                    f"target {target.name!r} asked for an unreasonable SCRAM iteration count"
                )
            client = scram
            server_first = message.data.decode("utf-8", "replace")
            # PBKDF2 runs in a thread so a slow derivation cannot stall every other session.
            try:
                await trio.to_thread.run_sync(client.set_server_first, server_first)
            except scramp.ScramException as exc:
                raise UpstreamError(f"SCRAM with target {target.name!r} failed: {exc}") from exc
            await up.stream.send_all(SASLResponse(client.get_client_final().encode()).encode())
        elif isinstance(message, AuthenticationSASLFinal):
            if scram is None:
                raise UpstreamError(f"target {target.name!r} sent SCRAM data out of turn")
            try:
                scram.set_server_final(message.data.decode("utf-8", "replace"))
            except scramp.ScramException as exc:
                # The server could not prove it knows the password: not the real target.
                raise UpstreamError(
                    f"target {target.name!r} failed the SCRAM server proof"
                ) from exc
            scram_verified = True
        else:
            raise UpstreamError(
                f"target {target.name!r} sent {type(message).__name__} during start-up"
            )


def _password(target: Target) -> bytes:
    if target.password is None:
        raise UpstreamError(
            f"target {target.name!r} asks for a password but none is configured for it "
            "(see password_env / password_file in the gateway configuration)",
            sqlstate="08004",
        )
    return target.password.encode()
