"""A private, throw-away PostgreSQL cluster for integration tests.

Each cluster gets its own data directory, a free loopback port, its own unix-socket directory and a
TLS certificate from a trustme CA, so tests never touch the system server on 5432 or
/var/run/postgresql. Authentication mirrors production: SCRAM over TCP (TLS or not), plus one MD5
and one cleartext-password role so every backend auth method the gateway speaks can be exercised.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import trustme

from tests.support.ports import free_port

PG_BINARIES = ("initdb", "pg_ctl", "postgres", "psql", "pgbench")
OS_USER = "postgres"
ROOT_PREFIX = "wardgate-pg-"
# Linux caps sun_path at 108 bytes; the socket file name adds ".s.PGSQL.<port>" to the directory.
MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")
START_ATTEMPTS = 5

CUSTOMERS_DDL = """
CREATE TABLE public.customers (
    id serial PRIMARY KEY,
    name text,
    email text,
    card_number text,
    ssn text,
    balance numeric
);
"""
# Card numbers are the issuers' published test numbers; SSNs are ones the SSA never issues or
# voided publicly (078-05-1120 is the "Woolworth wallet" number), so nothing here is real data.
CUSTOMER_ROWS = (
    ("Ada Lovelace", "ada@example.com", "4111111111111111", "078-05-1120", "1200.50"),
    ("Alan Turing", "alan@example.org", "5500000000000004", "219-09-9999", "310.00"),
    ("Grace Hopper", "grace@example.net", "340000000000009", "123-45-6789", "0"),
    ("Edsger Dijkstra", "edsger@example.com", "6011000000000004", "987-65-4320", "-42.17"),
)
PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


class PgClusterError(RuntimeError):
    """The private cluster could not be created, started or queried."""


def find_pg_bindir() -> Path:
    """Locate a directory holding the PostgreSQL server binaries, newest version first.

    Debian keeps server binaries out of PATH (/usr/lib/postgresql/<ver>/bin) and pg_config may be
    missing, so the versioned directories are searched before PATH. WARDGATE_PG_BINDIR overrides.
    """
    candidates: list[Path] = []
    override = os.environ.get("WARDGATE_PG_BINDIR")
    if override:
        candidates.append(Path(override))
    candidates.extend(
        sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in PG_BINARIES):
            return bindir
    searched = ", ".join(str(c) for c in candidates) or "nothing found to search"
    raise PgClusterError(
        f"PostgreSQL server binaries ({', '.join(PG_BINARIES)}) not found (searched: {searched}). "
        "Install the postgresql server package (the Makefile does) or set WARDGATE_PG_BINDIR."
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return (-1,)


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # A developer's PGHOST/PGPORT/PGSSLMODE would silently redirect psql and pgbench (possibly to
    # the system server), so libpq variables are dropped and only explicit ones passed on.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


class PgCluster:
    """A running private cluster; create it with `PgCluster.start()`."""

    host = "127.0.0.1"
    superuser = "postgres"
    reader_user = "app_reader"
    owner_user = "app_owner"
    md5_user = "md5_user"
    plain_user = "plain_user"
    dbname = "app"

    def __init__(self, root: Path, bindir: Path) -> None:
        self.root = root
        self.bindir = bindir
        self.datadir = root / "data"
        self.socket_dir = root / "sock"
        self.log_file = root / "postgres.log"
        self.ca_file = root / "ca.pem"
        self.port = 0
        self.startup_seconds = 0.0
        self.extra_settings: dict[str, str] = {}
        self.superuser_password = secrets.token_hex(16)
        self.reader_password = secrets.token_hex(16)
        self.owner_password = secrets.token_hex(16)
        self.md5_password = secrets.token_hex(16)
        self.plain_password = secrets.token_hex(16)
        self._running = False
        self._as_root = os.geteuid() == 0

    @property
    def passwords(self) -> dict[str, str]:
        return {
            self.superuser: self.superuser_password,
            self.reader_user: self.reader_password,
            self.owner_user: self.owner_password,
            self.md5_user: self.md5_password,
            self.plain_user: self.plain_password,
        }

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(cls, base_dir: Path | None = None, *, settings: Mapping[str, str] | None = None) -> PgCluster:
        """initdb, configure, start and seed a cluster under a fresh `base_dir/wardgate-pg-*`.

        `base_dir` must be searchable by the `postgres` OS user when running as root, which rules
        out pytest's tmp_path (/tmp/pytest-of-root is 0700); the default is the system temp dir.
        """
        began = time.monotonic()
        bindir = find_pg_bindir()
        base = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
        _reap_orphans(base, bindir)
        root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=base))
        # Written first so a later run can tell this directory's owner died without cleaning up.
        (root / "owner").write_text(f"{os.getpid()} {socket.gethostname()}\n")
        cluster = cls(root, bindir)
        cluster.extra_settings = dict(settings or {})
        atexit.register(cluster.stop)
        try:
            cluster._prepare_root()
            cluster._initdb()
            cluster._write_tls()
            cluster._write_hba()
            cluster._start_server()
            cluster._seed()
        except BaseException:
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - began
        return cluster

    def stop(self) -> None:
        """Kill the server without a checkpoint and delete its files; safe to call twice."""
        atexit.unregister(self.stop)
        if self._running or (self.datadir / "postmaster.pid").exists():
            _stop_server(self.bindir, self.datadir)
            self._running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client helpers --------------------------------------------------------------------

    def dsn(
        self,
        user: str | None = None,
        password: str | None = None,
        dbname: str = "app",
        sslmode: str = "require",
        host: str | None = None,
    ) -> str:
        """A libpq keyword/value conninfo for a TCP connection to this cluster.

        `user` defaults to the reader role and `password` to that role's known password; verify-ca
        and verify-full get `sslrootcert` pointed at the trustme CA.
        """
        user = user or self.reader_user
        if password is None:
            password = self.passwords.get(user)
        params = {
            "host": host or self.host,
            "port": str(self.port),
            "dbname": dbname,
            "user": user,
            "sslmode": sslmode,
        }
        if password is not None:
            params["password"] = password
        if sslmode in ("verify-ca", "verify-full"):
            params["sslrootcert"] = str(self.ca_file)
        return " ".join(f"{key}={_conninfo_value(value)}" for key, value in params.items())

    def sql(self, statement: str, db: str = "app") -> str:
        """Run SQL as the superuser over the unix socket; return unaligned, tuples-only output."""
        result = self._run(self._psql_argv(db) + ["-c", statement])
        return result.stdout.rstrip("\n")

    def sql_script(self, script: str, db: str = "app") -> str:
        """Run a multi-statement script (each statement in its own transaction, stop on error)."""
        result = self._run(self._psql_argv(db) + ["-f", "-"], input=script)
        return result.stdout.rstrip("\n")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- internals -------------------------------------------------------------------------

    def _psql_argv(self, db: str) -> list[str]:
        return [
            str(self.bindir / "psql"),
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            self.superuser,
            "-d",
            db,
        ]

    def _run(
        self,
        argv: Sequence[str],
        *,
        as_server_user: bool = False,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if as_server_user and self._as_root:
            # PostgreSQL refuses to run as root; initdb and the postmaster run as `postgres`.
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            env=_client_env(env),
            # The caller's cwd may be unreadable for `postgres`, which makes every tool warn.
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"{' '.join(argv)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def _prepare_root(self) -> None:
        if len(str(self.socket_dir)) > MAX_SOCKET_DIR_LEN:
            raise PgClusterError(
                f"socket directory {self.socket_dir} is too long for a unix socket path; "
                "pass a shorter base_dir"
            )
        self.root.chmod(0o755)
        self.socket_dir.mkdir(mode=0o755)
        if not self._as_root:
            return
        for path in (self.root, self.socket_dir):
            shutil.chown(path, OS_USER, OS_USER)
        probe = subprocess.run(
            ["runuser", "-u", OS_USER, "--", "test", "-w", str(self.root)],
            cwd="/",
            check=False,
        )
        if probe.returncode != 0:
            raise PgClusterError(
                f"{self.root} is not reachable by the '{OS_USER}' OS user: some parent directory "
                "is not searchable (pytest's tmp_path is 0700). Pass a base_dir under a "
                "world-searchable directory such as /tmp."
            )

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if self._as_root:
            shutil.chown(pwfile, OS_USER, OS_USER)
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.superuser,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    # The cluster is disposable, so durability syscalls are pure cost.
                    "--no-sync",
                    "--no-instructions",
                ],
                as_server_user=True,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'wardgate.conf'\n")

    def _write_tls(self) -> None:
        ca = trustme.CA()
        # Both names so verify-full passes whether clients dial "localhost" or the IP.
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.ca_file.chmod(0o644)
        crt = self.datadir / "server.crt"
        key = self.datadir / "server.key"
        crt.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key))
        # The server refuses a key readable by group or others.
        key.chmod(0o600)
        if self._as_root:
            for path in (crt, key):
                shutil.chown(path, OS_USER, OS_USER)

    def _write_hba(self) -> None:
        # First match wins: the MD5 and cleartext roles must precede the generic SCRAM lines.
        (self.datadir / "pg_hba.conf").write_text(
            "local   all  all         trust\n"
            f"host    all  {self.md5_user}    127.0.0.1/32  md5\n"
            f"host    all  {self.plain_user}  127.0.0.1/32  password\n"
            "hostssl all  all         127.0.0.1/32  scram-sha-256\n"
            "host    all  all         127.0.0.1/32  scram-sha-256\n"
        )

    def _write_settings(self) -> None:
        # Rewritten on every start attempt because a retry picks a new port.
        conf = self.datadir / "wardgate.conf"
        conf.write_text(
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "ssl = on\n"
            "ssl_cert_file = 'server.crt'\n"
            "ssl_key_file = 'server.key'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 200\n"
            "shared_buffers = 16MB\n"
            "log_connections = on\n"
            "log_line_prefix = '%m [%p] %q%u@%d '\n"
            + "".join(f"{k} = {v}\n" for k, v in self.extra_settings.items())
        )
        if self._as_root:
            shutil.chown(conf, OS_USER, OS_USER)

    def _start_server(self) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            self._write_settings()
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                        "start",
                    ],
                    as_server_user=True,
                )
            except PgClusterError as exc:
                tail = self.log_tail()
                # free_port() cannot reserve the port, so losing a race for it is retried.
                if attempt < START_ATTEMPTS and "could not bind" in tail:
                    continue
                raise PgClusterError(f"{exc}\nserver log tail:\n{tail}") from None
            self._running = True
            return

    def _seed(self) -> None:
        pw = self.passwords
        self.sql_script(
            f"CREATE ROLE {self.owner_user} LOGIN PASSWORD '{pw[self.owner_user]}';\n"
            f"CREATE ROLE {self.reader_user} LOGIN PASSWORD '{pw[self.reader_user]}';\n"
            f"CREATE ROLE {self.plain_user} LOGIN PASSWORD '{pw[self.plain_user]}';\n"
            # MD5 auth needs an MD5 verifier; with a SCRAM one the server upgrades to SCRAM.
            "SET password_encryption = 'md5';\n"
            f"CREATE ROLE {self.md5_user} LOGIN PASSWORD '{pw[self.md5_user]}';\n"
            "RESET password_encryption;\n"
            f"CREATE DATABASE {self.dbname} OWNER {self.owner_user};\n",
            db="postgres",
        )
        self._run(
            [
                str(self.bindir / "pgbench"),
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.superuser,
                self.dbname,
            ]
        )
        rows = ",\n".join(
            "(" + ", ".join(f"'{value}'" for value in row) + ")" for row in CUSTOMER_ROWS
        )
        everyone = f"{self.reader_user}, {self.md5_user}, {self.plain_user}"
        self.sql_script(
            f"SET ROLE {self.owner_user};\n"
            f"{CUSTOMERS_DDL}\n"
            "INSERT INTO public.customers (name, email, card_number, ssn, balance) VALUES\n"
            f"{rows};\n"
            f"GRANT SELECT ON public.customers TO {everyone};\n"
            f"GRANT INSERT, UPDATE, DELETE ON public.customers TO {self.reader_user};\n"
            f"GRANT USAGE ON SEQUENCE public.customers_id_seq TO {self.reader_user};\n"
            "RESET ROLE;\n"
            f"GRANT ALL ON {', '.join(PGBENCH_TABLES)} TO {self.reader_user};\n"
        )


def _stop_server(bindir: Path, datadir: Path) -> None:
    """Best-effort immediate stop: the data is thrown away, so no shutdown checkpoint is needed."""
    argv = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    try:
        subprocess.run(
            argv, capture_output=True, env=_client_env(), cwd="/", timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        pass


def _reap_orphans(base: Path, bindir: Path) -> None:
    """Remove clusters left by test runs on this host that died before their cleanup ran."""
    hostname = socket.gethostname()
    for root in base.glob(f"{ROOT_PREFIX}*"):
        try:
            pid_text, owner_host = (root / "owner").read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue  # Still being created, or not ours to judge.
        if owner_host != hostname or _alive(pid):
            continue
        if (root / "data" / "postmaster.pid").exists():
            _stop_server(bindir, root / "data")
        shutil.rmtree(root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
