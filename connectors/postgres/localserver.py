"""A throwaway PostgreSQL server from the machine's own binaries, for ``wardgate demo``."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from gateway.errors import GatewayError

DEMO_SCHEMA = """
CREATE ROLE app_reader LOGIN PASSWORD '{password}';
CREATE DATABASE app;
\\connect app
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text,
    card_number text,
    plan text
);
INSERT INTO customers (name, email, card_number, plan) VALUES
    ('Ada Lovelace', 'ada@example.com', '4111 1111 1111 1111', 'pro'),
    ('Alan Turing', 'alan@example.org', '5500-0000-0000-0004', 'free'),
    ('Grace Hopper', 'grace@example.net', '340000000000009', 'pro'),
    ('Edsger Dijkstra', 'edsger@example.com', '6011000000000004', 'team');
GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO app_reader;
GRANT USAGE ON SEQUENCE customers_id_seq TO app_reader;
"""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, or the one on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()],
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise GatewayError(
        "wardgate demo needs PostgreSQL's server binaries (initdb, postgres): "
        "apt-get install postgresql"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """initdb + postgres in ``root``; runs as the ``postgres`` OS user when started as root,
    because PostgreSQL refuses to run as root."""

    def __init__(self, root: Path | None = None) -> None:
        # A throwaway server lives in the system temp dir: the postgres OS user must be able to
        # reach it, which a directory under /root (0700) would not allow.
        self.root = root if root is not None else Path(tempfile.mkdtemp(prefix="wardgate-demo-pg-"))
        self.bindir = find_bindir()
        self.datadir = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self._as_root = os.geteuid() == 0

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)

    def _run(self, *argv: str, stdin: str | None = None) -> None:
        result = subprocess.run(self._cmd(*argv), input=stdin, capture_output=True, text=True,
                                timeout=120, check=False)
        if result.returncode != 0:
            raise GatewayError(f"{' '.join(argv[:2])} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
            # The postgres user must be able to reach root's working directory.
            for parent in self.root.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise GatewayError(f"{parent} is not searchable by the postgres user; run the demo elsewhere")
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start")
        psql = shutil.which("psql") or str(self.bindir / "psql")
        self._run(psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.root), "-p", str(self.port),
                  "-U", "postgres", "-d", "postgres", stdin=DEMO_SCHEMA.format(password=self.password))

    def stop(self) -> None:
        subprocess.run(self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "stop"),
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
