"""Certificate and key files the configuration names are loaded when it is: a file that is not
PEM, cannot be read, or a key that is not the certificate's, is a ConfigError naming the config
file, the key and the PEM file; `wardgate config check` and `wardgate serve` say it in one line.
Also: rule `targets` globs matching no configured target are warned about, not refused."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.certs import build_self_signed, ensure_self_signed
from gateway.cli import main
from gateway.config import load_config, target_glob_warnings
from gateway.errors import ConfigError

PEMMaker = Callable[[Path], None]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[bytes, bytes]:
    cert, key = ensure_self_signed(tmp_path / "good")
    return cert.read_bytes(), key.read_bytes()


def write_conf(root: Path, text: str) -> Path:
    conf = root / "conf.d"
    conf.mkdir(exist_ok=True)
    (conf / "10-tls.toml").write_text(text)
    return conf


TLS = '[tls]\ncert_file = "gw.crt"\nkey_file = "gw.key"\n'


def _der(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _encrypted(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _other_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# (what to write as gw.crt, as gw.key) from the good (cert, key) -> key named, reason
BAD_PAIRS = [
    pytest.param(lambda c, k: (b"hello\n", k), "cert_file", "{crt} is not PEM (no -----BEGIN ...----- line)",
                 id="cert not PEM"),
    pytest.param(lambda c, k: (b"", k), "cert_file", "{crt} is empty", id="cert empty"),
    pytest.param(lambda c, k: (k, k), "cert_file", "{crt} holds a private key, not a certificate",
                 id="key where the cert belongs"),
    pytest.param(lambda c, k: (c.replace(b"MII", b"MIX", 1), k), "cert_file",
                 "{crt} holds a damaged certificate (", id="cert damaged"),
    pytest.param(lambda c, k: (c, c), "key_file", "{key} holds a certificate, not a private key",
                 id="cert where the key belongs"),
    pytest.param(lambda c, k: (c, _der(k)), "key_file",
                 "{key} is DER (binary), not PEM; convert it with `openssl pkey -inform der -in {key} "
                 "-out {key}.pem`", id="key DER"),
    pytest.param(lambda c, k: (c, _encrypted(k)), "key_file",
                 "{key} holds an encrypted private key; decrypt it (`openssl pkey -in {key} -out "
                 "NEW.key`, chmod 600 NEW.key) and name the decrypted file instead", id="key encrypted"),
    pytest.param(lambda c, k: (c, _other_key()), "key_file",
                 "{key} is not the key of the certificate in {crt}; use the private key that "
                 "certificate was issued for", id="key of another certificate"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "key", "reason"), BAD_PAIRS)
def test_an_unusable_tls_file_is_a_config_error_naming_file_and_key(
    tmp_path: Path,
    pair: tuple[bytes, bytes],
    make: Callable[[bytes, bytes], tuple[bytes, bytes]],
    key: str,
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert_bytes, key_bytes = make(*pair)
    (tmp_path / "gw.crt").write_bytes(cert_bytes)
    (tmp_path / "gw.key").write_bytes(key_bytes)
    conf = write_conf(tmp_path, TLS)
    expected = f"{conf}/10-tls.toml: [tls] {key}: " + reason.format(
        crt=tmp_path / "gw.crt", key=tmp_path / "gw.key"
    )
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ={})
    assert str(info.value).startswith(expected)
    assert info.value.key == f"[tls] {key}"
    # The same line from both commands that read the configuration first.
    for command in (["config", "check"], ["serve"]):
        assert main(["-c", str(conf), *command]) == 2
        out, err = capsys.readouterr()
        assert "Traceback" not in err and out == ""
        assert err.count("\n") == 1 and err.startswith(f"wardgate: error: {expected}")


def test_a_matching_pair_loads_also_from_one_combined_file(
    tmp_path: Path, pair: tuple[bytes, bytes]
) -> None:
    cert, key = pair
    (tmp_path / "gw.crt").write_bytes(key + cert)  # key and chain in one file, as some CAs ship
    (tmp_path / "gw.key").write_bytes(key)
    config = load_config(write_conf(tmp_path, TLS), environ={})
    assert config.tls.cert_file == tmp_path / "gw.crt"
    assert config.problems == ()


def test_an_expired_certificate_is_a_warning(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = build_self_signed(key, ["localhost"], not_before=old, validity=datetime.timedelta(days=30))
    (tmp_path / "gw.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "gw.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    conf = write_conf(tmp_path, TLS)
    config = load_config(conf, environ={})
    assert config.problems == (
        (f"{conf}/10-tls.toml: [tls] cert_file: the certificate in {tmp_path}/gw.crt expired on "
        "2020-01-31; clients that verify it refuse to connect until it is renewed"),
    )


TARGET = '[targets.pg]\nprotocol = "postgres"\naddress = "db:5432"\ntls = "{tls}"\nca_file = "ca.pem"\n'

BAD_CA = [
    (b"not a certificate\n", "{ca} is not PEM (no -----BEGIN ...----- line)"),
    (b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n",
     "{ca} holds a private key, not a certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
     "{ca} holds a damaged certificate ("),
]  # fmt: skip


@pytest.mark.parametrize(("content", "reason"), BAD_CA)
def test_a_target_ca_file_that_is_not_a_pem_certificate_is_named(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "ca.pem").write_bytes(content)
    conf = write_conf(tmp_path, TARGET.format(tls="verify-full"))
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ={})
    assert str(info.value).startswith(
        f"{conf}/10-tls.toml: [targets.pg] ca_file: " + reason.format(ca=tmp_path / "ca.pem")
    )


def test_a_ca_file_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").mkdir()
    conf = write_conf(tmp_path, TARGET.format(tls="verify-full"))
    with pytest.raises(ConfigError) as info:
        load_config(conf, environ={})
    assert str(info.value) == (
        f"{conf}/10-tls.toml: [targets.pg] ca_file: {tmp_path}/ca.pem is a directory; name a file"
    )


def test_a_ca_file_without_verify_full_is_a_warning(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    (tmp_path / "ca.pem").write_bytes(pair[0])
    conf = write_conf(tmp_path, TARGET.format(tls="require"))
    config = load_config(conf, environ={})
    assert config.targets["pg"].ca_file == str(tmp_path / "ca.pem")
    assert config.problems == (
        (f'{conf}/10-tls.toml: [targets.pg] ca_file: has no effect unless tls = "verify-full" '
        '(it is "require")'),
    )


# --- rule targets that match nothing --------------------------------------------------------

GLOBS = [
    (["pg-*"], []),
    (["pg-prod", "pg-stage"], []),
    (["pg_*"], ["pg_*"]),
    (["PG-*"], ["PG-*"]),  # target names are matched case-sensitively, as the policy does
    (["mysql-*", "pg-?rod"], ["mysql-*"]),
    (None, []),
]


@pytest.mark.parametrize(("patterns", "dead"), GLOBS)
def test_rule_target_globs_that_match_no_target_are_warned_about(
    tmp_path: Path, patterns: list[str] | None, dead: list[str]
) -> None:
    targets = "".join(
        f'[targets.{n}]\nprotocol = "postgres"\naddress = "db:5432"\n' for n in ("pg-prod", "pg-stage")
    )
    rule = '[[rules]]\nname = "r"\naction = "allow"\n'
    if patterns is not None:
        rule += "targets = [" + ", ".join(f'"{p}"' for p in patterns) + "]\n"
    conf = write_conf(tmp_path, targets + rule)
    config = load_config(conf, environ={})
    assert target_glob_warnings(config) == [
        f'{conf}/10-tls.toml: [[rules]] "r" targets: "{p}" matches no configured target '
        "(targets: pg-prod, pg-stage); check it for a typo"
        for p in dead
    ]
