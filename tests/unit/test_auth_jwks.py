"""JWKSCache: algorithm pinning, bounded and rate-limited refetching, and the three key sources.

Discovery and http_get_json run against a real stdlib HTTP server on 127.0.0.1 (port 0).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from gateway.auth.jwks import (
    JWKSCache,
    KeySourceError,
    _NoDowngradeRedirect,
    escape_kid,
    http_get_json,
    parse_jwks,
    pin_algorithm,
)
from gateway.auth.tokens import TokenValidator
from gateway.errors import AuthenticationError, ConfigError

RSA_1 = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
RSA_2 = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})
EC_1 = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


def public(key: Any, **extra: Any) -> dict[str, Any]:
    data = dict(key.as_dict(private=False))
    data.update(extra)
    return data


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Source:
    """A scripted JWKS source: returns (or raises) the next queued answer, counting calls."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.release: trio.Event | None = None

    async def __call__(self) -> Any:
        self.calls += 1
        if self.release is not None:
            await self.release.wait()
        await trio.lowlevel.checkpoint()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


# -- pinning -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("jwk", "expected"),
    [
        ({"kty": "RSA"}, "RS256"),
        ({"kty": "RSA", "alg": "PS256"}, "PS256"),
        ({"kty": "RSA", "alg": "RS512"}, "RS512"),
        ({"kty": "EC", "crv": "P-256"}, "ES256"),
        ({"kty": "EC", "crv": "P-384"}, "ES384"),
        ({"kty": "EC", "crv": "P-256", "alg": "ES256"}, "ES256"),
        ({"kty": "OKP", "crv": "Ed25519"}, "EdDSA"),
        ({"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519"}, "Ed25519"),
    ],
)
def test_algorithm_pinned_from_key(jwk: dict[str, Any], expected: str) -> None:
    assert pin_algorithm(jwk) == expected


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"},
        {"kty": "RSA", "alg": "HS256"},
        {"kty": "RSA", "alg": "none"},
        {"kty": "RSA", "alg": "ES256"},
        {"kty": "RSA", "alg": 256},
        {"kty": "EC", "crv": "P-256", "alg": "ES384"},
        {"kty": "EC", "crv": "P-521"},
        {"kty": "EC", "crv": "secp256k1"},
        {"kty": "OKP", "crv": "X25519"},
        {"kty": "OKP", "crv": "Ed448"},
        {"kty": "OKP", "crv": "Ed25519", "alg": "RS256"},
        {"kty": "AKP"},
        {},
    ],
)
def test_unusable_key_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        pin_algorithm(jwk)


def test_symmetric_key_in_jwks_is_never_usable() -> None:
    oct_key = public(OctKey.generate_key(256, parameters={"kid": "shared"}))
    oct_key["k"] = OctKey.generate_key(256).as_dict()["k"]
    with pytest.raises(ConfigError):
        JWKSCache.from_static(jwks(oct_key))
    cache = JWKSCache.from_static(jwks(oct_key, public(RSA_1)))
    assert [pk.kid for pk in cache.pinned_keys()] == ["rsa-1"]


async def test_symmetric_kid_lookup_fails() -> None:
    oct_key = dict(OctKey.generate_key(256, parameters={"kid": "shared"}).as_dict(private=True))
    source = Source(jwks(oct_key, public(RSA_1)))
    cache = JWKSCache(source, initial=jwks(oct_key, public(RSA_1)), clock=FakeClock())
    for alg in ("HS256", "RS256"):
        with pytest.raises(AuthenticationError):
            await cache.key_for("shared", alg)


def test_encryption_and_non_verify_keys_skipped() -> None:
    doc = jwks(
        public(RSA_1, use="enc"),
        public(RSA_2, key_ops=["encrypt"]),
        public(EC_1, use="sig", key_ops=["verify"]),
    )
    assert [pk.kid for pk in JWKSCache.from_static(doc).pinned_keys()] == ["ec-1"]


def test_private_material_in_jwks_is_dropped() -> None:
    cache = JWKSCache.from_static(jwks(dict(RSA_1.as_dict(private=True))))
    (pinned,) = cache.pinned_keys()
    assert not pinned.key.is_private
    assert "d" not in pinned.key.as_dict()


def test_small_rsa_key_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.warns(SecurityWarning):  # joserfc only warns; wardgate refuses
        weak_jwk = public(RSAKey.import_key(pem), kid="weak")
    doc = jwks(weak_jwk, public(RSA_1))
    assert [pk.kid for pk in JWKSCache.from_static(doc).pinned_keys()] == ["rsa-1"]


async def test_kidless_key_gets_thumbprint_kid() -> None:
    raw = public(RSA_1)
    del raw["kid"]
    cache = JWKSCache.from_static(jwks(raw))
    (pinned,) = cache.pinned_keys()
    assert pinned.kid == RSAKey.import_key(raw).thumbprint()
    claims = {"iss": "i", "aud": "a", "sub": "s", "exp": int(time.time()) + 60}
    for header in ({"alg": "RS256"}, {"alg": "RS256", "kid": pinned.kid}):
        token = jwt.encode(header, claims, RSA_1, algorithms=["RS256"])
        validator = TokenValidator(issuer="i", audience="a", keys=cache)
        assert (await validator.validate(token)).subject == "s"


def test_static_jwks_must_be_plain_json() -> None:
    with pytest.raises(ConfigError):
        JWKSCache.from_static({"keys": [public(RSA_1)], "when": object()})


def test_keyset_is_a_joserfc_keyset() -> None:
    cache = JWKSCache.from_static(jwks(public(RSA_1), public(EC_1)))
    assert isinstance(cache.keyset, KeySet)
    assert sorted(k.kid or "" for k in cache.keyset) == ["ec-1", "rsa-1"]


# -- bounds --------------------------------------------------------------------------------------
def test_too_many_keys_refused() -> None:
    many = [public(EC_1, kid=f"k{i}") for i in range(65)]
    with pytest.raises(ConfigError, match="more than 64"):
        JWKSCache.from_static(jwks(*many))
    assert len(JWKSCache.from_static(jwks(*many[:64])).pinned_keys()) == 64


def test_oversized_document_refused() -> None:
    doc = jwks(public(RSA_1))
    doc["padding"] = "x" * 2000
    with pytest.raises(ConfigError, match="exceeds"):
        JWKSCache.from_static(doc, max_document_bytes=1000)


@pytest.mark.parametrize(
    "garbage",
    [None, "keys", [], {}, {"keys": "x"}, {"keys": []}, {"keys": [1, "a", None]},
     {"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}]},
     {"keys": [{"kty": "RSA", "kid": ["x"]}]}],
    ids=repr,
)
def test_garbage_document_refused(garbage: Any) -> None:
    with pytest.raises(KeySourceError):
        parse_jwks(garbage, max_keys=64, max_document_bytes=100_000, source="test")


# -- refetching ----------------------------------------------------------------------------------
async def test_unknown_kid_refetches_once_per_cooldown() -> None:
    clock = FakeClock()
    source = Source(jwks(public(RSA_1)))
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=clock)
    for kid in ("a", "b", "c"):
        with pytest.raises(AuthenticationError, match="signing key unknown"):
            await cache.key_for(kid, "RS256")
    assert source.calls == 1
    clock.now += 59.9
    with pytest.raises(AuthenticationError):
        await cache.key_for("d", "RS256")
    assert source.calls == 1
    clock.now += 0.2
    with pytest.raises(AuthenticationError):
        await cache.key_for("e", "RS256")
    assert source.calls == 2


async def test_rotated_key_picked_up_and_withdrawn_key_dropped() -> None:
    clock = FakeClock()
    source = Source(jwks(public(RSA_2)))
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=clock)
    assert (await cache.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert (await cache.key_for("rsa-2", "RS256")).kid == "rsa-2"
    assert source.calls == 1
    clock.now += 61
    with pytest.raises(AuthenticationError):
        await cache.key_for("rsa-1", "RS256")


async def test_concurrent_misses_share_one_fetch() -> None:
    source = Source(jwks(public(RSA_1), public(RSA_2)))
    source.release = trio.Event()
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=FakeClock())
    found: list[str] = []

    async def look() -> None:
        found.append((await cache.key_for("rsa-2", "RS256")).kid)

    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(look)
        await trio.testing.wait_all_tasks_blocked()
        assert source.calls == 1
        source.release.set()
    assert found == ["rsa-2"] * 100
    assert source.calls == 1


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("boom"), OSError("unreachable"), None, "garbage", {"keys": []},
     {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, {"keys": [{}] * 1000}],
    ids=repr,
)
async def test_cached_keys_kept_when_refetch_fails(
    failure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(failure)
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=FakeClock())
    with pytest.raises(AuthenticationError):
        await cache.key_for("unknown", "RS256")
    assert source.calls == 1
    assert (await cache.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert not await cache.refresh()
    assert (await cache.key_for("rsa-1", "RS256")).kid == "rsa-1"
    assert any("keeping 1 cached key" in r.getMessage() for r in caplog.records)


async def test_hung_source_times_out_and_keeps_keys(autojump_clock: trio.abc.Clock) -> None:
    async def hang() -> Any:
        await trio.sleep_forever()

    cache = JWKSCache(hang, initial=jwks(public(RSA_1)), fetch_timeout=5.0, clock=FakeClock())
    with pytest.raises(AuthenticationError):
        await cache.key_for("unknown", "RS256")
    assert (await cache.key_for("rsa-1", "RS256")).kid == "rsa-1"


async def test_algorithm_mismatch_fails_without_refetch() -> None:
    source = Source(jwks(public(RSA_1)))
    cache = JWKSCache(source, initial=jwks(public(RSA_1), public(EC_1)), clock=FakeClock())
    for kid, alg in (("rsa-1", "PS256"), ("rsa-1", "ES256"), ("ec-1", "ES384"), ("ec-1", "RS256")):
        with pytest.raises(AuthenticationError, match="does not match key"):
            await cache.key_for(kid, alg)
    with pytest.raises(AuthenticationError, match="not allowed"):
        await cache.key_for("rsa-1", "HS256")
    assert source.calls == 0


async def test_same_kid_under_two_algorithms_pins_each() -> None:
    doc = jwks(public(RSA_1, kid="shared"), public(EC_1, kid="shared"))
    cache = JWKSCache(Source(doc), initial=doc, clock=FakeClock())
    assert (await cache.key_for("shared", "RS256")).key.key_type == "RSA"
    assert (await cache.key_for("shared", "ES256")).key.key_type == "EC"


async def test_missing_kid_needs_a_sole_key_for_the_algorithm() -> None:
    one = jwks(public(RSA_1), public(EC_1))
    cache = JWKSCache(Source(one), initial=one, clock=FakeClock())
    assert (await cache.key_for(None, "RS256")).kid == "rsa-1"
    two = jwks(public(RSA_1), public(RSA_2))
    cache = JWKSCache(Source(two), initial=two, clock=FakeClock())
    with pytest.raises(AuthenticationError):
        await cache.key_for(None, "RS256")


async def test_stale_cache_refreshed_on_lookup() -> None:
    clock = FakeClock()
    source = Source(jwks(public(RSA_2)))
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=clock, max_age=3600)
    await cache.key_for("rsa-1", "RS256")
    assert source.calls == 0
    clock.now += 3601
    with pytest.raises(AuthenticationError):
        await cache.key_for("rsa-1", "RS256")  # withdrawn at the provider
    assert source.calls == 1


@pytest.mark.parametrize(
    "kid", ["../../dev/null", "'; DROP TABLE keys; --", "k" * 10_240, "\x1b]0;pwned\x07\x1b[2J"],
    ids=lambda k: repr(k)[:20],
)
async def test_hostile_kid_logged_escaped(kid: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wardgate.auth")
    source = Source(jwks(public(RSA_1)))
    cache = JWKSCache(source, initial=jwks(public(RSA_1)), clock=FakeClock())
    with pytest.raises(AuthenticationError):
        await cache.key_for(kid, "RS256")
    assert source.calls <= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("no key for kid=" in m for m in messages)
    for message in messages:
        assert "\x1b" not in message and "\x07" not in message
        assert len(message) < 300


def test_escape_kid() -> None:
    assert escape_kid("abc") == "'abc'"
    assert escape_kid("\x1b[2J") == "'\\x1b[2J'"
    assert len(escape_kid("x" * 10_000)) == 64
    assert len(escape_kid("\x00" * 64)) == 64
    assert escape_kid(None) == "<NoneType>"
    assert escape_kid(["a"]) == "<list>"


# -- file source ---------------------------------------------------------------------------------
async def test_file_source_rereads_on_refetch(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(public(RSA_1))))
    cache = JWKSCache.from_file(path, clock=FakeClock())
    assert (await cache.key_for("rsa-1", "RS256")).kid == "rsa-1"
    path.write_text(json.dumps(jwks(public(RSA_1), public(RSA_2))))
    assert (await cache.key_for("rsa-2", "RS256")).kid == "rsa-2"


@pytest.mark.parametrize("content", [None, b"not json", b"[]", b'{"keys": []}', b"x" * 2_000_000])
def test_bad_file_source_is_a_config_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        JWKSCache.from_file(path)


# -- a real HTTP server on loopback --------------------------------------------------------------
@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    trickle: bool = False
    hang: bool = False
    declare_length: bool = True


class LocalServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                route = server.routes.get(self.path, Route(404, b"{}"))
                if route.hang:
                    server.stop.wait(10)
                    return
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.declare_length:  # else HTTP/1.0 close-delimited, size unknown upfront
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.trickle:
                    for byte in route.body:
                        if server.stop.wait(0.02):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def json(self, path: str, document: Any) -> None:
        self.routes[path] = Route(body=json.dumps(document).encode())


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.httpd.shutdown()
        srv.httpd.server_close()


def _discovery(server: LocalServer, issuer: str, prefix: str = "") -> None:
    server.json(f"{prefix}/.well-known/openid-configuration",
                {"issuer": issuer, "jwks_uri": f"{server.base}{prefix}/jwks.json",
                 "id_token_signing_alg_values_supported": ["RS256"]})
    server.json(f"{prefix}/jwks.json", jwks(public(RSA_1), public(EC_1)))


@pytest.mark.parametrize("prefix", ["", "/realms/prod"])
async def test_discovery_round_trip(server: LocalServer, prefix: str) -> None:
    issuer = server.base + prefix
    _discovery(server, issuer, prefix)
    keys = JWKSCache.from_discovery(issuer, http_get_json, clock=FakeClock())
    assert server.hits == Counter()  # nothing fetched at construction
    now = time.time()
    claims = {"iss": issuer, "aud": "wardgate", "sub": "alice", "exp": int(now) + 60,
              "groups": ["dba"]}
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, claims, RSA_1, algorithms=["RS256"])
    validator = TokenValidator(issuer=issuer, audience="wardgate", keys=keys)
    identity = await validator.validate(token)
    assert (identity.subject, identity.groups) == ("alice", frozenset({"dba"}))
    await validator.validate(token)
    assert server.hits == Counter({f"{prefix}/.well-known/openid-configuration": 1,
                                   f"{prefix}/jwks.json": 1})


async def test_discovery_with_mismatched_issuer_rejected(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    _discovery(server, "https://evil.example.test")
    keys = JWKSCache.from_discovery(server.base, http_get_json, clock=FakeClock())
    token = jwt.encode({"alg": "RS256", "kid": "rsa-1"},
                       {"iss": server.base, "aud": "a", "sub": "s", "exp": int(time.time()) + 60},
                       RSA_1, algorithms=["RS256"])
    validator = TokenValidator(issuer=server.base, audience="a", keys=keys)
    with pytest.raises(AuthenticationError, match="signing key unknown"):
        await validator.validate(token)
    assert not await keys.refresh()
    assert server.hits["/jwks.json"] == 0
    assert any("does not match configured" in r.getMessage() for r in caplog.records)


async def test_discovery_refuses_plain_http_jwks_elsewhere(
    server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.json("/.well-known/openid-configuration",
                {"issuer": server.base, "jwks_uri": "http://jwks.example.test/keys"})
    keys = JWKSCache.from_discovery(server.base, http_get_json, clock=FakeClock())
    assert not await keys.refresh()
    assert any("must use https" in r.getMessage() for r in caplog.records)


async def test_key_carrying_token_causes_no_request(server: LocalServer) -> None:
    _discovery(server, server.base)
    keys = JWKSCache.from_static(jwks(public(EC_1)))
    validator = TokenValidator(issuer=server.base, audience="a", keys=keys)
    claims = {"iss": server.base, "aud": "a", "sub": "s", "exp": int(time.time()) + 60}
    for name in ("jku", "x5u"):
        token = jwt.encode({"alg": "RS256", "kid": "rsa-1", name: f"{server.base}/jwks.json"},
                           claims, RSA_1, algorithms=["RS256"])
        with pytest.raises(AuthenticationError, match="header not allowed"):
            await validator.validate(token)
    assert server.hits == Counter()


@pytest.mark.parametrize(
    "url",
    ["http://idp.example.test", "ftp://idp.example.test", "https://idp.example.test/?x=1",
     "https://idp.example.test/#f", "idp.example.test", "", "https://"],
)
def test_discovery_needs_an_https_issuer(url: str) -> None:
    with pytest.raises(ConfigError):
        JWKSCache.from_discovery(url, http_get_json)


async def test_http_get_json_fetches_an_object(server: LocalServer) -> None:
    server.json("/doc", {"a": 1})
    assert await http_get_json(f"{server.base}/doc") == {"a": 1}


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(body=b"x" * 2000), "exceeds"),
        (Route(body=b"not json"), "not JSON"),
        (Route(body=b"[1, 2]"), "not a JSON object"),
        (Route(404, b"{}"), "HTTP 404"),
        (Route(302, b"", {"Location": "file:///etc/passwd"}), "HTTP 302"),
        (Route(204, b""), "status 204"),
    ],
    ids=lambda v: getattr(v, "status", v),
)
async def test_http_get_json_refuses(server: LocalServer, route: Route, message: str) -> None:
    server.routes["/r"] = route
    with pytest.raises(KeySourceError, match=message):
        await http_get_json(f"{server.base}/r", max_bytes=1000)


async def test_http_get_json_refuses_body_larger_than_declared_cap(server: LocalServer) -> None:
    # Content-Length honest but over the cap: refused before reading the body.
    server.routes["/big"] = Route(body=b"{" + b" " * 5000 + b"}")
    with pytest.raises(KeySourceError, match="5002 bytes exceeds"):
        await http_get_json(f"{server.base}/big", max_bytes=1000)


async def test_http_get_json_caps_an_undeclared_body(server: LocalServer) -> None:
    server.routes["/stream"] = Route(body=b"[" + b"0," * 5000 + b"0]", declare_length=False)
    with pytest.raises(KeySourceError, match="response exceeds 1000 bytes"):
        await http_get_json(f"{server.base}/stream", max_bytes=1000)


async def test_http_get_json_gives_up_on_a_trickling_server(server: LocalServer) -> None:
    server.routes["/slow"] = Route(body=b'{"a": "' + b"x" * 500 + b'"}', trickle=True)
    with pytest.raises(KeySourceError) as info:
        await http_get_json(f"{server.base}/slow", timeout=0.3)
    assert "longer than" in str(info.value)


async def test_http_get_json_gives_up_on_a_silent_server(server: LocalServer) -> None:
    server.routes["/hang"] = Route(hang=True)
    with pytest.raises(KeySourceError):
        await http_get_json(f"{server.base}/hang", timeout=0.3)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "data:,{}", "ftp://127.0.0.1/x"])
async def test_http_get_json_fetches_only_http(url: str) -> None:
    with pytest.raises(KeySourceError, match="only http"):
        await http_get_json(url)


def test_redirect_from_https_to_http_refused() -> None:
    handler = _NoDowngradeRedirect()
    request = urllib.request.Request("https://idp.example.test/jwks")
    with pytest.raises(urllib.error.HTTPError):
        handler.redirect_request(request, None, 302, "Found", {}, "http://idp.example.test/jwks")
    with pytest.raises(urllib.error.HTTPError):
        handler.redirect_request(request, None, 302, "Found", {}, "file:///etc/passwd")
    follow = handler.redirect_request(request, None, 302, "Found", {}, "https://cdn.example.test/k")
    assert follow is not None and follow.full_url == "https://cdn.example.test/k"


def test_okp_key_round_trip_via_static() -> None:
    okp = OKPKey.generate_key("Ed25519", parameters={"kid": "ed"})
    (pinned,) = JWKSCache.from_static(jwks(public(okp))).pinned_keys()
    assert (pinned.kid, pinned.alg) == ("ed", "EdDSA")
