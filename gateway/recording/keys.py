"""The Ed25519 key that seals recordings, kept in the data directory.

Losing or replacing this key makes older recordings unverifiable, so a damaged key file is an
operator error to fix, never a reason to silently generate a new one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from gateway.errors import GatewayError
from gateway.recording.format import key_id_of

KEY_DIR = "keys"
PRIVATE_KEY_NAME = "recording-ed25519.pem"
# Written beside the private key so an auditor can be handed the public half alone.
PUBLIC_KEY_NAME = "recording-ed25519.pub.pem"


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short, stable name of a key: hex SHA-256 of the raw public bytes, first 16 chars."""
    return key_id_of(public_key)


def private_key_path(data_dir: Path) -> Path:
    return data_dir / KEY_DIR / PRIVATE_KEY_NAME


def load_or_create_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """Load ``data_dir/keys/recording-ed25519.pem``, creating it (0600, atomically) if absent.

    Creation writes a temporary file and hard-links it into place: link() never replaces an
    existing file, so two gateways starting together agree on one key.
    """
    path = private_key_path(data_dir)
    if path.exists():
        return _load_private(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise GatewayError(f"cannot create key directory {path.parent}: {exc}") from exc
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_name(f".{PRIVATE_KEY_NAME}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            _write_new(tmp, pem, 0o600)
            os.link(tmp, path)
        except FileExistsError:
            # Another process won the race; its key is the key.
            return _load_private(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise GatewayError(
            f"cannot create recording key {path}: {exc}; make {path.parent} writable"
        ) from exc
    _write_public(data_dir, key.public_key())
    return key


def load_public_key(data_dir: Path) -> Ed25519PublicKey:
    """The public half: from the private key when present, else from the exported .pub.pem."""
    path = private_key_path(data_dir)
    if path.exists():
        return _load_private(path).public_key()
    pub = path.with_name(PUBLIC_KEY_NAME)
    try:
        loaded = load_pem_public_key(pub.read_bytes())
    except FileNotFoundError:
        raise GatewayError(
            f"no recording key in {path.parent}: expected {PRIVATE_KEY_NAME} or {PUBLIC_KEY_NAME}"
        ) from None
    except (OSError, ValueError) as exc:
        raise GatewayError(f"{pub}: not a readable PEM public key: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise GatewayError(f"{pub}: holds a {type(loaded).__name__}, expected an Ed25519 key")
    return loaded


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Same rule as OpenSSH: a key others can read is no longer a secret.
            raise GatewayError(
                f"{path}: mode {stat.S_IMODE(mode):04o} lets others read the recording key; "
                f"run chmod 600 {path}"
            )
        loaded = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read the recording key: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise GatewayError(
            f"{path}: not an unencrypted PEM (PKCS#8) private key: {exc}; restore it from backup "
            "(generating a new key makes existing recordings unverifiable)"
        ) from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise GatewayError(f"{path}: holds a {type(loaded).__name__}, expected an Ed25519 key")
    return loaded


def _write_public(data_dir: Path, public_key: Ed25519PublicKey) -> None:
    pub = private_key_path(data_dir).with_name(PUBLIC_KEY_NAME)
    pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    # The public half is a convenience copy; failing to export it must not stop the gateway.
    tmp = pub.with_name(f".{PUBLIC_KEY_NAME}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new(tmp, pem, 0o644)
        os.replace(tmp, pub)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Some filesystems refuse fsync on a directory; durability of the name is best-effort there.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
