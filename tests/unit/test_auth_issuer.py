"""EmbeddedIssuer: key custody in the data dir, minted claims, and the round trip through
the same TokenValidator that checks identity-provider tokens; plus build_validator wiring."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import AuthSettings, EmbeddedIssuer, JWKSCache, TokenValidator, build_validator
from gateway.auth.issuer import KEY_FILE, _create_key_file
from gateway.errors import AuthenticationError, ConfigError

NOW = 1_800_000_000.0
AUD = "wardgate"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decode_segment(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.fixture
def issuer(tmp_path: Path) -> EmbeddedIssuer:
    return EmbeddedIssuer.load_or_create(tmp_path)


def validator_for(issuer: EmbeddedIssuer, clock: FakeClock, leeway: float = 0.0) -> TokenValidator:
    keys = JWKSCache.from_static(issuer.jwks())
    return TokenValidator(issuer=issuer.issuer, audience=AUD, keys=keys, clock=clock, leeway=leeway)


# -- key custody -------------------------------------------------------------------------------
def test_key_created_private_and_p256(tmp_path: Path, issuer: EmbeddedIssuer) -> None:
    path = tmp_path / KEY_FILE
    assert path == tmp_path / "keys" / "issuer-es256.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert os.listdir(path.parent) == ["issuer-es256.pem"]  # no temporary file left behind


def test_key_reused_across_load_or_create(tmp_path: Path, issuer: EmbeddedIssuer) -> None:
    before = (tmp_path / KEY_FILE).read_bytes()
    again = EmbeddedIssuer.load_or_create(tmp_path)
    assert again.key_id == issuer.key_id
    assert again.jwks() == issuer.jwks()
    assert (tmp_path / KEY_FILE).read_bytes() == before


async def test_token_from_one_instance_verifies_with_the_next(
    tmp_path: Path, issuer: EmbeddedIssuer
) -> None:
    token = issuer.mint(subject="alice", groups=["dba"], ttl=60, audience=AUD, now=NOW)
    restarted = EmbeddedIssuer.load_or_create(tmp_path)
    identity = await validator_for(restarted, FakeClock(NOW)).validate(token)
    assert identity.subject == "alice"


def test_racing_creator_does_not_replace_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    _create_key_file(path)
    first = path.read_bytes()
    _create_key_file(path)  # a second process losing the race
    assert path.read_bytes() == first
    assert os.listdir(tmp_path) == ["k.pem"]


def test_key_id_is_rfc7638_thumbprint(issuer: EmbeddedIssuer) -> None:
    (jwk,) = issuer.jwks()["keys"]
    # RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]},
        separators=(",", ":"), sort_keys=True,
    ).encode()
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
    assert issuer.key_id == expected == jwk["kid"]


def test_jwks_is_public_only(issuer: EmbeddedIssuer) -> None:
    (jwk,) = issuer.jwks()["keys"]
    assert "d" not in jwk
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")


def test_world_readable_key_refused(tmp_path: Path, issuer: EmbeddedIssuer) -> None:
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        EmbeddedIssuer.load_or_create(tmp_path)


def test_symlinked_key_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.pem"
    target.write_bytes(b"")
    (tmp_path / "keys").mkdir()
    (tmp_path / KEY_FILE).symlink_to(target)
    with pytest.raises(ConfigError):
        EmbeddedIssuer.load_or_create(tmp_path)


def _write_key(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "keys").mkdir()
    path = tmp_path / KEY_FILE
    path.write_bytes(data)
    path.chmod(0o600)


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"garbage",
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        lambda: ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw")),
        lambda: b"x" * 100_000,
    ],
    ids=["garbage", "rsa", "p384", "encrypted", "huge"],
)
def test_wrong_key_file_is_a_config_error(tmp_path: Path, make: Any) -> None:
    _write_key(tmp_path, make())
    with pytest.raises(ConfigError, match="issuer-es256.pem"):
        EmbeddedIssuer.load_or_create(tmp_path)


def test_unwritable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError):
        EmbeddedIssuer.load_or_create(blocker)


# -- minting -----------------------------------------------------------------------------------
def test_minted_token_carries_the_documented_claims(issuer: EmbeddedIssuer) -> None:
    token = issuer.mint(subject="alice", groups=["dba", "ops", "dba"], ttl=90.5, audience=AUD,
                        now=NOW + 0.7, extra={"email": "a@example.test"})
    header, payload, _ = token.split(".")
    assert decode_segment(header) == {"alg": "ES256", "kid": issuer.key_id, "typ": "JWT"}
    claims = decode_segment(payload)
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) >= 16
    assert claims == {
        "iss": "urn:wardgate:embedded", "sub": "alice", "aud": AUD,
        "iat": int(NOW), "nbf": int(NOW), "exp": int(NOW) + 91,
        "groups": ["dba", "ops"], "email": "a@example.test",
    }


def test_each_token_has_its_own_jti(issuer: EmbeddedIssuer) -> None:
    tokens = [issuer.mint(subject="a", groups=[], ttl=60, audience=AUD, now=NOW)
              for _ in range(20)]
    assert len({decode_segment(t.split(".")[1])["jti"] for t in tokens}) == 20


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": ""},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": float("nan")},
        {"ttl": float("inf")},
        {"audience": ""},
        {"groups": ["ok", ""]},
        {"groups": ["ok", 3]},
        {"groups": [f"g{i}" for i in range(257)]},
        {"extra": {"sub": "root"}},
        {"extra": {"groups": ["admins"]}},
        {"extra": {"exp": 9_999_999_999}},
    ],
    ids=lambda v: repr(v)[:30],
)
def test_mint_refuses_bad_arguments(issuer: EmbeddedIssuer, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"subject": "a", "groups": [], "ttl": 60, "audience": AUD, "now": NOW}
    args.update(kwargs)
    with pytest.raises(ValueError):
        issuer.mint(**args)


def test_mint_refuses_a_bare_string_as_groups(issuer: EmbeddedIssuer) -> None:
    with pytest.raises(TypeError):
        issuer.mint(subject="a", groups="admins", ttl=60, audience=AUD)


# -- round trip --------------------------------------------------------------------------------
async def test_mint_then_validate(issuer: EmbeddedIssuer) -> None:
    token = issuer.mint(subject="alice", groups=["dba"], ttl=300, audience=AUD, now=NOW)
    identity = await validator_for(issuer, FakeClock(NOW)).validate(token)
    assert identity.subject == "alice"
    assert identity.groups == frozenset({"dba"})
    assert identity.issuer == "urn:wardgate:embedded"
    assert identity.expires_at == NOW + 300
    assert identity.method == "oidc"


async def test_ttl_respected_with_injected_clock(issuer: EmbeddedIssuer) -> None:
    clock = FakeClock(NOW)
    validator = validator_for(issuer, clock, leeway=0.0)
    token = issuer.mint(subject="alice", groups=[], ttl=60, audience=AUD, now=NOW)
    clock.now = NOW + 59.9
    await validator.validate(token)
    clock.now = NOW + 60
    with pytest.raises(AuthenticationError, match="token expired"):
        await validator.validate(token)


async def test_token_for_other_audience_rejected(issuer: EmbeddedIssuer) -> None:
    token = issuer.mint(subject="alice", groups=[], ttl=60, audience="other", now=NOW)
    with pytest.raises(AuthenticationError, match="audience mismatch"):
        await validator_for(issuer, FakeClock(NOW)).validate(token)


async def test_token_from_another_data_dir_rejected(tmp_path: Path, issuer: EmbeddedIssuer) -> None:
    stranger = EmbeddedIssuer.load_or_create(tmp_path / "other")
    token = stranger.mint(subject="alice", groups=["admins"], ttl=60, audience=AUD, now=NOW)
    with pytest.raises(AuthenticationError, match="signing key unknown"):
        await validator_for(issuer, FakeClock(NOW)).validate(token)


# -- build_validator ---------------------------------------------------------------------------
async def test_build_validator_embedded(tmp_path: Path) -> None:
    validator, issuer = build_validator(AuthSettings(issuer="embedded", audience=AUD), tmp_path)
    assert issuer is not None
    assert validator.issuer == issuer.issuer == "urn:wardgate:embedded"
    assert (tmp_path / KEY_FILE).exists()
    token = issuer.mint(subject="bob", groups=["readers"], ttl=60, audience=AUD)
    assert (await validator.validate(token)).groups == frozenset({"readers"})


async def test_build_validator_with_jwks_file(tmp_path: Path) -> None:
    idp = EmbeddedIssuer.load_or_create(tmp_path / "idp", issuer="https://idp.example.test")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(idp.jwks()))
    settings = AuthSettings(issuer="https://idp.example.test", audience=AUD,
                            groups_claim="realm_access.roles", jwks_file=jwks_file, leeway=5)
    validator, issuer = build_validator(settings, tmp_path)
    assert issuer is None
    assert not (tmp_path / KEY_FILE).exists()
    token = idp.mint(subject="carol", groups=[], ttl=60, audience=AUD,
                     extra={"realm_access": {"roles": ["ops"]}})
    identity = await validator.validate(token)
    assert (identity.subject, identity.groups) == ("carol", frozenset({"ops"}))


def test_build_validator_discovery_fetches_nothing_yet(tmp_path: Path) -> None:
    validator, issuer = build_validator(
        AuthSettings(issuer="https://idp.example.test/realms/prod", audience=AUD), tmp_path
    )
    assert issuer is None
    assert validator.keys.fetch_count == 0


@pytest.mark.parametrize(
    "settings",
    [
        AuthSettings(issuer="http://idp.example.test", audience=AUD),
        AuthSettings(issuer="", audience=AUD),
        AuthSettings(issuer="embedded", audience=""),
        AuthSettings(issuer="embedded", audience=AUD, groups_claim=""),
        AuthSettings(issuer="embedded", audience=AUD, leeway=-1),
        AuthSettings(issuer="embedded", audience=AUD, leeway=float("nan")),
        AuthSettings(issuer="https://idp.example.test", audience=AUD,
                     jwks_file=Path("/nonexistent/jwks.json")),
    ],
    ids=lambda s: f"{s.issuer}|{s.audience}|{s.groups_claim}|{s.leeway}|{s.jwks_file}",
)
def test_build_validator_refuses_bad_settings(tmp_path: Path, settings: AuthSettings) -> None:
    with pytest.raises(ConfigError):
        build_validator(settings, tmp_path)
