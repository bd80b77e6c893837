"""Smoke test of the pg_cluster fixture with real clients, no gateway in between."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import asyncpg  # type: ignore[import-untyped]  # ships no stubs
import psycopg
import pytest
import trio

from tests.support.pgcluster import PgCluster


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_psql_verify_full_against_trustme_ca(pg_cluster: PgCluster, host: str) -> None:
    # Async on purpose: proves the sync session fixture is usable from trio_mode tests.
    dsn = pg_cluster.dsn(sslmode="verify-full", host=host)
    query = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    result = await trio.run_process(
        [str(pg_cluster.bindir / "psql"), "-X", "-A", "-t", "-d", dsn, "-c", query],
        capture_stdout=True,
        capture_stderr=True,
    )
    assert result.stdout.decode().strip() == "app_reader|t"


def test_psycopg_scram_over_tls_reads_customers(pg_cluster: PgCluster) -> None:
    # require_auth makes libpq refuse any other method, so this fails if pg_hba drifts to trust.
    with psycopg.connect(pg_cluster.dsn() + " require_auth=scram-sha-256") as conn:
        assert conn.pgconn.ssl_in_use
        cards = [row[0] for row in conn.execute("SELECT card_number FROM customers ORDER BY id")]
    assert cards[:2] == ["4111111111111111", "5500000000000004"]


def test_wrong_password_is_rejected(pg_cluster: PgCluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_cluster.dsn(password="not-the-password")).close()


def test_asyncpg_verifies_server_certificate(pg_cluster: PgCluster) -> None:
    # asyncpg is asyncio-only, so it gets its own loop inside a sync test.
    async def fetch() -> tuple[bool, int]:
        conn = await asyncpg.connect(
            host=pg_cluster.host,
            port=pg_cluster.port,
            user=pg_cluster.reader_user,
            password=pg_cluster.reader_password,
            database="app",
            ssl=ssl.create_default_context(cafile=str(pg_cluster.ca_file)),
        )
        try:
            in_tls = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            count = await conn.fetchval("SELECT count(*) FROM customers")
            return in_tls, count
        finally:
            await conn.close()

    assert asyncio.run(fetch()) == (True, 4)


@pytest.mark.parametrize(
    ("user_attr", "method", "verifier_prefix"),
    [("md5_user", "md5", "md5"), ("plain_user", "password", "SCRAM-SHA-256$")],
)
def test_legacy_auth_roles_log_in(
    pg_cluster: PgCluster, user_attr: str, method: str, verifier_prefix: str
) -> None:
    user = getattr(pg_cluster, user_attr)
    verifier = pg_cluster.sql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'")
    assert verifier.startswith(verifier_prefix)
    # Plain TCP, as the gateway's backend side would speak these methods.
    dsn = pg_cluster.dsn(user=user, sslmode="disable") + f" require_auth={method}"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_pgbench_select_only_as_reader(pg_cluster: PgCluster) -> None:
    result = subprocess.run(
        [
            str(pg_cluster.bindir / "pgbench"),
            "-S",
            "-t",
            "10",
            "-h",
            pg_cluster.host,
            "-p",
            str(pg_cluster.port),
            "-U",
            pg_cluster.reader_user,
            "app",
        ],
        env={"PGPASSWORD": pg_cluster.reader_password, "PGSSLMODE": "require"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "number of transactions actually processed: 10/10" in result.stdout
