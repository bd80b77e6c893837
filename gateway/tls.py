"""TLS for both sides of the gateway, as a ``trio.abc.Stream``.

pyOpenSSL does the cryptography through memory BIOs (``SSL.Connection(context, None)``) and this
module does all the I/O, the way mitmproxy's TLS layer does: bytes read from the transport go in
with ``bio_write``; ``do_handshake``/``recv``/``send`` run until OpenSSL raises ``WantReadError``;
whatever OpenSSL wrote is taken out with ``bio_read`` and sent on the transport.

Concurrency. A relay sends in one task while it receives in another, so ``send_all`` and
``receive_some`` may run at the same time (two concurrent calls of the *same* method raise
``trio.BusyResourceError``, as trio's streams do). pyOpenSSL calls never overlap (trio is
single-threaded and they do not await), so the only hazard is interleaving at await points:

* Output order. Every pyOpenSSL call is immediately followed, without an await, by moving the
  outgoing BIO into ``_outgoing``; so ``_outgoing`` holds ciphertext in the order OpenSSL produced
  it. Only the holder of ``_write_lock`` sends, always from the front, and it keeps sending until
  ``_outgoing`` is empty before it releases the lock (release does not yield). Nothing is ever
  reordered, whichever task produced it.
* Input. Only the holder of ``_read_lock`` reads the transport. A task that queued for the lock
  while another task fed the BIO retries its pyOpenSSL call before reading again (``_reads``
  counter), so a sender that needs input (renegotiation, which we disable anyway) never steals or
  waits for bytes the receiver already delivered.
* Cancellation. A cancelled transport read loses nothing (trio's guarantee). A cancelled transport
  write may cut a TLS record in half, so the stream is then marked broken. ``receive_some`` sends
  pending output *before* it calls ``recv``, never after, so a cancellation cannot drop plaintext
  OpenSSL already handed over.

Everything is bounded: the transport is read 64 KiB at a time and only when OpenSSL asks for more;
``send_all`` encrypts 64 KiB at a time and sends it before encrypting more.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, NoReturn

import trio
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from gateway.errors import ProtocolError

__all__ = [
    "CLIENT_MODES",
    "TLSError",
    "TLSStream",
    "certificate_matches_host",
    "client_context",
    "server_context",
]

_CHUNK = 64 * 1024
_MAX_SNI = 255  # RFC 6066 HostName fits a DNS name; anything longer is hostile (HOSTILE A.4)
# An SNI is an ASCII DNS name (A-labels). Underscores appear in real internal names; anything
# else (spaces, control characters that would forge log lines, UTF-8) is refused.
_SNI_PATTERN = re.compile(rb"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*)")

CLIENT_MODES = ("prefer", "require", "verify-ca", "verify-full")

# Mozilla "intermediate": forward secrecy and AEAD only. TLS 1.3 suites are OpenSSL's defaults.
_SERVER_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
# Backends can be older than our clients: also allow forward-secret CBC suites on TLS 1.2.
_CLIENT_CIPHERS = _SERVER_CIPHERS + b":ECDHE+AES:!aNULL:!eNULL:!MD5:!RC4:!3DES:!SHA1"

_X509_ERRORS = {
    value: name.removeprefix("ERR_").replace("_", " ").lower()
    for name, value in vars(SSL.X509VerificationCodes).items()
    if name.startswith("ERR_")
}


class TLSError(ProtocolError, trio.BrokenResourceError):
    """The TLS handshake or a TLS record failed.

    It is a ``ProtocolError`` so a connector can render it natively (SQLSTATE 08P01) and a
    ``trio.BrokenResourceError`` so generic stream code (relays, trio's helpers) treats it as the
    broken stream it is.
    """


class _ClientPolicy:
    """What ``client_context`` promised; ``TLSStream.client`` enforces it per connection."""

    def __init__(self, mode: str) -> None:
        self.mode = mode


class _ConflictDetector:
    """Raise ``BusyResourceError`` when two tasks call the same half of the stream at once."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} on this stream")
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


class _TransportEOF(Exception):
    """The transport ended while OpenSSL still wanted input (internal)."""


def server_context(cert_file: str, key_file: str, *, alpn: Sequence[bytes] = ()) -> SSL.Context:
    """A context for accepting TLS from clients: TLS 1.2+, AEAD ciphers, SNI checked.

    With ``alpn``, the first of *our* protocols that the client offers is selected; clients that
    offer none of them, or send no ALPN at all, proceed without ALPN (the connector decides
    whether that is acceptable, e.g. PostgreSQL direct TLS requires ``postgresql``).
    """
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
    )
    ctx.set_cipher_list(_SERVER_CIPHERS)
    ctx.use_certificate_chain_file(cert_file)
    ctx.use_privatekey_file(key_file)
    ctx.check_privatekey()
    ctx.set_tlsext_servername_callback(_check_server_name)
    if alpn:
        ours = list(alpn)

        def select(conn: SSL.Connection, offered: list[bytes]) -> bytes | Any:
            for proto in ours:
                if proto in offered:
                    return proto
            return SSL.NO_OVERLAPPING_PROTOCOLS

        ctx.set_alpn_select_callback(select)
    return ctx


def client_context(
    mode: str, *, ca_file: str | None = None, alpn: Sequence[bytes] = ()
) -> SSL.Context:
    """A context for dialling a backend, with libpq ``sslmode`` semantics.

    ``prefer``/``require`` encrypt without verifying; ``verify-ca`` verifies the chain against
    ``ca_file`` (or the system store); ``verify-full`` also checks the host name, which
    ``TLSStream.client`` then does for every connection made with this context.
    """
    if mode not in CLIENT_MODES:
        raise ValueError(
            f"unknown TLS mode {mode!r}; expected one of {', '.join(CLIENT_MODES)} "
            "('disable' means no TLS and gets no context)"
        )
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    ctx.set_cipher_list(_CLIENT_CIPHERS)
    if mode in ("verify-ca", "verify-full"):
        # The callback itself is installed per connection (it needs the host name).
        ctx.set_verify(SSL.VERIFY_PEER)
        if ca_file is not None:
            ctx.load_verify_locations(ca_file)
        else:
            ctx.set_default_verify_paths()
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    if alpn:
        ctx.set_alpn_protos(list(alpn))
    ctx.set_app_data(_ClientPolicy(mode))
    return ctx


def _check_server_name(conn: SSL.Connection) -> None:
    """Servername callback: raising makes pyOpenSSL >= 26 abort the handshake (CVE-2026-27448).

    pyOpenSSL reports the exception through ``sys.excepthook`` before aborting; the reason is
    also kept on the stream so the ``TLSError`` says what happened.
    """
    name = conn.get_servername()
    if name is None or (len(name) <= _MAX_SNI and _SNI_PATTERN.fullmatch(name)):
        return
    reason = f"client sent an invalid TLS server name (SNI, {len(name)} bytes)"
    stream = conn.get_app_data()
    if isinstance(stream, TLSStream):
        stream._failure = reason
    raise TLSError(reason)


class TLSStream(trio.abc.Stream):
    """A TLS session over another ``trio.abc.Stream``; build it with ``server`` or ``client``."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        conn: SSL.Connection,
        *,
        verify_host: str | None = None,
        prefix: bytes = b"",
    ) -> None:
        self.transport = transport
        self._conn = conn
        self._verify_host = verify_host
        self._host_verified = False
        self._failure: str | None = None  # set by OpenSSL callbacks, read when the handshake fails
        self._handshake_lock = trio.Lock()
        self._handshake_done = False
        self._write_lock = trio.Lock()
        self._read_lock = trio.Lock()
        self._reads = 0
        self._outgoing = bytearray()
        self._send_conflict = _ConflictDetector("sending")
        self._receive_conflict = _ConflictDetector("receiving")
        self._closed = False
        self._broken: str | None = None
        self._transport_eof = False
        self._peer_finished = False
        conn.set_app_data(self)
        if prefix:
            conn.bio_write(prefix)

    @classmethod
    def server(
        cls, transport: trio.abc.Stream, context: SSL.Context, *, prefix: bytes = b""
    ) -> TLSStream:
        """Accept TLS on ``transport``; ``prefix`` is TLS bytes already read from it (a peek)."""
        conn = SSL.Connection(context, None)
        conn.set_accept_state()
        return cls(transport, conn, prefix=prefix)

    @classmethod
    def client(
        cls,
        transport: trio.abc.Stream,
        context: SSL.Context,
        *,
        server_hostname: str | None,
        verify_hostname: bool,
    ) -> TLSStream:
        """Start TLS towards a server. SNI is sent for DNS names, never for IP literals.

        The host name is checked when ``verify_hostname`` is true *or* the context was made with
        ``client_context("verify-full")``: a context that promises verify-full cannot be used
        without it.
        """
        policy = context.get_app_data()
        if isinstance(policy, _ClientPolicy) and policy.mode == "verify-full":
            verify_hostname = True
        verifying = bool(context.get_verify_mode() & SSL.VERIFY_PEER)
        if verify_hostname and not verifying:
            raise ValueError("host name verification needs a context that verifies certificates")
        if verify_hostname and not server_hostname:
            raise ValueError("host name verification needs server_hostname")
        conn = SSL.Connection(context, None)
        conn.set_connect_state()
        host = _normalise_host(server_hostname) if server_hostname else None
        if host is not None and not isinstance(host, ipaddress.IPv4Address | ipaddress.IPv6Address):
            conn.set_tlsext_host_name(host.encode("ascii"))
        stream = cls(transport, conn, verify_host=server_hostname if verify_hostname else None)
        if verifying:
            conn.set_verify(SSL.VERIFY_PEER, stream._on_verify)
        return stream

    # ---- what was negotiated -------------------------------------------------------------

    @property
    def selected_alpn(self) -> bytes | None:
        return self._conn.get_alpn_proto_negotiated() or None

    @property
    def server_name(self) -> str | None:
        """The SNI host name (server side: what the client sent, already validated)."""
        name = self._conn.get_servername()
        return None if name is None else name.decode("ascii", "replace").lower()

    @property
    def peer_certificate(self) -> x509.Certificate | None:
        return self._conn.get_peer_certificate(as_cryptography=True)

    @property
    def tls_version(self) -> str:
        """E.g. ``"TLSv1.3"``; ``""`` before the handshake."""
        return self._conn.get_protocol_version_name() if self._handshake_done else ""

    @property
    def cipher(self) -> str:
        return self._conn.get_cipher_name() or ""

    # ---- the Stream interface --------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake if it has not run; failures raise ``TLSError``."""
        self._check_usable()
        await trio.lowlevel.checkpoint()
        await self._ensure_handshake()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            self._check_usable()
            await trio.lowlevel.checkpoint()
            await self._ensure_handshake()
            view = memoryview(data).cast("B")
            try:
                while view:
                    chunk = view[:_CHUNK]
                    written = await self._send_chunk(chunk)
                    view = view[written:]
            except BaseException as exc:
                # Plaintext may be half-encrypted or a record half-sent: nothing can follow it.
                self._mark_broken(f"send interrupted ({type(exc).__name__})")
                raise

    async def _send_chunk(self, chunk: memoryview) -> int:
        while True:
            try:
                written = self._conn.send(chunk)
            except SSL.WantReadError:
                self._pull_output()
                await self._flush()
                try:
                    await self._receive_into_bio()
                except _TransportEOF:
                    raise trio.BrokenResourceError("peer closed the connection") from None
                continue
            except SSL.Error as exc:
                self._pull_output()
                raise TLSError(f"TLS send failed: {_describe(exc)}") from exc
            self._pull_output()
            await self._flush()
            return written

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            self._check_usable()
            await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return decrypted bytes; ``b""`` once the peer sent close_notify or the transport ended.

        A transport EOF without close_notify also gives ``b""``; the protocols relayed here frame
        their messages, so a truncation shows up as an incomplete message.
        """
        with self._receive_conflict:
            if max_bytes is None:
                size = _CHUNK
            else:
                size = operator.index(max_bytes)
                if size < 1:
                    raise ValueError("max_bytes must be >= 1")
                size = min(size, _CHUNK)  # pyOpenSSL allocates the whole buffer up front
            self._check_usable()
            await trio.lowlevel.checkpoint()
            await self._ensure_handshake()
            while not self._peer_finished:
                try:
                    data = self._conn.recv(size)
                except SSL.WantReadError:
                    self._pull_output()
                except SSL.ZeroReturnError:
                    self._pull_output()
                    self._peer_finished = True
                    break
                except SSL.Error as exc:
                    self._pull_output()
                    if self._transport_eof:
                        self._peer_finished = True
                        break
                    self._mark_broken(_describe(exc))
                    raise TLSError(f"TLS receive failed: {_describe(exc)}") from exc
                else:
                    # Output produced here (rare after the handshake: a KeyUpdate reply) waits for
                    # the next flush; flushing now could be cancelled after recv took the data.
                    self._pull_output()
                    return data
                # The peer may need our pending output before it sends more. If another task
                # holds the write lock it drains _outgoing before releasing, so don't wait on it.
                if self._outgoing and not self._write_lock.locked():
                    await self._flush()
                try:
                    await self._receive_into_bio()
                except _TransportEOF:
                    self._peer_finished = True
            return b""

    async def aclose(self) -> None:
        """Send close_notify if it can be done cleanly, then close the transport. Never raises
        because the peer is gone; cancellation still closes the transport."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            # Skip close_notify if a task is mid-write (it would wait on a possibly stalled peer)
            # or the session is unusable; the transport close ends the connection either way.
            if self._handshake_done and self._broken is None and not self._write_lock.locked():
                with suppress(SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError):
                    self._conn.shutdown()
                    self._pull_output()
                    await self._flush()
        finally:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self.transport.aclose()

    # ---- internals -------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this TLS stream was closed")
        if self._broken is not None:
            raise trio.BrokenResourceError(f"TLS stream is broken: {self._broken}")

    def _mark_broken(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason

    async def _ensure_handshake(self) -> None:
        if self._handshake_done:
            return
        async with self._handshake_lock:
            # Another task may have finished (or broken) the handshake while we waited.
            self._check_usable()
            if self._handshake_done:
                return
            try:
                await self._handshake()
            except TLSError as exc:
                self._mark_broken(str(exc))
                raise
            except trio.BrokenResourceError as exc:
                self._mark_broken(f"transport broke during the handshake: {exc}")
                raise TLSError(f"connection broke during the TLS handshake: {exc}") from exc
            except BaseException as exc:
                self._mark_broken(f"handshake interrupted ({type(exc).__name__})")
                raise

    async def _handshake(self) -> None:
        while True:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                self._pull_output()
                await self._flush()
                try:
                    await self._receive_into_bio()
                except _TransportEOF:
                    self._fail_handshake("peer closed the connection during the TLS handshake")
                continue
            except SSL.Error as exc:
                self._pull_output()
                await self._send_alert_best_effort()
                if self._transport_eof:
                    self._fail_handshake("peer closed the connection during the TLS handshake")
                self._fail_handshake(f"TLS handshake failed: {_describe(exc)}", exc)
            break
        self._pull_output()
        if self._verify_host is not None and not self._host_verified:
            # Fail closed: the verify callback is the only place that sets this flag.
            self._fail_handshake(
                f"server certificate was not checked against {self._verify_host!r}"
            )
        await self._flush()
        self._handshake_done = True

    def _fail_handshake(self, message: str, cause: BaseException | None = None) -> NoReturn:
        if self._failure is not None:
            message = f"TLS handshake failed: {self._failure}"
        raise TLSError(message) from cause

    async def _send_alert_best_effort(self) -> None:
        # OpenSSL wrote a fatal alert; sending it tells the peer why. The peer may be gone.
        if self._outgoing and not self._write_lock.locked():
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._flush()

    def _pull_output(self) -> None:
        """Move everything OpenSSL wrote into ``_outgoing``; call right after every SSL call."""
        while True:
            try:
                chunk = self._conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            if not chunk:
                return
            self._outgoing += chunk

    async def _flush(self) -> None:
        async with self._write_lock:
            while self._outgoing:
                data = bytes(self._outgoing)
                self._outgoing.clear()
                try:
                    await self.transport.send_all(data)
                except BaseException as exc:
                    self._mark_broken(f"transport write failed ({type(exc).__name__})")
                    raise

    async def _receive_into_bio(self) -> None:
        reads_before = self._reads
        async with self._read_lock:
            if self._reads != reads_before:
                return  # another task fed the BIO while we queued: retry the SSL call first
            if self._transport_eof:
                raise _TransportEOF
            data = await self.transport.receive_some(_CHUNK)
            self._reads += 1
            if not data:
                self._transport_eof = True
                self._conn.bio_shutdown()
                raise _TransportEOF
            self._conn.bio_write(data)

    def _on_verify(
        self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        """Verify callback: OpenSSL's chain verdict, plus the host name check on the leaf."""
        if not ok:
            reason = _X509_ERRORS.get(errno, f"X509 error {errno}")
            self._failure = f"certificate verify failed at depth {depth}: {reason}"
            return False
        if depth == 0 and self._verify_host is not None:
            if not certificate_matches_host(cert.to_cryptography(), self._verify_host):
                self._failure = f"server certificate does not match host name {self._verify_host!r}"
                return False
            self._host_verified = True
        return True


def _normalise_host(host: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
    host = host.strip().removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    host = host.rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def certificate_matches_host(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 host name check, libpq-flavoured.

    Subject alternative names decide when the certificate has any DNS or IP entries; only
    otherwise is the subject CN compared (as libpq does). A wildcard is honoured only as the whole
    left-most label of a name with at least two more labels (``*.example.com``).
    """
    target = _normalise_host(host)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = san.get_values_for_type(x509.DNSName)
        ip_names = san.get_values_for_type(x509.IPAddress)
    except x509.ExtensionNotFound:
        dns_names, ip_names = [], []
    if dns_names or ip_names:
        if isinstance(target, str):
            return any(_dns_name_matches(pattern, target) for pattern in dns_names)
        return any(ip == target for ip in ip_names)
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        common_name = attribute.value if isinstance(attribute.value, str) else ""
        if isinstance(target, str) and _dns_name_matches(common_name, target):
            return True
        if not isinstance(target, str):
            with suppress(ValueError):
                if ipaddress.ip_address(common_name) == target:
                    return True
    return False


def _dns_name_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if "*" not in pattern:
        return pattern == host
    if not pattern.startswith("*.") or "*" in pattern[2:] or pattern.count(".") < 2:
        return False  # partial (f*.example.com), nested or over-broad (*.com) wildcards
    label, dot, rest = host.partition(".")
    return bool(label) and bool(dot) and rest == pattern[2:]


def _describe(exc: SSL.Error) -> str:
    """Turn pyOpenSSL's error (a list of (lib, func, reason) tuples, or errno/text) into text."""
    if isinstance(exc, SSL.SysCallError):
        return str(exc.args[1]) if len(exc.args) > 1 else "system call error"
    reasons: list[str] = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return "; ".join(reasons) or str(exc) or type(exc).__name__
