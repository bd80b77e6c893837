"""gateway.certs: the self-signed default certificate."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.certs import build_self_signed, ensure_self_signed
from gateway.errors import GatewayError
from gateway.tls import TLSError, TLSStream, client_context, server_context


def _san(cert_path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_creates_a_p256_pair_with_private_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "tls"
    cert_path, key_path = ensure_self_signed(directory)
    assert (cert_path, key_path) == (directory / "gateway.crt", directory / "gateway.key")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=364) < validity < datetime.timedelta(days=367)
    assert cert.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)
    # Only the two files (plus the lock) are left behind: no temporary files.
    assert sorted(p.name for p in directory.iterdir()) == [
        ".gateway-cert.lock",
        "gateway.crt",
        "gateway.key",
    ]


def test_san_contains_every_host_name(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(
        tmp_path, hostnames=("localhost", "gw.example.com", "127.0.0.1", "::1")
    )
    san = _san(cert_path)
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_existing_pair_is_reused(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    cert_before, key_before = cert_path.read_bytes(), key_path.read_bytes()
    assert ensure_self_signed(tmp_path, hostnames=("other.example",)) == (cert_path, key_path)
    assert cert_path.read_bytes() == cert_before
    assert key_path.read_bytes() == key_before


def test_a_lone_key_or_cert_is_replaced_by_a_fresh_pair(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    old_cert = cert_path.read_bytes()
    key_path.unlink()
    ensure_self_signed(tmp_path)
    assert cert_path.read_bytes() != old_cert
    _assert_pair_matches(cert_path, key_path)


def test_expired_self_signed_certificate_is_renewed(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    expired = build_self_signed(
        key, ["localhost"], not_before=long_ago, validity=datetime.timedelta(days=1)
    )
    cert_path.write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    ensure_self_signed(tmp_path)
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert renewed.not_valid_after_utc > datetime.datetime.now(datetime.UTC)
    _assert_pair_matches(cert_path, key_path)


def test_mismatched_pair_is_refused_not_overwritten(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path / "a")
    other_cert, _ = ensure_self_signed(tmp_path / "b")
    cert_path.write_bytes(other_cert.read_bytes())
    with pytest.raises(GatewayError, match="does not belong"):
        ensure_self_signed(tmp_path / "a")
    assert cert_path.read_bytes() == other_cert.read_bytes()


def test_unparseable_files_are_refused(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path)
    cert_path.write_bytes(b"not a certificate")
    with pytest.raises(GatewayError, match="cannot be loaded"):
        ensure_self_signed(tmp_path)


def test_group_readable_key_is_refused(tmp_path: Path) -> None:
    _, key_path = ensure_self_signed(tmp_path)
    key_path.chmod(0o640)
    with pytest.raises(GatewayError, match="chmod 600"):
        ensure_self_signed(tmp_path)


def test_needs_at_least_one_host_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostnames"):
        ensure_self_signed(tmp_path, hostnames=())


@pytest.mark.parametrize(
    ("hostname", "accepted"),
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("evil.example.com", False)],
)
async def test_verify_full_client_trusting_the_cert_file(
    tmp_path: Path, hostname: str, accepted: bool
) -> None:
    """The operator's recipe: psql sslmode=verify-full sslrootcert=gateway.crt."""
    cert_path, key_path = ensure_self_signed(tmp_path)
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = TLSStream.client(
        client_transport,
        client_context("verify-full", ca_file=str(cert_path)),
        server_hostname=hostname,
        verify_hostname=True,
    )
    server = TLSStream.server(server_transport, server_context(str(cert_path), str(key_path)))
    client_error: TLSError | None = None

    async def run_client() -> None:
        nonlocal client_error
        try:
            await client.do_handshake()
        except TLSError as exc:
            client_error = exc
        await client.aclose()

    async def run_server() -> None:
        try:
            await server.do_handshake()
        except TLSError:
            pass

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_client)
            nursery.start_soon(run_server)
    assert (client_error is None) is accepted, client_error


def _assert_pair_matches(cert_path: Path, key_path: Path) -> None:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert key.public_key().public_bytes(der, spki) == cert.public_key().public_bytes(der, spki)
