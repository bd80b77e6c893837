"""The gateway's own self-signed certificate, so the embedded default speaks TLS out of the box.

Operators with a real certificate point the configuration at it; this module only looks after
``gateway.crt``/``gateway.key`` in the data directory. Clients that want ``verify-full`` against
the default can trust ``gateway.crt`` directly (``sslrootcert=gateway.crt``).
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import GatewayError

__all__ = [
    "PEMFileError",
    "build_self_signed",
    "check_certificate_pair",
    "ensure_self_signed",
    "key_matches_certificate",
    "read_pem_certificates",
    "read_pem_private_key",
]

CERT_NAME = "gateway.crt"
KEY_NAME = "gateway.key"
_VALIDITY = datetime.timedelta(days=365)
_CLOCK_SKEW = datetime.timedelta(minutes=5)  # clients whose clock runs a little behind


def ensure_self_signed(
    directory: Path, *, hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)``, generating an EC P-256 self-signed pair if needed.

    Existing files are reused (they may be the operator's), except that an *expired self-signed*
    certificate is replaced: it is ours and useless. A pair that does not belong together, or a
    key readable by group/others, raises ``GatewayError`` rather than being silently overwritten.
    A lock file serialises gateway processes that share the directory.
    """
    if not hostnames:
        raise ValueError("hostnames must name at least one DNS name or IP address")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path = directory / CERT_NAME
    key_path = directory / KEY_NAME
    with _locked(directory / ".gateway-cert.lock"):
        if cert_path.exists() and key_path.exists() and _reusable(cert_path, key_path):
            return cert_path, key_path
        # A certificate is written only after its key, so "cert present" implies its key is too;
        # remove a stray certificate first so a crash can never pair it with a new key.
        cert_path.unlink(missing_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = build_self_signed(key, hostnames, not_before=now - _CLOCK_SKEW, validity=_VALIDITY)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(key_path, key_pem, 0o600)
        _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def build_self_signed(
    key: ec.EllipticCurvePrivateKey,
    hostnames: Sequence[str],
    *,
    not_before: datetime.datetime,
    validity: datetime.timedelta,
) -> x509.Certificate:
    """A self-signed server certificate whose SAN lists every host name (DNS or IP)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wardgate gateway")])
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + validity)
        .add_extension(x509.SubjectAlternativeName(_general_names(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _general_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            dns = host.rstrip(".").lower()
            names.append(x509.DNSName(dns if dns.isascii() else dns.encode("idna").decode()))
    return names


def _reusable(cert_path: Path, key_path: Path) -> bool:
    """True to reuse the pair, False to regenerate it; raises when a person must decide."""
    mode = key_path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GatewayError(
            f"{key_path}: private key is accessible by group/others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {key_path}`"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise GatewayError(
            f"{cert_path} / {key_path}: cannot be loaded ({exc}); fix them or delete both to get "
            "a new self-signed certificate"
        ) from exc
    if not key_matches_certificate(key, cert):
        raise GatewayError(
            f"{cert_path}: certificate does not belong to {key_path}; replace them with a matching "
            "pair or delete both to get a new self-signed certificate"
        )
    expired = cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC)
    self_signed = cert.issuer == cert.subject
    return not (expired and self_signed)


# --- operator-supplied PEM files -------------------------------------------------------------
#
# These read what the configuration names ([tls] cert_file/key_file, a target's ca_file) so that a
# wrong file stops `wardgate config check` and `wardgate serve` with a reason, instead of failing
# inside OpenSSL at the first connection.

_MAX_PEM_BYTES = 1 << 20  # a CA bundle is a few hundred KiB; anything larger is the wrong file
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_TRUSTED_CERT = b"-----BEGIN TRUSTED CERTIFICATE-----"
_PEM_KEY = b"PRIVATE KEY-----"  # PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY, ENCRYPTED ...


class PEMFileError(ValueError):
    """A PEM file is unusable; the message reads ``<path> <reason>``, ``path`` names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.path = path


def _read_pem_bytes(path: Path, openssl_command: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise PEMFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if len(data) > _MAX_PEM_BYTES:
        raise PEMFileError(path, f"is larger than {_MAX_PEM_BYTES} bytes, too large for PEM")
    if not data.strip():
        raise PEMFileError(path, "is empty")
    if data[:1] == b"\x30":
        # An ASN.1 SEQUENCE: the same object in binary DER encoding.
        raise PEMFileError(
            path,
            "is DER (binary), not PEM; convert it with "
            f"`openssl {openssl_command} -inform der -in {path} -out {path}.pem`",
        )
    if b"-----BEGIN " not in data:
        raise PEMFileError(path, "is not PEM (no -----BEGIN ...----- line)")
    return data


def read_pem_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order (a chain or a CA bundle)."""
    data = _read_pem_bytes(path, "x509")
    if _PEM_CERT not in data and _PEM_TRUSTED_CERT not in data:
        if _PEM_KEY in data:
            raise PEMFileError(path, "holds a private key, not a certificate")
        raise PEMFileError(path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PEMFileError(path, f"holds a damaged certificate ({_first_line(exc)})") from None


def read_pem_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted private key in a PEM file."""
    data = _read_pem_bytes(path, "pkey")
    if _PEM_KEY not in data:
        if _PEM_CERT in data:
            raise PEMFileError(path, "holds a certificate, not a private key")
        raise PEMFileError(path, "holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # The gateway starts unattended: nobody is there to type a passphrase.
        raise PEMFileError(
            path,
            f"holds an encrypted private key; decrypt it (`openssl pkey -in {path} -out "
            "NEW.key`, chmod 600 NEW.key) and name the decrypted file instead",
        ) from None
    except ValueError as exc:
        raise PEMFileError(
            path, f"holds a damaged or unsupported private key ({_first_line(exc)})"
        ) from None


def check_certificate_pair(cert_path: Path, key_path: Path) -> x509.Certificate:
    """Load a certificate (chain) and its key; return the leaf. Raises PEMFileError naming the
    file at fault (the key file when they do not belong together)."""
    chain = read_pem_certificates(cert_path)
    key = read_pem_private_key(key_path)
    if not key_matches_certificate(key, chain[0]):
        raise PEMFileError(
            key_path,
            f"is not the key of the certificate in {cert_path}; use the private key that "
            "certificate was issued for",
        )
    return chain[0]


def key_matches_certificate(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    """Whether ``key`` is the private half of the key ``cert`` certifies."""
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    mine = key.public_key().public_bytes(der, public)
    return bool(mine == cert.public_key().public_bytes(der, public))


def _first_line(exc: Exception) -> str:
    # cryptography appends a FAQ link and Rust debug output; the first sentence is what helps.
    text = str(exc).split(". See https://", 1)[0]
    return text.splitlines()[0] if text else type(exc).__name__


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # mkstemp's 0600 until here, so a key never leaks
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable; some filesystems refuse to open directories, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
