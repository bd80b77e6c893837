"""Runs the real gateway (``wardgate serve``) as a subprocess on free ports, for real clients."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

DEFAULT_RULES = """
[[rules]]
name = "agents may read"
groups = ["ai-agents"]
sql = ["read", "transaction", "session"]
action = "allow"

[[rules]]
name = "agents may write rows"
groups = ["ai-agents"]
sql = ["insert"]
action = "allow"

[[rules]]
name = "destructive changes need review"
groups = ["ai-agents"]
sql = ["delete", "update", "truncate"]
action = "review"
reason = "a human must approve destructive changes"

[[rules]]
name = "no ddl for agents"
groups = ["ai-agents"]
sql = ["ddl", "dcl", "admin", "unknown"]
action = "deny"
reason = "agents may not change the schema"

[[rules]]
name = "benchmarks"
groups = ["bench"]
action = "allow"

[policy]
default = "deny"
"""


@dataclass
class GatewayProcess:
    root: Path
    config_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path
    env: dict[str, str] = field(default_factory=dict)

    def wardgate(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "-c", str(self.config_dir), *args],
            capture_output=True, text=True, check=check, timeout=timeout, env=self.env, cwd=ROOT,
        )

    def token(self, sub: str = "alice", groups: str = "ai-agents", ttl: str = "15m") -> str:
        return self.wardgate("token", "--sub", sub, "--groups", groups, "--ttl", ttl).stdout.strip()

    def dsn(self, target: str = "pg-app", *, token: str | None = None, user: str = "alice",
            sslmode: str = "require", **extra: str) -> str:
        password = token if token is not None else self.token(user)
        parts = {"host": "127.0.0.1", "port": str(self.port), "dbname": target, "user": user,
                 "password": password, "sslmode": sslmode, **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def recordings(self) -> list[Path]:
        return sorted((self.root / "var" / "recordings").rglob("*.wgrec"), key=lambda p: p.stat().st_mtime)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(root: Path, pg: object, *, extra_toml: str = "", rules: str = DEFAULT_RULES,
                  listener_tls: str = "required",
                  preexec_fn: Callable[[], None] | None = None,
                  masking_columns: list[str] | None = None) -> GatewayProcess:
    """Start ``wardgate serve`` with targets on the private cluster ``pg`` (a PgCluster)."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "conf.d"
    conf.mkdir(exist_ok=True)
    port = free_port()
    p = pg  # PgCluster
    columns = json.dumps(["*password*", "*secret*", "*ssn*"] if masking_columns is None
                         else masking_columns)
    (conf / "10-gateway.toml").write_text(textwrap.dedent(f"""
        [gateway]
        data_dir = "var"
        shutdown_grace = 2

        [auth]
        issuer = "embedded"
        audience = "wardgate"

        [listeners.pg]
        protocol = "postgres"
        bind = "127.0.0.1:{port}"
        tls = "{listener_tls}"
        allow_cleartext_password = {"true" if listener_tls != "required" else "false"}

        [targets.pg-app]
        protocol = "postgres"
        address = "127.0.0.1:{p.port}"
        database = "app"
        user = "{p.reader_user}"
        password = "{p.reader_password}"
        tls = "verify-full"
        ca_file = "{p.ca_file}"

        [targets.pg-md5]
        protocol = "postgres"
        address = "127.0.0.1:{p.port}"
        database = "app"
        user = "{p.md5_user}"
        password = "{p.md5_password}"
        tls = "disable"

        [targets.pg-plain]
        protocol = "postgres"
        address = "127.0.0.1:{p.port}"
        database = "app"
        user = "{p.plain_user}"
        password = "{p.plain_password}"
        tls = "require"

        [masking]
        detectors = ["credit_card", "us_ssn", "email", "iban", "secrets"]
        columns = {columns}
        """))
    (conf / "50-rules.toml").write_text(rules)
    if extra_toml:
        (conf / "90-extra.toml").write_text(extra_toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WARDGATE"))}
    env["PYTHONPATH"] = str(ROOT)
    log_file = root / "gateway.log"
    out = log_file.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "-v", "-c", str(conf), "serve"],
        stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, preexec_fn=preexec_fn,
    )
    gw = GatewayProcess(root, conf, port, process, log_file, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited at start-up:\n{gw.log()}")
        if f"on 127.0.0.1:{port}" in gw.log():
            return gw
        time.sleep(0.05)
    gw.stop()
    raise RuntimeError(f"gateway did not start listening:\n{gw.log()}")
