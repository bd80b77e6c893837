"""Verification keys for incoming tokens: a bounded, self-refreshing JWK set.

The cache answers one question for the token validator: "which key, pinned to which algorithm,
verifies a token whose header says ``kid``/``alg``?". Everything here assumes the key source is
reachable by an attacker's traffic pattern (every token with an unknown ``kid`` asks for a refetch),
so refetches are rate-limited and shared, documents are size-capped, and a bad document never
evicts keys that work (HOSTILE B.10).

Each key's algorithm is fixed when the key is imported, from its JWK ``alg`` or from its key type,
never from a token. That is what makes "HS256 keyed with the RSA public key" (CVE-2024-37568) and
RSA/EC confusion impossible: a token may only use the one algorithm its key was pinned to.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from gateway.errors import AuthenticationError, ConfigError, GatewayError

log = logging.getLogger("wardgate.auth")

#: Every algorithm a token may use. ``none`` and the HMAC family are absent on purpose: a
#: resource server that holds only public keys must never accept a shared-secret signature.
#: ``Ed25519`` is the RFC 9864 fully-specified name for what ``EdDSA`` means with an Ed25519 key.
ALLOWED_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"}
)

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256"})
_EC_CURVE_ALGORITHM = {"P-256": "ES256", "P-384": "ES384"}
_OKP_ALGORITHMS = frozenset({"EdDSA", "Ed25519"})
_MIN_RSA_BITS = 2048

JWKSFetch = Callable[[], Awaitable[Any]]
JSONFetch = Callable[[str], Awaitable[Any]]


class KeySourceError(GatewayError):
    """The JWKS (or the discovery document pointing at it) could not be obtained or used."""


def escape_kid(kid: object) -> str:
    """A key id as it may appear in a log line: escaped, bounded, never raw attacker bytes."""
    if not isinstance(kid, str):
        return f"<{type(kid).__name__}>"
    shown = repr(kid[:64])  # cut first: repr of a 10 KB kid is not worth building
    return shown if len(shown) <= 64 and len(kid) <= 64 else shown[:61] + "..."


@dataclass(frozen=True, slots=True)
class PinnedKey:
    """A public verification key and the single algorithm it may verify."""

    kid: str
    alg: str
    key: Key


def pin_algorithm(jwk: Mapping[str, Any]) -> str:
    """The one algorithm a JWK may verify, or ``ValueError`` saying why the key is unusable.

    RSA keys without ``alg`` are pinned to RS256 (the OIDC default), not to "any RSA algorithm":
    an identity provider that signs with PS256 says so in its JWKS.
    """
    kty = jwk.get("kty")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("alg is not a string")
    if kty == "oct":
        # A symmetric key in a public JWKS is either a leak or a trap; it can never be used.
        raise ValueError("symmetric (oct) keys are never accepted")
    if kty == "RSA":
        if alg is None:
            return "RS256"
        if alg in _RSA_ALGORITHMS:
            return alg
        raise ValueError(f"alg {alg!r} is not allowed for an RSA key")
    if kty == "EC":
        expected = _EC_CURVE_ALGORITHM.get(jwk.get("crv"))  # type: ignore[arg-type]
        if expected is None:
            raise ValueError(f"EC curve {jwk.get('crv')!r} is not supported")
        if alg is not None and alg != expected:
            raise ValueError(f"alg {alg!r} does not match curve {jwk.get('crv')!r}")
        return expected
    if kty == "OKP":
        if jwk.get("crv") != "Ed25519":
            raise ValueError(f"OKP curve {jwk.get('crv')!r} is not supported")
        if alg is None:
            return "EdDSA"
        if alg in _OKP_ALGORITHMS:
            return alg
        raise ValueError(f"alg {alg!r} is not allowed for an Ed25519 key")
    raise ValueError(f"key type {kty!r} is not supported")


def _import_public_key(jwk: Mapping[str, Any]) -> Key:
    """Import a JWK keeping only its public half (a JWKS that leaks ``d`` must not make us sign)."""
    kty = jwk.get("kty")
    cls: type[RSAKey | ECKey | OKPKey]
    if kty == "RSA":
        cls = RSAKey
    elif kty == "EC":
        cls = ECKey
    elif kty == "OKP":
        cls = OKPKey
    else:  # pin_algorithm already refused it; keep mypy and future edits honest
        raise ValueError(f"key type {kty!r} is not supported")
    if kty == "RSA":
        # Measured before import, so a weak key is refused rather than merely warned about.
        modulus = jwk.get("n")
        if not isinstance(modulus, str):
            raise ValueError("RSA key has no modulus")
        padded = modulus + "=" * (-len(modulus) % 4)
        bits = int.from_bytes(base64.urlsafe_b64decode(padded), "big").bit_length()
        if bits < _MIN_RSA_BITS:
            raise ValueError(f"RSA key of {bits} bits is too small (minimum {_MIN_RSA_BITS})")
    key = cls.import_key(dict(jwk))
    return cls.import_key(key.as_dict(private=False))


def parse_jwks(
    document: Any, *, max_keys: int, max_document_bytes: int, source: str
) -> dict[tuple[str, str], PinnedKey]:
    """Turn a JWKS document into pinned keys, or raise ``KeySourceError`` if none is usable.

    Individual unusable keys (encryption keys, oct keys, unsupported curves) are skipped with a
    warning; the document as a whole is refused only when it is malformed, oversized, or leaves
    nothing to verify with, so the caller can keep what it had.
    """
    if not isinstance(document, dict):
        raise KeySourceError(f"{source}: JWKS is not a JSON object")
    try:
        size = len(json.dumps(document, separators=(",", ":")))
    except (TypeError, ValueError) as exc:
        raise KeySourceError(f"{source}: JWKS is not plain JSON") from exc
    if size > max_document_bytes:
        raise KeySourceError(f"{source}: JWKS of {size} bytes exceeds {max_document_bytes}")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeySourceError(f"{source}: JWKS has no 'keys' array")
    if len(entries) > max_keys:
        # Refuse rather than truncate: which keys survive a cut would depend on document order.
        raise KeySourceError(f"{source}: JWKS has {len(entries)} keys, more than {max_keys}")

    pinned: dict[tuple[str, str], PinnedKey] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            log.warning("%s: key #%d is not an object; skipped", source, index)
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            log.warning("%s: key #%d has a non-string kid; skipped", source, index)
            continue
        use = entry.get("use")
        if use is not None and use != "sig":
            continue  # an encryption key published alongside signing keys; not ours to use
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        try:
            alg = pin_algorithm(entry)
            key = _import_public_key(entry)
        except Exception as exc:  # noqa: BLE001 - any garbage in one key must only skip that key
            log.warning("%s: key #%d kid=%s refused: %s", source, index, escape_kid(kid), exc)
            continue
        if kid is None:
            # RFC 7638 thumbprint, so kid-less keys still have a stable identity.
            kid = key.thumbprint()
        if (kid, alg) in pinned:
            log.warning("%s: duplicate key kid=%s alg=%s; first kept", source, escape_kid(kid), alg)
            continue
        pinned[(kid, alg)] = PinnedKey(kid=kid, alg=alg, key=key)
    if not pinned:
        raise KeySourceError(f"{source}: JWKS holds no usable signing key")
    return pinned


class JWKSCache:
    """Pinned verification keys from one source, refetched on an unknown ``kid``.

    Refetch rules, each against an attacker who controls the ``kid`` of every token:

    * at most one fetch per ``refetch_cooldown`` seconds, whatever the kids;
    * concurrent misses share the one in-flight fetch instead of starting their own;
    * a fetch that fails, times out or returns garbage leaves the cached keys in place.

    A genuinely new key (rotation at the identity provider) is therefore picked up within one
    cooldown; that delay is the price of not letting random kids hammer the provider.
    ``max_age`` additionally makes a lookup refresh a cache older than that (same cooldown and
    sharing rules), so keys the provider withdrew do not stay trusted forever. The fetch runs in
    the task of the lookup that triggered it: a caller's deadline bounds it, and ``fetch_timeout``
    bounds it for everyone waiting on it.
    """

    def __init__(
        self,
        fetch: JWKSFetch,
        *,
        initial: Mapping[str, Any] | None = None,
        refetch_cooldown: float = 60.0,
        max_age: float | None = 3600.0,
        max_keys: int = 64,
        max_document_bytes: int = 1_000_000,
        fetch_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        source: str = "jwks",
    ) -> None:
        self._fetch = fetch
        self.refetch_cooldown = refetch_cooldown
        self.max_age = max_age
        self.max_keys = max_keys
        self.max_document_bytes = max_document_bytes
        self.fetch_timeout = fetch_timeout
        self._clock = clock
        self.source = source
        self._keys: dict[tuple[str, str], PinnedKey] = {}
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None
        self._in_flight: trio.Event | None = None
        self._last_refresh_ok = False
        #: how many times the source was asked (tests and metrics read this)
        self.fetch_count = 0
        if initial is not None:
            self._keys = self._parse(initial)
            self._loaded_at = clock()

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def from_static(cls, document: Mapping[str, Any], **options: Any) -> JWKSCache:
        """Keys given in configuration (or by the embedded issuer); refused at once if unusable."""
        try:  # a private copy: callers may mutate theirs
            frozen = json.loads(json.dumps(dict(document)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"static JWKS is not plain JSON: {exc}", key="auth") from exc

        async def fetch() -> Any:
            return frozen

        options.setdefault("source", "static jwks")
        options.setdefault("max_age", None)
        try:
            return cls(fetch, initial=frozen, **options)
        except KeySourceError as exc:
            raise ConfigError(str(exc), key="auth") from exc

    @classmethod
    def from_file(cls, path: Path | str, **options: Any) -> JWKSCache:
        """Keys from a local JWKS file; a refetch re-reads it, so operators rotate by editing it."""
        path = Path(path)
        max_bytes = int(options.get("max_document_bytes", 1_000_000))

        async def fetch() -> Any:
            return await trio.to_thread.run_sync(_read_json_file, path, max_bytes)

        options.setdefault("source", str(path))
        try:
            initial = _read_json_file(path, max_bytes)
            return cls(fetch, initial=initial, **options)
        except KeySourceError as exc:
            raise ConfigError(
                f'{exc}; expected a JWK set {{"keys": [...]}}', file=str(path), key="auth.jwks_file"
            ) from exc

    @classmethod
    def from_discovery(
        cls, issuer_url: str, fetch_json: JSONFetch | None = None, **options: Any
    ) -> JWKSCache:
        """Keys of an OpenID provider, found through its discovery document.

        The document must name exactly ``issuer_url`` as its issuer (OIDC Discovery 1.0 §4.3;
        otherwise anyone able to serve that path could impersonate another provider), and its
        ``jwks_uri`` must be https. Plain http is tolerated only when the issuer itself is a
        loopback URL, which only tests use. Nothing is fetched until the first lookup.
        """
        # authlib builds the well-known URL exactly as OIDC Discovery §4.1 says; its fetching
        # lives in the requests/httpx integrations, which this project does not use.
        from authlib.oidc.discovery import get_well_known_url  # type: ignore[import-untyped]

        loopback = _check_issuer_url(issuer_url)
        well_known = get_well_known_url(issuer_url, external=True)
        max_bytes = int(options.get("max_document_bytes", 1_000_000))
        getter: JSONFetch = fetch_json or (lambda url: http_get_json(url, max_bytes=max_bytes))
        jwks_uri: str | None = None

        async def fetch() -> Any:
            nonlocal jwks_uri
            if jwks_uri is None:
                config = await getter(well_known)
                jwks_uri = _jwks_uri_from_discovery(config, issuer_url, loopback)
            try:
                return await getter(jwks_uri)
            except BaseException:
                jwks_uri = None  # the provider may have moved its JWKS; rediscover next time
                raise

        options.setdefault("source", well_known)
        return cls(fetch, **options)

    # -- lookups ----------------------------------------------------------------------------
    @property
    def keyset(self) -> KeySet:
        """The cached keys as a joserfc KeySet (public halves only)."""
        return KeySet([pk.key for pk in self._keys.values()])

    def pinned_keys(self) -> list[PinnedKey]:
        return list(self._keys.values())

    async def key_for(self, kid: str | None, alg: str) -> PinnedKey:
        """The key that may verify a token with this header, or ``AuthenticationError``.

        A ``kid`` present under a different algorithm is an algorithm-confusion attempt and
        fails without a refetch; an unknown ``kid`` may trigger one (rate-limited, shared).
        """
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthenticationError("token algorithm not allowed")
        if self._stale():
            await self._refresh_limited()
        found = self._lookup(kid, alg)
        if found is None:
            await self._refresh_limited()
            found = self._lookup(kid, alg)
        if found is None:
            log.info("no key for kid=%s alg=%s from %s", escape_kid(kid), alg, self.source)
            raise AuthenticationError("token signing key unknown")
        return found

    def _lookup(self, kid: str | None, alg: str) -> PinnedKey | None:
        if kid is None:
            # Without a kid the choice must not be a guess: only a sole key for this alg will do.
            candidates = [pk for pk in self._keys.values() if pk.alg == alg]
            return candidates[0] if len(candidates) == 1 else None
        found = self._keys.get((kid, alg))
        if found is None and any(k == kid for k, _ in self._keys):
            log.warning(
                "token alg=%s does not match the algorithm pinned for kid=%s", alg, escape_kid(kid)
            )
            raise AuthenticationError("token algorithm does not match key")
        return found

    def _stale(self) -> bool:
        if self.max_age is None or self._loaded_at is None:
            return False
        return self._clock() - self._loaded_at > self.max_age

    # -- refreshing -------------------------------------------------------------------------
    async def refresh(self) -> bool:
        """Fetch now, ignoring the cooldown (start-up priming, operator action).

        Returns whether new keys were installed. Joins a fetch already in flight.
        """
        if self._in_flight is not None:
            await self._in_flight.wait()
            return self._last_refresh_ok
        return await self._do_refresh()

    async def _refresh_limited(self) -> None:
        if self._in_flight is not None:
            await self._in_flight.wait()
            return
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self.refetch_cooldown:
            return
        await self._do_refresh()

    async def _do_refresh(self) -> bool:
        event = trio.Event()
        self._in_flight = event
        self._last_attempt = self._clock()
        self.fetch_count += 1
        installed = False
        try:
            document: Any = None
            with trio.move_on_after(self.fetch_timeout) as scope:
                document = await self._fetch()
            if scope.cancelled_caught:
                log.warning(
                    "JWKS fetch from %s timed out; keeping %d cached key(s)",
                    self.source,
                    len(self._keys),
                )
            else:
                self._keys = self._parse(document)
                self._loaded_at = self._clock()
                installed = True
                log.info("loaded %d key(s) from %s", len(self._keys), self.source)
        except Exception as exc:  # noqa: BLE001 - a broken source must never break validation
            log.warning(
                "JWKS fetch from %s failed: %s; keeping %d cached key(s)",
                self.source,
                exc,
                len(self._keys),
            )
        finally:
            # Cleared before waking waiters so a waiter that misses again sees the cooldown,
            # not a stale in-flight marker. A cancelled fetcher also lands here.
            self._last_refresh_ok = installed
            self._in_flight = None
            event.set()
        return installed

    def _parse(self, document: Any) -> dict[tuple[str, str], PinnedKey]:
        return parse_jwks(
            document,
            max_keys=self.max_keys,
            max_document_bytes=self.max_document_bytes,
            source=self.source,
        )


# -- sources ------------------------------------------------------------------------------------
def _read_json_file(path: Path, max_bytes: int) -> Any:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise KeySourceError(f"{path}: cannot read JWKS file: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise KeySourceError(f"{path}: JWKS file exceeds {max_bytes} bytes")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeySourceError(f"{path}: JWKS file is not valid JSON: {exc}") from exc


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_issuer_url(issuer_url: str) -> bool:
    """Validate the configured issuer URL; returns whether it is a (test-only) loopback http URL."""
    try:
        parts = urllib.parse.urlsplit(issuer_url)
    except ValueError as exc:
        raise ConfigError(f"issuer {issuer_url!r} is not a URL", key="auth.issuer") from exc
    if parts.query or parts.fragment or not parts.hostname:
        raise ConfigError(
            f"issuer {issuer_url!r} must be a URL with a host and no query or "
            "fragment (OpenID Connect Discovery)",
            key="auth.issuer",
        )
    if parts.scheme == "https":
        return False
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return True
    raise ConfigError(
        f"issuer {issuer_url!r} must use https (plain http is accepted only "
        "for 127.0.0.1/localhost)",
        key="auth.issuer",
    )


def _jwks_uri_from_discovery(config: Any, issuer_url: str, loopback: bool) -> str:
    if not isinstance(config, dict):
        raise KeySourceError("discovery document is not a JSON object")
    advertised = config.get("issuer")
    if advertised != issuer_url:
        raise KeySourceError(
            f"discovery issuer {str(advertised)[:200]!r} does not match configured {issuer_url!r}"
        )
    uri = config.get("jwks_uri")
    if not isinstance(uri, str):
        raise KeySourceError("discovery document has no jwks_uri")
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "https" and parts.hostname:
        return uri
    if loopback and parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    raise KeySourceError(f"jwks_uri {uri[:200]!r} must use https")


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to anything else (or to a non-http scheme)."""

    max_redirections = 3

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old = urllib.parse.urlsplit(req.full_url).scheme
        new = urllib.parse.urlsplit(newurl).scheme
        if new not in ("http", "https") or (old == "https" and new != "https"):
            raise urllib.error.HTTPError(newurl, code, "refused redirect", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str) -> urllib.request.OpenerDirector:
    # Built by hand so file://, ftp:// and data: URLs (which urllib opens by default) cannot be
    # reached through a jwks_uri an identity provider, or an attacker, wrote.
    opener = urllib.request.OpenerDirector()
    # Environment proxies apply, except to loopback, which no proxy can reach on our behalf.
    loopback = _is_loopback(urllib.parse.urlsplit(url).hostname)
    proxies: dict[str, str] | None = {} if loopback else None
    for handler in (
        urllib.request.ProxyHandler(proxies),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
        _NoDowngradeRedirect(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.HTTPDefaultErrorHandler(),
    ):
        opener.add_handler(handler)
    return opener


def _blocking_get_json(url: str, timeout: float, max_bytes: int) -> Any:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise KeySourceError(f"refusing to fetch {url[:200]!r}: only http(s) URLs are fetched")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            if response.status != 200:
                raise KeySourceError(f"{url[:200]}: HTTP status {response.status}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise KeySourceError(
                    f"{url[:200]}: response of {declared} bytes exceeds {max_bytes}"
                )
            chunks: list[bytes] = []
            received = 0
            while True:
                # The socket timeout bounds each read; the deadline bounds a trickling server.
                if time.monotonic() > deadline:
                    raise KeySourceError(f"{url[:200]}: response took longer than {timeout}s")
                # read1 returns after one recv, so the deadline is checked between trickles.
                chunk = response.read1(min(65536, max_bytes + 1 - received))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
                if received > max_bytes:
                    raise KeySourceError(f"{url[:200]}: response exceeds {max_bytes} bytes")
    except urllib.error.HTTPError as exc:
        raise KeySourceError(f"{url[:200]}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise KeySourceError(f"{url[:200]}: {exc}") from exc
    try:
        document = json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeySourceError(f"{url[:200]}: response is not JSON") from exc
    if not isinstance(document, dict):
        raise KeySourceError(f"{url[:200]}: response is not a JSON object")
    return document


async def http_get_json(
    url: str, *, timeout: float = 5.0, max_bytes: int = 1_000_000
) -> dict[str, Any]:
    """GET a JSON object over http(s) with a total deadline and a size cap.

    The stdlib client runs in a worker thread; if the deadline passes the thread is abandoned
    (its own socket timeout ends it) and ``KeySourceError`` is raised here.
    """
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError("timeout must be a positive number of seconds")
    with trio.move_on_after(timeout + 1.0):
        result: dict[str, Any] = await trio.to_thread.run_sync(
            _blocking_get_json, url, timeout, max_bytes, abandon_on_cancel=True
        )
        return result
    raise KeySourceError(f"{url[:200]}: no response within {timeout}s")
