"""Real PostgreSQL clients through the real gateway: psql, psycopg 3, asyncpg, pgbench."""

from __future__ import annotations

import asyncio
import ssl
import subprocess

import psycopg
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.pgcluster import PgCluster

CARDS = ["4111111111111111", "5500000000000004", "340000000000009", "6011000000000004"]


def psql(dsn: str, sql: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *extra, "-c", sql],
                          capture_output=True, text=True, timeout=60)


def test_psql_reads_with_cards_and_emails_masked(gateway: GatewayProcess) -> None:
    r = psql(gateway.dsn(), "select id, email, card_number from customers order by id")
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines()]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    for _, email, card in rows:
        assert card.endswith(card[-4:]) and not any(c in card for c in CARDS)
        assert "***@" in email
    assert rows[0][2].endswith("1111")


def test_psql_verify_full_against_the_gateway_certificate(gateway: GatewayProcess) -> None:
    cert = gateway.root / "var" / "tls" / "gateway.crt"
    r = psql(gateway.dsn(sslmode="verify-full", sslrootcert=str(cert)), "select 1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_psql_direct_tls_with_alpn(gateway: GatewayProcess) -> None:
    # libpq 17+ only; the Debian psql here may be older: then sslnegotiation is unknown to it.
    version = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout
    major = int(version.split()[-1].split(".")[0])
    r = psql(gateway.dsn(sslnegotiation="direct"), "select 42") if major >= 17 else None
    if r is None:
        # Fall back on psycopg's libpq, which is new enough to speak direct TLS.
        with psycopg.connect(gateway.dsn(sslnegotiation="direct")) as conn:
            assert conn.execute("select 42").fetchone() == (42,)
    else:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "42"


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg_extended_protocol_masks_in_both_formats(gateway: GatewayProcess, binary: bool) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        cur = conn.cursor(binary=binary)
        rows = cur.execute("select id, name, card_number, balance from customers where id = %s", (1,)).fetchall()
    assert len(rows) == 1
    ident, name, card, _balance = rows[0]
    assert ident == 1 and name == "Ada Lovelace"
    # Binary text is text: masked in place in both formats, never sent raw.
    assert card is not None and card.endswith("1111") and card not in CARDS


def test_psycopg_simple_protocol_and_transactions(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("begin")
        cur.execute("insert into customers(name, email) values ('Temp', 'temp@example.com') returning id")
        new_id = cur.fetchone()[0]  # type: ignore[index]
        cur.execute("rollback")
        cur.execute("select count(*) from customers where id = %s", (new_id,))
        assert cur.fetchone() == (0,)


def test_psycopg_pipeline_mode(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        with conn.pipeline():
            cursors = [conn.execute("select %s::int + 1", (i,)) for i in range(20)]
        assert [c.fetchone()[0] for c in cursors] == [i + 1 for i in range(20)]  # type: ignore[index]


def test_asyncpg_binary_protocol(gateway: GatewayProcess) -> None:
    import asyncpg  # type: ignore[import-untyped]

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def main() -> list[object]:
        conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="alice",
                                     password=gateway.token(), database="pg-app", ssl=ctx)
        try:
            rows = await conn.fetch("select id, email, card_number, balance from customers order by id")
            again = await conn.fetch("select id, email, card_number, balance from customers order by id")
            assert rows == again  # second run uses asyncpg's cached statement (no Describe)
            value = await conn.fetchval("select $1::int * 2", 21)
            assert value == 42
            return list(rows)
        finally:
            await conn.close()

    rows = asyncio.run(main())
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        card, email = r["card_number"], r["email"]
        # Binary text values are masked in place (not NULLed): the card keeps its last four.
        assert card is None or (card.startswith("****-") and card not in CARDS)
        assert email is None or ("***@" in email)
        assert r["balance"] is not None
    assert any(r["card_number"] for r in rows)


@pytest.mark.parametrize("mode", ["simple", "extended"])
@pytest.mark.parametrize("script", ["select-only", "tpcb-like"])
def test_pgbench_runs_without_failed_transactions(gateway: GatewayProcess, mode: str, script: str) -> None:
    env = {"PGPASSWORD": gateway.token("bench", groups="bench"), "PGSSLMODE": "require", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(gateway.port), "-U", "bench", "-n", "-b", script,
         "-M", mode, "-c", "4", "-j", "2", "-t", "25", "pg-app"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "number of transactions actually processed: 100/100" in r.stdout
    assert "number of failed transactions: 0" in r.stdout or "failed" not in r.stdout


def test_md5_and_cleartext_target_authentication(gateway: GatewayProcess) -> None:
    for target in ("pg-md5", "pg-plain"):
        r = psql(gateway.dsn(target), "select current_user")
        assert r.returncode == 0, (target, r.stderr)
        assert r.stdout.strip() in {"md5_user", "plain_user"}


def test_the_agent_never_learns_the_backend_credentials(gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    r = psql(gateway.dsn(), "select current_user, session_user")
    assert r.returncode == 0
    assert r.stdout.strip() == f"{pg_cluster.reader_user}|{pg_cluster.reader_user}"
    assert pg_cluster.reader_password not in gateway.log()


def test_copy_in_both_directions_and_notifications(gateway: GatewayProcess,
                                                   pg_cluster: PgCluster) -> None:
    # A table the catalog describes: a temporary one would be read masked whole, as the
    # gateway cannot see what it holds (docs/masking.md).
    pg_cluster.sql_script("DROP TABLE IF EXISTS public.imported;"
                          "CREATE TABLE public.imported (id int, note text);"
                          f"GRANT SELECT, INSERT ON public.imported TO {pg_cluster.reader_user};")
    token = gateway.token("bench", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="bench"), autocommit=True) as conn:
        with conn.cursor().copy("copy imported from stdin") as copy:
            for i in range(1000):
                copy.write_row((i, f"note {i}"))
        assert conn.execute("select count(*), sum(id) from imported").fetchone() == (1000, 499500)
        with conn.cursor().copy("copy (select id, note from imported where id < 3 order by id) to stdout") as copy:
            rows = [bytes(chunk) for chunk in copy]
        assert b"".join(rows) == b"0\tnote 0\n1\tnote 1\n2\tnote 2\n"
        conn.execute("listen wardgate_channel")
        conn.execute("notify wardgate_channel, 'hello'")
        notice_seen = []
        conn.add_notice_handler(lambda diag: notice_seen.append(diag.message_primary))
        # (A DO block could read masked columns out of sight: refused while columns are listed.)
        conn.execute('drop table if exists "card 4111111111111111"')
        received = list(conn.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in received] == ["hello"]
    assert notice_seen and "4111111111111111" not in notice_seen[0] and "1111" in notice_seen[0]


def test_psycopg_executemany_with_returning_gets_every_row(gateway: GatewayProcess,
                                                           pg_cluster: PgCluster) -> None:
    """psycopg 3 sends executemany(returning=True) as one pipeline of Bind/Execute pairs and
    reads one result per parameter set."""
    reader = pg_cluster.reader_user
    pg_cluster.sql_script("DROP TABLE IF EXISTS public.many; "
                          "CREATE TABLE public.many (id serial PRIMARY KEY, v text);"
                          f"GRANT SELECT, INSERT ON public.many TO {reader};"
                          f"GRANT USAGE ON SEQUENCE public.many_id_seq TO {reader};")
    token = gateway.token("bench", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="bench"), autocommit=True) as conn:
        cur = conn.cursor()
        cur.executemany("insert into many (v) values (%s) returning id, v",
                        [("a",), ("b",), ("c",)], returning=True)
        results = [cur.fetchall()]
        while cur.nextset():
            results.append(cur.fetchall())
    assert results == [[(1, "a")], [(2, "b")], [(3, "c")]]


def test_a_backend_terminated_under_a_session_is_a_closed_connection(
    gateway: GatewayProcess,
) -> None:
    """The client sees the server's own FATAL (57P01) and then a closed connection, as it
    would directly: drivers detect a broken connection by it."""
    token = gateway.token("bench", groups="bench")
    conn = psycopg.connect(gateway.dsn(token=token, user="bench"), autocommit=True)
    try:
        with psycopg.connect(gateway.dsn(token=token, user="bench"), autocommit=True) as other:
            other.execute("select pg_terminate_backend(%s)", (conn.info.backend_pid,))
        with pytest.raises(psycopg.errors.AdminShutdown):
            conn.execute("select 1")
        assert conn.closed and conn.broken
    finally:
        conn.close()
