"""A listed column never reaches the agent in clear, whatever the statement calls it.

The gateway in front of the private cluster masks ``*ssn*`` (tests/support/gateway.py). Row 4's
SSN (987-65-4320, area 9xx) is one the SSN detector does not recognise, so only lineage can hide
it: these tests fail if a spelling slips past the catalog-aware analysis.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.pgcluster import PgCluster
from tests.support.rawpg import login

from connectors.postgres.messages import (
    Bind,
    DataRow,
    ErrorResponse,
    Execute,
    Parse,
    Sync,
)

SECRET = "987-65-4320"  # customers.ssn of id 4; no detector masks it


@pytest.fixture(scope="module")
def objects(pg_cluster: PgCluster) -> Iterator[None]:
    """A view and a table of the test's own, made by the owner, readable by the gateway."""
    reader = pg_cluster.reader_user
    pg_cluster.sql_script(f"""
        CREATE VIEW public.lineage_v AS SELECT id, ssn AS tax_id, name FROM public.customers;
        CREATE VIEW public.lineage_vv AS SELECT id AS k, tax_id AS t FROM public.lineage_v;
        CREATE TABLE public.lineage_copy (id int, note text);
        GRANT SELECT ON public.lineage_v, public.lineage_vv TO {reader};
        GRANT ALL ON public.lineage_copy TO {reader};
    """)
    yield
    pg_cluster.sql_script("DROP VIEW public.lineage_vv; DROP VIEW public.lineage_v; "
                          "DROP TABLE public.lineage_copy;")


def one(gateway: GatewayProcess, sql: str) -> tuple[object, ...]:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return tuple(row)


# Shown as they are, under any name: masked in place (text) -- the row still comes back.
@pytest.mark.parametrize("sql", [
    "select ssn from customers where id = 4",
    "select ssn as x from customers where id = 4",
    "select e from customers as t(a, b, c, d, e, f) where a = 4",
    "select t.e from customers t(a, b, c, d, e) where t.a = 4",
    "select * from (select id, ssn as tax from customers) s(i, t) where i = 4",
    "with x(a, b) as (select id, ssn from customers) select b from x where a = 4",
    "select tax_id from lineage_v where id = 4",
    "select t from lineage_vv where k = 4",
    "select v.* from lineage_v v where v.id = 4",
    "select (select ssn from customers where id = 4)",
    "select (c).ssn from customers c where id = 4",
    "select ssn from customers where id = 4 union all select 'x' where false",
])
def test_a_listed_column_shown_under_any_name_is_masked(
    gateway: GatewayProcess, objects: None, sql: str
) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        try:
            rows = conn.execute(sql).fetchall()
        except psycopg.errors.InsufficientPrivilege as denied:
            # Refusing is also safe; a denial must name the masked column.
            assert "ssn" in str(denied) or "masked" in str(denied)
            return
    assert rows and all(SECRET not in str(row) for row in rows)
    assert any("****" in str(row) for row in rows)


# Computed with, probed or copied: refused, naming the column.
@pytest.mark.parametrize("sql", [
    "select c from customers c",
    "select c::text from customers c",
    "select row_to_json(c) from customers c",
    "select to_jsonb(c)->>'ssn' from customers c",
    "select json_agg(c) from customers c",
    "select customers from customers",
    "select concat(c.*) from customers c",
    "select jsonb_build_array(c.*) from customers c",
    "select ssn::int from customers",
    "select cast(ssn as varchar(3)) from customers",
    "select reverse(ssn) from customers",
    "select md5(tax_id) from lineage_v",
    "select substr(ssn, 1, 3) || substr(ssn, 4) from customers",
    "select count(distinct ssn) from customers",
    "select id from customers where ssn like '9%'",
    "select id from customers order by ssn",
    "select ssn, count(*) from customers group by ssn",
    "select name from customers union select ssn from customers",
    "select id from lineage_v where tax_id = '987-65-4320'",
    "insert into lineage_copy select id, ssn from customers",
    "with x as (select ssn from customers) insert into lineage_copy select 1, ssn from x",
    # Planned only: the row estimates come from the column's statistics (real values).
    "explain select id from customers where ssn = '987-65-4320'",
    "explain (format json) select id from customers where ssn < '5'",
])
def test_a_listed_column_computed_with_or_probed_is_refused(
    gateway: GatewayProcess, objects: None, pg_cluster: PgCluster, sql: str
) -> None:
    with psycopg.connect(gateway.dsn(token=gateway.token("dora", groups="bench"),
                                     user="dora"), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute(sql)
    assert "ssn" in str(denied.value) or "tax_id" in str(denied.value) or "masked" in str(
        denied.value)
    assert SECRET not in str(denied.value)
    assert pg_cluster.sql("select count(*) from lineage_copy").strip() == "0"


def test_a_name_matching_a_glob_is_not_masked_unless_it_is_a_listed_column(
    gateway: GatewayProcess,
) -> None:
    """`*password*` must not hide server settings: psql's \\password reads this."""
    (value,) = one(gateway, "show password_encryption")
    assert value in ("scram-sha-256", "md5")
    assert one(gateway, "select 'x' as ssn") == ("x",)


def test_extended_protocol_without_describe_is_masked_by_column(gateway: GatewayProcess) -> None:
    """The client never asks for a RowDescription: the gateway describes the portal itself."""
    conn = login(gateway.port, gateway.token())
    try:
        conn.send(Parse("", "select id, ssn from customers where id = 4").encode()
                  + Bind("", "").encode() + Execute("").encode() + Sync().encode())
        replies = conn.read_until_ready()
    finally:
        conn.close()
    rows = [m for m in replies if isinstance(m, DataRow)]
    assert [type(m).__name__ for m in replies if not isinstance(m, DataRow)] == [
        "ParseComplete", "BindComplete", "CommandComplete", "ReadyForQuery"]
    assert rows and rows[0].values == (b"4", b"****")
    assert not [m for m in replies if isinstance(m, ErrorResponse)]


@pytest.mark.parametrize(("options", "masked"), [
    ("", b"4\tEdsger Dijkstra\te***@example.com\t****-****-****-0004\t****\t-42.17\n"),
    ("(format csv)", b"4,Edsger Dijkstra,e***@example.com,****-****-****-0004,****,-42.17\n"),
])
def test_copy_to_stdout_masks_the_listed_columns_of_the_table(
    gateway: GatewayProcess, options: str, masked: bytes
) -> None:
    token = gateway.token("dora", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="dora"), autocommit=True) as conn:
        with conn.cursor().copy(f"copy customers to stdout {options}") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    assert SECRET.encode() not in data
    assert masked in data.replace(b'"', b"")


def test_binary_copy_to_stdout_is_masked_and_the_session_goes_on(gateway: GatewayProcess) -> None:
    token = gateway.token("dora", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="dora"), autocommit=True) as conn:
        with conn.cursor().copy("copy (select id, ssn, card_number from customers order by id) "
                                "to stdout (format binary)") as copy:
            copy.set_types(["int4", "text", "text"])
            rows = list(copy.rows())
        assert conn.execute("select 1").fetchone() == (1,)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert all(r[1] == "****" for r in rows)
    assert all(r[2] is not None and r[2].startswith("****-") for r in rows)


def test_notify_payloads_are_masked(gateway: GatewayProcess) -> None:
    token = gateway.token("dora", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="dora"), autocommit=True) as conn:
        conn.execute("listen lineage_channel")
        conn.execute("notify lineage_channel, 'card 4111111111111111 mail ada@example.com'")
        received = list(conn.notifies(timeout=5, stop_after=1))
        told = conn.info.backend_pid  # from BackendKeyData
        (real,) = conn.execute("select pg_backend_pid()").fetchone()  # type: ignore[misc]
    payload = received[0].payload
    assert "4111111111111111" not in payload and "ada@example.com" not in payload
    # The pid the client was told is the target's: its own notifications say so.
    assert received[0].pid == told == real


def test_a_huge_value_reaches_the_client_and_the_recording_keeps_a_capped_copy(
    gateway: GatewayProcess,
) -> None:
    token = gateway.token("dora", groups="bench")
    with psycopg.connect(gateway.dsn(token=token, user="dora"), autocommit=True) as conn:
        (value,) = conn.execute("select repeat('x', 6 * 1024 * 1024) || '-end'").fetchone()
        assert len(value) == 6 * 1024 * 1024 + 4 and value.endswith("-end")
        big = conn.execute("select %s::text", ("y" * 5 * 2**20,)).fetchone()
        assert big is not None and len(big[0]) == 5 * 2**20
        assert conn.execute("select 1").fetchone() == (1,)


def test_psql_backslash_commands_work_with_masking_on(gateway: GatewayProcess) -> None:
    token = gateway.token("dora", groups="bench")
    for command in (r"\d customers", r"\dt", r"\du", r"\l", r"\dv"):
        r = subprocess.run(["psql", gateway.dsn(token=token, user="dora"), "-X", "-c", command],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (command, r.stderr)
