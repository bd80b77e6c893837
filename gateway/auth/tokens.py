"""Token validation: a compact JWS from an identity provider in, an :class:`Identity` out.

The order of checks is the point of this module (HOSTILE section B):

1. size and shape, before any decoding;
2. the JOSE header, parsed here rather than by the library, so that ``alg: none``, the HMAC
   family, key-carrying headers (``jwk``, ``jku``, ``x5u``, ``x5c``) and ``crit`` are refused before
   anything could act on them -- nothing named in a token is ever fetched or trusted;
3. the key, chosen by ``kid`` from the configured key set, whose pinned algorithm must equal the
   token's ``alg``;
4. the signature (joserfc, with that single key and that single algorithm);
5. the claims: exp, nbf, iat, iss, aud, sub, then the groups.

A validator holds configuration and a shared key cache, never anything about an earlier token:
every call starts from nothing, so a failed attempt cannot leak into the next (HOSTILE B.11).

Group names are compared case-sensitively everywhere: ``Admins`` and ``admins`` are different
groups, exactly as the identity provider spelled them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, SecurityWarning
from joserfc.jws import JWSRegistry

from gateway.auth.jwks import ALLOWED_ALGORITHMS, JWKSCache, PinnedKey, escape_kid
from gateway.errors import AuthenticationError
from gateway.model import Identity

log = logging.getLogger("wardgate.auth")

#: Header parameters that would let a token name its own key or where to fetch one.
#: Accepting any of them is how "signed by the attacker's key" attacks start.
FORBIDDEN_HEADERS: frozenset[str] = frozenset({"jwk", "jku", "x5u", "x5c"})

MAX_HEADER_SEGMENT = 4096  # base64url characters; real headers are ~100-300
MAX_KID_LENGTH = 256
MAX_SUBJECT_LENGTH = 256
MAX_GROUPS = 256

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def b64url_decode(segment: str) -> bytes:
    """Strict base64url (RFC 7515 §2): no padding, no stray characters, canonical trailing bits.

    Lenient decoders accept several spellings of one token; a strict one means the bytes that
    were signed are the only bytes that decode.
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != segment:
        raise ValueError("non-canonical base64url")
    return data


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two "alg" (or two "sub") members would be read differently by different parsers.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key[:32]!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class StrictJSONDecoder(json.JSONDecoder):
    """JSON as RFC 8259 means it: no duplicate members, no NaN/Infinity."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["object_pairs_hook"] = _reject_duplicates
        kwargs["parse_constant"] = _reject_constant
        super().__init__(**kwargs)


def strict_json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"), cls=StrictJSONDecoder)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError("not a JSON object") from exc
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - one error type for "bad input"
    return value


def parse_header(token: str, *, max_token_bytes: int) -> dict[str, Any]:
    """Check the token's shape and return its JOSE header, or raise ``AuthenticationError``.

    Only the header is interpreted here; the payload is left to the verifier so that no claim is
    ever read from an unverified token.
    """
    if not isinstance(token, str):
        raise AuthenticationError("token malformed")
    if len(token) > max_token_bytes:
        raise AuthenticationError("token too large")
    if not token.isascii():
        raise AuthenticationError("token malformed")
    parts = token.split(".")
    if len(parts) != 3:
        # Five parts would be a JWE: encrypted tokens are not accepted, and neither is anything else.
        raise AuthenticationError("token malformed")
    header_segment, payload_segment, signature_segment = parts
    if len(header_segment) > MAX_HEADER_SEGMENT:
        raise AuthenticationError("token header too large")
    if not payload_segment or not signature_segment:
        raise AuthenticationError("token malformed")
    try:
        header = strict_json_object(b64url_decode(header_segment))
        # Payload and signature are only checked for canonical encoding here (not interpreted):
        # otherwise the spare bits of the last character give each token several spellings.
        b64url_decode(payload_segment)
        b64url_decode(signature_segment)
    except ValueError:
        raise AuthenticationError("token malformed") from None

    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationError("token algorithm not allowed")
    carried = FORBIDDEN_HEADERS.intersection(header)
    if carried:
        log.warning("token refused: header carries %s", ",".join(sorted(carried)))
        raise AuthenticationError("token header not allowed")
    if "crit" in header or "b64" in header:
        # We implement no JWS extension, so any critical one must fail (RFC 7515 §4.1.11);
        # b64 (RFC 7797) would change what the signature covers.
        raise AuthenticationError("token critical header not supported")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH):
        log.info("token refused: unusable kid %s", escape_kid(kid))
        raise AuthenticationError("token key id invalid")
    return header


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # bool is an int in Python, and 1e999 parses as inf: neither is a date.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AuthenticationError(f"token claim {name} invalid")
    try:
        number = float(value)
    except OverflowError:
        raise AuthenticationError(f"token claim {name} invalid") from None
    if not math.isfinite(number):
        raise AuthenticationError(f"token claim {name} invalid")
    return number


def claim_at_path(claims: Mapping[str, Any], name: str) -> Any:
    """The value of a claim named either literally or by a dotted path.

    The literal name wins, because namespaced claims are often URLs with dots in them
    (``https://example.com/groups``); otherwise ``realm_access.roles`` walks nested objects.
    """
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def extract_groups(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """The caller's groups: a list of strings, or one string; absent means no groups.

    Non-string entries are ignored (they cannot name a group); more than MAX_GROUPS entries
    rejects the token, because silently keeping "the first 256" would make access depend on
    the order an identity provider happens to emit.
    """
    value = claim_at_path(claims, claim)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        if len(value) > MAX_GROUPS:
            raise AuthenticationError("token has too many groups")
        return frozenset(item for item in value if isinstance(item, str))
    log.info("groups claim %r has type %s; treated as no groups", claim, type(value).__name__)
    return frozenset()


_REGISTRIES: dict[str, JWSRegistry] = {}


def _registry_for(alg: str) -> JWSRegistry:
    """A joserfc registry that knows exactly one algorithm: the key's pinned one."""
    registry = _REGISTRIES.get(alg)
    if registry is None:
        # Header parameters were vetted above; joserfc's own unknown-header strictness would only
        # refuse benign vendor extras (e.g. Azure's "nonce").
        registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
        registry.max_header_length = MAX_HEADER_SEGMENT
        _REGISTRIES[alg] = registry
    return registry


class TokenValidator:
    """Validates bearer tokens from one issuer for one audience."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: JWKSCache,
        groups_claim: str = "groups",
        leeway: float = 30.0,
        max_token_bytes: int = 16384,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ValueError("leeway must be a non-negative number of seconds")
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.groups_claim = groups_claim
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self._clock = clock

    async def validate(self, token: str) -> Identity:
        """Return the identity the token proves, or raise ``AuthenticationError``.

        The error message is short and safe to send to the client; details go to the log.
        """
        header = parse_header(token, max_token_bytes=self.max_token_bytes)
        alg: str = header["alg"]
        kid: str | None = header.get("kid")
        pinned = await self.keys.key_for(kid, alg)
        if pinned.alg != alg:  # key_for already guarantees it; this module does not rely on that
            raise AuthenticationError("token algorithm does not match key")
        claims = self._verify(token, pinned)
        return self._identity(claims)

    def _verify(self, token: str, pinned: PinnedKey) -> dict[str, Any]:
        try:
            with warnings.catch_warnings():
                # joserfc flags "EdDSA" as deprecated by RFC 9864; that is advice, not a defect.
                warnings.simplefilter("ignore", SecurityWarning)
                decoded = jwt.decode(
                    token,
                    pinned.key,
                    algorithms=[pinned.alg],
                    registry=_registry_for(pinned.alg),
                    decoder_cls=StrictJSONDecoder,
                )
        except BadSignatureError:
            log.info("bad signature for kid=%s alg=%s", escape_kid(pinned.kid), pinned.alg)
            raise AuthenticationError("token signature invalid") from None
        except (JoseError, ValueError, TypeError, RecursionError) as exc:
            log.info("token refused by verifier: %s", type(exc).__name__)
            raise AuthenticationError("token malformed") from None
        return dict(decoded.claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        now = self._clock()
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise AuthenticationError("token has no expiry")
        if exp <= now - self.leeway:
            raise AuthenticationError("token expired")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise AuthenticationError("token not yet valid")
        iat = _numeric_date(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            raise AuthenticationError("token issued in the future")

        iss = claims.get("iss")
        if not isinstance(iss, str) or iss != self.issuer:
            raise AuthenticationError("token issuer mismatch")

        if "aud" not in claims:
            raise AuthenticationError("token audience missing")
        aud = claims["aud"]
        if isinstance(aud, str):
            audience_ok = aud == self.audience
        elif isinstance(aud, list):
            audience_ok = any(isinstance(a, str) and a == self.audience for a in aud)
        else:
            audience_ok = False
        if not audience_ok:
            raise AuthenticationError("token audience mismatch")

        sub = claims.get("sub")
        if (
            not isinstance(sub, str)
            or not sub
            or len(sub) > MAX_SUBJECT_LENGTH
            or _CONTROL.search(sub)  # the subject lands in logs, recordings and approval prompts
        ):
            raise AuthenticationError("token subject invalid")

        groups = extract_groups(claims, self.groups_claim)
        return Identity(
            subject=sub,
            groups=groups,
            expires_at=exp,
            issuer=iss,
            method="oidc",
            claims=claims,
        )
