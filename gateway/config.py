"""The gateway's configuration: a directory of drop-in TOML files, read into frozen dataclasses.

Every ``*.toml`` directly in the directory is read in lexical order of file names. Tables merge key by
key, a later file overriding an earlier one, so ``90-local.toml`` can change one port of a shipped
listener; ``[[rules]]`` arrays concatenate in file order. Unknown tables and keys are errors: a typo in
a security policy must stop the gateway, not be ignored. Each error names the file and the key.

A backend password that is not available on this machine (an unset ``password_env``, a missing
``password_file``) is not an error: the shipped default must start on a fresh machine. The target's
password stays ``None``, :attr:`Config.problems` says why, and the connector tells the client when it
tries to dial that target.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from gateway.certs import PEMFileError, check_certificate_pair, read_pem_certificates
from gateway.config_schema import (
    KeyPath,
    Table,
    config_error,
    config_files,
    merge_documents,
    parse_address,
    parse_file,
    table_label,
)
from gateway.errors import ConfigError
from gateway.model import Action, Target
from gateway.policy import Rule

DEFAULT_CONFIG_DIR = "conf.d"
CONFIG_ENV_VAR = "WARDGATE_CONFIG"

DEFAULT_DETECTORS = ("credit_card", "us_ssn", "email", "iban", "secrets")
DEFAULT_MASKED_COLUMNS = ("*password*", "*ssn*", "*secret*")
LISTENER_TLS_MODES = ("required", "optional", "disabled")
TARGET_TLS_MODES = ("disable", "prefer", "require", "verify-full")

_TABLES = (
    "gateway", "auth", "tls", "listeners", "targets", "rules",
    "policy", "masking", "limits", "recording", "approvals", "admin", "plugins",
)  # fmt: skip
_GATEWAY_KEYS = ("data_dir", "shutdown_grace")
_AUTH_KEYS = ("issuer", "audience", "groups_claim", "jwks_file", "leeway")
_TLS_KEYS = ("cert_file", "key_file")
_LISTENER_KEYS = ("protocol", "bind", "tls", "allow_cleartext_password", "options")
_TARGET_KEYS = (
    "protocol", "address", "database", "user", "password", "password_env", "password_file",
    "tls", "ca_file", "options",
)  # fmt: skip
_PASSWORD_KEYS = ("password", "password_env", "password_file")
_RULE_KEYS = (
    "name", "groups", "targets", "sql", "commands", "protocols", "action", "reason",
    "grant", "min_approvals", "approver_groups", "flags",
)  # fmt: skip
_POLICY_KEYS = ("default",)
_MASKING_KEYS = ("detectors", "columns")
_LIMITS_KEYS = (
    "handshake_timeout", "auth_timeout", "idle_timeout", "max_connections",
    "max_sessions_per_identity", "max_message_bytes",
)  # fmt: skip
_RECORDING_KEYS = ("result_row_cap", "flush_interval")
_APPROVALS_KEYS = ("approver_groups", "timeout", "max_pending_per_identity", "max_grant_duration")
_ADMIN_KEYS = ("bind",)

# Listener and target names appear in globs, client connection strings and recordings; keeping them
# to one plain word avoids quoting surprises in all three.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    shutdown_grace: float = 10.0  # seconds sessions get to finish after SIGTERM/SIGINT


@dataclass(frozen=True, slots=True)
class AuthConfig:
    issuer: str = "embedded"  # "embedded" or an OIDC issuer URL
    audience: str = "wardgate"
    groups_claim: str = "groups"
    jwks_file: Path | None = None  # offline JWKS instead of OIDC discovery
    leeway: int = 30  # seconds of clock skew tolerated on exp/nbf/iat


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The listeners' certificate; both None means "generate a self-signed one in data_dir"."""

    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    protocol: str
    host: str
    port: int  # 0 binds an ephemeral port (tests)
    tls: str = "required"  # required | optional | disabled
    allow_cleartext_password: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MaskingConfig:
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    columns: tuple[str, ...] = DEFAULT_MASKED_COLUMNS  # column-name globs always masked


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    handshake_timeout: float = 10.0
    auth_timeout: float = 30.0
    idle_timeout: float = 3600.0
    max_connections: int = 1000
    max_sessions_per_identity: int = 50
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RecordingConfig:
    result_row_cap: int = 100  # rows of each result kept in the recording
    flush_interval: float = 1.0  # seconds; the design promises a crash loses at most one second


@dataclass(frozen=True, slots=True)
class ApprovalsConfig:
    """``[approvals]``: who approves held commands and grants, and the bounds on waiting."""

    approver_groups: frozenset[str] = frozenset()  # empty: only rules' approver_groups approve
    timeout: float = 300.0  # seconds a held command waits for a decision
    max_pending_per_identity: int = 10  # beyond it a new review is refused at once
    max_grant_duration: float = 8 * 3600.0  # the longest grant that can be asked for


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """``[admin]``: the approvers' HTTPS API; present means enabled."""

    host: str
    port: int  # 0 binds an ephemeral port (tests)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    config_dir: Path  # absolute
    data_dir: Path  # absolute
    gateway: GatewaySettings = GatewaySettings()
    auth: AuthConfig = AuthConfig()
    tls: TLSConfig = TLSConfig()
    listeners: dict[str, ListenerConfig] = field(default_factory=dict)
    targets: dict[str, Target] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    policy_default: Action = Action.DENY
    masking: MaskingConfig = MaskingConfig()
    limits: LimitsConfig = LimitsConfig()
    recording: RecordingConfig = RecordingConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    admin: AdminConfig | None = None
    plugins: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # [plugins.NAME], as is
    problems: tuple[str, ...] = ()  # warnings worth showing at start-up; the gateway still runs
    files: tuple[str, ...] = ()  # the files read, in merge order
    origins: Mapping[KeyPath, str] = field(default_factory=dict, compare=False, repr=False)

    def origin(self, *path: str) -> str | None:
        """The file that set a key (``origin("listeners", "pg", "protocol")``), or its table's."""
        key: KeyPath = tuple(path)
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key[:-1]
        return None


def resolve_config_dir(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """``-c DIR`` wins, then ``$WARDGATE_CONFIG``, then ``./conf.d``; the directory must exist."""
    if cli_value:
        path, source = Path(cli_value), "-c"
    elif environ.get(CONFIG_ENV_VAR):
        path, source = Path(environ[CONFIG_ENV_VAR]), f"${CONFIG_ENV_VAR}"
    else:
        path, source = Path(DEFAULT_CONFIG_DIR), "the default"
    _require_dir(path, source)
    return path


def _require_dir(path: Path, source: str | None = None) -> None:
    if path.is_dir():
        return
    state = "is not a directory" if path.exists() else "does not exist"
    named_by = f" ({source})" if source else ""
    raise ConfigError(
        f"configuration directory {path}{named_by} {state}; "
        f"pass -c DIR or set {CONFIG_ENV_VAR} to a directory of *.toml files"
    )


def load_config(config_dir: Path, *, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, merge and validate every ``*.toml`` in ``config_dir``. Raises ConfigError."""
    config_dir = Path(config_dir)
    _require_dir(config_dir)
    files = config_files(config_dir)
    if not files:
        raise ConfigError(
            f"no *.toml files in configuration directory {config_dir}; "
            "copy the shipped conf.d/ to start from a working default"
        )
    merged = merge_documents(
        ((str(path), parse_file(path, str(path))) for path in files), tables=_TABLES
    )
    root = Table(merged.tables, "", allowed=_TABLES, origins=merged.origins)
    base = config_dir.absolute().parent
    problems: list[str] = []

    gateway = root.child("gateway", allowed=_GATEWAY_KEYS)
    data_dir = _resolve(base, gateway.string("data_dir", "var"))
    settings = GatewaySettings(shutdown_grace=gateway.seconds("shutdown_grace", 10.0))

    listeners = {
        name: _listener(name, table, problems)
        for name, table in root.child("listeners", allowed=None).children(allowed=_LISTENER_KEYS)
    }
    targets = {
        name: _target(name, table, base, environ, problems)
        for name, table in root.child("targets", allowed=None).children(allowed=_TARGET_KEYS)
    }
    policy = root.child("policy", allowed=_POLICY_KEYS)
    policy_default = Action(policy.choice("default", [str(a) for a in Action], "deny"))
    rules = _rules(merged.rules, merged.origins)
    approvals = _approvals(root.child("approvals", allowed=_APPROVALS_KEYS))
    admin = _admin(root) if "admin" in merged.tables else None
    if admin is not None and "admin" in listeners:
        raise root.child("listeners", allowed=None).error(
            "admin", 'the listener name "admin" is taken by the [admin] API; rename the listener'
        )
    return Config(
        config_dir=config_dir.absolute(),
        data_dir=data_dir,
        gateway=settings,
        auth=_auth(root.child("auth", allowed=_AUTH_KEYS), base),
        tls=_tls(root.child("tls", allowed=_TLS_KEYS), base, problems),
        listeners=listeners,
        targets=targets,
        rules=rules,
        policy_default=policy_default,
        masking=_masking(root.child("masking", allowed=_MASKING_KEYS)),
        limits=_limits(root.child("limits", allowed=_LIMITS_KEYS)),
        recording=_recording(root.child("recording", allowed=_RECORDING_KEYS)),
        approvals=approvals,
        admin=admin,
        plugins=_plugins(root.child("plugins", allowed=None)),
        problems=tuple(problems),
        files=tuple(merged.files),
        origins=dict(merged.origins),
    )


def check_protocols(config: Config, known: set[str]) -> None:
    """Fail fast when a listener, target or rule names a protocol no installed connector serves.

    Called once plugins are loaded; the configuration alone cannot know which connectors exist.
    """
    installed = ", ".join(sorted(known)) or "none"

    def fail(file: str | None, path: KeyPath, protocol: str) -> ConfigError:
        return config_error(
            file,
            f"{table_label(path)} protocol",
            f'unknown protocol "{protocol}"; installed connectors: {installed}',
        )

    for name, listener in config.listeners.items():
        if listener.protocol not in known:
            path = ("listeners", name)
            raise fail(config.origin(*path, "protocol"), path, listener.protocol)
    for name, target in config.targets.items():
        if target.protocol not in known:
            path = ("targets", name)
            raise fail(config.origin(*path, "protocol"), path, target.protocol)
    for rule in config.rules:
        for protocol in sorted(rule.protocols or ()):
            if protocol not in known:
                raise config_error(
                    rule.source,
                    f'[[rules]] "{rule.name}" protocols',
                    f'unknown protocol "{protocol}"; installed connectors: {installed}',
                )


def approval_warnings(config: Config) -> list[str]:
    """Policies that hold commands nobody can approve.

    Not an error, and not in :attr:`Config.problems` (those concern a fresh machine's secrets):
    a policy may hold commands on purpose before approvers are set up, but the operator should
    hear at start-up that such commands will only ever time out.
    """
    if config.approvals.approver_groups:
        return []
    held = [r.name for r in config.rules if r.action is Action.REVIEW and not r.approver_groups]
    if config.policy_default is Action.REVIEW:
        held.append("[policy] default")
    if not held:
        return []
    return [
        "no [approvals] approver_groups: commands held by "
        + ", ".join(f'"{name}"' for name in held)
        + " can never be approved and will time out"
    ]


def target_glob_warnings(config: Config) -> list[str]:
    """Rule ``targets`` patterns that match no configured target: usually a typo (``pg_*`` for
    ``pg-*``) or a target removed from the configuration. A warning, not an error: a shared rule
    file may name targets only some gateways have."""
    names = sorted(config.targets)
    known = ", ".join(names) if names else "none configured"
    warnings: list[str] = []
    for rule in config.rules:
        for pattern in rule.targets or ():
            # fnmatchcase, as the policy engine matches (case matters in target names).
            if not any(fnmatchcase(name, pattern) for name in names):
                warnings.append(
                    f'{rule.source}: [[rules]] "{rule.name}" targets: "{pattern}" matches no '
                    f"configured target (targets: {known}); check it for a typo"
                )
    return warnings


def check_detectors(config: Config, known: set[str]) -> None:
    """Fail fast when ``[masking] detectors`` names a detector no plugin registered."""
    for name in config.masking.detectors:
        if name not in known:
            raise config_error(
                config.origin("masking", "detectors"),
                "[masking] detectors",
                f'unknown detector "{name}"; registered detectors: '
                + (", ".join(sorted(known)) or "none"),
            )


# --- sections --------------------------------------------------------------------------------


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _existing_file(table: Table, key: str, base: Path) -> Path | None:
    value = table.optional_string(key)
    if value is None:
        return None
    path = _resolve(base, value)
    if path.is_dir():
        raise table.error(key, f"{path} is a directory; name a file")
    if not path.is_file():
        raise table.error(
            key, f"file not found: {path} (relative paths are resolved against {base})"
        )
    return path


def _auth(table: Table, base: Path) -> AuthConfig:
    issuer = table.string("issuer", "embedded")
    if issuer != "embedded" and not issuer.startswith(("https://", "http://")):
        raise table.error(
            "issuer", f'expected "embedded" or an issuer URL (https://...); got "{issuer}"'
        )
    return AuthConfig(
        issuer=issuer,
        audience=table.string("audience", "wardgate"),
        groups_claim=table.string("groups_claim", "groups"),
        jwks_file=_existing_file(table, "jwks_file", base),
        leeway=table.integer("leeway", 30, minimum=0, unit=" (seconds)"),
    )


def _tls(table: Table, base: Path, problems: list[str]) -> TLSConfig:
    cert = _existing_file(table, "cert_file", base)
    key = _existing_file(table, "key_file", base)
    if (cert is None) != (key is None):
        missing = "key_file" if key is None else "cert_file"
        raise table.error(
            missing,
            "cert_file and key_file go together; set both, or neither to use a "
            "generated self-signed certificate",
        )
    if cert is not None and key is not None:
        # Loaded as the listeners will load them, so a wrong file stops start-up with its key
        # named instead of failing every TLS handshake later.
        try:
            leaf = check_certificate_pair(cert, key)
        except PEMFileError as exc:
            raise table.error("cert_file" if exc.path == cert else "key_file", str(exc)) from None
        if leaf.not_valid_after_utc <= datetime.now(UTC):
            problems.append(
                f"{table.file_of('cert_file')}: {table.where('cert_file')}: the certificate in "
                f"{cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}; clients that verify "
                "it refuse to connect until it is renewed"
            )
    return TLSConfig(cert_file=cert, key_file=key)


def _check_name(table: Table, kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise table.error(
            None,
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit",
        )


def _listener(name: str, table: Table, problems: list[str]) -> ListenerConfig:
    _check_name(table, "listener", name)
    bind = table.string("bind")
    try:
        host, port = parse_address(bind, allow_port_zero=True)
    except ValueError as exc:
        raise table.error("bind", str(exc)) from None
    tls = table.choice("tls", LISTENER_TLS_MODES, "required")
    cleartext = table.boolean("allow_cleartext_password", False)
    if cleartext and tls != "disabled":
        problems.append(
            f"{table.file_of('allow_cleartext_password')}: {table.where('allow_cleartext_password')}"
            ': has no effect unless tls = "disabled"'
        )
    return ListenerConfig(
        name=name,
        protocol=table.string("protocol"),
        host=host,
        port=port,
        tls=tls,
        allow_cleartext_password=cleartext,
        options=table.subtable("options"),
    )


def _target(
    name: str, table: Table, base: Path, environ: Mapping[str, str], problems: list[str]
) -> Target:
    _check_name(table, "target", name)
    address = table.string("address")
    try:
        host, port = parse_address(address, allow_port_zero=False)
    except ValueError as exc:
        raise table.error("address", str(exc)) from None
    ca_file = _existing_file(table, "ca_file", base)
    tls = table.choice("tls", TARGET_TLS_MODES, "prefer")
    if ca_file is not None:
        try:
            read_pem_certificates(ca_file)
        except PEMFileError as exc:
            raise table.error("ca_file", str(exc)) from None
        if tls != "verify-full":
            problems.append(
                f"{table.file_of('ca_file')}: {table.where('ca_file')}: has no effect unless "
                f'tls = "verify-full" (it is "{tls}")'
            )
    return Target(
        name=name,
        protocol=table.string("protocol"),
        host=host,
        port=port,
        user=table.optional_string("user"),
        password=_password(name, table, base, environ, problems),
        database=table.optional_string("database"),
        tls=tls,
        ca_file=str(ca_file) if ca_file else None,
        options=table.subtable("options"),
    )


def _password(
    name: str, table: Table, base: Path, environ: Mapping[str, str], problems: list[str]
) -> str | None:
    given = [key for key in _PASSWORD_KEYS if key in table.data]
    if len(given) > 1:
        raise table.error(given[1], f"use only one of {', '.join(_PASSWORD_KEYS)}")
    if not given:
        return None  # the backend trusts the gateway some other way (trust, cert, peer auth)
    key = given[0]
    if key == "password":
        return table.text("password")
    where = f"{table.file_of(key)}: {table.where(key)}"
    if key == "password_env":
        variable = table.string("password_env")
        if variable not in environ:
            problems.append(
                f"{where}: environment variable {variable} is not set; "
                f'connections to target "{name}" will fail until it is'
            )
            return None
        return environ[variable]
    path = _resolve(base, table.string("password_file"))
    try:
        # A trailing newline is an artefact of `echo secret > file`, never part of the password.
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problems.append(
            f"{where}: cannot read {path}: {reason}; "
            f'connections to target "{name}" will fail until it can be read'
        )
        return None


def _rules(
    entries: list[tuple[str, dict[str, Any]]], origins: dict[KeyPath, str]
) -> tuple[Rule, ...]:
    """The ``[[rules]]``; which of ``sql``/``commands`` each wrote goes into ``origins`` (as
    ``("rules", NAME, KEY)``) so that the vocabulary check names the key as written."""
    rules: list[Rule] = []
    first_seen: dict[str, str] = {}
    per_file: dict[str, int] = {}
    for file, data in entries:
        per_file[file] = per_file.get(file, 0) + 1
        label = f"[[rules]] #{per_file[file]}"
        if isinstance(data.get("name"), str) and data["name"].strip():
            label = f'[[rules]] "{data["name"]}"'
        table = Table(data, label, allowed=_RULE_KEYS, file=file)
        name = table.string("name")
        if name in first_seen:
            raise table.error("name", f"duplicate rule name; first defined in {first_seen[name]}")
        first_seen[name] = file
        if "sql" in data and "commands" in data:
            raise table.error("sql", "sql is an alias of commands; write one of them, not both")
        commands_key = "sql" if "sql" in data else "commands"
        commands = table.string_list(commands_key)
        if commands_key in data:
            origins[("rules", name, commands_key)] = file
        groups = table.string_list("groups")
        protocols = table.string_list("protocols")
        flags = table.string_list("flags")
        action = Action(table.choice("action", [str(a) for a in Action]))
        grant = table.optional_string("grant")
        if grant is not None and not _NAME.fullmatch(grant):
            raise table.error(
                "grant", "use letters, digits, '_', '-' and '.', starting with a letter or digit"
            )
        if "min_approvals" in data and action is not Action.REVIEW:
            raise table.error("min_approvals", 'applies only to rules with action = "review"')
        approver_groups = table.string_list("approver_groups")
        if approver_groups is not None and action is not Action.REVIEW and grant is None:
            raise table.error(
                "approver_groups",
                'applies only to rules with action = "review" or a grant (who approves it)',
            )
        rules.append(
            Rule(
                name=name,
                action=action,
                groups=frozenset(groups) if groups is not None else None,
                targets=table.string_list("targets"),
                commands=frozenset(c.lower() for c in commands) if commands else None,
                protocols=frozenset(protocols) if protocols is not None else None,
                reason=table.text("reason"),
                source=file,
                grant=grant,
                min_approvals=table.integer("min_approvals", 1, minimum=1),
                approver_groups=(
                    frozenset(approver_groups) if approver_groups is not None else None
                ),
                flags=frozenset(f.lower() for f in flags) if flags is not None else None,
            )
        )
    return tuple(rules)


def _masking(table: Table) -> MaskingConfig:
    detectors = table.string_list("detectors", allow_empty=True)
    columns = table.string_list("columns", allow_empty=True)
    return MaskingConfig(
        detectors=DEFAULT_DETECTORS if detectors is None else detectors,
        columns=DEFAULT_MASKED_COLUMNS if columns is None else columns,
    )


def _limits(table: Table) -> LimitsConfig:
    d = LimitsConfig()
    return LimitsConfig(
        handshake_timeout=table.seconds("handshake_timeout", d.handshake_timeout),
        auth_timeout=table.seconds("auth_timeout", d.auth_timeout),
        idle_timeout=table.seconds("idle_timeout", d.idle_timeout),
        max_connections=table.integer("max_connections", d.max_connections, minimum=1),
        max_sessions_per_identity=table.integer(
            "max_sessions_per_identity", d.max_sessions_per_identity, minimum=1
        ),
        max_message_bytes=table.integer(
            "max_message_bytes", d.max_message_bytes, minimum=1024, unit=" (bytes)"
        ),
    )


def _approvals(table: Table) -> ApprovalsConfig:
    d = ApprovalsConfig()
    groups = table.string_list("approver_groups")
    return ApprovalsConfig(
        approver_groups=frozenset(groups) if groups is not None else d.approver_groups,
        timeout=table.seconds("timeout", d.timeout),
        max_pending_per_identity=table.integer(
            "max_pending_per_identity", d.max_pending_per_identity, minimum=1
        ),
        max_grant_duration=table.seconds("max_grant_duration", d.max_grant_duration),
    )


def _admin(root: Table) -> AdminConfig:
    table = root.child("admin", allowed=_ADMIN_KEYS)
    try:
        host, port = parse_address(table.string("bind"), allow_port_zero=True)
    except ValueError as exc:
        raise table.error("bind", str(exc)) from None
    return AdminConfig(host=host, port=port)


def _plugins(table: Table) -> dict[str, dict[str, Any]]:
    """``[plugins.NAME]`` tables are the plugins' own business: only their shape is checked here;
    each plugin validates its keys in ``wardgate_configure``."""
    out: dict[str, dict[str, Any]] = {}
    for name in table.data:
        if not isinstance(table.data[name], dict):
            raise table.error(name, f"expected a table, written [plugins.{name}]")
        _check_name(table, "plugin", name)
        out[name] = table.subtable(name)
    return out


def _recording(table: Table) -> RecordingConfig:
    return RecordingConfig(
        result_row_cap=table.integer("result_row_cap", 100, minimum=0, unit=" (rows)"),
        flush_interval=table.seconds("flush_interval", 1.0, maximum=1.0),
    )
