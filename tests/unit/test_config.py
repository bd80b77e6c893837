"""Loading conf.d: merge order, defaults, secrets, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.certs import ensure_self_signed
from gateway.config import (
    DEFAULT_DETECTORS,
    Config,
    LimitsConfig,
    check_detectors,
    check_protocols,
    load_config,
    resolve_config_dir,
)
from gateway.errors import ConfigError
from gateway.model import Action

REPO = Path(__file__).resolve().parents[2]

MINIMAL_LISTENER = """
[listeners.pg]
protocol = "postgres"
bind = "127.0.0.1:6432"
"""


def write_conf(root: Path, files: dict[str, str]) -> Path:
    conf = root / "conf.d"
    conf.mkdir(exist_ok=True)
    for name, text in files.items():
        (conf / name).write_text(text, encoding="utf-8")
    return conf


def load(root: Path, files: dict[str, str], environ: dict[str, str] | None = None) -> Config:
    return load_config(write_conf(root, files), environ=environ or {})


def load_error(root: Path, files: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load(root, files)
    return str(info.value)


# --- the shipped default -------------------------------------------------------------------


def test_shipped_conf_d_loads_cleanly_on_a_fresh_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_config(Path("conf.d"), environ={})

    assert config.data_dir == REPO / "var"
    assert config.auth.issuer == "embedded"
    listener = config.listeners["pg"]
    assert (listener.protocol, listener.address, listener.tls) == (
        "postgres",
        "127.0.0.1:6432",
        "required",
    )
    target = config.targets["pg-demo"]
    assert (target.host, target.port, target.database, target.user, target.tls) == (
        "127.0.0.1",
        5432,
        "app",
        "app_reader",
        "prefer",
    )
    assert [r.name for r in config.rules] == [
        "agents may read",
        "agents keep search_path",
        "agents may write with a grant",
        "destructive changes need review",
        "no ddl for agents",
        "dbas may do anything",
    ]
    assert config.rules[1].flags == {"search_path"}
    assert config.rules[2].grant == "write"
    assert config.policy_default is Action.DENY
    assert config.masking.columns == ("*password*", "*ssn*", "*secret*")
    assert config.masking.detectors == DEFAULT_DETECTORS
    # Without the variable the gateway still starts, with the password unset and a warning.
    assert target.password is None
    assert len(config.problems) == 1
    assert "30-targets.toml: [targets.pg-demo] password_env" in config.problems[0]
    assert "PG_DEMO_PASSWORD" in config.problems[0]
    check_protocols(config, {"postgres"})


def test_shipped_conf_d_takes_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    config = load_config(Path("conf.d"), environ={"PG_DEMO_PASSWORD": "s3cret"})
    assert config.targets["pg-demo"].password == "s3cret"
    assert config.problems == ()
    assert "s3cret" not in repr(config)


# --- merging -------------------------------------------------------------------------------


def test_later_file_overrides_keys_and_rules_concatenate(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "20-listeners.toml": MINIMAL_LISTENER + 'tls = "optional"\n',
            "50-rules.toml": '[[rules]]\nname = "a"\naction = "allow"\n'
            '[[rules]]\nname = "b"\naction = "deny"\n',
            "90-local.toml": '[listeners.pg]\nbind = "0.0.0.0:7000"\n'
            '[[rules]]\nname = "c"\naction = "review"\n',
        },
    )
    listener = config.listeners["pg"]
    assert (listener.host, listener.port) == ("0.0.0.0", 7000)  # overridden by 90-local
    assert (listener.protocol, listener.tls) == ("postgres", "optional")  # kept from 20-listeners
    assert [(r.name, r.source.rsplit("/", 1)[-1]) for r in config.rules] == [
        ("a", "50-rules.toml"),
        ("b", "50-rules.toml"),
        ("c", "90-local.toml"),
    ]
    assert str(config.origin("listeners", "pg", "bind")).endswith("90-local.toml")
    assert str(config.origin("listeners", "pg", "protocol")).endswith("20-listeners.toml")
    # A key that was never set is attributed to the file that opened its table.
    assert str(config.origin("listeners", "pg", "options")).endswith("20-listeners.toml")


def test_files_are_read_in_lexical_order_of_names(tmp_path: Path) -> None:
    # "10-" sorts before "9-": lexical, not numeric, as documented.
    config = load(
        tmp_path,
        {
            "9-b.toml": '[gateway]\ndata_dir = "nine"\n',
            "10-a.toml": '[gateway]\ndata_dir = "ten"\n',
        },
    )
    assert config.data_dir.name == "nine"
    assert [Path(f).name for f in config.files] == ["10-a.toml", "9-b.toml"]


def test_only_toml_files_directly_in_the_directory_are_read(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, {"10-gateway.toml": "[gateway]\n"})
    (conf / "20-broken.toml.bak").write_text("not toml [")
    (conf / ".#20-lock.toml").write_text("not toml [")  # an editor lock file
    (conf / "sub").mkdir()
    (conf / "sub" / "30-nested.toml").write_text("not toml [")
    config = load_config(conf, environ={})
    assert [Path(f).name for f in config.files] == ["10-gateway.toml"]


def test_options_sub_tables_merge_across_files(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "30-targets.toml": '[targets.t]\nprotocol = "postgres"\naddress = "db:5432"\n'
            '[targets.t.options]\napplication_name = "wardgate"\nkeepalive = 30\n',
            "90-local.toml": "[targets.t.options]\nkeepalive = 5\n",
        },
    )
    assert dict(config.targets["t"].options) == {"application_name": "wardgate", "keepalive": 5}


# --- defaults and values -------------------------------------------------------------------


def test_defaults_when_tables_are_absent(tmp_path: Path) -> None:
    config = load(tmp_path, {"20-listeners.toml": MINIMAL_LISTENER})
    assert config.data_dir == tmp_path / "var"
    assert config.limits == LimitsConfig()
    assert config.limits.max_message_bytes == 16 * 1024 * 1024
    assert config.recording.result_row_cap == 100
    assert config.recording.flush_interval == 1.0
    assert config.gateway.shutdown_grace == 10.0
    assert (config.auth.audience, config.auth.groups_claim, config.auth.leeway) == (
        "wardgate",
        "groups",
        30,
    )
    assert config.tls.cert_file is None
    assert config.listeners["pg"].tls == "required"
    assert config.listeners["pg"].allow_cleartext_password is False
    assert config.policy_default is Action.DENY
    assert config.rules == ()
    assert "iban" in config.masking.detectors


@pytest.mark.parametrize(
    ("value", "expected"),
    [("var", "{root}/var"), ("state/gw", "{root}/state/gw"), ("{abs}", "{abs}")],
)
def test_data_dir_is_relative_to_the_parent_of_the_config_dir(
    tmp_path: Path, value: str, expected: str
) -> None:
    absolute = str(tmp_path / "elsewhere")
    fill = {"root": str(tmp_path), "abs": absolute}
    config = load(tmp_path, {"10.toml": f'[gateway]\ndata_dir = "{value.format(**fill)}"\n'})
    assert config.data_dir == Path(expected.format(**fill))


def test_relative_config_dir_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_conf(tmp_path, {"10.toml": "[gateway]\n"})
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf.d"), environ={})
    assert config.config_dir == tmp_path / "conf.d"
    assert config.data_dir == tmp_path / "var"


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:5432", "127.0.0.1", 5432),
        ("db.internal:6000", "db.internal", 6000),
        ("[::1]:5432", "::1", 5432),
        ("[2001:db8::7]:1", "2001:db8::7", 1),
    ],
)
def test_target_address(tmp_path: Path, address: str, host: str, port: int) -> None:
    config = load(
        tmp_path, {"30.toml": f'[targets.t]\nprotocol = "postgres"\naddress = "{address}"\n'}
    )
    assert (config.targets["t"].host, config.targets["t"].port) == (host, port)


def test_ipv6_listener_keeps_brackets_in_its_address(tmp_path: Path) -> None:
    config = load(
        tmp_path, {"20.toml": '[listeners.v6]\nprotocol = "postgres"\nbind = "[::1]:0"\n'}
    )
    listener = config.listeners["v6"]
    assert (listener.host, listener.port, listener.address) == ("::1", 0, "[::1]:0")


TARGET = '[targets.t]\nprotocol = "postgres"\naddress = "db:5432"\n'


def test_password_literal(tmp_path: Path) -> None:
    config = load(tmp_path, {"30.toml": TARGET + 'password = "lit"\n'})
    assert config.targets["t"].password == "lit"
    assert config.problems == ()


def test_password_from_environment(tmp_path: Path) -> None:
    config = load(tmp_path, {"30.toml": TARGET + 'password_env = "T_PW"\n'}, {"T_PW": "from-env"})
    assert config.targets["t"].password == "from-env"


def test_password_from_file_relative_to_config_parent(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "t.pw").write_text("from-file\n")
    config = load(tmp_path, {"30.toml": TARGET + 'password_file = "secrets/t.pw"\n'})
    assert config.targets["t"].password == "from-file"  # the trailing newline is not the password


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('password_env = "NOPE"', "environment variable NOPE is not set"),
        ('password_file = "missing.pw"', "missing.pw"),
    ],
)
def test_unavailable_password_is_a_problem_not_an_error(
    tmp_path: Path, line: str, expected: str
) -> None:
    config = load(tmp_path, {"30-targets.toml": TARGET + line + "\n"})
    assert config.targets["t"].password is None
    assert len(config.problems) == 1
    problem = config.problems[0]
    assert "30-targets.toml: [targets.t] password_" in problem
    assert expected in problem
    assert 'target "t"' in problem


def test_no_password_at_all_is_fine(tmp_path: Path) -> None:
    config = load(tmp_path, {"30.toml": TARGET})
    assert config.targets["t"].password is None
    assert config.problems == ()


def test_rule_fields(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "50-rules.toml": """
[[rules]]
name = "r1"
groups = ["Ops", "dba"]
targets = ["pg-*"]
sql = ["SELECT", "read"]
action = "allow"

[[rules]]
name = "r2"
commands = ["exec"]
protocols = ["ssh"]
action = "review"
reason = "a person approves shell commands"
"""
        },
    )
    r1, r2 = config.rules
    assert r1.groups == frozenset({"Ops", "dba"})  # groups stay case-sensitive
    assert r1.targets == ("pg-*",)
    assert r1.commands == frozenset({"select", "read"})  # kinds are lower-cased
    assert (r1.protocols, r1.action, r1.reason) == (None, Action.ALLOW, "")
    assert r1.source.endswith("50-rules.toml")
    assert (r2.groups, r2.targets, r2.commands) == (None, None, frozenset({"exec"}))
    assert (r2.protocols, r2.action) == (frozenset({"ssh"}), Action.REVIEW)
    assert r2.reason == "a person approves shell commands"


def test_masking_can_be_narrowed_or_emptied(tmp_path: Path) -> None:
    config = load(tmp_path, {"60.toml": '[masking]\ndetectors = []\ncolumns = ["*token*"]\n'})
    assert (config.masking.detectors, config.masking.columns) == ((), ("*token*",))


def test_cleartext_password_with_tls_is_flagged(tmp_path: Path) -> None:
    config = load(tmp_path, {"20-l.toml": MINIMAL_LISTENER + "allow_cleartext_password = true\n"})
    assert any("20-l.toml: [listeners.pg] allow_cleartext_password" in p for p in config.problems)


def test_tls_files_and_jwks_resolve_and_must_exist(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "pair")
    (tmp_path / "gw.crt").write_bytes(cert.read_bytes())
    (tmp_path / "gw.key").write_bytes(key.read_bytes())
    (tmp_path / "jwks.json").write_text("x")
    config = load(
        tmp_path,
        {
            "10.toml": '[tls]\ncert_file = "gw.crt"\nkey_file = "gw.key"\n'
            '[auth]\nissuer = "https://idp.example.com"\njwks_file = "jwks.json"\n'
        },
    )
    assert config.tls.cert_file == tmp_path / "gw.crt"
    assert config.tls.key_file == tmp_path / "gw.key"
    assert config.auth.jwks_file == tmp_path / "jwks.json"
    assert config.auth.issuer == "https://idp.example.com"


# --- errors name the file and the key -----------------------------------------------------

ERRORS = [
    pytest.param(
        {"20-listeners.toml": MINIMAL_LISTENER + 'tls = "yes"\n'},
        [
            (
                "20-listeners.toml: [listeners.pg] tls: "
                'expected one of required, optional, disabled; got "yes"'
            )
        ],
        id="listener tls choice",
    ),
    pytest.param(
        {"10-g.toml": "[listner.pg]\n"},
        ["10-g.toml: [listner]", "unknown table", "did you mean listeners?"],
        id="unknown table",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nprotocol = "postgres"\nbnd = "127.0.0.1:1"\n'},
        ["20-l.toml: [listeners.pg] bnd: unknown key", "did you mean bind?"],
        id="unknown key reported before the missing one",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nbind = "127.0.0.1:1"\n'},
        ["20-l.toml: [listeners.pg] protocol: required key is missing"],
        id="missing protocol",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nprotocol = ""\nbind = "127.0.0.1:1"\n'},
        ["20-l.toml: [listeners.pg] protocol: expected a non-empty string"],
        id="empty protocol",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nprotocol = "postgres"\nbind = "localhost"\n'},
        ["20-l.toml: [listeners.pg] bind:", "host:port"],
        id="bind without port",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nprotocol = "postgres"\nbind = "127.0.0.1:70000"\n'},
        ["20-l.toml: [listeners.pg] bind:", "port 0-65535"],
        id="bind port out of range",
    ),
    pytest.param(
        {"20-l.toml": '[listeners.pg]\nprotocol = "postgres"\nbind = "::1:6432"\n'},
        ["20-l.toml: [listeners.pg] bind:", "brackets"],
        id="bare ipv6",
    ),
    pytest.param(
        {"30-t.toml": TARGET.replace("db:5432", "db:0")},
        ["30-t.toml: [targets.t] address:", "port 1-65535"],
        id="target port zero",
    ),
    pytest.param(
        {"20-l.toml": MINIMAL_LISTENER + "allow_cleartext_password = 1\n"},
        ["20-l.toml: [listeners.pg] allow_cleartext_password: expected true or false; got 1"],
        id="bool type",
    ),
    pytest.param(
        {"10-g.toml": '[limits]\nidle_timeout = "1h"\n'},
        ['10-g.toml: [limits] idle_timeout: expected a number of seconds; got "1h"'],
        id="seconds type",
    ),
    pytest.param(
        {"10-g.toml": "[limits]\nmax_connections = true\n"},
        ["10-g.toml: [limits] max_connections: expected an integer; got true"],
        id="boolean is not an integer",
    ),
    pytest.param(
        {"10-g.toml": "[limits]\nmax_sessions_per_identity = 0\n"},
        ["10-g.toml: [limits] max_sessions_per_identity: expected an integer >= 1"],
        id="integer minimum",
    ),
    pytest.param(
        {"10-g.toml": "[recording]\nflush_interval = 5\n"},
        ["10-g.toml: [recording] flush_interval: expected at most 1.0 seconds"],
        id="flush at least every second",
    ),
    pytest.param(
        {"10-g.toml": '[auth]\nissuer = "idp.example.com"\n'},
        ["10-g.toml: [auth] issuer:", "https://"],
        id="issuer neither embedded nor URL",
    ),
    pytest.param(
        {"10-g.toml": '[tls]\ncert_file = "nope.crt"\n'},
        ["10-g.toml: [tls] cert_file: file not found:", "nope.crt"],
        id="missing certificate file",
    ),
    pytest.param(
        {"10-g.toml": '[policy]\ndefault = "maybe"\n'},
        ['10-g.toml: [policy] default: expected one of allow, review, deny; got "maybe"'],
        id="policy default",
    ),
    pytest.param(
        {"10-g.toml": '[gateway]\ndata_dir = "var"\n[gateway.extra]\n'},
        ["10-g.toml: [gateway] extra: unknown key"],
        id="unknown sub-table",
    ),
    pytest.param(
        {"30-t.toml": TARGET + 'password = "x"\npassword_env = "Y"\n'},
        ["30-t.toml: [targets.t] password_env: use only one of password, password_env"],
        id="two password sources",
    ),
    pytest.param(
        {"30-t.toml": TARGET + 'tls = "verify"\n'},
        [
            (
                "30-t.toml: [targets.t] tls: "
                'expected one of disable, prefer, require, verify-full; got "verify"'
            )
        ],
        id="target tls choice",
    ),
    pytest.param(
        {"30-t.toml": '[targets."bad name"]\nprotocol = "postgres"\naddress = "db:1"\n'},
        ['30-t.toml: [targets."bad name"]: invalid target name'],
        id="target name",
    ),
    pytest.param(
        {"50-r.toml": '[[rules]]\nname = "r"\naction = "permit"\n'},
        ['50-r.toml: [[rules]] "r" action: expected one of allow, review, deny; got "permit"'],
        id="unknown action",
    ),
    pytest.param(
        {"50-r.toml": '[[rules]]\nname = "r"\naction = "allow"\n[[rules]]\naction = "deny"\n'},
        ["50-r.toml: [[rules]] #2 name: required key is missing"],
        id="rule without name",
    ),
    pytest.param(
        {
            "50-r.toml": '[[rules]]\nname = "r"\naction = "allow"\nsql = ["read"]\n'
            'commands = ["exec"]\n'
        },
        ['50-r.toml: [[rules]] "r" sql: sql is an alias of commands'],
        id="sql and commands",
    ),
    pytest.param(
        {"50-r.toml": '[[rules]]\nname = "r"\naction = "allow"\nsql = ["read", 3]\n'},
        ['50-r.toml: [[rules]] "r" sql: expected an array of non-empty strings; got an entry 3'],
        id="non-string kind",
    ),
    pytest.param(
        {"50-r.toml": '[[rules]]\nname = "r"\naction = "allow"\ngroups = []\n'},
        ['50-r.toml: [[rules]] "r" groups: empty array matches nothing'],
        id="empty groups",
    ),
    pytest.param(
        {"50-r.toml": '[[rules]]\nname = "r"\naction = "allow"\ntarget = ["pg-*"]\n'},
        ['50-r.toml: [[rules]] "r" target: unknown key (did you mean targets?)'],
        id="rule key typo",
    ),
    pytest.param(
        {
            "50-a.toml": '[[rules]]\nname = "same"\naction = "allow"\n',
            "60-b.toml": '[[rules]]\nname = "same"\naction = "deny"\n',
        },
        ['60-b.toml: [[rules]] "same" name: duplicate rule name; first defined in', "50-a.toml"],
        id="duplicate rule name across files",
    ),
    pytest.param(
        {"50-r.toml": 'rules = "all"\n'},
        ["50-r.toml: [[rules]]: expected an array of tables"],
        id="rules not an array of tables",
    ),
    pytest.param(
        {"10-g.toml": 'gateway = "x"\n'},
        ['10-g.toml: gateway: expected a table, written [gateway]; got "x"'],
        id="top-level scalar",
    ),
    pytest.param(
        {
            "20-listeners.toml": MINIMAL_LISTENER,
            "90-local.toml": '[listeners.pg]\ntls = "off"\n',
        },
        ["90-local.toml: [listeners.pg] tls:"],
        id="error names the file that set the bad value",
    ),
    pytest.param(
        {"10-g.toml": "[gateway]\n", "20-bad.toml": '[listeners.pg]\nbind = "127.0.0.1\n'},
        ["20-bad.toml: invalid TOML:", "line 2"],
        id="toml syntax names file and line",
    ),
]


@pytest.mark.parametrize(("files", "expected"), ERRORS)
def test_errors_name_file_and_key(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    message = load_error(tmp_path, files)
    for part in expected:
        assert part in message


def test_error_carries_file_and_key_attributes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, {"20-listeners.toml": MINIMAL_LISTENER + 'tls = "yes"\n'})
    assert info.value.file == str(tmp_path / "conf.d" / "20-listeners.toml")
    assert info.value.key == "[listeners.pg] tls"


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, {})
    (conf / "10-latin1.toml").write_bytes(b'[gateway]\ndata_dir = "\xe9"\n')
    with pytest.raises(ConfigError, match=r"10-latin1\.toml: not valid UTF-8"):
        load_config(conf, environ={})


def test_missing_and_empty_config_dirs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nowhere", environ={})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no \*\.toml files"):
        load_config(tmp_path / "empty", environ={})


# --- plugin-dependent checks ---------------------------------------------------------------


def test_check_protocols_names_file_and_key(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "20-listeners.toml": MINIMAL_LISTENER.replace('"postgres"', '"postgress"'),
            "30-targets.toml": TARGET,
        },
    )
    with pytest.raises(ConfigError) as info:
        check_protocols(config, {"postgres", "mysql"})
    message = str(info.value)
    assert '20-listeners.toml: [listeners.pg] protocol: unknown protocol "postgress"' in message
    assert "installed connectors: mysql, postgres" in message


def test_check_protocols_covers_targets_and_rules(tmp_path: Path) -> None:
    config = load(tmp_path, {"30-targets.toml": TARGET.replace('"postgres"', '"ssh"')})
    with pytest.raises(ConfigError, match=r"30-targets\.toml: \[targets\.t\] protocol: unknown"):
        check_protocols(config, {"postgres"})
    check_protocols(config, {"postgres", "ssh"})

    config = load(
        tmp_path,
        {
            "30-targets.toml": TARGET,
            "50-r.toml": '[[rules]]\nname = "r"\naction = "deny"\nprotocols = ["htp"]\n',
        },
    )
    with pytest.raises(ConfigError, match=r'50-r\.toml: \[\[rules\]\] "r" protocols: unknown'):
        check_protocols(config, {"postgres", "http"})


def test_check_detectors(tmp_path: Path) -> None:
    config = load(tmp_path, {"60-m.toml": '[masking]\ndetectors = ["email", "phone"]\n'})
    check_detectors(config, {"email", "phone", "iban"})
    with pytest.raises(
        ConfigError, match=r'60-m\.toml: \[masking\] detectors: unknown detector "phone"'
    ):
        check_detectors(config, {"email"})


# --- where the configuration lives ---------------------------------------------------------


def test_resolve_config_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli, env, default = tmp_path / "cli", tmp_path / "env", tmp_path / "conf.d"
    for path in (cli, env, default):
        path.mkdir()
    monkeypatch.chdir(tmp_path)
    environ = {"WARDGATE_CONFIG": str(env)}
    assert resolve_config_dir(str(cli), environ) == cli
    assert resolve_config_dir(None, environ) == env
    assert resolve_config_dir(None, {}) == Path("conf.d")
    assert resolve_config_dir(None, {"WARDGATE_CONFIG": ""}) == Path("conf.d")


def test_resolve_config_dir_missing_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config_dir(None, {"WARDGATE_CONFIG": str(tmp_path / "gone")})
    message = str(info.value)
    assert "gone" in message and "does not exist" in message
    assert "$WARDGATE_CONFIG" in message and "-c DIR" in message
