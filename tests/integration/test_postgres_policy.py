"""Every statement judged: denials are native errors, the session goes on, nothing slips past."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from connectors.postgres.messages import (
    Bind,
    Close,
    Describe,
    Execute,
    Parse,
    Query,
    ReadyForQuery,
    Sync,
)
from tests.support.gateway import GatewayProcess
from tests.support.pgcluster import PgCluster
from tests.support.rawpg import errors_of, login


def sqlstate_of(exc: psycopg.Error) -> str | None:
    return exc.diag.sqlstate


def test_ddl_is_denied_with_42501_naming_the_rule_and_the_session_goes_on(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute("drop table customers")
        assert "no ddl for agents" in str(denied.value)
        assert "agents may not change the schema" in str(denied.value)
        assert conn.execute("select count(*) from customers").fetchone() == (4,)


def test_review_is_refused_saying_approval_is_required(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="approval required"):
            conn.execute("delete from customers where id = 1")
        assert conn.execute("select count(*) from customers").fetchone() == (4,)


def test_a_denial_inside_a_transaction_aborts_it_like_a_native_error(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn()) as conn:
        conn.execute("select 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("drop table customers")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("sql", [
    "select 1; drop table customers",
    "select 1 /*;*/; drop table customers",
    "select ';'; drop table customers; select 2",
])
def test_one_denied_statement_blocks_the_whole_message(gateway: GatewayProcess, pg_cluster: PgCluster, sql: str) -> None:
    r = subprocess.run(["psql", gateway.dsn(), "-X", "-c", sql], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "permission denied by wardgate" in r.stderr
    assert pg_cluster.sql("select count(*) from customers").strip() == "4"


@pytest.mark.parametrize("sql", [
    "select pg_terminate_backend(1)",
    "select lo_export(1, '/tmp/x')",
    "select set_config('role', 'postgres', false)",
    "select pg_read_file('/etc/passwd')",
    "copy customers to program 'cat'",
    "do $$ begin execute 'dr' || 'op table customers'; end $$",
    "with d as (delete from customers returning *) select * from d",
    "select * from customers for update",
    # PREPARE runs nothing; the EXECUTE of a held statement is held (approvals are off: refused)
    "prepare p as delete from customers; execute p",
    "call some_procedure()",
    "select definitely_unknown_function(1)",
])
def test_statements_that_look_read_only_but_are_not_are_denied(gateway: GatewayProcess, sql: str) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)


def test_sql_prepare_and_execute_are_judged_by_what_runs(gateway: GatewayProcess) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        cur = psycopg.ClientCursor(conn)
        cur.execute("prepare q as select count(*) from customers")
        cur.execute("execute q")
        assert cur.fetchone() == (4,)
        # What no PREPARE made is refused as PostgreSQL would refuse it.
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            cur.execute("execute never_prepared_here")


def test_extended_protocol_denial_skips_to_sync_and_recovers(gateway: GatewayProcess) -> None:
    conn = login(gateway.port, gateway.token())
    try:
        conn.send(Parse("", "drop table customers").encode() + Bind("", "").encode()
                  + Execute("").encode() + Sync().encode())
        replies = conn.read_until_ready()
        errors = errors_of(replies)
        assert len(errors) == 1 and errors[0].sqlstate == "42501"
        assert isinstance(replies[-1], ReadyForQuery)
        conn.send(Query("select count(*) from customers").encode())
        replies = conn.read_until_ready()
        assert not errors_of(replies)
    finally:
        conn.close()


def test_reparse_of_a_statement_name_is_a_new_decision(gateway: GatewayProcess, pg_cluster: PgCluster) -> None:
    """HOSTILE C.17: Parse/Bind a SELECT, then Close and re-Parse the same name as DELETE, then
    Execute, all before one Sync: what Execute runs is what was judged."""
    conn = login(gateway.port, gateway.token())
    try:
        conn.send(
            Parse("s1", "select count(*) from customers").encode()
            + Bind("p1", "s1").encode()
            + Close("S", "s1").encode()
            + Parse("s1", "delete from customers").encode()
            + Bind("p2", "s1").encode()
            + Describe("P", "p2").encode()
            + Execute("p2").encode()
            + Sync().encode()
        )
        replies = conn.read_until_ready()
        assert [e.sqlstate for e in errors_of(replies)] == ["42501"]
        # Replacing the unnamed statement the same way.
        conn.send(
            Parse("", "select 1").encode() + Parse("", "delete from customers").encode()
            + Bind("", "").encode() + Execute("").encode() + Sync().encode()
        )
        replies = conn.read_until_ready()
        assert [e.sqlstate for e in errors_of(replies)] == ["42501"]
    finally:
        conn.close()
    assert pg_cluster.sql("select count(*) from customers").strip() == "4"


@pytest.mark.parametrize("sql", [
    "select set_config('client_encoding', 'SJIS', false)",
    "select set_config(lower('CLIENT_ENCODING'), 'SJIS', false)",
    "set local client_encoding = 'SJIS'",
    "update pg_settings set setting = 'SJIS' where name = 'client_encoding'",
    "set standard_conforming_strings = off",
    "select set_config('standard_conforming_strings', 'off', false)",
])
def test_the_targets_string_reading_settings_cannot_be_changed(gateway: GatewayProcess,
                                                                sql: str) -> None:
    """The target stays UTF8 with standard-conforming strings, however the change is spelled
    (SET client_encoding itself is answered by the gateway at the client's edge)."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("begin") if sql.startswith("set local") else None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
        if sql.startswith("set local"):
            conn.execute("rollback")
        assert conn.execute("select current_setting('client_encoding'), "
                            "current_setting('standard_conforming_strings')").fetchone() == (
            "UTF8", "on")


def test_fast_path_function_calls_are_refused(gateway: GatewayProcess) -> None:
    from connectors.postgres.messages import FunctionCall

    conn = login(gateway.port, gateway.token())
    try:
        conn.send(FunctionCall(764, (), (), 0).encode())  # 764 = lo_import(text)
        replies = conn.read_until_ready()
        assert [e.sqlstate for e in errors_of(replies)] == ["42501"]
    finally:
        conn.close()


def test_a_denial_says_what_the_statement_is_and_which_rule_decided(
    gateway: GatewayProcess,
) -> None:
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute("select pg_sleep(0)")
        assert ('"pg_sleep" is a function with side effects (category admin)'
                in str(denied.value))
        assert 'wardgate rule "no ddl for agents"' in str(denied.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute("set role postgres")
        assert "(category role)" in str(denied.value)
        assert "policy.default" in str(denied.value)  # no rule allows it; the default denied


@pytest.mark.parametrize("sql", ["select 1; select 2", "select 1; drop table customers"])
def test_a_multi_statement_parse_gets_the_servers_own_error(gateway: GatewayProcess,
                                                            sql: str) -> None:
    """The server refuses it too (42601): the gateway says so itself, never a policy denial,
    and never forwards it; the session goes on."""
    conn = login(gateway.port, gateway.token("bob", "bench"))
    try:
        conn.send(Parse("", sql).encode() + Bind("", "").encode() + Execute("").encode()
                  + Sync().encode())
        errors = errors_of(conn.read_until_ready())
        assert [(e.sqlstate, e.fields.get("M")) for e in errors] == [
            ("42601", "cannot insert multiple commands into a prepared statement")]
        conn.send(Query("select 7").encode())
        replies = conn.read_until_ready()
        assert not errors_of(replies) and "7" in str(replies)
    finally:
        conn.close()
