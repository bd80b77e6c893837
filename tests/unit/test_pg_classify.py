"""connectors.postgres.classify: what each SQL statement is, as the policy engine will see it."""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.postgres import classify as classify_module
from connectors.postgres import functions
from connectors.postgres.classify import (
    classify,
    classify_with_prepared,
    prepared_statement_name,
    resolve_execute,
)
from gateway.model import Category, Command

R, W, DDL, DCL = Category.READ, Category.WRITE, Category.DDL, Category.DCL
ADMIN, TX, SESSION = Category.ADMIN, Category.TRANSACTION, Category.SESSION
UNKNOWN, ROLE = Category.UNKNOWN, Category.ROLE


@dataclass(frozen=True)
class Case:
    sql: str
    kinds: AbstractSet[str]  # expected among the command's kinds
    categories: AbstractSet[Category]  # expected exactly
    flags: AbstractSet[str] = frozenset()  # expected among the flags
    objects: AbstractSet[str] = frozenset()  # expected among the objects


# fmt: off
CASES = [
    # READ
    Case("SELECT abalance FROM pgbench_accounts WHERE aid = $1",
         {"select"}, {R}, objects={"pgbench_accounts"}),
    Case("SELECT count(*), lower(name) FROM public.users u JOIN s.orders o ON o.uid = u.id",
         {"select"}, {R}, objects={"public.users", "s.orders"}),
    Case('SELECT * FROM "Mixed"."Case"', {"select"}, {R}, objects={"Mixed.Case"}),
    Case('SELECT * FROM "a.b"', {"select"}, {R}, objects={'"a.b"'}),
    Case("SELECT * FROM MyTable", {"select"}, {R}, objects={"mytable"}),
    Case("SELECT pg_catalog.count(*) FROM t", {"select"}, {R}),
    Case("SELECT reverse(card) FROM cards", {"select"}, {R}, objects={"cards"}),
    Case("SELECT encode(card::bytea, 'hex'), md5(card) FROM cards", {"select"}, {R}),
    Case("SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", {"select"}, {R}),
    Case("VALUES (1, 'a'), (2, 'b')", {"select"}, {R}),
    Case("SELECT 1 UNION ALL SELECT 2 FROM t2", {"select"}, {R}, objects={"t2"}),
    Case("SELECT * FROM generate_series(1, 10) g, unnest(ARRAY[1,2])", {"select"}, {R}),
    Case("SELECT jsonb_build_object('a', 1) ->> 'a', now(), date_trunc('day', now())",
         {"select"}, {R}),
    Case("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * "
         "FROM r",
         {"select"}, {R}),
    Case("SELECT pg_get_viewdef('v'::regclass), has_table_privilege('t', 'select')",
         {"select"}, {R}),
    # Builtins GUI clients and psql call at connect and when browsing (psql \dO, pgAdmin), and the
    # functions behind read-only system views (pg_settings, pg_cursors, ...).
    Case("SELECT getdatabaseencoding(), pg_catalog.pg_is_wal_replay_paused()", {"select"}, {R}),
    Case("SELECT * FROM pg_catalog.pg_show_all_settings() s WHERE s.name = 'work_mem'",
         {"select"}, {R}),
    Case("SELECT * FROM pg_cursor(), pg_prepared_statement(), pg_prepared_xact()", {"select"}, {R}),
    Case("SELECT * FROM pg_timezone_names(), pg_timezone_abbrevs(), pg_available_extensions(), "
         "pg_available_extension_versions()", {"select"}, {R}),
    Case("SELECT set_config('bytea_output', 'hex', false) FROM pg_show_all_settings() "
         "WHERE name = 'bytea_output'", {"select"}, {SESSION}, {"side_effect_function"},
         {"function:set_config"}),
    # The same names in another schema are the agent's code.
    Case("SELECT * FROM app.pg_show_all_settings()", {"select"}, {UNKNOWN}, {"unknown_function"},
         {"function:app.pg_show_all_settings"}),
    Case("SHOW search_path", {"show"}, {R}),
    Case("SHOW ALL", {"show"}, {R}),
    Case("EXPLAIN SELECT * FROM t", {"explain"}, {R}, objects={"t"}),
    Case("EXPLAIN DELETE FROM t", {"explain"}, {R}, objects={"t"}),
    Case("EXPLAIN (ANALYZE false) DELETE FROM t", {"explain"}, {R}),
    Case("EXPLAIN SELECT pg_sleep(100)", {"explain"}, {R}),
    Case("FETCH 10 FROM c", {"fetch"}, {R}),
    Case("MOVE c", {"move"}, {R}),
    Case("DECLARE c CURSOR FOR SELECT * FROM t", {"declare", "select"}, {R}, objects={"t"}),
    Case("COPY t TO STDOUT", {"copy", "copy_to"}, {R}, {"copy_to_stdout"}, {"t"}),
    Case("COPY (SELECT card FROM cards) TO STDOUT (FORMAT binary)",
         {"copy", "select"}, {R}, {"copy_to_stdout"}, {"cards"}),
    # WRITE
    Case("INSERT INTO t (a) VALUES (1)", {"insert"}, {W}, objects={"t"}),
    Case("INSERT INTO t SELECT * FROM s ON CONFLICT (a) DO UPDATE SET b = 1",
         {"insert"}, {W}, objects={"t", "s"}),
    Case("UPDATE t SET a = 1 WHERE id = 5", {"update"}, {W}, objects={"t"}),
    Case("UPDATE t SET a = 1", {"update"}, {W}, {"no_where"}, {"t"}),
    Case("DELETE FROM s.t", {"delete"}, {W}, {"no_where"}, {"s.t"}),
    Case("DELETE FROM t WHERE id = 1 RETURNING *", {"delete"}, {W}),
    Case("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
         {"merge"}, {W}, objects={"t", "s"}),
    Case("TRUNCATE a, b.c", {"truncate"}, {W}, objects={"a", "b.c"}),
    Case("COPY t FROM STDIN", {"copy", "copy_from"}, {W}, {"copy_from_stdin"}, {"t"}),
    # Every statement nested in another is among its kinds: a rule on delete sees these.
    Case("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         {"select", "delete"}, {W}, {"writable_cte", "no_where"}, {"t"}),
    Case("WITH a AS (SELECT 1), b AS (WITH c AS (UPDATE t SET x = 1 WHERE y RETURNING 1) "
         "SELECT * FROM c) SELECT * FROM b", {"select", "update"}, {W}, {"writable_cte"}),
    Case("WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE "
         "RETURNING t.*) SELECT * FROM m", {"select", "merge"}, {W}, {"writable_cte"}),
    Case("EXPLAIN ANALYZE DELETE FROM t WHERE id = 1", {"explain", "delete"}, {W},
         {"explain_analyze"}),
    Case("EXPLAIN (ANALYZE, BUFFERS) WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         {"explain", "select", "delete"}, {W}, {"explain_analyze", "writable_cte"}),
    Case("EXPLAIN WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", {"explain"}, {R}),
    Case("COPY (DELETE FROM t WHERE id = 1 RETURNING *) TO STDOUT", {"copy_to", "delete"}, {W},
         {"copy_to_stdout"}),
    Case("COPY (WITH d AS (UPDATE t SET a = 1 WHERE b RETURNING *) SELECT * FROM d) TO STDOUT",
         {"copy_to", "select", "update"}, {W}),
    Case("CREATE TABLE x AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         {"create_table", "select", "delete"}, {DDL, W}),
    Case("SELECT * INTO x FROM (SELECT 1) s", {"select", "select_into", "create_table"}, {W, DDL},
         {"into"}),
    Case("WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * INTO x FROM d",
         {"select", "insert", "select_into"}, {W, DDL}, {"into", "writable_cte"}),
    Case("PREPARE p AS WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         {"prepare", "select", "delete"}, {W}),
    Case("DECLARE c CURSOR FOR WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         {"declare", "select", "delete"}, {W}),
    Case("WITH u AS (UPDATE t SET a = 1 WHERE b = 2 RETURNING *) SELECT 1",
         {"select"}, {W}, {"writable_cte"}),
    Case("SELECT * FROM t FOR UPDATE", {"select"}, {W}, {"locking"}),
    Case("SELECT * FROM (SELECT * FROM t FOR SHARE SKIP LOCKED) s", {"select"}, {W}, {"locking"}),
    Case("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", {"declare"}, {W}, {"locking"}),
    Case("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", {"lock"}, {W}, {"locking"}, {"t"}),
    Case("SELECT nextval('s')", {"select"}, {W}, {"side_effect_function"}, {"function:nextval"}),
    Case("SELECT pg_advisory_lock(1)", {"select"}, {W}, {"locking", "side_effect_function"}),
    Case("SELECT pg_notify('c', 'x')", {"select"}, {W}, {"side_effect_function"}),
    Case("NOTIFY c, 'x'", {"notify"}, {W}),
    Case("EXPLAIN ANALYZE DELETE FROM t",
         {"explain", "delete"}, {W}, {"explain_analyze", "no_where"}, {"t"}),
    Case("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE b = 1",
         {"explain", "update"}, {W}, {"explain_analyze"}),
    Case("SELECT * INTO newt FROM t",
         {"select", "select_into", "create_table"}, {W, DDL}, {"into"}, {"newt", "t"}),
    Case("SELECT lo_unlink(42)", {"select"}, {W}, {"large_object"}),
    # DDL
    Case("CREATE TABLE s.t (a int PRIMARY KEY, b text DEFAULT nextval('q'))",
         {"create", "create_table"}, {DDL}, objects={"s.t"}),
    Case("CREATE TABLE t2 AS SELECT * FROM t",
         {"create", "create_table"}, {DDL, W}, objects={"t2", "t"}),
    Case("CREATE MATERIALIZED VIEW m AS SELECT 1",
         {"create", "create_materialized_view"}, {DDL, W}),
    Case("CREATE INDEX CONCURRENTLY i ON t (lower(a))",
         {"create", "create_index"}, {DDL}, objects={"t"}),
    Case("CREATE VIEW v AS SELECT pg_sleep(1), a FROM t",
         {"create", "create_view"}, {DDL}, objects={"v", "t", "function:pg_sleep"}),
    Case("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM t; SELECT 1'",
         {"create", "create_function"}, {DDL}),
    # A stored body's statements are its kinds too (a rule on delete applies), not its effects.
    Case("CREATE FUNCTION f() RETURNS int BEGIN ATOMIC DELETE FROM t; SELECT 1; END",
         {"create", "create_function", "delete"}, {DDL, W}, {"stored_dml", "no_where"},
         objects={"t"}),
    Case("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$",
         {"create", "create_procedure"}, {DDL}),
    Case("CREATE SEQUENCE sq", {"create", "create_sequence"}, {DDL}),
    Case("CREATE SCHEMA app", {"create", "create_schema"}, {DDL}),
    Case("CREATE TYPE mood AS ENUM ('ok', 'sad')", {"create", "create_type"}, {DDL}),
    Case("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
         {"create", "create_trigger"}, {DDL}, objects={"t"}),
    Case("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u",
         {"create", "create_rule", "delete"}, {DDL, W}, {"stored_dml"}, objects={"t", "u"}),
    Case("CREATE RULE r AS ON SELECT TO t DO ALSO NOTIFY ch",
         {"create", "create_rule", "notify"}, {DDL, W}),
    Case("ALTER TABLE t ADD COLUMN c int", {"alter", "alter_table"}, {DDL}, objects={"t"}),
    Case("ALTER TABLE t RENAME COLUMN a TO b", {"alter", "alter_table", "rename"}, {DDL}),
    Case("ALTER TABLE t RENAME TO u", {"alter", "alter_table", "rename"}, {DDL}),
    Case("ALTER INDEX i SET TABLESPACE x", {"alter", "alter_index"}, {DDL}),
    Case("ALTER TABLE s.t SET SCHEMA u", {"alter", "alter_table", "set_schema"}, {DDL}),
    Case("DROP TABLE t, s.u", {"drop", "drop_table"}, {DDL}, objects={"t", "s.u"}),
    Case("DROP VIEW IF EXISTS v CASCADE", {"drop", "drop_view"}, {DDL}, objects={"v"}),
    Case("DROP MATERIALIZED VIEW m", {"drop", "drop_materialized_view"}, {DDL}),
    Case("DROP FUNCTION f(int)", {"drop", "drop_function"}, {DDL}, objects={"function:f"}),
    Case("DROP SCHEMA app CASCADE", {"drop", "drop_schema"}, {DDL}),
    Case("DROP DATABASE prod", {"drop", "drop_database"}, {DDL}),
    Case("COMMENT ON TABLE s.t IS 'x'", {"comment"}, {DDL}, objects={"s.t"}),
    Case("REFRESH MATERIALIZED VIEW m", {"refresh_materialized_view"}, {DDL}, objects={"m"}),
    Case("CLUSTER t USING i", {"cluster"}, {DDL}),
    Case("REINDEX TABLE t", {"reindex"}, {DDL}),
    Case("CREATE AGGREGATE a (int) (sfunc = f, stype = int)",
         {"create", "create_aggregate"}, {DDL}),
    Case("IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l", {"import_foreign_schema"}, {DDL}),
    # DCL
    Case("GRANT SELECT ON t TO agent", {"grant"}, {DCL}, objects={"t"}),
    Case("REVOKE ALL ON s.t FROM public", {"revoke"}, {DCL}, objects={"s.t"}),
    Case("GRANT admin TO agent", {"grant", "grant_role"}, {DCL}),
    Case("REVOKE admin FROM agent", {"revoke", "revoke_role"}, {DCL}),
    Case("CREATE ROLE r LOGIN PASSWORD 'x'", {"create", "create_role"}, {DCL}),
    Case("CREATE USER u", {"create", "create_role"}, {DCL}),
    Case("ALTER ROLE r SUPERUSER", {"alter", "alter_role"}, {DCL}),
    Case("ALTER ROLE r SET search_path = x", {"alter", "alter_role"}, {DCL}),
    Case("DROP ROLE r", {"drop", "drop_role"}, {DCL}),
    Case("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO r",
         {"alter", "alter_default_privileges"}, {DCL}),
    Case("ALTER TABLE t OWNER TO r", {"alter", "alter_table"}, {DDL, DCL}),
    Case("ALTER TABLE t DISABLE ROW LEVEL SECURITY", {"alter", "alter_table"}, {DDL, DCL}),
    Case("ALTER FUNCTION f() OWNER TO r", {"alter", "alter_function", "alter_owner"}, {DDL, DCL}),
    Case("CREATE POLICY p ON t USING (owner = current_user)",
         {"create", "create_policy"}, {DDL, DCL}),
    # Other sessions' statement text (every session is the gateway's one database user).
    Case("SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b",
         {"select"}, {ADMIN}),
    Case("SELECT * FROM pg_stat_get_activity(NULL)", {"select"}, {ADMIN}),
    Case("SELECT query FROM pg_stat_activity", {"select"}, {ADMIN}),
    Case("SELECT pg_stat_get_numscans('customers'::regclass)", {"select"}, {R}),
    # ROLE: changes of the identity statements run as are their own category.
    Case("SET ROLE admin", {"set", "set_role"}, {ROLE, SESSION}, {"role_change"}),
    Case('SET "Role" = admin', {"set", "set_role"}, {ROLE, SESSION}),
    Case("SET LOCAL ROLE admin", {"set", "set_role"}, {ROLE, SESSION}),
    Case("SET SESSION AUTHORIZATION postgres",
         {"set", "set_session_authorization"}, {ROLE, SESSION}),
    # Back to the login identity widens nothing.
    Case("RESET ROLE", {"reset", "reset_role"}, {SESSION}),
    Case("SET ROLE NONE", {"set", "reset_role"}, {SESSION}),
    Case("SET SESSION AUTHORIZATION DEFAULT", {"set", "reset_session_authorization"}, {SESSION}),
    Case("SELECT set_config('role', 'admin', false)",
         {"select"}, {ROLE, SESSION}, {"side_effect_function", "role_change"},
         {"function:set_config"}),
    Case("SELECT pg_catalog.set_config('session_authorization', 'postgres', true)",
         {"select"}, {ROLE, SESSION}, {"role_change"}),
    # A computed setting name could be any setting: role, client_encoding, search_path.
    Case("SELECT set_config('ro' || 'le', 'admin', false)", {"select"}, {ROLE, ADMIN, SESSION},
         {"role_change", "lexer_setting", "search_path"}),
    Case("SELECT set_config(lower('CLIENT_ENCODING'), 'SJIS', false)", {"select"},
         {ROLE, ADMIN, SESSION}, {"lexer_setting"}),
    Case("SELECT set_config(name, 'x', false) FROM pg_settings", {"select"},
         {ROLE, ADMIN, SESSION}, {"lexer_setting", "role_change"}),
    Case("SELECT set_config('client_encoding', 'SJIS', false)", {"select"}, {ADMIN, SESSION},
         {"lexer_setting"}),
    Case("SELECT set_config('standard_conforming_strings', current_setting('x'), false)",
         {"select"}, {ADMIN, SESSION}, {"lexer_setting"}),
    Case("SELECT set_config('statement_timeout', '5s', false)", {"select"}, {SESSION}),
    # pg_settings rows are settings: writing them is set_config on whatever the rows name.
    Case("UPDATE pg_settings SET setting = 'SJIS' WHERE name = 'client_encoding'",
         {"update", "update_pg_settings"}, {W, ROLE, ADMIN}, {"lexer_setting", "role_change"}),
    Case("UPDATE pg_catalog.pg_settings SET setting = 'admin' WHERE name = 'role'",
         {"update"}, {W, ROLE, ADMIN}, {"role_change"}),
    Case("WITH u AS (UPDATE pg_settings SET setting = 'off' WHERE name = "
         "'standard_conforming_strings' RETURNING 1) SELECT * FROM u",
         {"select", "update"}, {W, ROLE, ADMIN}, {"lexer_setting", "writable_cte"}),
    # Settings stored for later sessions or calls are flagged like SET.
    Case("ALTER DATABASE app SET client_encoding = 'SJIS'", {"alter", "alter_database"}, {DDL},
         {"lexer_setting"}),
    Case("ALTER ROLE app SET standard_conforming_strings = off", {"alter_role"}, {DCL},
         {"lexer_setting"}),
    Case("ALTER FUNCTION f() SET search_path = evil, pg_catalog", {"alter", "alter_function"},
         {DDL}, {"search_path"}),
    Case("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET client_encoding = 'SJIS' "
         "AS 'SELECT 1'", {"create_function"}, {DDL}, {"lexer_setting"}),
    # ADMIN
    Case("SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
         {"select"}, {ADMIN}, {"side_effect_function"},
         {"function:pg_terminate_backend", "pg_stat_activity"}),
    Case("SELECT pg_catalog.pg_cancel_backend(1)", {"select"}, {ADMIN}),
    Case("SELECT pg_reload_conf()", {"select"}, {ADMIN}),
    Case("SELECT pg_read_file('/etc/passwd')", {"select"}, {ADMIN}, {"server_file"}),
    Case("SELECT * FROM pg_ls_dir('.')", {"select"}, {ADMIN}, {"server_file"}),
    Case("SELECT lo_export(42, '/tmp/x')", {"select"}, {ADMIN, W}, {"large_object"}),
    Case("SELECT lo_get(42)", {"select"}, {ADMIN}, {"large_object"}),
    Case("SELECT pg_sleep(10)", {"select"}, {ADMIN}),
    Case("SELECT pg_create_logical_replication_slot('s', 'pgoutput')",
         {"select"}, {ADMIN}, {"replication"}),
    Case("SELECT count(*) FROM t WHERE pg_sleep(1) IS NOT NULL", {"select"}, {ADMIN}),
    Case("SELECT * FROM t ORDER BY pg_terminate_backend(1)", {"select"}, {ADMIN}),
    Case("SELECT (SELECT pg_terminate_backend(1))", {"select"}, {ADMIN}),
    Case("COPY t TO PROGRAM 'curl evil'", {"copy", "copy_to"}, {ADMIN, W}, {"copy_program"}),
    Case("COPY t FROM PROGRAM 'id'", {"copy", "copy_from"}, {ADMIN, W}, {"copy_program"}),
    Case("COPY t TO '/tmp/out'", {"copy"}, {ADMIN, W}, {"copy_file"}),
    Case("COPY t FROM '/etc/passwd'", {"copy"}, {ADMIN, W}, {"copy_file"}),
    Case("VACUUM FULL t", {"vacuum"}, {ADMIN}, objects={"t"}),
    Case("ANALYZE t", {"analyze"}, {ADMIN}, objects={"t"}),
    Case("CHECKPOINT", {"checkpoint"}, {ADMIN}),
    Case("LOAD 'plugin'", {"load"}, {ADMIN}),
    Case("ALTER SYSTEM SET work_mem = '1GB'", {"alter", "alter_system"}, {ADMIN}),
    Case("CREATE EXTENSION dblink", {"create", "create_extension"}, {DDL, ADMIN}),
    Case("SET session_replication_role = replica",
         {"set"}, {SESSION, ADMIN}, {"sensitive_setting"}),
    Case("SET LOCAL log_statement = 'none'", {"set"}, {SESSION, ADMIN}, {"sensitive_setting"}),
    Case("SET standard_conforming_strings = off", {"set"}, {SESSION, ADMIN}, {"lexer_setting"}),
    # The relay answers SET client_encoding itself (the target stays UTF8); SET LOCAL it cannot.
    Case("SET client_encoding = 'SJIS'", {"set"}, {SESSION}, {"client_encoding"},
         {"encoding:SJIS"}),
    Case("SET NAMES 'latin1'", {"set"}, {SESSION}, {"client_encoding"}, {"encoding:latin1"}),
    Case("RESET client_encoding", {"reset"}, {SESSION}, {"client_encoding"}, {"encoding:"}),
    Case("SET LOCAL client_encoding = 'SJIS'", {"set"}, {SESSION, ADMIN}, {"lexer_setting"}),
    Case("RESET ALL", {"reset"}, {SESSION}, {"reset_all"}),
    # TRANSACTION
    Case("BEGIN", {"begin"}, {TX}),
    Case("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", {"begin", "start_transaction"}, {TX}),
    Case("COMMIT", {"commit"}, {TX}),
    Case("ROLLBACK", {"rollback"}, {TX}),
    Case("SAVEPOINT a", {"savepoint"}, {TX}),
    Case("RELEASE SAVEPOINT a", {"release"}, {TX}),
    Case("ROLLBACK TO SAVEPOINT a", {"rollback", "rollback_to_savepoint"}, {TX}),
    Case("PREPARE TRANSACTION 'x'", {"prepare_transaction"}, {TX}),
    Case("COMMIT PREPARED 'x'", {"commit_prepared"}, {TX}),
    Case("SET TRANSACTION READ ONLY", {"set", "set_transaction"}, {TX}),
    Case("BEGIN READ WRITE", {"begin"}, {TX}, {"read_write"}),
    Case("SET TRANSACTION READ WRITE", {"set_transaction"}, {TX}, {"read_write"}),
    Case("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
         {"set"}, {SESSION}, {"read_write"}),
    Case("SET CONSTRAINTS ALL DEFERRED", {"set_constraints"}, {TX}),
    # SESSION
    Case("SET search_path = app, public", {"set"}, {SESSION}, {"search_path"}),
    Case("SET statement_timeout = 1000", {"set"}, {SESSION}),
    Case("SET client_encoding = 'UTF8'", {"set"}, {SESSION}),
    Case("RESET ALL", {"reset"}, {SESSION}),
    Case("RESET statement_timeout", {"reset"}, {SESSION}),
    Case("DISCARD ALL", {"discard"}, {SESSION}),
    Case("LISTEN chan", {"listen"}, {R}),  # other sessions' payloads arrive: a read
    Case("UNLISTEN *", {"unlisten"}, {SESSION}),
    Case("DEALLOCATE p", {"deallocate"}, {SESSION}, objects={"prepared:p"}),
    Case("DEALLOCATE ALL", {"deallocate"}, {SESSION}),
    Case("CLOSE c", {"close"}, {SESSION}),
    # UNKNOWN
    Case("DO $$ BEGIN EXECUTE 'DR' || 'OP TABLE t'; END $$", {"do"}, {UNKNOWN}, {"dynamic_sql"}),
    Case("CALL p()", {"call"}, {UNKNOWN}, {"unknown_function"}, {"function:p"}),
    Case("EXECUTE p(1)", {"execute"}, {UNKNOWN}, {"execute_prepared"}, {"prepared:p"}),
    Case("SELECT my_udf(a) FROM t",
         {"select"}, {UNKNOWN}, {"unknown_function"}, {"function:my_udf", "t"}),
    Case("SELECT app.lower(a) FROM t",
         {"select"}, {UNKNOWN}, {"unknown_function"}, {"function:app.lower"}),
    Case("SELECT a OPERATOR(app.===) b FROM t",
         {"select"}, {UNKNOWN}, {"user_operator"}, {"operator:app.==="}),
    Case("SELECT a FROM t ORDER BY a USING OPERATOR(app.<)",
         {"select"}, {UNKNOWN}, {"user_operator"}),
    Case("SELECT 1 === 2", {"select"}, {UNKNOWN}, {"user_operator"}, {"operator:==="}),
    Case("SELECT a FROM t WHERE a OPERATOR(app.=) ANY (SELECT 1)",
         {"select"}, {UNKNOWN}, {"user_operator"}),
    Case("SELECT a != b, a BETWEEN 1 AND 2, a ILIKE 'x', j ->> 'k', j @> '{}', -a, a "
         "OPERATOR(pg_catalog.+) b, NULLIF(a, b), a IS DISTINCT FROM b FROM t ORDER BY a USING <",
         {"select"}, {R}),
    Case("SELECT query_to_xml('DELETE FROM t RETURNING 1', true, true, '')",
         {"select"}, {UNKNOWN}, {"dynamic_sql"}),
    Case("SELECT * FROM dblink_exec('host=x', 'DROP TABLE t')",
         {"select"}, {UNKNOWN}, {"dynamic_sql"}),
    Case("SELECT table_to_xml('secrets', true, true, '')", {"select"}, {UNKNOWN}, {"dynamic_sql"}),
    Case("CREATE TABLE x AS EXECUTE p",
         {"create", "execute"}, {DDL, W, UNKNOWN}, {"execute_prepared"}),
    Case("SELECT count(*), nextval('s'), my_udf() FROM t", {"select"}, {W, UNKNOWN}),
    # PREPARE is classified as what it prepares
    Case("PREPARE p AS DELETE FROM t",
         {"prepare", "delete"}, {W}, {"no_where"}, {"prepared:p", "t"}),
    Case("PREPARE q(int) AS SELECT * FROM t WHERE a = $1",
         {"prepare", "select"}, {R}, objects={"prepared:q", "t"}),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=[c.sql[:60] for c in CASES])
def test_statement_is_classified(case: Case) -> None:
    (command,) = classify(case.sql)
    assert command.protocol == "postgres"
    assert case.kinds <= command.kinds
    assert command.categories == case.categories
    assert case.flags <= command.flags
    assert case.objects <= command.objects
    assert "multi_statement" not in command.flags


def test_table_covers_every_category() -> None:
    assert set(Category) <= {c for case in CASES for c in case.categories}
    assert len(CASES) >= 80


# HOSTILE G.38: several statements in one message


def test_second_statement_after_select_is_classified_separately() -> None:
    first, second = classify("SELECT 1; DROP TABLE t")
    assert (first.text, second.text) == ("SELECT 1", "DROP TABLE t")
    assert first.categories == {R} and second.categories == {DDL}
    assert {"multi_statement"} <= first.flags and {"multi_statement"} <= second.flags


def test_semicolons_in_strings_comments_and_dollar_quotes_do_not_split() -> None:
    sql = "SELECT ';', $a$;$a$, E'\\';' /* ; */ -- ;\n FROM t"
    (command,) = classify(sql)
    assert command.categories == {R}


def test_statement_hidden_after_block_comment_is_found() -> None:
    commands = classify("SELECT 1 /*;*/; DELETE FROM t")
    assert [c.kinds for c in commands] == [{"select"}, {"delete"}]
    assert commands[1].text.endswith("DELETE FROM t")


def test_nested_comments_do_not_hide_a_statement() -> None:
    commands = classify("SELECT 1 /* /* */ ; DROP TABLE t; */; DELETE FROM t")
    assert [sorted(c.kinds) for c in commands] == [["select"], ["delete"]]


def test_statement_texts_are_sliced_by_utf8_byte_offsets() -> None:
    commands = classify("SELECT 'é€😀' AS x; UPDATE t SET a = 'ü' WHERE b = 1;")
    assert [c.text for c in commands] == ["SELECT 'é€😀' AS x", "UPDATE t SET a = 'ü' WHERE b = 1"]


def test_empty_text_yields_no_commands() -> None:
    assert classify("") == ()
    assert classify("  ;; -- nothing\n /* here */ ") == ()


# Unparseable input fails closed


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT (", "DROP", "'unterminated"])
def test_syntax_error_is_unknown(sql: str) -> None:
    (command,) = classify(sql)
    assert command.kinds == {"unparseable"} and command.categories == {UNKNOWN}
    assert "parse_error" in command.flags and command.text == sql


def test_nul_character_cannot_truncate_what_is_judged() -> None:
    (command,) = classify("SELECT 1\x00; DROP TABLE t")
    assert command.categories == {UNKNOWN} and {"parse_error", "nul_character"} <= command.flags


def test_lone_surrogate_is_unparseable_not_a_crash() -> None:
    (command,) = classify("SELECT '\udcff'")
    assert command.categories == {UNKNOWN}


def test_oversized_sql_is_rejected_before_parsing() -> None:
    sql = "SELECT 1 -- " + "x" * classify_module.MAX_SQL_CHARS
    (command,) = classify(sql)
    assert command.categories == {UNKNOWN} and "too_large" in command.flags


def test_hundred_thousand_nested_parentheses_do_not_crash() -> None:
    depth = 100_000
    (command,) = classify("SELECT " + "(" * depth + "1" + ")" * depth)
    assert command.categories == {UNKNOWN} and "too_deep" in command.flags


def test_deep_operator_chain_beyond_json_recursion_is_too_deep() -> None:
    # Left-nested a+a+a... parses without parentheses but nests the JSON tree deeply.
    (command,) = classify("SELECT " + " + ".join(["1"] * 5000))
    assert command.categories == {UNKNOWN} and "too_deep" in command.flags


def test_wide_flat_where_clause_stays_classifiable() -> None:
    (command,) = classify("SELECT * FROM t WHERE " + " OR ".join(f"a = {i}" for i in range(5000)))
    assert command.categories == {R}


def test_parse_tree_too_big_to_decode_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(classify_module, "MAX_TREE_CHARS", 1000)
    (command,) = classify_module._classify_uncached("SELECT " + ", ".join(["a"] * 200) + " FROM t")
    assert command.categories == {UNKNOWN} and "too_large" in command.flags


def test_unforeseen_tree_shape_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ntype: str, node: dict[str, object], facts: object) -> None:
        raise KeyError("shape this module never saw")

    monkeypatch.setitem(classify_module._HANDLERS, "SelectStmt", broken)
    (command,) = classify_module._classify_uncached("SELECT 1")
    assert command.categories == {UNKNOWN} and "classifier_error" in command.flags


def test_eight_thousand_ctes_cost_linear_time_not_quadratic() -> None:
    sql = "WITH " + ", ".join(f"c{i} AS (SELECT * FROM c{i - 1})" for i in range(1, 8_000))
    started = time.perf_counter()
    (command,) = classify(sql + " SELECT * FROM c1")
    assert time.perf_counter() - started < 4  # ~0.3 s; ~9 s when each CTE copied its scope
    assert command.objects == {"c0"}  # the first body's reference is to a table


def test_ten_thousand_statement_script_yields_one_command_each() -> None:
    commands = classify("SELECT 1;" * 9_999 + "DELETE FROM t")
    assert len(commands) == 10_000 and commands[-1].categories == {W}


# HOSTILE G.41: function-level classification


def test_side_effect_function_in_cte_body_is_found() -> None:
    (command,) = classify("WITH k AS (SELECT pg_terminate_backend(1)) SELECT * FROM k")
    assert command.categories == {ADMIN}


def test_side_effect_function_in_values_and_lateral_is_found() -> None:
    (command,) = classify("SELECT * FROM (VALUES (1)) v, LATERAL (SELECT lo_export(1, '/x')) l")
    assert ADMIN in command.categories


def test_side_effect_function_as_aggregate_argument_is_found() -> None:
    (command,) = classify("SELECT max(nextval('s')) FILTER (WHERE true) FROM t")
    assert command.categories == {W}


def test_quoted_function_name_is_not_the_builtin() -> None:
    (command,) = classify('SELECT "LOWER"(a) FROM t')
    assert "unknown_function" in command.flags


def test_pure_and_side_effect_lists_do_not_overlap() -> None:
    assert not [name for name in functions.PURE_FUNCTIONS if functions.lookup(name)]


# CTE names are not tables, but a CTE cannot hide a real table


def test_cte_reference_is_not_reported_as_a_table() -> None:
    (command,) = classify("WITH x AS (SELECT * FROM real_t) SELECT * FROM x")
    assert command.objects == {"real_t"}


def test_non_recursive_cte_body_reading_its_own_name_reads_the_table() -> None:
    (command,) = classify("WITH secret AS (SELECT * FROM secret) SELECT * FROM secret")
    assert "secret" in command.objects


def test_table_outside_the_cte_scope_is_reported() -> None:
    (command,) = classify(
        "SELECT * FROM secret, (WITH secret AS (SELECT 1) SELECT * FROM secret) s"
    )
    assert "secret" in command.objects


def test_select_into_target_named_like_a_cte_is_the_new_table() -> None:
    (command,) = classify("WITH x AS (SELECT 1) SELECT * INTO x FROM x")
    assert command.objects == {"x"} and "into" in command.flags


def test_dml_target_named_like_a_cte_is_the_real_table() -> None:
    (command,) = classify("WITH t AS (SELECT 1) DELETE FROM t")
    assert command.objects == {"t"} and command.categories == {W}


# HOSTILE G.40: PREPARE / EXECUTE


def test_execute_resolves_to_what_was_prepared() -> None:
    (prepare,) = classify("PREPARE p AS DELETE FROM t")
    (execute,) = classify("EXECUTE p")
    assert prepared_statement_name(prepare) == prepared_statement_name(execute) == "p"
    resolved = resolve_execute(execute, {"p": prepare})
    assert resolved.categories == {W}
    assert {"execute", "delete"} <= resolved.kinds and "prepare" not in resolved.kinds
    assert {"execute_prepared", "no_where"} <= resolved.flags and "t" in resolved.objects
    assert resolved.text == "EXECUTE p"


def test_execute_of_unknown_name_stays_unknown() -> None:
    (execute,) = classify_with_prepared("EXECUTE nope", {})
    assert execute.categories == {UNKNOWN}


def test_execute_parameters_keep_their_own_effects() -> None:
    read = classify("PREPARE p AS SELECT $1")[0]
    (execute,) = classify_with_prepared("EXECUTE p(my_udf())", {"p": read})
    assert execute.categories == {UNKNOWN}
    (execute,) = classify_with_prepared("EXECUTE p(nextval('s'))", {"p": read})
    assert execute.categories == {W}


def test_prepare_then_execute_in_one_message_is_judged_as_the_delete() -> None:
    prepare, execute = classify_with_prepared("PREPARE p AS DELETE FROM t; EXECUTE p", {})
    assert prepare.categories == execute.categories == {W}
    assert "multi_statement" in execute.flags


def test_reprepared_name_is_judged_by_the_newest_body() -> None:
    read = classify("PREPARE p AS SELECT 1")[0]
    commands = classify_with_prepared(
        "DEALLOCATE p; PREPARE p AS DELETE FROM t; EXECUTE p", {"p": read}
    )
    assert commands[-1].categories == {W}


def test_deallocate_all_forgets_every_name() -> None:
    read = classify("PREPARE p AS SELECT 1")[0]
    commands = classify_with_prepared("DEALLOCATE ALL; EXECUTE p", {"p": read})
    assert commands[-1].categories == {UNKNOWN}


# Cache


def test_cache_returns_equal_results() -> None:
    sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
    first = classify(sql)
    assert classify(sql) == first
    assert classify(sql) is first  # a hit is the very same tuple: a dict lookup
    assert classify_module._classify_uncached(sql) == first


def test_text_too_long_to_cache_is_still_classified() -> None:
    sql = "SELECT 1 FROM t WHERE a IN (" + ",".join(["1"] * 40_000) + ")"
    assert len(sql) > classify_module.MAX_CACHED_SQL_CHARS
    assert classify(sql)[0].categories == {R}


def test_commands_are_immutable_values() -> None:
    (command,) = classify("SELECT 1")
    assert isinstance(command, Command)
    assert isinstance(command.kinds, frozenset) and isinstance(command.flags, frozenset)


# Fuzzing: whatever the text, classify returns Commands and never raises


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_classify_never_raises_on_random_text(sql: str) -> None:
    commands = classify(sql)
    assert all(isinstance(c, Command) and c.categories for c in commands)


_SQL_PIECES = st.sampled_from(
    [
        "SELECT",
        "DELETE",
        "FROM",
        "t",
        "(",
        ")",
        ";",
        "'",
        "$$",
        "/*",
        "*/",
        "--",
        "\n",
        ",",
        "WITH",
        "AS",
        "pg_sleep(1)",
        "nextval('s')",
        "FOR UPDATE",
        "WHERE",
        "1",
        "=",
        "EXECUTE",
        "PREPARE",
        "p",
        "DO",
        "COPY",
        "TO",
        "PROGRAM",
        "E'\\''",
        '"x"',
        "ARRAY[",
        "]",
        "::int",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_SQL_PIECES, max_size=30).map(" ".join))
def test_classify_never_raises_on_sql_like_text(sql: str) -> None:
    for command in classify(sql):
        assert command.categories
        if command.categories == {R}:  # READ must mean no known effect was seen
            assert not command.flags & {"side_effect_function", "unknown_function", "locking"}


@pytest.mark.parametrize(("sql", "unknown"), [
    ("SELECT information_schema._pg_expandarray(ARRAY[1, 2])", False),
    ("SELECT (information_schema._pg_expandarray(i.indkey)).n FROM pg_index i", False),
    # Same name in any other schema is a user function.
    ("SELECT public._pg_expandarray(ARRAY[1])", True),
    ("SELECT information_schema.not_a_helper(1)", True),
])
def test_information_schema_helpers_are_builtins_and_nothing_else_is(sql: str,
                                                                     unknown: bool) -> None:
    (command,) = classify(sql)
    assert (UNKNOWN in command.categories) is unknown


@pytest.mark.parametrize(("sql", "kinds"), [
    ("INSERT INTO t (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1", {"insert", "update"}),
    ("INSERT INTO t (id) VALUES (1) ON CONFLICT DO NOTHING", {"insert"}),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", {"merge", "delete"}),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1 "
     "WHEN NOT MATCHED THEN INSERT VALUES (1)", {"merge", "update", "insert"}),
    ("WITH u AS (INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2 RETURNING 1) "
     "SELECT * FROM u", {"select", "insert", "update"}),
])
def test_what_an_insert_or_merge_does_to_existing_rows_is_among_its_kinds(
    sql: str, kinds: set[str]
) -> None:
    (command,) = classify(sql)
    assert kinds <= command.kinds
    assert ("update" in command.kinds) is ("update" in kinds)
