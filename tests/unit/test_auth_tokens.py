"""TokenValidator against hand-built tokens: every attack in HOSTILE section B, byte for byte.

Tokens are assembled here (base64url header + payload + signature) rather than by a JWT library,
so each test states exactly what an attacker sends.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, OKPKey, RSAKey

from gateway.auth.jwks import JWKSCache
from gateway.auth.tokens import MAX_GROUPS, TokenValidator, b64url_decode, claim_at_path
from gateway.errors import AuthenticationError
from gateway.model import Identity

ISS = "https://idp.example.test/realms/prod"
AUD = "wardgate"
NOW = 1_800_000_000.0


# -- token construction ------------------------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seg(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


Signer = Callable[[bytes], bytes]


def rsa_signer(key: rsa.RSAPrivateKey, digest: hashes.HashAlgorithm | None = None) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), digest or hashes.SHA256())


def ec_signer(key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS wants raw r||s

    return sign


def ed_signer(key: ed25519.Ed25519PrivateKey) -> Signer:
    return key.sign


def hmac_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def make_token(header: dict[str, Any], payload: Any, signer: Signer | None) -> str:
    signing_input = f"{seg(header)}.{seg(payload)}"
    signature = signer(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "agent-7",
        "aud": AUD,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "groups": ["readers"],
    }
    for name, value in overrides.items():
        if value is _DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


_DROP = object()


# -- keys and the validator --------------------------------------------------------------------
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)

RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def public_jwk(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = dict(RSAKey.import_key(pem).as_dict())
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        jwk = dict(ECKey.import_key(pem).as_dict())
    else:
        jwk = dict(OKPKey.import_key(pem).as_dict())
    jwk.update(kid=kid, **extra)
    return jwk


JWKS = {
    "keys": [
        public_jwk(RSA_KEY, "rsa-1"),
        public_jwk(EC_KEY, "ec-1"),
        public_jwk(ED_KEY, "ed-1"),
    ]
}


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingFetch:
    """A JWKS source that counts how often it is asked; optionally held until released."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.calls = 0
        self.release: trio.Event | None = None

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.release is not None:
            await self.release.wait()
        await trio.lowlevel.checkpoint()
        return self.document


@pytest.fixture
def fetch() -> CountingFetch:
    return CountingFetch(JWKS)


@pytest.fixture
def mono() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def validator(fetch: CountingFetch, mono: FakeClock, wall: FakeClock) -> TokenValidator:
    keys = JWKSCache(fetch, initial=JWKS, clock=mono)
    return TokenValidator(issuer=ISS, audience=AUD, keys=keys, clock=wall, leeway=30.0)


def rs256(payload: Any, **header: Any) -> str:
    return make_token({"alg": "RS256", "kid": "rsa-1", **header}, payload, rsa_signer(RSA_KEY))


async def rejected(validator: TokenValidator, token: str) -> str:
    with pytest.raises(AuthenticationError) as info:
        await validator.validate(token)
    return str(info.value)


# -- the happy paths ---------------------------------------------------------------------------
async def test_valid_rs256_token_yields_identity(validator: TokenValidator) -> None:
    identity = await validator.validate(rs256(claims()))
    assert identity == Identity(
        subject="agent-7",
        groups=frozenset({"readers"}),
        expires_at=NOW + 300,
        issuer=ISS,
        method="oidc",
    )
    assert identity.claims["aud"] == AUD


async def test_valid_es256_and_eddsa_tokens(validator: TokenValidator) -> None:
    es = make_token({"alg": "ES256", "kid": "ec-1"}, claims(), ec_signer(EC_KEY))
    ed = make_token({"alg": "EdDSA", "kid": "ed-1"}, claims(sub="ed"), ed_signer(ED_KEY))
    assert (await validator.validate(es)).subject == "agent-7"
    assert (await validator.validate(ed)).subject == "ed"


async def test_audience_list_containing_ours_accepted(validator: TokenValidator) -> None:
    identity = await validator.validate(rs256(claims(aud=["other", AUD])))
    assert identity.subject == "agent-7"


async def test_clock_skew_within_leeway_accepted(validator: TokenValidator) -> None:
    token = rs256(claims(exp=NOW - 20, nbf=NOW + 20, iat=NOW + 20))
    assert (await validator.validate(token)).expires_at == NOW - 20


# -- B.5 alg none, B.7 HMAC with the public key ------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
async def test_alg_none_with_empty_signature_rejected(
    validator: TokenValidator, fetch: CountingFetch, alg: str
) -> None:
    token = f"{seg({'alg': alg, 'kid': 'rsa-1'})}.{seg(claims())}."
    assert await rejected(validator, token) in {"token malformed", "token algorithm not allowed"}
    # and with a non-empty junk signature, so only the alg decides
    token = f"{seg({'alg': alg, 'kid': 'rsa-1'})}.{seg(claims())}.AAAA"
    assert await rejected(validator, token) == "token algorithm not allowed"
    assert fetch.calls == 0


async def test_missing_alg_rejected(validator: TokenValidator) -> None:
    token = make_token({"kid": "rsa-1"}, claims(), rsa_signer(RSA_KEY))
    assert await rejected(validator, token) == "token algorithm not allowed"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hs256_keyed_with_rsa_public_key_rejected(
    validator: TokenValidator, fetch: CountingFetch, alg: str
) -> None:
    # CVE-2024-37568: a verifier that lets the token choose HMAC uses the public PEM as secret.
    token = make_token({"alg": alg, "kid": "rsa-1"}, claims(), hmac_signer(RSA_PUBLIC_PEM))
    assert await rejected(validator, token) == "token algorithm not allowed"
    assert fetch.calls == 0


async def test_rsa_algorithm_other_than_pinned_rejected(
    validator: TokenValidator, fetch: CountingFetch
) -> None:
    # rsa-1 has no "alg" in the JWKS, so it is pinned to RS256; RS384/PS256 are refused for it.
    token = make_token(
        {"alg": "RS384", "kid": "rsa-1"}, claims(), rsa_signer(RSA_KEY, hashes.SHA384())
    )
    assert await rejected(validator, token) == "token algorithm does not match key"
    assert fetch.calls == 0


async def test_es256_token_naming_rsa_kid_rejected(validator: TokenValidator) -> None:
    token = make_token({"alg": "ES256", "kid": "rsa-1"}, claims(), ec_signer(EC_KEY))
    assert await rejected(validator, token) == "token algorithm does not match key"


# -- B.6 keys carried or pointed at by the token ----------------------------------------------
def _attacker_certificate() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ATTACKER_RSA.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ATTACKER_RSA, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


KEY_CARRYING_HEADERS: dict[str, Any] = {
    "jwk": public_jwk(ATTACKER_RSA, "evil"),
    "jku": "https://attacker.example/jwks.json",
    "x5u": "https://attacker.example/cert.pem",
    "x5c": [_attacker_certificate()],
}


@pytest.mark.parametrize("name", sorted(KEY_CARRYING_HEADERS))
@pytest.mark.parametrize("kid", ["evil", "rsa-1", None])
async def test_key_carrying_header_rejected_without_fetch(
    validator: TokenValidator, fetch: CountingFetch, name: str, kid: str | None
) -> None:
    header: dict[str, Any] = {"alg": "RS256", name: KEY_CARRYING_HEADERS[name]}
    if kid is not None:
        header["kid"] = kid
    token = make_token(header, claims(groups=["admins"]), rsa_signer(ATTACKER_RSA))
    assert await rejected(validator, token) == "token header not allowed"
    assert fetch.calls == 0


async def test_key_carrying_header_rejected_even_when_signed_by_real_key(
    validator: TokenValidator, fetch: CountingFetch
) -> None:
    # Refusal is by presence: a header we never read cannot be made harmless by a good signature.
    token = rs256(claims(), jku="https://idp.example.test/jwks")
    assert await rejected(validator, token) == "token header not allowed"
    assert fetch.calls == 0


# -- B.9 crit --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["http://example.invalid/ext"], "http://example.invalid/ext": True},
        {"crit": ["exp"], "exp": NOW + 10},
        {"crit": []},
        {"crit": ["b64"], "b64": False},
        {"b64": False},
    ],
)
async def test_unknown_crit_header_rejected(
    validator: TokenValidator, extra: dict[str, Any]
) -> None:
    assert await rejected(validator, rs256(claims(), **extra)) == (
        "token critical header not supported"
    )


async def test_benign_unregistered_header_accepted(validator: TokenValidator) -> None:
    identity = await validator.validate(rs256(claims(), typ="at+jwt", nonce="abc"))
    assert identity.subject == "agent-7"


# -- B.8 claims --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": NOW - 31}, "token expired"),
        ({"exp": NOW - 30}, "token expired"),
        ({"exp": _DROP}, "token has no expiry"),
        ({"exp": None}, "token has no expiry"),
        ({"exp": str(NOW + 300)}, "token claim exp invalid"),
        ({"exp": True}, "token claim exp invalid"),
        ({"exp": 10**400}, "token claim exp invalid"),
        ({"nbf": NOW + 31}, "token not yet valid"),
        ({"nbf": "soon"}, "token claim nbf invalid"),
        ({"iat": NOW + 31}, "token issued in the future"),
        ({"aud": "someone-else"}, "token audience mismatch"),
        ({"aud": ["a", "b"]}, "token audience mismatch"),
        ({"aud": []}, "token audience mismatch"),
        ({"aud": None}, "token audience mismatch"),
        ({"aud": {"wardgate": True}}, "token audience mismatch"),
        ({"aud": _DROP}, "token audience missing"),
        ({"iss": "https://evil.example.test/realms/prod"}, "token issuer mismatch"),
        ({"iss": ISS + "/"}, "token issuer mismatch"),
        ({"iss": None}, "token issuer mismatch"),
        ({"iss": _DROP}, "token issuer mismatch"),
        ({"iss": [ISS]}, "token issuer mismatch"),
        ({"sub": _DROP}, "token subject invalid"),
        ({"sub": ""}, "token subject invalid"),
        ({"sub": 42}, "token subject invalid"),
        ({"sub": "x" * 257}, "token subject invalid"),
        ({"sub": "alice\x1b[2J"}, "token subject invalid"),
    ],
    ids=lambda v: repr(v)[:40],
)
async def test_claims_with_good_signature_rejected(
    validator: TokenValidator, overrides: dict[str, Any], message: str
) -> None:
    assert await rejected(validator, rs256(claims(**overrides))) == message


async def test_exp_at_float_infinity_rejected(validator: TokenValidator) -> None:
    # Python's json reads 1e999 as inf; a token that never expires is not a token we accept.
    header = seg({"alg": "RS256", "kid": "rsa-1"})
    body = json.dumps(claims()).replace(str(NOW + 300), "1e999").encode()
    signing_input = f"{header}.{b64(body)}"
    token = f"{signing_input}.{b64(rsa_signer(RSA_KEY)(signing_input.encode()))}"
    assert await rejected(validator, token) == "token claim exp invalid"


async def test_expiry_follows_injected_clock(validator: TokenValidator, wall: FakeClock) -> None:
    token = rs256(claims(exp=NOW + 60))
    await validator.validate(token)
    wall.now = NOW + 60 + 29
    await validator.validate(token)
    wall.now = NOW + 60 + 30
    assert await rejected(validator, token) == "token expired"


# -- signatures --------------------------------------------------------------------------------
async def test_signature_from_other_key_rejected(validator: TokenValidator) -> None:
    token = make_token({"alg": "RS256", "kid": "rsa-1"}, claims(), rsa_signer(ATTACKER_RSA))
    assert await rejected(validator, token) == "token signature invalid"


async def test_payload_swapped_under_good_signature_rejected(validator: TokenValidator) -> None:
    good = rs256(claims())
    header, _, signature = good.split(".")
    forged = f"{header}.{seg(claims(groups=['admins']))}.{signature}"
    assert await rejected(validator, forged) == "token signature invalid"


async def test_every_single_character_change_rejected(validator: TokenValidator) -> None:
    # OpenSSH-regress style: no one-character edit of a valid token may still validate.
    token = make_token({"alg": "ES256", "kid": "ec-1"}, claims(), ec_signer(EC_KEY))
    await validator.validate(token)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        replacement = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
        mutated = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(AuthenticationError):
            await validator.validate(mutated)


DUPLICATE_ALG = b'{"alg":"none","alg":"RS256"}'
NAN_KID = b'{"alg":"RS256","kid":NaN}'


# -- shape and size ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # a JWE: encrypted tokens are not accepted
        f"{seg({'alg': 'RS256'})}..c2ln",
        f"{seg({'alg': 'RS256'})}.{seg({})}.",
        f"{seg({'alg': 'RS256'})}=.{seg({})}.c2ln",
        f"{seg({'alg': 'RS256'})}.{seg({})}.c2l+",
        f"{b64(b'not json')}.{seg({})}.c2ln",
        f"{b64(b'[1,2]')}.{seg({})}.c2ln",
        f"{b64(bytes([0xff, 0xfe]))}.{seg({})}.c2ln",
        f"{b64(DUPLICATE_ALG)}.{seg({})}.c2ln",
        f"{b64(NAN_KID)}.{seg({})}.c2ln",
        f"{b64(b'[' * 2000)}.{seg({})}.c2ln",
        "\u00e9.\u00e9.\u00e9",
        " " + f"{seg({'alg': 'RS256'})}.{seg({})}.c2ln",
    ],
)
async def test_malformed_token_rejected(
    validator: TokenValidator, fetch: CountingFetch, token: str
) -> None:
    assert await rejected(validator, token) == "token malformed"
    assert fetch.calls == 0


async def test_non_canonical_base64_rejected() -> None:
    # "QQ" and "QR" both decode to b"A" with a lenient decoder.
    assert b64url_decode("QQ") == b"A"
    with pytest.raises(ValueError):
        b64url_decode("QR")


async def test_token_over_size_limit_rejected(
    validator: TokenValidator, fetch: CountingFetch
) -> None:
    token = rs256(claims(padding="x" * 20_000))
    assert await rejected(validator, token) == "token too large"
    assert fetch.calls == 0


async def test_payload_not_a_json_object_rejected(validator: TokenValidator) -> None:
    for body in (b"[1]", b'"sub"', b"{}garbage", b'{"sub":"a","sub":"admin"}', b"[" * 5000):
        signing_input = f"{seg({'alg': 'RS256', 'kid': 'rsa-1'})}.{b64(body)}"
        token = f"{signing_input}.{b64(rsa_signer(RSA_KEY)(signing_input.encode()))}"
        if len(token) <= validator.max_token_bytes:
            assert await rejected(validator, token) == "token malformed"


# -- B.10 kid ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kid", "message"),
    [
        ("../../dev/null", "token signing key unknown"),
        ("' OR 1=1 --", "token signing key unknown"),
        ("\x1b[31mred\x1b[0m\r\n", "token signing key unknown"),
        ("k" * 300, "token key id invalid"),
        ("k" * 10_240, "token header too large"),
        ("", "token key id invalid"),
        (7, "token key id invalid"),
        (["rsa-1"], "token key id invalid"),
    ],
    ids=lambda v: repr(v)[:24],
)
async def test_hostile_kid_handled(
    validator: TokenValidator,
    fetch: CountingFetch,
    caplog: pytest.LogCaptureFixture,
    kid: Any,
    message: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wardgate.auth")
    token = make_token({"alg": "RS256", "kid": kid}, claims(), rsa_signer(RSA_KEY))
    assert await rejected(validator, token) == message
    assert fetch.calls <= 1
    for record in caplog.records:
        text = record.getMessage()
        assert "\x1b" not in text and "\r" not in text and "\n" not in text
        assert len(text) < 400


async def test_random_kid_flood_causes_one_refetch_per_cooldown(
    validator: TokenValidator, fetch: CountingFetch, mono: FakeClock
) -> None:
    fetch.release = trio.Event()
    good = rs256(claims())
    outcomes: dict[str, int] = {"rejected": 0, "valid": 0}

    async def attempt(token: str) -> None:
        try:
            await validator.validate(token)
        except AuthenticationError:
            outcomes["rejected"] += 1
        else:
            outcomes["valid"] += 1

    def random_kid_token() -> str:
        return make_token({"alg": "RS256", "kid": secrets.token_hex(8)}, claims(), lambda _: b"x")

    flood = [random_kid_token() for _ in range(1000)]
    async with trio.open_nursery() as nursery:
        for token in flood:
            nursery.start_soon(attempt, token)
        for _ in range(10):
            nursery.start_soon(attempt, good)  # known kid: never waits for the refetch
        await trio.testing.wait_all_tasks_blocked()
        assert outcomes["valid"] == 10
        fetch.release.set()
    assert fetch.calls == 1
    assert outcomes == {"rejected": 1000, "valid": 10}

    # Still inside the cooldown: another flood costs nothing, and good tokens still pass.
    mono.now += 59
    fetch.release = None
    async with trio.open_nursery() as nursery:
        for token in flood[:200]:
            nursery.start_soon(attempt, token)
    assert fetch.calls == 1
    assert (await validator.validate(good)).subject == "agent-7"

    mono.now += 2  # cooldown over: one more refetch is allowed
    with pytest.raises(AuthenticationError):
        await validator.validate(flood[0])
    assert fetch.calls == 2


# -- B.12 groups -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("groups_claim", "payload_extra", "expected"),
    [
        ("groups", {"groups": ["dba", "readers"]}, {"dba", "readers"}),
        ("groups", {"groups": "dba"}, {"dba"}),
        ("groups", {"groups": _DROP}, set()),
        ("groups", {"groups": None}, set()),
        ("groups", {"groups": {"dba": True}}, set()),
        ("groups", {"groups": ["dba", 1, None, ["admins"], {"a": 1}, True]}, {"dba"}),
        ("groups", {"groups": ["Admins", "admins", "ADMINS"]}, {"Admins", "admins", "ADMINS"}),
        ("groups", {"groups": ["x"] * MAX_GROUPS}, {"x"}),
        ("realm_access.roles", {"realm_access": {"roles": ["dba"]}}, {"dba"}),
        ("realm_access.roles", {"realm_access": ["dba"]}, set()),
        ("realm_access.roles", {}, set()),
        ("https://example.test/groups", {"https://example.test/groups": ["ops"]}, {"ops"}),
        ("roles", {"roles": ["r"], "groups": ["g"]}, {"r"}),
    ],
    ids=lambda v: repr(v)[:30],
)
async def test_groups_mapping_is_deterministic(
    fetch: CountingFetch,
    mono: FakeClock,
    wall: FakeClock,
    groups_claim: str,
    payload_extra: dict[str, Any],
    expected: set[str],
) -> None:
    keys = JWKSCache(fetch, initial=JWKS, clock=mono)
    validator = TokenValidator(
        issuer=ISS, audience=AUD, keys=keys, groups_claim=groups_claim, clock=wall
    )
    identity = await validator.validate(rs256(claims(**payload_extra)))
    assert identity.groups == frozenset(expected)


async def test_too_many_groups_rejected(validator: TokenValidator) -> None:
    token = rs256(claims(groups=[f"g{i}" for i in range(500)]))
    assert await rejected(validator, token) == "token has too many groups"
    token = rs256(claims(groups=[f"g{i}" for i in range(MAX_GROUPS + 1)]))
    assert await rejected(validator, token) == "token has too many groups"


def test_claim_path_prefers_literal_name() -> None:
    data = {"a.b": "literal", "a": {"b": "nested"}}
    assert claim_at_path(data, "a.b") == "literal"
    assert claim_at_path({"a": {"b": "nested"}}, "a.b") == "nested"
    assert claim_at_path({"a": "str"}, "a.b") is None


# -- B.11 no state carried between attempts ---------------------------------------------------
async def test_failed_admin_attempt_leaves_no_trace(validator: TokenValidator) -> None:
    before = dict(vars(validator))
    admin_forged = make_token(
        {"alg": "RS256", "kid": "rsa-1"},
        claims(sub="root", groups=["admins"]),
        rsa_signer(ATTACKER_RSA),
    )
    admin_expired = rs256(claims(sub="root", groups=["admins"], exp=NOW - 3600))
    for bad in (admin_forged, admin_expired):
        await rejected(validator, bad)
        identity = await validator.validate(rs256(claims(sub="intern", groups=["readers"])))
        assert identity.subject == "intern"
        assert identity.groups == frozenset({"readers"})
    assert vars(validator) == before


async def test_returned_claims_do_not_alias_between_calls(validator: TokenValidator) -> None:
    token = rs256(claims())
    first = await validator.validate(token)
    first.claims["groups"].append("admins")
    second = await validator.validate(token)
    assert second.groups == frozenset({"readers"})
    assert second.claims["groups"] == ["readers"]


# -- fuzz: only AuthenticationError may escape --------------------------------------------------
_TOKENISH = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\u00e9",
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(header=st.dictionaries(st.text(max_size=8), st.none() | st.text(max_size=8) | st.integers()),
       tail=_TOKENISH)
def test_fuzzed_tokens_raise_only_authentication_error(
    header: dict[str, Any], tail: str
) -> None:
    keys = JWKSCache(CountingFetch(JWKS), initial=JWKS, clock=FakeClock(0.0))
    validator = TokenValidator(issuer=ISS, audience=AUD, keys=keys, clock=FakeClock(NOW))

    async def run() -> None:
        for token in (tail, f"{seg(header)}.{tail}", f"{seg({'alg': 'RS256', **header})}.{tail}"):
            with pytest.raises(AuthenticationError):
                await validator.validate(token)

    trio.run(run)
