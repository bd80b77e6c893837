"""The embedded token issuer: local ES256 tokens for running wardgate without an identity provider.

Its key lives in ``<data_dir>/keys/issuer-es256.pem`` (PKCS#8, mode 0600). The gateway verifies
these tokens through exactly the same :class:`~gateway.auth.tokens.TokenValidator` path as tokens
from Okta or Keycloak: the issuer only publishes a public JWKS, it grants no shortcut.
"""

from __future__ import annotations

import math
import os
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.errors import ConfigError

KEY_FILE = Path("keys") / "issuer-es256.pem"
ALGORITHM = "ES256"
DEFAULT_ISSUER = "urn:wardgate:embedded"
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_GROUPS = 256  # the validator refuses more; failing at mint time is kinder

#: Claims mint() sets itself; ``extra`` may not override them.
RESERVED_CLAIMS = frozenset({"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "groups"})


def _create_key_file(path: Path) -> None:
    """Write a fresh P-256 key so that no reader ever sees a partial or world-readable file.

    The key is written to a private temporary name and then hard-linked into place: link(2)
    fails if the target exists, so two gateways starting at once agree on one key instead of the
    later one silently replacing the key the earlier one already signed with.
    """
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o600)  # whatever the umask said
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race; its key is the key
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the embedded issuer key: {exc.strerror or exc}", file=str(path)
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("the embedded issuer key is not a regular file", file=str(path))
        if os.name == "posix" and info.st_mode & 0o077:
            # Like ssh with its identity files: a signing key others can read is not a secret.
            raise ConfigError(
                f"the embedded issuer key is readable by others (mode "
                f"{stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`",
                file=str(path),
            )
        data = fh.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError("the embedded issuer key file is too large to be a key", file=str(path))
    return data


class EmbeddedIssuer:
    """Mints ES256 tokens with a key kept in the data directory."""

    def __init__(self, key: ECKey, *, issuer: str = DEFAULT_ISSUER) -> None:
        if not key.is_private or key.curve_name != "P-256":
            raise ValueError("the embedded issuer needs a private P-256 key")
        if not issuer:
            raise ValueError("issuer must be non-empty")
        self.issuer = issuer
        kid = key.thumbprint()  # RFC 7638: stable across restarts, derived from the key itself
        self._key = ECKey.import_key(
            key.as_dict(private=True), parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"}
        )
        self.key_id = kid

    @classmethod
    def load_or_create(cls, data_dir: Path, *, issuer: str = DEFAULT_ISSUER) -> EmbeddedIssuer:
        """Load ``data_dir/keys/issuer-es256.pem``, creating it (mode 0600) if absent."""
        path = Path(data_dir) / KEY_FILE
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create {path.parent}: {exc.strerror or exc}; check that "
                "the data directory is writable",
                file=str(path.parent),
            ) from exc
        if not path.exists() and not path.is_symlink():
            try:
                _create_key_file(path)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write the embedded issuer key: {exc.strerror or exc}", file=str(path)
                ) from exc
        pem = _read_key_file(path)
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "the embedded issuer key is not an unencrypted PEM private key; "
                "move it away to have a new one created",
                file=str(path),
            ) from exc
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise ConfigError(
                "the embedded issuer key must be an EC P-256 key (ES256)", file=str(path)
            )
        return cls(ECKey.import_key(pem), issuer=issuer)

    def mint(
        self,
        *,
        subject: str,
        groups: Sequence[str],
        ttl: float,
        audience: str,
        now: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed token for ``subject``, valid from ``now`` for ``ttl`` seconds (rounded up)."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
            raise ValueError("ttl must be a positive number of seconds")
        if isinstance(groups, str):
            # A bare string is a Sequence[str] too, and would mint one group per character.
            raise TypeError("groups must be a sequence of group names, not a string")
        names = list(dict.fromkeys(groups))
        if not all(isinstance(g, str) and g for g in names):
            raise ValueError("every group must be a non-empty string")
        if len(names) > MAX_GROUPS:
            raise ValueError(f"at most {MAX_GROUPS} groups fit in a token")
        if extra:
            clash = RESERVED_CLAIMS.intersection(extra)
            if clash:
                raise ValueError(f"extra claims may not set {sorted(clash)}")

        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = dict(extra or {})
        claims.update(
            iss=self.issuer,
            sub=subject,
            aud=audience,
            iat=issued,
            nbf=issued,
            exp=issued + math.ceil(ttl),
            jti=secrets.token_urlsafe(16),
            groups=names,
        )
        header = {"alg": ALGORITHM, "kid": self.key_id, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM])

    def jwks(self) -> dict[str, Any]:
        """The public JWK set that verifies this issuer's tokens."""
        return {"keys": [dict(self._key.as_dict(private=False))]}
