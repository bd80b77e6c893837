"""gateway.tls: TLSStream over in-memory transports, with trustme certificates."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from gateway.errors import ProtocolError
from gateway.tls import (
    TLSError,
    TLSStream,
    certificate_matches_host,
    client_context,
    server_context,
)

TIMEOUT = 20


# ---- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    directory = tmp_path_factory.mktemp("server")
    issued = ca.issue_cert("localhost", "db.example.com", "127.0.0.1", "::1")
    cert_file, key_file = directory / "server.crt", directory / "server.key"
    cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key_file))
    return str(cert_file), str(key_file)


@pytest.fixture
def server_ctx(server_files: tuple[str, str]) -> SSL.Context:
    return server_context(*server_files)


def make_pair(
    server_ctx: SSL.Context,
    client_ctx: SSL.Context,
    *,
    hostname: str | None = "localhost",
    verify: bool = False,
) -> tuple[TLSStream, TLSStream]:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = TLSStream.client(
        client_transport, client_ctx, server_hostname=hostname, verify_hostname=verify
    )
    return client, TLSStream.server(server_transport, server_ctx)


async def handshake_both(client: TLSStream, server: TLSStream) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)


async def handshake_outcomes(
    client: TLSStream, server: TLSStream
) -> tuple[TLSError | None, TLSError | None]:
    """Run both handshakes; a side that fails closes its stream so the other cannot hang."""
    outcome: dict[str, TLSError | None] = {}

    async def run(name: str, stream: TLSStream) -> None:
        try:
            await stream.do_handshake()
        except TLSError as exc:
            outcome[name] = exc
            await stream.aclose()
        else:
            outcome[name] = None

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "client", client)
            nursery.start_soon(run, "server", server)
    return outcome["client"], outcome["server"]


def raw_client_hello(server_name: bytes | None) -> bytes:
    """A real ClientHello from pyOpenSSL, with an SNI our own client would never send."""
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    conn.set_connect_state()
    if server_name is not None:
        conn.set_tlsext_host_name(server_name)
    with pytest.raises(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(65536)


def crafted_client_hello(server_name: bytes, *, version: bytes = b"\x03\x03") -> bytes:
    """A TLS 1.2 ClientHello built by hand, so the SNI can be far longer than OpenSSL sends."""

    def u16(value: int) -> bytes:
        return value.to_bytes(2, "big")

    def extension(kind: int, body: bytes) -> bytes:
        return u16(kind) + u16(len(body)) + body

    entry = b"\x00" + u16(len(server_name)) + server_name
    extensions = (
        extension(0, u16(len(entry)) + entry)  # server_name
        + extension(10, u16(4) + u16(0x001D) + u16(0x0017))  # x25519, secp256r1
        + extension(11, b"\x01\x00")  # uncompressed points
        + extension(13, u16(6) + u16(0x0403) + u16(0x0804) + u16(0x0401))  # signature algs
    )
    body = (
        version
        + os.urandom(32)
        + b"\x00"  # no session id
        + u16(4)
        + u16(0xC02B)
        + u16(0xC02F)
        + b"\x01\x00"  # null compression only
        + u16(len(extensions))
        + extensions
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"".join(
        b"\x16\x03\x01" + u16(len(handshake[i : i + 16384])) + handshake[i : i + 16384]
        for i in range(0, len(handshake), 16384)
    )


async def expect_server_rejects(server_ctx: SSL.Context, hello: bytes) -> TLSError:
    peer, transport = trio.testing.memory_stream_pair()
    server = TLSStream.server(transport, server_ctx)
    await peer.send_all(hello)
    with trio.fail_after(TIMEOUT), pytest.raises(TLSError) as caught:
        await server.do_handshake()
    return caught.value


# ---- handshake, data, negotiated parameters ---------------------------------------------------


async def test_handshake_then_echo_both_directions(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    with trio.fail_after(TIMEOUT):
        await client.send_all(b"ping")
        assert await server.receive_some() == b"ping"
        await server.send_all(bytearray(b"pong"))
        assert await client.receive_some(100) == b"pong"
    assert client.tls_version == server.tls_version == "TLSv1.3"
    assert client.cipher and client.cipher == server.cipher
    assert server.peer_certificate is None  # we never ask clients for certificates
    leaf = client.peer_certificate
    assert isinstance(leaf, x509.Certificate)
    assert "db.example.com" in leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


async def test_first_send_and_receive_run_the_handshake_implicitly(
    server_ctx: SSL.Context,
) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    assert client.tls_version == ""
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"hello")
            assert await server.receive_some() == b"hello"
        await client.do_handshake()  # idempotent once done
    assert client.tls_version == "TLSv1.3"


async def test_alpn_selects_first_server_protocol_the_client_offers(
    server_files: tuple[str, str],
) -> None:
    server_ctx = server_context(*server_files, alpn=[b"postgresql", b"http/1.1"])
    client, server = make_pair(
        server_ctx, client_context("require", alpn=[b"x", b"http/1.1", b"postgresql"])
    )
    await handshake_both(client, server)
    assert server.selected_alpn == client.selected_alpn == b"postgresql"


async def test_alpn_client_without_alpn_is_accepted(server_files: tuple[str, str]) -> None:
    server_ctx = server_context(*server_files, alpn=[b"postgresql"])
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    assert server.selected_alpn is None and client.selected_alpn is None


async def test_alpn_without_overlap_proceeds_without_alpn(server_files: tuple[str, str]) -> None:
    server_ctx = server_context(*server_files, alpn=[b"postgresql"])
    client, server = make_pair(server_ctx, client_context("require", alpn=[b"h2"]))
    await handshake_both(client, server)
    assert server.selected_alpn is None


async def test_server_sees_sni_for_dns_names_only(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"), hostname="DB.example.com")
    await handshake_both(client, server)
    assert server.server_name == "db.example.com"

    client, server = make_pair(server_ctx, client_context("require"), hostname="127.0.0.1")
    await handshake_both(client, server)
    assert server.server_name is None


async def test_large_payload_both_directions_concurrently(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    size = 6 * 1024 * 1024
    up, down = os.urandom(size), os.urandom(size)
    received: dict[str, str] = {}

    async def receive_all(stream: TLSStream, name: str) -> None:
        digest, total = hashlib.sha256(), 0
        while total < size:
            chunk = await stream.receive_some()
            assert chunk
            digest.update(chunk)
            total += len(chunk)
        received[name] = digest.hexdigest()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, up)
            nursery.start_soon(server.send_all, memoryview(down))
            nursery.start_soon(receive_all, server, "up")
            nursery.start_soon(receive_all, client, "down")
    assert received == {
        "up": hashlib.sha256(up).hexdigest(),
        "down": hashlib.sha256(down).hexdigest(),
    }


async def test_relay_echo_with_sender_and_receiver_in_separate_tasks(
    server_ctx: SSL.Context,
) -> None:
    """The full-duplex relay shape: one task sends while another receives on the same stream."""
    client, server = make_pair(server_ctx, client_context("require"))
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.randint(1, 40_000)) for _ in range(200)]
    expected = b"".join(pieces)
    echoed = bytearray()

    async def echo() -> None:
        while chunk := await server.receive_some(rng.randint(1, 70_000)):
            await server.send_all(chunk)
        await server.aclose()

    async def send_pieces() -> None:
        for piece in pieces:
            await client.send_all(piece)

    async def collect() -> None:
        while len(echoed) < len(expected):
            chunk = await client.receive_some()
            assert chunk
            echoed.extend(chunk)
        await client.aclose()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            nursery.start_soon(send_pieces)
            nursery.start_soon(collect)
    assert echoed == expected


# ---- closing ------------------------------------------------------------------------------


async def test_close_notify_gives_empty_bytes(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    with trio.fail_after(TIMEOUT):
        await client.send_all(b"bye")
        await client.aclose()
        assert await server.receive_some() == b"bye"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""  # and it stays that way
        await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await server.receive_some()


async def test_transport_eof_after_handshake_gives_empty_bytes(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    await client.transport.aclose()  # no close_notify: a truncated session
    with trio.fail_after(TIMEOUT):
        assert await server.receive_some() == b""


async def test_aclose_on_dead_transport_does_not_raise(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    await client.transport.aclose()
    with trio.fail_after(TIMEOUT):
        await server.aclose()  # close_notify into a closed pipe
        await server.aclose()  # and again


async def test_aclose_while_receive_is_blocked_wakes_the_receiver(
    server_ctx: SSL.Context,
) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)

    async def receive_expecting_closed() -> None:
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_expecting_closed)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()


# ---- handshake failures -------------------------------------------------------------------


async def test_transport_eof_mid_handshake_raises_tls_error(server_ctx: SSL.Context) -> None:
    hello = raw_client_hello(b"localhost")
    peer, transport = trio.testing.memory_stream_pair()
    server = TLSStream.server(transport, server_ctx)
    await peer.send_all(hello[:20])
    await peer.aclose()
    with trio.fail_after(TIMEOUT), pytest.raises(TLSError, match="closed the connection") as caught:
        await server.do_handshake()
    assert isinstance(caught.value, ProtocolError)
    assert caught.value.sqlstate == "08P01"
    with pytest.raises(trio.BrokenResourceError):  # the stream stays broken
        await server.receive_some()


async def test_garbage_instead_of_client_hello_raises_tls_error(server_ctx: SSL.Context) -> None:
    peer, transport = trio.testing.memory_stream_pair()
    server = TLSStream.server(transport, server_ctx)
    await peer.send_all(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
    with trio.fail_after(TIMEOUT), pytest.raises(TLSError, match="handshake failed"):
        await server.do_handshake()
    # The transport is left to the caller, who may still write a plaintext error on it.
    await transport.send_all(b"E")
    assert (await peer.receive_some())[-1:] == b"E"


async def test_server_reply_that_is_not_tls_fails_client_handshake() -> None:
    """HOSTILE A.2 shape: a fake backend answers the ClientHello with plaintext."""
    transport, peer = trio.testing.memory_stream_pair()
    client = TLSStream.client(
        transport, client_context("require"), server_hostname="db", verify_hostname=False
    )

    async def fake_server() -> None:
        await peer.receive_some()
        await peer.send_all(b"EFATAL\x00password authentication failed\x00\x00")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake_server)
            with pytest.raises(TLSError):
                await client.do_handshake()


async def test_tls_1_1_client_hello_is_refused(server_ctx: SSL.Context) -> None:
    """TLS 1.2 is the floor: a hello that offers at most TLS 1.1 gets no session."""
    error = await expect_server_rejects(
        server_ctx, crafted_client_hello(b"db.example.com", version=b"\x03\x02")
    )
    assert "protocol" in str(error)


async def test_prefix_bytes_are_fed_before_the_transport(server_ctx: SSL.Context) -> None:
    """PostgreSQL direct TLS: the gateway peeks at the first byte, then hands it over."""
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = TLSStream.client(
        client_transport,
        client_context("require"),
        server_hostname="localhost",
        verify_hostname=False,
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"after the peek")
            first = await server_transport.receive_some(1)
            assert first == b"\x16"  # TLS handshake record
            server = TLSStream.server(server_transport, server_ctx, prefix=bytes(first))
            assert await server.receive_some() == b"after the peek"


async def test_corrupted_record_after_handshake_raises_tls_error(server_ctx: SSL.Context) -> None:
    client, server = make_pair(server_ctx, client_context("require"))
    await handshake_both(client, server)
    # An application-data record that cannot decrypt: bytes flipped in transit.
    await client.transport.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(TLSError, match="receive failed"):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"x")
        await server.aclose()


# ---- certificate verification (libpq sslmode semantics) -------------------------------------


@pytest.mark.parametrize(
    "hostname", ["localhost", "db.example.com", "DB.EXAMPLE.COM.", "127.0.0.1", "::1"]
)
async def test_verify_full_accepts_the_right_host_name(
    server_ctx: SSL.Context, ca_file: str, hostname: str
) -> None:
    client, server = make_pair(
        server_ctx, client_context("verify-full", ca_file=ca_file), hostname=hostname, verify=True
    )
    await handshake_both(client, server)
    assert client.tls_version


@pytest.mark.parametrize("hostname", ["evil.example.com", "example.com", "10.0.0.1", "::2"])
async def test_verify_full_rejects_the_wrong_host_name(
    server_ctx: SSL.Context, ca_file: str, hostname: str
) -> None:
    client, server = make_pair(
        server_ctx, client_context("verify-full", ca_file=ca_file), hostname=hostname, verify=True
    )
    client_error, server_error = await handshake_outcomes(client, server)
    assert client_error is not None
    assert "does not match host name" in str(client_error)
    assert server_error is not None  # the server got the alert (or EOF), never a session


async def test_verify_full_context_checks_host_even_if_caller_forgets(
    server_ctx: SSL.Context, ca_file: str
) -> None:
    client, server = make_pair(
        server_ctx,
        client_context("verify-full", ca_file=ca_file),
        hostname="evil.example.com",
        verify=False,
    )
    client_error, _ = await handshake_outcomes(client, server)
    assert client_error is not None and "does not match host name" in str(client_error)


async def test_verify_ca_rejects_an_untrusted_ca(server_ctx: SSL.Context, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    client, server = make_pair(server_ctx, client_context("verify-ca", ca_file=str(other)))
    client_error, server_error = await handshake_outcomes(client, server)
    assert client_error is not None and "certificate verify failed" in str(client_error)
    assert server_error is not None


async def test_verify_full_rejects_an_untrusted_ca_with_the_right_name(
    server_ctx: SSL.Context, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    client, server = make_pair(
        server_ctx, client_context("verify-full", ca_file=str(other)), verify=True
    )
    client_error, _ = await handshake_outcomes(client, server)
    assert client_error is not None and "certificate verify failed" in str(client_error)


async def test_verify_ca_does_not_check_the_host_name(
    server_ctx: SSL.Context, ca_file: str
) -> None:
    client, server = make_pair(
        server_ctx, client_context("verify-ca", ca_file=ca_file), hostname="evil.example.com"
    )
    await handshake_both(client, server)


@pytest.mark.parametrize("mode", ["prefer", "require"])
async def test_prefer_and_require_encrypt_without_verifying(
    server_ctx: SSL.Context, mode: str
) -> None:
    client, server = make_pair(server_ctx, client_context(mode), hostname="evil.example.com")
    await handshake_both(client, server)
    assert client.peer_certificate is not None


def test_host_name_verification_needs_a_verifying_context_and_a_name(ca_file: str) -> None:
    transport, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="verifies certificates"):
        TLSStream.client(
            transport, client_context("require"), server_hostname="db", verify_hostname=True
        )
    with pytest.raises(ValueError, match="server_hostname"):
        TLSStream.client(
            transport,
            client_context("verify-full", ca_file=ca_file),
            server_hostname=None,
            verify_hostname=False,
        )


@pytest.mark.parametrize("mode", ["disable", "verify", "VERIFY-FULL", ""])
def test_client_context_rejects_unknown_modes(mode: str) -> None:
    with pytest.raises(ValueError, match="TLS mode"):
        client_context(mode)


def _cert(
    *, dns: Sequence[str] = (), ips: Sequence[str] = (), common_name: str | None = None
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    name = x509.Name(attrs)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2040, 1, 1))
    )
    general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    general += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, hashes.SHA256())


@pytest.mark.parametrize(
    ("cert_kwargs", "host", "expected"),
    [
        ({"dns": ["*.example.com"]}, "db.example.com", True),
        ({"dns": ["*.example.com"]}, "DB.Example.Com.", True),
        ({"dns": ["*.example.com"]}, "example.com", False),
        ({"dns": ["*.example.com"]}, "a.db.example.com", False),
        ({"dns": ["*.example.com"]}, ".example.com", False),
        ({"dns": ["db*.example.com"]}, "db1.example.com", False),
        ({"dns": ["*.com"]}, "example.com", False),
        ({"dns": ["*.*.example.com"]}, "a.b.example.com", False),
        ({"dns": ["db.example.com"]}, "db.example.com.evil", False),
        ({"dns": ["10.0.0.1"]}, "10.0.0.1", False),  # an IP must be an IP SAN
        ({"ips": ["10.0.0.1"]}, "10.0.0.1", True),
        ({"ips": ["::1"]}, "[::1]", True),
        ({"ips": ["10.0.0.1"]}, "10.0.0.2", False),
        (
            {"dns": ["db.example.com"], "common_name": "other.example.com"},
            "other.example.com",
            False,
        ),
        ({"common_name": "db.example.com"}, "db.example.com", True),  # libpq's CN fallback
        ({"common_name": "10.0.0.1"}, "10.0.0.1", True),
        ({"common_name": "db.example.com"}, "evil.example.com", False),
        ({}, "db.example.com", False),
    ],
)
def test_certificate_matches_host(
    cert_kwargs: dict[str, object], host: str, expected: bool
) -> None:
    assert certificate_matches_host(_cert(**cert_kwargs), host) is expected  # type: ignore[arg-type]


# ---- hostile SNI (HOSTILE A.4, CVE-2026-27448) ----------------------------------------------


@pytest.mark.parametrize(
    "server_name",
    [
        b"\xff\xfe.example.com",  # not UTF-8
        "bücher.example".encode(),  # UTF-8 but not an A-label
        b"db\x1b[2J.example.com",  # ASCII control characters that would forge log output
        b"db example.com",
    ],
)
async def test_hostile_sni_aborts_handshake(server_ctx: SSL.Context, server_name: bytes) -> None:
    hello = raw_client_hello(server_name)
    assert server_name in hello  # the client really sent it; the test is not vacuous
    error = await expect_server_rejects(server_ctx, hello)
    assert "invalid TLS server name" in str(error)


async def test_sixty_four_kilobyte_sni_aborts_handshake(server_ctx: SSL.Context) -> None:
    hello = crafted_client_hello(b"a" * 65000)
    assert len(hello) > 65000
    await expect_server_rejects(server_ctx, hello)


async def test_crafted_client_hello_with_a_sane_sni_is_accepted(server_ctx: SSL.Context) -> None:
    """Control for the 64 KB case: the hand-built hello itself is valid."""
    peer, transport = trio.testing.memory_stream_pair()
    server = TLSStream.server(transport, server_ctx)
    await peer.send_all(crafted_client_hello(b"db.example.com"))

    async def handshake() -> None:
        await server.do_handshake()

    with trio.move_on_after(TIMEOUT) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(handshake)
            # The server answers with a ServerHello and waits for our next flight.
            assert (await peer.receive_some())[:1] == b"\x16"
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert server.server_name == "db.example.com"


# ---- trio's generic stream conformance ------------------------------------------------------


async def test_generic_stream_conformance(server_ctx: SSL.Context) -> None:
    async def stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        # Not handshaken: the checks also exercise the implicit handshake from every method.
        return make_pair(server_ctx, client_context("require"))

    async def clogged_stream_maker() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        client_transport, server_transport = trio.testing.lockstep_stream_pair()
        client = TLSStream.client(
            client_transport,
            client_context("require"),
            server_hostname="localhost",
            verify_hostname=False,
        )
        server = TLSStream.server(server_transport, server_ctx)

        # Lockstep transports block a send until the peer reads, and a TLS 1.3 server sends
        # session tickets after its handshake: have the client read them (with one byte) now.
        async def server_side() -> None:
            await server.do_handshake()
            await server.send_all(b"x")

        async def client_side() -> None:
            await client.do_handshake()
            assert await client.receive_some(1) == b"x"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            nursery.start_soon(client_side)
        return client, server

    maker: Callable[[], Awaitable[tuple[trio.abc.Stream, trio.abc.Stream]]] = stream_maker
    with trio.fail_after(120):
        await trio.testing.check_two_way_stream(maker, clogged_stream_maker)


# ---- interoperability with an independent driver (stdlib ssl through trio.SSLStream) -------


async def test_interop_with_stdlib_ssl_on_both_sides(
    server_files: tuple[str, str], ca: trustme.CA, ca_file: str
) -> None:
    # Our server, stdlib client verifying the certificate and negotiating ALPN.
    client_transport, server_transport = trio.testing.memory_stream_pair()
    stdlib_client_ctx = ssl.create_default_context()
    ca.configure_trust(stdlib_client_ctx)
    stdlib_client_ctx.set_alpn_protocols(["postgresql"])
    stdlib_client = trio.SSLStream(
        client_transport, stdlib_client_ctx, server_hostname="db.example.com"
    )
    ours = TLSStream.server(server_transport, server_context(*server_files, alpn=[b"postgresql"]))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stdlib_client.send_all, b"from stdlib")
            assert await ours.receive_some() == b"from stdlib"
        await ours.send_all(b"from wardgate")
        assert await stdlib_client.receive_some(100) == b"from wardgate"
        assert ours.server_name == "db.example.com"
        assert ours.selected_alpn == b"postgresql"
        await ours.aclose()
        assert await stdlib_client.receive_some(100) == b""

    # Stdlib server, our verify-full client.
    client_transport, server_transport = trio.testing.memory_stream_pair()
    stdlib_server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    stdlib_server_ctx.load_cert_chain(*server_files)
    stdlib_server = trio.SSLStream(server_transport, stdlib_server_ctx, server_side=True)
    ours = TLSStream.client(
        client_transport,
        client_context("verify-full", ca_file=ca_file),
        server_hostname="db.example.com",
        verify_hostname=True,
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours.send_all, b"x" * 100_000)
            received = bytearray()
            while len(received) < 100_000:
                received += await stdlib_server.receive_some()
        assert received == b"x" * 100_000
        await stdlib_server.send_all(b"pong")
        assert await ours.receive_some() == b"pong"
        await stdlib_server.aclose()
        assert await ours.receive_some() == b""
