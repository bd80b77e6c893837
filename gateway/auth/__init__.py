"""Authentication: who is calling, proven by a short-lived signed token.

``TokenValidator`` turns a bearer token into an :class:`~gateway.model.Identity`;
``JWKSCache`` supplies its verification keys (static, a file, or OIDC discovery);
``EmbeddedIssuer`` mints tokens when wardgate runs without an identity provider.
``build_validator`` wires them from the ``[auth]`` configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gateway.auth.issuer import DEFAULT_ISSUER, EmbeddedIssuer
from gateway.auth.jwks import (
    ALLOWED_ALGORITHMS,
    JWKSCache,
    KeySourceError,
    PinnedKey,
    http_get_json,
)
from gateway.auth.tokens import TokenValidator
from gateway.errors import ConfigError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_ISSUER",
    "AuthSettings",
    "EmbeddedIssuer",
    "JWKSCache",
    "KeySourceError",
    "PinnedKey",
    "TokenValidator",
    "build_validator",
    "http_get_json",
]

EMBEDDED = "embedded"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """The ``[auth]`` table: whose tokens to accept, and for which audience.

    ``issuer`` is ``"embedded"`` or the identity provider's issuer URL. With a URL, keys come from
    ``jwks_file`` when set (air-gapped installs), otherwise from OIDC discovery.
    """

    issuer: str
    audience: str
    groups_claim: str = "groups"
    jwks_file: Path | None = None
    leeway: float = 30.0


def build_validator(
    auth_cfg: AuthSettings, data_dir: Path
) -> tuple[TokenValidator, EmbeddedIssuer | None]:
    """The validator for ``auth_cfg`` and, for the embedded issuer, the issuer itself."""
    if not auth_cfg.issuer:
        raise ConfigError(
            "issuer must be 'embedded' or the identity provider's URL", key="auth.issuer"
        )
    if not auth_cfg.audience:
        raise ConfigError(
            "audience must be set (the 'aud' tokens are minted for)", key="auth.audience"
        )
    if not auth_cfg.groups_claim:
        raise ConfigError("groups_claim must name a claim, e.g. 'groups'", key="auth.groups_claim")
    if not (math.isfinite(auth_cfg.leeway) and 0 <= auth_cfg.leeway <= 300):
        raise ConfigError("leeway must be between 0 and 300 seconds", key="auth.leeway")

    issuer: EmbeddedIssuer | None = None
    if auth_cfg.issuer == EMBEDDED:
        issuer = EmbeddedIssuer.load_or_create(data_dir)
        keys = JWKSCache.from_static(issuer.jwks(), source="embedded issuer")
        issuer_name = issuer.issuer
    elif auth_cfg.jwks_file is not None:
        keys = JWKSCache.from_file(auth_cfg.jwks_file)
        issuer_name = auth_cfg.issuer
    else:
        keys = JWKSCache.from_discovery(auth_cfg.issuer)
        issuer_name = auth_cfg.issuer
    validator = TokenValidator(
        issuer=issuer_name,
        audience=auth_cfg.audience,
        keys=keys,
        groups_claim=auth_cfg.groups_claim,
        leeway=auth_cfg.leeway,
    )
    return validator, issuer
