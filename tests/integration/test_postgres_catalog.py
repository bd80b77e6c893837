"""The gateway's own catalog connection: user types and relations it reads for masking, kept fresh
and never holding a database open when nobody works there."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.gateway import GatewayProcess, start_gateway
from tests.support.pgcluster import PgCluster


def bench(gateway: GatewayProcess) -> str:
    return gateway.dsn(token=gateway.token("dora", groups="bench"), user="dora")


def catalog_connections(pg_cluster: PgCluster) -> int:
    return int(pg_cluster.sql(
        "select count(*) from pg_stat_activity where application_name = 'wardgate catalog'"))


def test_the_catalog_connection_closes_with_the_last_session(
    gateway: GatewayProcess, pg_cluster: PgCluster
) -> None:
    with psycopg.connect(bench(gateway), autocommit=True) as conn:
        assert conn.execute("select ssn from customers where id = 4").fetchone() == ("****",)
        assert catalog_connections(pg_cluster) == 1
    deadline = time.monotonic() + 10
    while catalog_connections(pg_cluster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert catalog_connections(pg_cluster) == 0  # DROP DATABASE and maintenance can proceed


def test_a_composite_changed_through_the_gateway_is_described_again(
    gateway: GatewayProcess, pg_cluster: PgCluster
) -> None:
    import asyncpg  # type: ignore[import-untyped]

    pg_cluster.sql(f"grant create on schema public to {pg_cluster.reader_user}")

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    async def main() -> tuple[object, object]:
        conn = await asyncpg.connect(host="127.0.0.1", port=gateway.port, user="dora",
                                     password=gateway.token("dora", groups="bench"),
                                     database="pg-app", ssl=ctx)
        try:
            await conn.execute("create type cat_pair as (a int, b text)")
            await conn.execute("create table cat_t (p cat_pair)")
            await conn.execute("insert into cat_t values (row(1, 'x'))")
            before = await conn.fetchval("select p from cat_t")  # binary: the type is read
            await conn.execute("alter type cat_pair add attribute c text")
            await conn.reload_schema_state()
            after = await conn.fetchval("select p from cat_t")
            return before, after
        finally:
            await conn.execute("drop table if exists cat_t")
            await conn.execute("drop type if exists cat_pair")
            await conn.close()

    try:
        before, after = asyncio.run(main())
    finally:
        pg_cluster.sql(f"revoke create on schema public from {pg_cluster.reader_user}")
    assert tuple(before) == (1, "x")  # type: ignore[arg-type]
    assert after is not None and tuple(after) == (1, "x", None)  # type: ignore[arg-type]


def test_a_syntax_error_is_a_syntax_error_with_masking_on(gateway: GatewayProcess) -> None:
    with psycopg.connect(bench(gateway), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("l'acqua e' poca")
        assert conn.execute("select 1").fetchone() == (1,)


def test_a_statement_inlining_a_large_value_runs_with_masking_on(gateway: GatewayProcess) -> None:
    big = "x" * (3 * 2**20)
    with psycopg.connect(bench(gateway), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)  # parameters inlined into the SQL text, as psycopg2 does
        cur.execute("select length(%s)", (big,))
        assert cur.fetchone() == (len(big),)


@pytest.fixture(scope="module")
def detectors_only(pg_cluster: PgCluster,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway that masks by detectors only (no column globs)."""
    gw = start_gateway(tmp_path_factory.mktemp("detectors-only"), pg_cluster,
                       masking_columns=[])
    try:
        yield gw
    finally:
        gw.stop()


def test_binary_copy_is_typed_without_column_globs(detectors_only: GatewayProcess) -> None:
    with psycopg.connect(bench(detectors_only), autocommit=True) as conn:
        with conn.cursor().copy("copy (select id, name, card_number from customers order by id) "
                                "to stdout (format binary)") as copy:
            copy.set_types(["int4", "text", "text"])
            rows = list(copy.rows())
    assert [r[0] for r in rows] == [1, 2, 3, 4]  # integers are read as integers, not NULLed
    assert rows[0][1] == "Ada Lovelace"
    assert all(r[2].startswith("****-") for r in rows)


def test_a_temporary_table_copies_out_unchanged_without_column_globs(
    detectors_only: GatewayProcess,
) -> None:
    """Without listed columns nothing is hidden whole: a temporary table (which the catalog
    cannot see) copies out as it is, only detector findings masked (psycopg2's COPY tests)."""
    with psycopg.connect(bench(detectors_only), autocommit=True) as conn:
        conn.execute("create temp table tcopy (id int, data text)")
        conn.execute("insert into tcopy values (1, 'plain'), (2, 'card 4111111111111111'), "
                     "(3, null)")
        with conn.cursor().copy("copy tcopy to stdout") as copy:
            text = b"".join(bytes(chunk) for chunk in copy)
        assert conn.execute("select sum(id) from tcopy").fetchone() == (6,)
    # A field with a finding whose type the gateway cannot know is NULLed (LIMITATIONS.md).
    assert text.decode().splitlines() == ["1\tplain", "2\t\\N", "3\t\\N"]


def test_a_cached_statement_calling_a_user_function_runs_again_without_column_globs(
    detectors_only: GatewayProcess,
) -> None:
    """Drivers cache prepared statements (asyncpg always, psycopg after its threshold). After
    code the gateway cannot see, names are forgotten only where a listed column could come out
    under a swapped one; without listed columns the cached statement keeps working."""
    with psycopg.connect(bench(detectors_only), autocommit=True) as conn:
        conn.prepare_threshold = 0
        conn.execute("create function pg_temp.twice(i int) returns int language plpgsql "
                     "as $$ begin raise notice 'called %', i; return 2 * i; end $$")
        results = [conn.execute("select pg_temp.twice(%s)", (i,)).fetchone() for i in range(3)]
    assert results == [(0,), (2,), (4,)]


def test_with_column_globs_a_name_is_not_trusted_after_a_user_function(
    gateway: GatewayProcess,
) -> None:
    """The same with listed columns: the cached statement is refused with the server's own
    SQLSTATE for a statement it does not know, so the driver prepares it again or says so."""
    with psycopg.connect(bench(gateway), autocommit=True) as conn:
        conn.prepare_threshold = 0
        conn.execute("create function pg_temp.twice(i int) returns int language plpgsql "
                     "as $$ begin return 2 * i; end $$")
        # (What a user function returns is opaque: masked whole, NULL for a number.)
        assert conn.execute("select pg_temp.twice(%s)", (1,)).fetchone() == (None,)
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select pg_temp.twice(%s)", (2,))
    assert refused.value.sqlstate in ("26000", "34000")


def test_a_cached_statement_sees_a_composite_changed_since_as_it_would_directly(
    detectors_only: GatewayProcess, pg_cluster: PgCluster
) -> None:
    """asyncpg caches its statements and their types: after ALTER TYPE ... ADD ATTRIBUTE the
    cached statement's rows carry three fields where it knows two, and asyncpg says so
    (OutdatedSchemaCacheError) and re-prepares. The gateway must describe the type again
    for a row of a statement described before the change, not NULL the value."""
    import asyncpg

    pg_cluster.sql(f"grant create on schema public to {pg_cluster.reader_user}")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

    async def main() -> tuple[object, type[BaseException] | None, object]:
        conn = await asyncpg.connect(host="127.0.0.1", port=detectors_only.port, user="dora",
                                     password=detectors_only.token("dora", groups="bench"),
                                     database="pg-app", ssl=ctx)
        try:
            await conn.execute("create type cat_trio as (x int, y int)")
            await conn.execute("create table cat_t3 (a int, b cat_trio)")
            await conn.execute("insert into cat_t3 values (1, (2, 3))")
            before = await conn.fetchrow("select * from cat_t3")
            await conn.execute("alter type cat_trio add attribute c text")
            raised: type[BaseException] | None = None
            try:
                await conn.fetchrow("select * from cat_t3")
            except asyncpg.OutdatedSchemaCacheError as exc:
                raised = type(exc)
            after = await conn.fetchrow("select * from cat_t3")  # re-prepared by asyncpg
            return before, raised, after
        finally:
            await conn.execute("drop table if exists cat_t3")
            await conn.execute("drop type if exists cat_trio")
            await conn.close()

    try:
        before, raised, after = asyncio.run(main())
    finally:
        pg_cluster.sql(f"revoke create on schema public from {pg_cluster.reader_user}")
    assert tuple(before) == (1, (2, 3))  # type: ignore[arg-type]
    assert raised is not None and raised.__name__ == "OutdatedSchemaCacheError"
    assert tuple(after) == (1, (2, 3, None))  # type: ignore[arg-type]
