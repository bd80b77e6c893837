"""Real clients as a read-only agent under exactly the shipped rules and masking.

The gateway here runs conf.d/50-rules.toml and conf.d/60-masking.toml as shipped (only listeners,
targets and data_dir are the test's), so what an agent's driver, ORM, GUI client or psql sends to
connect and browse is judged by the rules operators get. Each legitimate statement must run and
come back unmasked where it shows no masked column; each statement the rules exist to stop must
be refused with a message naming what it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy import orm

from tests.support.gateway import ROOT, GatewayProcess, start_gateway
from tests.support.pgcluster import PgCluster

SHIPPED = ROOT / "conf.d"
CARDS = ("4111111111111111", "5500000000000004", "340000000000009", "6011000000000004")
VAULT_SECRET = "hunter2-plain"  # no detector finds it: only the *secret* column glob masks it
PGJDBC_JAR = Path("/usr/share/java/postgresql.jar")

# The module's own objects (the cluster is shared): a table with a foreign key, an index and
# comments, a view, and a table whose column only a glob masks.
SCHEMA = f"""
SET ROLE app_owner;
CREATE TABLE public.sr_orders (
    id serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES public.customers (id),
    total numeric(10, 2),
    placed_at timestamptz DEFAULT now()
);
CREATE INDEX sr_orders_customer ON public.sr_orders (customer_id);
COMMENT ON TABLE public.sr_orders IS 'orders placed by customers';
COMMENT ON COLUMN public.sr_orders.total IS 'order total';
INSERT INTO public.sr_orders (customer_id, total) VALUES (1, 10.50), (2, 99.00), (1, 3.25);
CREATE VIEW public.sr_customer_names AS SELECT id, name FROM public.customers;
CREATE TABLE public.sr_vault (id int PRIMARY KEY, api_secret text);
INSERT INTO public.sr_vault VALUES (1, '{VAULT_SECRET}');
CREATE FUNCTION public.sr_order_count(cid int) RETURNS bigint LANGUAGE sql STABLE
    AS 'SELECT count(*) FROM public.sr_orders WHERE customer_id = cid';
GRANT SELECT ON public.sr_orders, public.sr_customer_names, public.sr_vault TO app_reader;
RESET ROLE;
"""
DROP_SCHEMA = (
    "DROP VIEW IF EXISTS public.sr_customer_names; DROP FUNCTION IF EXISTS public.sr_order_count;"
    " DROP TABLE IF EXISTS public.sr_orders, public.sr_vault;"
)


@pytest.fixture(scope="module")
def shipped(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    pg_cluster.sql_script(DROP_SCHEMA + SCHEMA)
    gw = start_gateway(tmp_path_factory.mktemp("shipped"), pg_cluster,
                       rules=(SHIPPED / "50-rules.toml").read_text(),
                       extra_toml=(SHIPPED / "60-masking.toml").read_text())
    try:
        yield gw
    finally:
        gw.stop()
        pg_cluster.sql_script(DROP_SCHEMA)


@pytest.fixture(scope="module")
def agent(shipped: GatewayProcess) -> str:
    """A libpq conninfo for an ai-agents token on target pg-app."""
    return shipped.dsn("pg-app", token=shipped.token("alice", groups="ai-agents", ttl="1h"))


def refusal(conn: psycopg.Connection[Any], sql: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
        conn.execute(sql)
    return denied.value.diag.message_primary or ""


def masked_cells(rows: list[tuple[Any, ...]]) -> list[Any]:
    return [v for row in rows for v in row if "***" in str(v)]


def test_the_gateway_runs_the_shipped_rules_and_masking_verbatim(shipped: GatewayProcess) -> None:
    for name, copied in (("50-rules.toml", "50-rules.toml"), ("60-masking.toml", "90-extra.toml")):
        assert (shipped.config_dir / copied).read_text() == (SHIPPED / name).read_text()


# -- psycopg 3 in its default (non-autocommit) mode ---------------------------------------------

def test_psycopg_reads_in_a_transaction_it_commits_and_rolls_back(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        cur = conn.execute("select id, name, card_number from customers order by id")
        assert conn.info.transaction_status is pq.TransactionStatus.INTRANS
        first, rest = cur.fetchone(), cur.fetchall()
        conn.commit()
        assert conn.info.transaction_status is pq.TransactionStatus.IDLE
        assert first is not None and first[:2] == (1, "Ada Lovelace")
        cards = [first[2], *(r[2] for r in rest)]
        assert len(cards) == 4 and not set(cards) & set(CARDS) and cards[0].endswith("1111")
        assert conn.execute("select count(*) from sr_orders").fetchone() == (3,)
        conn.rollback()
        with conn.transaction():
            assert conn.execute("select 1").fetchone() == (1,)


def test_psycopg_conn_info_reports_the_gateway_session(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        info = conn.info
        assert (info.dbname, info.user) == ("pg-app", "alice")
        assert info.server_version >= 100000 and info.backend_pid > 0
        assert info.parameter_status("server_encoding") == "UTF8"
        assert info.parameter_status("client_encoding") == "UTF8"
        assert info.encoding == "utf-8" and str(info.timezone)


def test_psycopg_transaction_characteristics_are_allowed(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        conn.read_only, conn.deferrable = True, True
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        assert conn.execute("show transaction_read_only").fetchone() == ("on",)
        assert conn.execute("show transaction_isolation").fetchone() == ("serializable",)
        conn.rollback()


def test_psycopg_named_cursor_fetches_in_steps(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        with conn.cursor(name="browse") as cur:
            cur.itersize = 2
            cur.execute("select id, card_number from customers order by id")
            head, tail = cur.fetchmany(2), cur.fetchall()
        assert [r[0] for r in head + tail] == [1, 2, 3, 4]
        assert not {r[1] for r in head + tail} & set(CARDS)


def test_psycopg_executemany_of_selects_returns_every_result(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        cur = conn.cursor()
        cur.executemany("select id, email from customers where id = %s", [(1,), (3,)], returning=True)
        results = [cur.fetchall()]
        while cur.nextset():
            results.append(cur.fetchall())
    assert [[r[0] for r in rows] for rows in results] == [[1], [3]]
    assert [rows[0][1] for rows in results] == ["a***@example.com", "g***@example.net"]


def test_psycopg_pipeline_mode_in_a_transaction(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        with conn.pipeline():
            cursors = [conn.execute("select name from customers where id = %s", (i,)) for i in (1, 2, 3)]
            conn.commit()
        assert [c.fetchone() for c in cursors] == [("Ada Lovelace",), ("Alan Turing",), ("Grace Hopper",)]


def test_psycopg_prepares_statements_after_the_threshold_and_still_masks(agent: str) -> None:
    with psycopg.connect(agent) as conn:
        conn.prepare_threshold = 2
        emails = [conn.execute("select email from customers where id = %s", (1,)).fetchone() for _ in range(5)]
        assert emails == [("a***@example.com",)] * 5
        assert conn.execute("select %s::int + 1", (41,), prepare=True).fetchone() == (42,)
        names = [r[0] for r in conn.execute("select name from pg_prepared_statements").fetchall()]
        assert sum(n.startswith("_pg3_") for n in names) >= 2  # server-side, under psycopg's names
        conn.rollback()


# -- SQLAlchemy 2 (psycopg driver) ---------------------------------------------------------------

class _Base(orm.DeclarativeBase):
    pass


class _Customer(_Base):
    __tablename__ = "customers"
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str]
    card_number: orm.Mapped[str]


def test_sqlalchemy_inspects_and_selects_through_core_and_orm(shipped: GatewayProcess, agent: str) -> None:
    url = sa.engine.URL.create("postgresql+psycopg", username="alice", host="127.0.0.1",
                               port=shipped.port, database="pg-app",
                               password=agent.split("password=")[1].split()[0],
                               query={"sslmode": "require"})
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert {"customers", "sr_orders"} <= set(inspector.get_table_names())
        assert inspector.get_view_names() == ["sr_customer_names"]
        columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("customers")}
        assert columns["id"] == "INTEGER" and columns["card_number"] == "TEXT"
        assert inspector.get_pk_constraint("customers")["constrained_columns"] == ["id"]
        (fk,) = inspector.get_foreign_keys("sr_orders")
        assert fk["referred_table"] == "customers" and fk["constrained_columns"] == ["customer_id"]
        assert [i["name"] for i in inspector.get_indexes("sr_orders")] == ["sr_orders_customer"]
        assert inspector.get_table_comment("sr_orders")["text"] == "orders placed by customers"
        customers = sa.Table("customers", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            core = conn.execute(sa.select(customers.c.id, customers.c.card_number)
                                .where(customers.c.id == 2)).one()
        assert core.id == 2 and core.card_number.endswith("0004") and core.card_number not in CARDS
        with orm.Session(engine) as session:
            rows = session.scalars(sa.select(_Customer).order_by(_Customer.id)).all()
        assert [c.name for c in rows][:2] == ["Ada Lovelace", "Alan Turing"]
        assert not {c.card_number for c in rows} & set(CARDS)
    finally:
        engine.dispose()


# -- session set-up that drivers and GUI clients send ------------------------------------------

SESSION_SETUP = [
    # pgjdbc after start-up, DBeaver / DataGrip / pgAdmin when a connection opens
    "SET extra_float_digits = 3",
    "SET application_name = 'DBeaver 24.1.0 - Main'",
    "SET statement_timeout = 30000",
    "SET statement_timeout TO '5min'",
    "SET DateStyle = ISO",
    "SET DateStyle TO 'ISO, MDY'",
    "SET TIME ZONE 'UTC'",
    "SET client_min_messages = notice",
    "SET lock_timeout = 0",
    "SET idle_in_transaction_session_timeout = 0",
    "SET bytea_output = 'hex'",
    "SET IntervalStyle = 'iso_8601'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    # a read-only transaction as pgjdbc's setReadOnly(true) and GUI "read-only connection" do
    "BEGIN READ ONLY",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET LOCAL statement_timeout = 1000",
    "SAVEPOINT s1",
    "ROLLBACK TO SAVEPOINT s1",
    "RELEASE SAVEPOINT s1",
    "ROLLBACK",
    "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
    "COMMIT",
    "BEGIN",
    "END",
    "RESET statement_timeout",
    "RESET ALL",
    "DEALLOCATE ALL",
    "DISCARD ALL",
    "SHOW server_version",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SHOW transaction_read_only",
    "SHOW search_path",
    "SHOW DateStyle",
    "SHOW standard_conforming_strings",
    "SHOW client_encoding",
    "SHOW TIME ZONE",
    "SHOW max_identifier_length",
    "SHOW is_superuser",
    "SHOW ALL",
]


def test_session_setup_statements_all_run_in_order(agent: str) -> None:
    with psycopg.connect(agent, autocommit=True) as conn:
        for sql in SESSION_SETUP:
            try:
                conn.execute(sql)
            except psycopg.Error as exc:
                pytest.fail(f"{sql!r} was refused: {exc}")


def test_session_settings_take_effect(agent: str) -> None:
    with psycopg.connect(agent, autocommit=True) as conn:
        conn.execute("SET application_name = 'DataGrip 2024.1'")
        conn.execute("SET statement_timeout = '5min'")
        conn.execute("SET DateStyle = 'ISO, DMY'")
        assert conn.execute("SHOW application_name").fetchone() == ("DataGrip 2024.1",)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5min",)
        assert conn.execute("SHOW DateStyle").fetchone() == ("ISO, DMY",)
        conn.execute("BEGIN READ ONLY")
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)
        conn.execute("ROLLBACK")


# -- what GUI clients query at connect and while browsing ---------------------------------------
# Written after what DBeaver, DataGrip and pgAdmin 4 send (bind parameters where they use them);
# %(nsp)s is the public schema's OID, %(rel)s the customers table's. None of these shows a masked
# column, so none of their values may come back masked.


GUI_QUERIES = [
    ('dbeaver', 'schema and user',
     'SELECT current_schema(), session_user'),
    ('dbeaver', 'server version',
     'SELECT version()'),
    ('dbeaver', 'database row',
     'SELECT db.oid, db.* FROM pg_catalog.pg_database db WHERE datname = current_database()'),
    ('dbeaver', 'schemas',
     "SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass ORDER BY nspname"),
    ('dbeaver', 'tables of a schema',
     "SELECT c.oid, c.*, d.description, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS partition_expr, pg_catalog.pg_get_partkeydef(c.oid) AS partition_key FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass WHERE c.relnamespace = %(nsp)s AND c.relkind NOT IN ('i', 'I', 'c')"),
    ('dbeaver', 'columns of a table',
     "SELECT c.relname, a.*, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) AS def_value, dsc.description, dep.objid FROM pg_catalog.pg_attribute a INNER JOIN pg_catalog.pg_class c ON (a.attrelid = c.oid) LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid = ad.adrelid AND a.attnum = ad.adnum) LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid = dsc.objoid AND a.attnum = dsc.objsubid) LEFT OUTER JOIN pg_depend dep ON dep.refobjid = a.attrelid AND dep.deptype = 'i' AND dep.refobjsubid = a.attnum AND dep.classid = dep.refclassid WHERE NOT a.attisdropped AND c.relkind NOT IN ('i', 'I', 'c') AND c.oid = %(rel)s ORDER BY a.attnum"),
    ('dbeaver', 'data types',
     "SELECT t.oid, t.*, c.relkind, format_type(nullif(t.typbasetype, 0), t.typtypmod) AS base_type_name, d.description FROM pg_catalog.pg_type t LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid = t.typelem LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid = t.typrelid LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid = d.objoid WHERE t.typname IS NOT NULL AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')"),
    ('dbeaver', 'roles',
     'SELECT a.oid, a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin, a.rolconnlimit, a.rolvaliduntil, pd.description FROM pg_catalog.pg_roles a LEFT JOIN pg_catalog.pg_shdescription pd ON a.oid = pd.objoid ORDER BY a.rolname'),
    ('dbeaver', 'extensions',
     'SELECT e.oid, e.*, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace'),
    ('dbeaver', 'constraints',
     'SELECT c.oid, c.*, t.relname AS tabrelname, rt.relnamespace AS refnamespace, d.description, CASE WHEN c.contype = \'c\' THEN "substring"(pg_get_constraintdef(c.oid), 7) END AS consrc_copy FROM pg_catalog.pg_constraint c INNER JOIN pg_catalog.pg_class t ON t.oid = c.conrelid LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid = c.confrelid LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = \'pg_constraint\'::regclass WHERE t.relnamespace = %(nsp)s ORDER BY c.oid'),
    ('dbeaver', 'indexes',
     'SELECT i.*, i.indkey AS keys, c.relname, c.relnamespace, c.relam, c.reltablespace, tc.relname AS tabrelname, dsc.description, pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS pred_expr, pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) AS expr, pg_catalog.pg_relation_size(i.indexrelid) AS index_rel_size, pg_catalog.pg_stat_get_numscans(i.indexrelid) AS index_num_scans FROM pg_catalog.pg_index i INNER JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid INNER JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid = dsc.objoid WHERE tc.relnamespace = %(nsp)s ORDER BY tabrelname, c.relname'),
    ('dbeaver', 'functions',
     'SELECT p.oid, p.proname, p.prokind, pg_catalog.pg_get_function_arguments(p.oid) AS args, pg_catalog.pg_get_function_result(p.oid) AS result, d.description FROM pg_catalog.pg_proc p LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = p.oid WHERE p.pronamespace = %(nsp)s ORDER BY p.proname'),
    ('dbeaver', 'table sizes',
     'SELECT c.oid, pg_catalog.pg_total_relation_size(c.oid) AS total_rel_size, pg_catalog.pg_relation_size(c.oid) AS rel_size FROM pg_catalog.pg_class c WHERE c.relnamespace = %(nsp)s'),
    ('dbeaver', 'view definition',
     "SELECT pg_catalog.pg_get_viewdef('public.sr_customer_names'::regclass, true)"),
    ('dbeaver', 'triggers',
     'SELECT t.oid, t.tgname, pg_catalog.pg_get_triggerdef(t.oid, true) AS def FROM pg_catalog.pg_trigger t WHERE t.tgrelid = %(rel)s'),
    ('dbeaver', 'sequences',
     "SELECT c.relname, pg_catalog.pg_get_serial_sequence('public.customers', 'id') AS serial FROM pg_catalog.pg_class c WHERE c.relkind = 'S' AND c.relnamespace = %(nsp)s"),
    ('dbeaver', 'locks',
     'SELECT l.locktype, l.relation::regclass, l.mode, l.granted, l.pid FROM pg_catalog.pg_locks l'),
    ('dbeaver', 'table statistics',
     'SELECT relname, n_live_tup, n_dead_tup, last_vacuum, last_analyze FROM pg_catalog.pg_stat_user_tables'),
    ('dbeaver', 'tablespaces',
     'SELECT t.oid, t.spcname, pg_catalog.pg_tablespace_location(t.oid) AS loc FROM pg_catalog.pg_tablespace t'),
    pytest.param('dbeaver', 'settings',
                 'SELECT name, setting, unit, category, short_desc FROM pg_catalog.pg_settings ORDER BY name'),
    pytest.param('dbeaver', 'standard_conforming_strings',
                 "SELECT setting FROM pg_catalog.pg_settings WHERE name = 'standard_conforming_strings'"),
    ('dbeaver', 'data tab',
     'SELECT t.* FROM public.sr_orders t LIMIT 200'),
    ('dbeaver', 'row count',
     'SELECT count(*) FROM public.customers'),
    ('datagrip', 'current database',
     'SELECT current_database() AS a, current_schemas(false) AS b'),
    ('datagrip', 'databases',
     'SELECT N.oid::bigint AS id, datname AS name, D.description, datistemplate AS is_template, datallowconn AS allow_connections, pg_catalog.pg_get_userbyid(N.datdba) AS "owner" FROM pg_catalog.pg_database N LEFT JOIN pg_catalog.pg_shdescription D ON N.oid = D.objoid ORDER BY CASE WHEN datname = pg_catalog.current_database() THEN -1::bigint ELSE N.oid::bigint END'),
    ('datagrip', 'roles',
     'SELECT R.oid::bigint AS role_id, rolname AS role_name, rolsuper AS is_super, rolinherit AS is_inherit, rolcreaterole AS can_createrole, rolcreatedb AS can_createdb, rolcanlogin AS can_login, rolreplication AS is_replication, rolconnlimit AS conn_limit, rolvaliduntil AS valid_until, rolbypassrls AS bypass_rls, rolconfig AS config, D.description FROM pg_catalog.pg_roles R LEFT JOIN pg_catalog.pg_shdescription D ON D.objoid = R.oid'),
    ('datagrip', 'tablespaces',
     'SELECT T.oid::bigint AS id, T.spcname AS name, T.xmin AS state_number, pg_catalog.pg_get_userbyid(T.spcowner) AS owner, pg_catalog.pg_tablespace_location(T.oid) AS location, T.spcoptions AS options, D.description AS comment FROM pg_catalog.pg_tablespace T LEFT JOIN pg_catalog.pg_shdescription D ON D.objoid = T.oid'),
    ('datagrip', 'schemas',
     'SELECT N.oid::bigint AS id, N.xmin AS state_number, nspname AS name, D.description, pg_catalog.pg_get_userbyid(N.nspowner) AS "owner" FROM pg_catalog.pg_namespace N LEFT JOIN pg_catalog.pg_description D ON N.oid = D.objoid ORDER BY CASE WHEN nspname = pg_catalog.current_schema() THEN -1::bigint ELSE N.oid::bigint END'),
    ('datagrip', 'transaction age',
     'SELECT pg_catalog.age(datfrozenxid) AS age FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()'),
    ('datagrip', 'server start',
     'SELECT pg_catalog.pg_postmaster_start_time() AS start, pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.txid_current_if_assigned() AS txid'),
    ('datagrip', 'access methods',
     "SELECT A.oid AS access_method_id, A.xmin AS state_number, A.amname AS access_method_name, A.amhandler::oid AS handler_id, pg_catalog.quote_ident(N.nspname) || '.' || pg_catalog.quote_ident(P.proname) AS handler_name, A.amtype AS access_method_type FROM pg_catalog.pg_am A JOIN pg_catalog.pg_proc P ON A.amhandler::oid = P.oid JOIN pg_catalog.pg_namespace N ON P.pronamespace = N.oid"),
    ('datagrip', 'table columns',
     'SELECT A.attrelid AS table_id, A.attnum AS column_position, A.attname AS column_name, A.xmin AS state_number, pg_catalog.format_type(A.atttypid, A.atttypmod) AS type_spec, A.attnotnull AS mandatory, pg_catalog.pg_get_expr(D.adbin, D.adrelid) AS default_expression, pg_catalog.col_description(A.attrelid, A.attnum) AS comment FROM pg_catalog.pg_attribute A LEFT JOIN pg_catalog.pg_attrdef D ON D.adrelid = A.attrelid AND D.adnum = A.attnum WHERE A.attrelid = %(rel)s AND A.attnum > 0 AND NOT A.attisdropped ORDER BY A.attnum'),
    ('datagrip', 'table comment and acl',
     "SELECT C.oid, C.relname, pg_catalog.obj_description(C.oid, 'pg_class') AS comment, pg_catalog.array_to_string(C.relacl, E'\\n') AS acl, pg_catalog.pg_get_userbyid(C.relowner) AS owner FROM pg_catalog.pg_class C WHERE C.relnamespace = %(nsp)s AND C.relkind IN ('r', 'v', 'm', 'p', 'f')"),
    ('datagrip', 'encoding',
     'SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate, datctype FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()'),
    ('datagrip', 'languages',
     'SELECT L.oid AS id, L.lanname AS name, L.lanpltrusted AS trusted FROM pg_catalog.pg_language L'),
    ('datagrip', 'keywords',
     'SELECT word, catcode FROM pg_catalog.pg_get_keywords()'),
    ('pgadmin', 'connect: bytea_output',
     "SELECT set_config('bytea_output', 'hex', false) FROM pg_show_all_settings() WHERE name = 'bytea_output'"),
    ('pgadmin', 'connect: recovery',
     'SELECT CASE WHEN usesuper THEN pg_catalog.pg_is_in_recovery() ELSE NULL END AS inrecovery, CASE WHEN usesuper AND pg_catalog.pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE NULL END AS isreplaypaused FROM pg_catalog.pg_user WHERE usename = current_user'),
    ('pgadmin', 'connect: database',
     "SELECT db.oid AS did, db.datname, db.datallowconn, pg_catalog.pg_encoding_to_char(db.encoding) AS serverencoding, pg_catalog.has_database_privilege(db.oid, 'CREATE') AS cancreate, datistemplate FROM pg_catalog.pg_database db WHERE db.datname = current_database()"),
    ('pgadmin', 'connect: role',
     "SELECT roles.oid AS id, roles.rolname AS name, roles.rolsuper AS is_superuser, CASE WHEN roles.rolsuper THEN true ELSE roles.rolcreaterole END AS can_create_role, CASE WHEN roles.rolsuper THEN true ELSE roles.rolcreatedb END AS can_create_db, CASE WHEN 'pg_signal_backend' = ANY(ARRAY(WITH RECURSIVE cte AS (SELECT pg_roles.oid, pg_roles.rolname FROM pg_roles WHERE pg_roles.oid = roles.oid UNION ALL SELECT m.roleid, pgr.rolname FROM cte cte_1 JOIN pg_auth_members m ON m.member = cte_1.oid JOIN pg_roles pgr ON pgr.oid = m.roleid) SELECT rolname FROM cte)) THEN true ELSE false END AS can_signal_backend FROM pg_catalog.pg_roles AS roles WHERE rolname = current_user"),
    ('pgadmin', 'schemas',
     "SELECT nsp.oid, nsp.nspname AS name, pg_catalog.has_schema_privilege(nsp.oid, 'CREATE') AS can_create, pg_catalog.has_schema_privilege(nsp.oid, 'USAGE') AS has_usage, des.description FROM pg_catalog.pg_namespace nsp LEFT OUTER JOIN pg_catalog.pg_description des ON (des.objoid = nsp.oid AND des.classoid = 'pg_namespace'::regclass) WHERE NOT ((nspname = 'pg_catalog' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'pg_class' AND relnamespace = nsp.oid LIMIT 1)) OR (nspname = 'information_schema' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'tables' AND relnamespace = nsp.oid LIMIT 1))) ORDER BY nspname"),
    ('pgadmin', 'tables',
     "SELECT rel.oid, rel.relname AS name, (SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid = rel.oid AND tgisinternal = FALSE) AS triggercount, (CASE WHEN rel.relkind = 'p' THEN true ELSE false END) AS is_partitioned, (SELECT count(1) FROM pg_catalog.pg_inherits WHERE inhrelid = rel.oid LIMIT 1) AS is_inherits, des.description, pg_catalog.pg_get_userbyid(rel.relowner) AS relowner, pg_catalog.array_to_string(rel.reloptions, ',') AS reloptions, pg_catalog.pg_size_pretty(pg_catalog.pg_table_size(rel.oid)) AS size FROM pg_catalog.pg_class rel LEFT OUTER JOIN pg_catalog.pg_description des ON (des.objoid = rel.oid AND des.objsubid = 0 AND des.classoid = 'pg_class'::regclass) WHERE rel.relkind IN ('r', 's', 't', 'p') AND rel.relnamespace = %(nsp)s AND NOT rel.relispartition ORDER BY rel.relname"),
    ('pgadmin', 'dashboard: transactions',
     'SELECT sum(xact_commit) + sum(xact_rollback) AS "Transactions", sum(xact_commit) AS "Commits", sum(xact_rollback) AS "Rollbacks" FROM pg_catalog.pg_stat_database WHERE datname = current_database()'),
    ('pgadmin', 'pgagent probe',
     "SELECT has_table_privilege('pg_catalog.pg_class', 'SELECT') AS has_priviledge WHERE EXISTS (SELECT has_schema_privilege('public', 'USAGE') WHERE EXISTS (SELECT cl.oid FROM pg_catalog.pg_class cl LEFT JOIN pg_catalog.pg_namespace ns ON ns.oid = relnamespace WHERE relname = 'customers' AND nspname = 'public'))"),
    ('pgadmin', 'column properties',
     'SELECT att.attname AS name, pg_catalog.format_type(ty.oid, NULL) AS typname, pg_catalog.format_type(ty.oid, att.atttypmod) AS displaytypname, pg_catalog.col_description(att.attrelid, att.attnum) AS description, pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS defval FROM pg_catalog.pg_attribute att JOIN pg_catalog.pg_type ty ON ty.oid = atttypid LEFT OUTER JOIN pg_catalog.pg_attrdef def ON adrelid = att.attrelid AND adnum = att.attnum WHERE att.attrelid = %(rel)s AND att.attnum > 0 AND NOT att.attisdropped ORDER BY att.attnum'),
    ('pgadmin', 'query tool: type names',
     'SELECT oid, pg_catalog.format_type(oid, NULL) AS typname FROM pg_catalog.pg_type WHERE oid = ANY(ARRAY[23, 25, 1700]) ORDER BY oid'),
    ('pgadmin', 'backend pid',
     'SELECT pg_catalog.pg_backend_pid()'),
    ('any', 'search path',
     'SELECT pg_catalog.current_schemas(true)'),
    ('any', 'server version number',
     "SELECT current_setting('server_version_num')"),
    ('any', 'object description',
     "SELECT pg_catalog.obj_description(%(rel)s, 'pg_class'), pg_catalog.shobj_description((SELECT oid FROM pg_database WHERE datname = current_database()), 'pg_database')"),
    ('any', 'privileges',
     "SELECT has_table_privilege('public.customers', 'SELECT'), has_schema_privilege('public', 'USAGE'), has_database_privilege(current_database(), 'CONNECT'), has_column_privilege('public.customers', 'name', 'SELECT'), pg_has_role(current_user, 'USAGE')"),
    ('any', 'visible tables',
     "SELECT c.relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid) AND c.relkind = 'r'"),
    ('any', 'database encoding',
     'SELECT getdatabaseencoding(), pg_catalog.pg_client_encoding()'),
    pytest.param('any', 'prepared statements view',
                 'SELECT name, statement FROM pg_catalog.pg_prepared_statements'),
    pytest.param('any', 'cursors view',
                 'SELECT name, statement FROM pg_catalog.pg_cursors'),
    pytest.param('any', 'time zones',
                 "SELECT name, abbrev, utc_offset FROM pg_catalog.pg_timezone_names WHERE name = 'UTC'"),
    pytest.param('any', 'time zone abbreviations',
                 "SELECT abbrev, utc_offset FROM pg_catalog.pg_timezone_abbrevs WHERE abbrev = 'UTC'"),
    pytest.param('any', 'available extensions',
                 "SELECT name, default_version, installed_version FROM pg_catalog.pg_available_extensions WHERE name = 'plpgsql'"),
    pytest.param("agent", "information_schema tables",
                 "SELECT table_schema, table_name, table_type FROM information_schema.tables "
                 "WHERE table_schema = 'public' ORDER BY table_name"),
    pytest.param("agent", "information_schema columns",
                 "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                 "WHERE table_name = 'customers' ORDER BY ordinal_position"),
]


def nonnull_columns(rows: list[tuple[Any, ...]]) -> set[int]:
    return {i for row in rows for i, v in enumerate(row) if v is not None}


def catalog_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Something for pg_prepared_statements and pg_cursors to show.
        conn.execute("PREPARE sr_probe AS SELECT 1")
        conn.execute("DECLARE sr_cursor CURSOR WITH HOLD FOR SELECT 1")
        oids = conn.execute(
            "SELECT 'public'::regnamespace::oid, 'public.customers'::regclass::oid").fetchone()
        assert oids is not None
        params = {"nsp": oids[0], "rel": oids[1]} if "%(" in sql else None
        return conn.execute(sql, params).fetchall()


@pytest.mark.parametrize(("client", "what", "sql"), GUI_QUERIES, ids=[
    "-".join(q.values[:2] if hasattr(q, "values") else q[:2]) for q in GUI_QUERIES])
def test_gui_client_catalog_query_runs_unmasked(pg_cluster: PgCluster, agent: str, client: str,
                                                what: str, sql: str) -> None:
    try:
        rows = catalog_rows(agent, sql)
    except psycopg.Error as exc:
        pytest.fail(f"{client} {what} failed: {exc}")
    assert rows, f"{client} {what}: no rows"
    assert masked_cells(rows) == [], f"{client} {what}: masked values in a catalog result"
    # Masking NULLs what it cannot rewrite (numbers, intervals, ...): a column with values on
    # the target must have values through the gateway too.
    direct = catalog_rows(pg_cluster.dsn(), sql)
    assert nonnull_columns(direct) <= nonnull_columns(rows), f"{client} {what}: values NULLed"


# -- psql's backslash commands ------------------------------------------------------------------

def psql(dsn: str, *commands: str) -> subprocess.CompletedProcess[str]:
    argv = ["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-P", "pager=off"]
    for command in commands:
        argv += ["-c", command]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env)


PSQL_COMMANDS = [
    (("\\d",), ["sr_orders", "sr_customer_names", "customers_id_seq"]),
    (("\\dt",), ["customers", "sr_orders", "pgbench_accounts"]),
    (("\\dn",), ["public"]),
    (("\\df",), ["sr_order_count", "bigint", "cid integer"]),
    (("\\df+ sr_order_count",), ["SELECT count(*) FROM public.sr_orders"]),
    (("\\du",), ["app_reader", "postgres"]),
    (("\\dg",), ["app_owner"]),
    (("\\l",), ["app", "app_owner", "UTF8"]),
    (("\\l+",), ["app", "Tablespace"]),
    (("\\dv",), ["sr_customer_names"]),
    (("\\di",), ["sr_orders_customer", "customers_pkey"]),
    (("\\ds",), ["sr_orders_id_seq"]),
    (("\\dx",), ["plpgsql"]),
    (("\\dT+ pg_catalog.int4",), ["integer"]),
    (("\\dO",), ["List of collations"]),  # psql asks getdatabaseencoding()
    (("\\db",), ["pg_default"]),
    (("\\dp sr_orders",), ["app_reader=r/app_owner"]),
    (("\\dd",), ["Object descriptions"]),
    (("\\dconfig work_mem",), ["work_mem", "4MB"]),
    (("\\d customers",), ["card_number", "customers_pkey", "TABLE \"sr_orders\" CONSTRAINT"]),
    (("\\d+ sr_orders",), ["order total", "sr_orders_customer_id_fkey", "btree (customer_id)"]),
    (("\\d sr_customer_names",), ["View \"public.sr_customer_names\""]),
    (("\\sv sr_customer_names",), ["CREATE OR REPLACE VIEW public.sr_customer_names AS"]),
    (("\\x", "select 1 as one, 2 as two"), ["-[ RECORD 1 ]", "two | 2"]),
    (("\\conninfo",), ['You are connected to database "pg-app" as user "alice"', "SSL connection"]),
    (("\\encoding",), ["UTF8"]),
]


@pytest.mark.parametrize(("commands", "expected"), PSQL_COMMANDS, ids=[c[0][0] for c in PSQL_COMMANDS])
def test_psql_backslash_command_works(agent: str, commands: tuple[str, ...], expected: list[str]) -> None:
    result = psql(agent, *commands)
    assert result.returncode == 0, result.stderr
    assert "permission denied" not in result.stderr
    for fragment in expected:
        assert fragment in result.stdout, f"{fragment!r} missing from:\n{result.stdout}"
    assert "***" not in result.stdout


# -- the real pgjdbc driver ---------------------------------------------------------------------
# Debian's libpostgresql-jdbc-java (make system-deps installs it); Java is part of the machine.

PROBE = textwrap.dedent("""\
    import java.sql.*;
    import java.util.*;

    public class Probe {
        interface Step { String run() throws Exception; }

        static void step(String label, Step s) {
            try { System.out.println(label + "\\t" + s.run()); }
            catch (Exception e) { System.out.println(label + "\\tERR " + e.getMessage()); }
        }

        static String rows(ResultSet r, String... cols) throws SQLException {
            List<String> out = new ArrayList<>();
            while (r.next()) {
                List<String> vals = new ArrayList<>();
                for (String c : cols) vals.add(String.valueOf(r.getString(c)));
                out.add(String.join("|", vals));
            }
            r.close();
            return String.join(";", out);
        }

        public static void main(String[] a) throws Exception {
            Properties p = new Properties();
            p.setProperty("user", "alice");
            p.setProperty("password", System.getenv("WARDGATE_TOKEN"));
            p.setProperty("sslmode", "require");
            p.setProperty("ApplicationName", "DBeaver 24.1.0 - Main");
            try (Connection c = DriverManager.getConnection(a[0], p)) {
                DatabaseMetaData md = c.getMetaData();
                step("product", () -> md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
                step("user", () -> md.getUserName());
                step("schemas", () -> rows(md.getSchemas(), "TABLE_SCHEM"));
                step("tables", () -> rows(md.getTables(null, "public", "sr_%",
                    new String[] {"TABLE", "VIEW"}), "TABLE_NAME", "TABLE_TYPE", "REMARKS"));
                step("columns", () -> rows(md.getColumns(null, "public", "sr_orders", "%"),
                    "COLUMN_NAME", "TYPE_NAME", "REMARKS"));
                step("primary_keys", () -> rows(md.getPrimaryKeys(null, "public", "sr_orders"),
                    "COLUMN_NAME", "PK_NAME"));
                step("imported_keys", () -> rows(md.getImportedKeys(null, "public", "sr_orders"),
                    "PKTABLE_NAME", "FKCOLUMN_NAME"));
                step("index_info", () -> rows(md.getIndexInfo(null, "public", "sr_orders", false,
                    true), "INDEX_NAME"));
                step("functions", () -> rows(md.getFunctions(null, "public", "sr_%"),
                    "FUNCTION_NAME"));
                step("keywords", () -> String.valueOf(md.getSQLKeywords().contains("analyse")));
                c.setReadOnly(true);
                c.setAutoCommit(false);
                c.setTransactionIsolation(Connection.TRANSACTION_REPEATABLE_READ);
                step("prepared", () -> {
                    String last = "";
                    try (PreparedStatement ps = c.prepareStatement(
                            "select id, card_number from customers where id = ?")) {
                        for (int i = 0; i < 7; i++) {  // past prepareThreshold (5): server-side
                            ps.setInt(1, 1);
                            try (ResultSet r = ps.executeQuery()) { r.next(); last = r.getInt(1) + "|" + r.getString(2); }
                        }
                    }
                    return last;
                });
                step("fetch_size", () -> {
                    try (Statement st = c.createStatement()) {
                        st.setFetchSize(2);  // a portal read two rows at a time
                        return rows(st.executeQuery("select id from customers order by id"), "id");
                    }
                });
                step("commit", () -> { c.commit(); c.rollback(); return "ok"; });
            }
        }
    }
    """)


@pytest.fixture(scope="module")
def pgjdbc(shipped: GatewayProcess, agent: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What each DatabaseMetaData call of the probe returned ("ERR message" when it failed)."""
    java = shutil.which("java")
    if java is None:
        pytest.skip("java is not installed (the pgjdbc probe runs as a single-file Java program)")
    assert PGJDBC_JAR.exists(), f"{PGJDBC_JAR} missing: run `make system-deps` (libpostgresql-jdbc-java)"
    source = tmp_path_factory.mktemp("pgjdbc") / "Probe.java"
    source.write_text(PROBE)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "WARDGATE_TOKEN": agent.split("password=")[1].split()[0]}
    url = f"jdbc:postgresql://127.0.0.1:{shipped.port}/pg-app"
    result = subprocess.run([java, "-cp", str(PGJDBC_JAR), str(source), url], check=False,
                            capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)


PGJDBC_CALLS = [
    ("product", "PostgreSQL"),
    ("user", "alice"),
    ("schemas", "public"),
    ("tables", "sr_orders|TABLE|orders placed by customers;sr_vault|TABLE|null;sr_customer_names|VIEW"),
    ("columns", "id|serial|null;customer_id|int4|null;total|numeric|order total;placed_at|timestamptz"),
    ("functions", "sr_order_count"),
    ("keywords", "true"),
    ("prepared", "1|****-****-****-1111"),
    ("fetch_size", "1;2;3;4"),
    ("commit", "ok"),
    # (information_schema._pg_expandarray() is one of the SQL-standard views' own helpers.)
    ("primary_keys", "sr_orders_pkey"),
    ("index_info", "sr_orders_customer"),
    # getImportedKeys reads max_index_keys from pg_settings (a view over pg_show_all_settings).
    ("imported_keys", "customers|customer_id"),
]


@pytest.mark.parametrize(("call", "expected"), PGJDBC_CALLS,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in PGJDBC_CALLS])
def test_pgjdbc_metadata_call(pgjdbc: dict[str, str], call: str, expected: str) -> None:
    answer = pgjdbc.get(call, "(no answer)")
    assert not answer.startswith("ERR"), answer
    assert expected in answer


# -- what the shipped rules must keep refusing ------------------------------------------------

REFUSED = [
    ("SET ROLE app_owner", ["set role changes the role statements run as (category role)"]),
    ("SELECT set_config('role', 'app_owner', false)",
     ['"set_config" changes the role statements run as (category role)']),
    ("SET SESSION AUTHORIZATION postgres",
     ["set session_authorization changes the role statements run as (category role)"]),
    ("SET search_path = public, pg_catalog",
     ['rule "agents keep search_path"', "changing search_path could make built-in function"]),
    ("SELECT set_config('search_path', 'public', false)",
     ['rule "agents keep search_path"', '"set_config" changes search_path']),
    ("SELECT pg_sleep(1)", ['"pg_sleep" is a function with side effects (category admin)']),
    ("CREATE TABLE sr_never (a int)",
     ['rule "no ddl for agents"', "create_table (category ddl)"]),
    ("INSERT INTO customers (name) VALUES ('x')",
     ["insert (category write)", '--grant write']),
    ("SELECT txid_current()", ['"txid_current" is a function with side effects (category write)']),
]


@pytest.mark.parametrize(("sql", "expected"), REFUSED, ids=[r[0] for r in REFUSED])
def test_shipped_rules_refuse_naming_what_it_is(agent: str, sql: str, expected: list[str]) -> None:
    with psycopg.connect(agent, autocommit=True) as conn:
        message = refusal(conn, sql)
        for fragment in expected:
            assert fragment in message, message
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SELECT current_user").fetchone() == ("app_reader",)


def test_a_delete_without_approval_is_held_then_refused(agent: str, pg_cluster: PgCluster) -> None:
    # Held by the review rule; with no approvers configured here it cannot be asked for.
    with psycopg.connect(agent, autocommit=True) as conn:
        message = refusal(conn, "DELETE FROM sr_orders WHERE id = 1")
        for fragment in ('rule "destructive changes need review"',
                         "approval required (deletes, updates and truncates by agents wait",
                         "delete (category write)", "no approvers are configured"):
            assert fragment in message, message
        assert conn.execute("SELECT count(*) FROM sr_orders").fetchone() == (3,)
    assert pg_cluster.sql("SELECT count(*) FROM sr_orders") == "3"


def test_a_prepared_name_redefined_through_the_extended_protocol_keeps_its_masking(agent: str) -> None:
    with psycopg.connect(agent, autocommit=True) as conn:
        assert conn.execute("SELECT api_secret FROM sr_vault").fetchone() != (VAULT_SECRET,)
        raw = conn.pgconn
        raw.exec_(b"PREPARE sr_p AS SELECT 'harmless'::text AS x")  # simple: tracked
        raw.exec_params(b"DEALLOCATE sr_p", [])  # extended: not tracked
        raw.exec_params(b"PREPARE sr_p AS SELECT api_secret FROM sr_vault", [])
        shown = raw.exec_(b"EXECUTE sr_p")
        values = [shown.get_value(row, 0) for row in range(shown.ntuples)]
        raw.exec_(b"DEALLOCATE ALL")
    assert VAULT_SECRET.encode() not in values


@pytest.mark.parametrize("sql", [
    "SELECT sa.pid, sa.usename, sa.state, sa.query FROM pg_catalog.pg_stat_activity sa",
    "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE state = 'active'",
    "SELECT * FROM pg_catalog.pg_stat_get_activity(NULL)",
])
def test_other_sessions_activity_is_not_an_agents_read(agent: str, sql: str) -> None:
    """Every session reaches the target as the gateway's one database user, so these views
    show the statements of every other identity: an admin read, not an agent's."""
    with psycopg.connect(agent, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
            conn.execute(sql)
    assert "shows other sessions' statements (category admin)" in str(denied.value)
