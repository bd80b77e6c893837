"""Lineage against a real PostgreSQL: the catalog query, and a differential test of the analyser.

For every statement of the unit tables that the server runs, three things must agree:

* where the analyser says an output is an exact pass-through of a base column, the server's
  RowDescription origin (``ftable``/``ftablecol``) names that column, or a view column whose
  values are that column's values;
* where the server says an output comes from a masked column (or is a whole row holding one),
  the analyser masks it;
* no output the analyser leaves unmasked carries a sensitive value, in any form the server
  renders it (whole rows, JSON, arrays); and an exact masked output carries only them.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from connectors.postgres.catalog import (
    CatalogCache,
    RelationName,
    parse_relation_rows,
    relations_query,
)
from connectors.postgres.lineage import Analysis, NeedRelations, StatementLineage, analyze
from tests.support.pgcluster import PgCluster
from tests.unit.test_pg_lineage import ALLOWED, COMPUTED, GLOBS, OUTPUTS, VIOLATIONS

SCHEMA = "lineage_t"
CARDS = ("4111111111111111", "5500000000000004", "6011000000000004")
SSNS = ("078-05-1120", "219-09-9999")
SENSITIVE = CARDS + SSNS
SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
SET search_path = {SCHEMA};
CREATE TABLE customers (id int, name text, email text, card text, ssn text);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '{CARDS[0]}', '{SSNS[0]}'),
                             (2, 'Alan', 'alan@example.org', '{CARDS[1]}', '{SSNS[1]}');
CREATE TABLE orders (id int, customer_id int, total numeric, note text);
INSERT INTO orders VALUES (1, 1, 10, 'n1'), (2, 2, 20, 'n2');
CREATE TABLE t (a text, b text);
INSERT INTO t VALUES ('ta', 'tb');
CREATE TABLE cards_archive (card text, id int);
INSERT INTO cards_archive VALUES ('{CARDS[2]}', 1);
CREATE VIEW v AS SELECT card AS x, id FROM customers;
CREATE VIEW vv AS SELECT x AS y FROM v;
CREATE VIEW vsafe AS SELECT id, name FROM customers;
CREATE VIEW vfilter AS SELECT id FROM customers WHERE card LIKE '4%';
CREATE MATERIALIZED VIEW mv_cards AS SELECT card AS x FROM customers;
CREATE VIEW vssn AS SELECT name AS ssn_hint FROM customers;
CREATE VIEW vstar AS SELECT * FROM customers;
CREATE VIEW vupper AS SELECT upper(card) AS u FROM customers;
CREATE VIEW vcte AS WITH customers AS (SELECT 'x' AS card) SELECT card AS z FROM customers;
CREATE FUNCTION myfunc(int DEFAULT 0) RETURNS int LANGUAGE sql AS 'SELECT $1';
"""
# Features newer than the server the tests run against.
NEEDS = {"JSON_VALUE": 170000, "JSON_TABLE": 170000, "JSON_OBJECT(": 160000,
         "JSON_ARRAYAGG": 160000, "RETURNING c.card": 170000}  # fmt: skip


def is_masked(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), g) for g in GLOBS)


@pytest.fixture(scope="module")
def conn(pg_cluster: PgCluster) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_cluster.dsn(user=pg_cluster.superuser), autocommit=True) as c:
        c.execute(SETUP)
        c.execute(f"SET search_path = {SCHEMA}")
        try:
            yield c
        finally:
            c.execute("RESET search_path")
            c.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


def load_and_analyze(conn: psycopg.Connection[tuple[object, ...]], cache: CatalogCache,
                     sql: str) -> Analysis:  # fmt: skip
    """What the relay does: analyse, load what is asked for on the session, retry (bounded)."""
    for _ in range(6):
        result = analyze(sql, cache, is_masked)
        if isinstance(result, Analysis):
            return result
        rows = conn.execute(relations_query(result.names)).fetchall()
        cache.store(parse_relation_rows(rows), 0.0)  # type: ignore[arg-type]
    raise AssertionError(f"catalog loading did not settle for {sql!r}")


def local(sql: str) -> str:
    return sql.replace("public.", f"{SCHEMA}.")


# -- the catalog query ----------------------------------------------------------------------


def test_catalog_query_reads_columns_views_and_resolution(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("CREATE TABLE dropped (a int, b text, c text)")
    conn.execute("ALTER TABLE dropped DROP COLUMN b, ADD COLUMN d int")
    try:
        names = [RelationName(None, "dropped"), RelationName(None, "vv"),
                 RelationName(SCHEMA, "mv_cards"), RelationName(None, "no_such_table"),
                 RelationName("no_such_schema", "x")]  # fmt: skip
        answer = parse_relation_rows(conn.execute(relations_query(names)).fetchall())  # type: ignore[arg-type]
    finally:
        conn.execute("DROP TABLE dropped")
    resolved = dict(answer.names)
    assert resolved[RelationName(None, "no_such_table")] is None
    assert resolved[RelationName("no_such_schema", "x")] is None
    by_name = {r.name: r for r in answer.relations}
    assert [(c.name, c.attnum) for c in by_name["dropped"].columns] == [("a", 1), ("c", 3), ("d", 4)]
    # vv reads v reads customers: one round trip brings the whole chain.
    assert {"vv", "v", "customers", "mv_cards"} <= set(by_name)
    assert by_name["vv"].kind == "v" and by_name["mv_cards"].kind == "m"
    assert by_name["v"].view_sql is not None and "card" in by_name["v"].view_sql
    assert ("customers", SCHEMA) in by_name["v"].view_names
    assert answer.search_path_safe


@pytest.mark.parametrize("name", ['we"ird', "a.b", "Mixed Case", "semi;colon", "dollar$$",
                                  "back\\slash", "quote'd", "ünïcødé", "x" * 63])
def test_catalog_query_survives_hostile_names(conn: psycopg.Connection[tuple[object, ...]], name: str) -> None:
    """Names travel as hex: no quoting rule or string setting can change what is asked."""
    ident = '"' + name.replace('"', '""') + '"'
    conn.execute(f"CREATE TABLE {ident} (card text, {ident} int)")
    try:
        answer = parse_relation_rows(conn.execute(relations_query([RelationName(None, name), RelationName(SCHEMA, name)])).fetchall())  # type: ignore[arg-type]
        assert all(oid is not None for _, oid in answer.names)
        (relation,) = answer.relations
        assert relation.name == name and [c.name for c in relation.columns] == ["card", name]
        cache = CatalogCache()
        cache.store(answer, 0.0)
        lineage = load_and_analyze(conn, cache, f"SELECT * FROM {ident}").statements[0]
        assert lineage.masked_positions() == (0,)
    finally:
        conn.execute(f"DROP TABLE {ident}")


def test_catalog_query_is_immune_to_a_shadowing_search_path(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """HOSTILE C.14: an agent's schema ahead of pg_catalog with its own =, to_regclass and
    text cast does not change (or run inside) the gateway's catalog query."""
    conn.execute("""
        CREATE SCHEMA evil;
        CREATE FUNCTION evil.boom(oid, oid) RETURNS bool LANGUAGE plpgsql
            AS 'BEGIN RAISE EXCEPTION ''evil operator ran''; END';
        CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.boom);
        CREATE OPERATOR evil.<> (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.boom);
        CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql
            AS 'BEGIN RAISE EXCEPTION ''evil to_regclass ran''; END';
        CREATE FUNCTION evil.decode(text, text) RETURNS bytea LANGUAGE plpgsql
            AS 'BEGIN RAISE EXCEPTION ''evil decode ran''; END';
    """)
    try:
        conn.execute(f"SET search_path = evil, pg_catalog, {SCHEMA}")
        rows = conn.execute(relations_query([RelationName(None, "v")])).fetchall()
        answer = parse_relation_rows(rows)  # type: ignore[arg-type]
        assert {r.name for r in answer.relations} == {"v", "customers"}
        assert answer.search_path_safe is False  # evil.reverse could stand for reverse
        cache = CatalogCache()
        assert {r.name: r.view_sql for r in answer.relations}["v"] is None  # not read
        cache.store(answer, 0.0)
        lineage = load_and_analyze(conn, cache, "SELECT reverse(x) FROM v").statements[0]
        assert any("cannot be read safely" in u for u in lineage.unknown)
        lineage = load_and_analyze(conn, cache, "SELECT reverse(card) FROM customers").statements[0]
        assert any("a call to reverse" in v for v in lineage.violations)
    finally:
        conn.execute(f"SET search_path = {SCHEMA}")
        conn.execute("DROP SCHEMA evil CASCADE")


@pytest.mark.parametrize(("setup", "sql", "violation"), [
    # Best argument match across schemas: public.reverse(varchar) beats pg_catalog.reverse(text).
    (("CREATE FUNCTION reverse(varchar) RETURNS text LANGUAGE plpgsql AS "
      "'BEGIN RAISE NOTICE ''%'', $1; RETURN pg_catalog.reverse($1::text); END'"),
     "SELECT reverse(card::varchar) FROM customers", "a call to reverse"),
    # Types are looked up in pg_temp before pg_catalog: a domain's CHECK sees every value.
    (("CREATE FUNCTION pg_temp.peek(text) RETURNS bool LANGUAGE plpgsql AS "
      "'BEGIN RAISE NOTICE ''%'', $1; RETURN true; END'; "
      "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.peek(VALUE))"),
     "SELECT card::text FROM customers", "a cast to type text"),
])
def test_builtin_names_shadowed_by_the_agent_are_not_trusted(conn: psycopg.Connection[tuple[object, ...]], setup: str, sql: str, violation: str) -> None:
    """The agent's function (or domain) would receive the masked value and RAISE NOTICE it:
    the catalog answer names what shadows a builtin, and the analyser refuses to pass it one."""
    notices: list[str] = []

    def heard(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(str(diagnostic.message_primary))

    conn.add_notice_handler(heard)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(setup)
            conn.execute(sql)
            assert any(card in notices for card in CARDS)  # the attack works on the server
            lineage = load_and_analyze(conn, CatalogCache(), sql).statements[0]
            assert any(violation in v for v in lineage.violations), lineage
    finally:
        conn.remove_notice_handler(heard)


def test_temporary_table_shadows_as_the_server_resolves_it(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("CREATE TEMP TABLE vsafe (card text)")
    try:
        cache = CatalogCache()
        lineage = load_and_analyze(conn, cache, "SELECT * FROM vsafe").statements[0]
        assert lineage.masked_positions() == (0,)
    finally:
        conn.execute("DROP TABLE pg_temp.vsafe")


def test_view_text_is_read_as_it_was_printed(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """pg_get_viewdef writes ``customers`` unqualified because it is visible: a later change of
    search path must not make the analyser read another ``customers`` into the view."""
    conn.execute("CREATE SCHEMA decoy; CREATE TABLE decoy.customers (card text, id int, name text, email text, ssn text)")
    try:
        cache = CatalogCache()
        rows = conn.execute(relations_query([RelationName(SCHEMA, "v")])).fetchall()
        cache.store(parse_relation_rows(rows), 0.0)  # type: ignore[arg-type]
        conn.execute(f"SET search_path = decoy, {SCHEMA}")
        lineage = load_and_analyze(conn, cache, f"SELECT id FROM {SCHEMA}.v").statements[0]
        assert lineage.masked_positions() == ()
        assert lineage.outputs is not None and lineage.outputs[0].origin is not None
        assert lineage.outputs[0].origin.column == f"{SCHEMA}.customers.id"
    finally:
        conn.execute(f"SET search_path = {SCHEMA}")
        conn.execute("DROP SCHEMA decoy CASCADE")


# -- the differential test ------------------------------------------------------------------


def _runs_here(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> bool:
    return all(conn.info.server_version >= v for k, v in NEEDS.items() if k in sql)


# COPY has no RowDescription (its lineage is the query's, tested above), and syntax newer than
# the oldest server the suite may run against (NEEDS) is covered by the unit tables only: a
# differential case that cannot run is left out rather than skipped.
_DIFFERENTIAL = {k: c for k, c in OUTPUTS.items()
                 if not c.sql.startswith("COPY") and not any(w in c.sql for w in NEEDS)}


@pytest.mark.parametrize("sql", [c.sql for c in _DIFFERENTIAL.values()], ids=list(_DIFFERENTIAL))
def test_analyser_agrees_with_the_server(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> None:
    sql = local(sql)
    assert _runs_here(conn, sql)
    cache = CatalogCache()
    (lineage,) = load_and_analyze(conn, cache, sql).statements
    # Only the refusal of a value computed below the outputs may come with them.
    assert lineage.unknown == () and all(v.endswith(COMPUTED) for v in lineage.violations)
    assert lineage.outputs is not None
    try:
        with conn.transaction(force_rollback=True), conn.cursor() as cur:
            cur.execute(sql)
            result = cur.pgresult
            assert result is not None
            rows = cur.fetchall() if cur.description else []
            width = result.nfields
    except psycopg.errors.AmbiguousColumn:
        assert lineage.masked_positions()  # every candidate counted
        return
    except psycopg.DataError as error:
        # A computation on a masked value failed and the message shows the value: the relay
        # must deny derived (non-exact) masked outputs or hide their error text.
        assert any(s in str(error) for s in SENSITIVE)
        assert all(not o.exact for o in lineage.outputs if o.masked)
        return
    if not lineage.open_ended:
        assert len(lineage.outputs) == width
    for index, output in enumerate(lineage.outputs):
        table, attnum = result.ftable(index), result.ftablecol(index)
        values = [str(row[index]) for row in rows if row[index] is not None]
        if output.exact:
            assert output.origin is not None
            if (table, attnum) != (output.origin.relation, output.origin.attnum):
                # The server names the view column; its values must be the base column's.
                relation = cache.relation_by_oid(table)
                assert getattr(relation, "kind", None) in ("v", "m"), (output, table, attnum)
                base = conn.execute(
                    f"SELECT {output.origin.column.split('.')[-1]}::text FROM "
                    f"{'.'.join(output.origin.column.split('.')[:-1])}").fetchall()
                assert set(values) <= {str(b[0]) for b in base}
        if table and is_masked_origin(cache, table, attnum):
            assert output.masked or output.opaque, (output, table, attnum)
        if output.exact and output.origin is not None and output.origin.column in output.masked:
            assert all(v in SENSITIVE for v in values), (output, values)
        if not output.masked and not output.opaque:
            leaked = [v for v in values if any(s in v for s in SENSITIVE)]
            assert not leaked, (output, leaked)


def is_masked_origin(cache: CatalogCache, table: int, attnum: int) -> bool:
    """Whether a RowDescription origin is a masked table column, or a whole row holding one."""
    relation = cache.relation_by_oid(table)
    columns = getattr(relation, "columns", ())
    if getattr(relation, "kind", "r") in ("v", "m"):
        return False  # judged through its definition (the exact-origin branch above)
    if attnum == 0:
        return any(is_masked(c.name) for c in columns)
    return any(c.attnum == attnum and is_masked(c.name) for c in columns)


@pytest.mark.parametrize(("sql", "expected"), VIOLATIONS.values(), ids=list(VIOLATIONS))
def test_violations_hold_with_the_real_catalog(conn: psycopg.Connection[tuple[object, ...]], sql: str, expected: str) -> None:
    cache = CatalogCache()
    found = [v for s in load_and_analyze(conn, cache, local(sql)).statements for v in s.violations]
    assert any(expected.replace("public.", f"{SCHEMA}.") in v for v in found), found


@pytest.mark.parametrize("sql", ALLOWED.values(), ids=list(ALLOWED))
def test_allowed_statements_stay_allowed_with_the_real_catalog(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> None:
    cache = CatalogCache()
    statements: tuple[StatementLineage, ...] = load_and_analyze(conn, cache, local(sql)).statements
    assert all(s.allowed for s in statements), statements


def test_show_output_is_not_masked_by_a_glob(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """psql's \\password runs SHOW password_encryption: a ``*password*`` glob names table
    columns, not settings, so the answer must come back as it is."""
    result = analyze("SHOW password_encryption", CatalogCache(),
                     lambda n: fnmatch.fnmatchcase(n, "*password*"))  # fmt: skip
    assert isinstance(result, Analysis) and result.statements[0].masked_positions() == ()
    assert not isinstance(result, NeedRelations)
    assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


PSQL_COMMANDS = ["\\d customers", "\\d v", "\\dt", "\\dv", "\\du", "\\df", "\\dn", "\\l",
                 "\\d+ mv_cards", "\\dp customers", "\\dx", "\\conninfo"]  # fmt: skip


def test_psql_describe_queries_are_not_masked_or_denied(pg_cluster: PgCluster, conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """What psql sends for its meta-commands reads pg_catalog only: with the shipped globs
    (``*password*`` matches pg_authid.rolpassword) nothing is denied, no output is masked."""
    shipped = ("*password*", "*secret*", "*ssn*")

    def shipped_masked(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name.lower(), g) for g in shipped)

    argv = [str(pg_cluster.bindir / "psql"), "-X", "-E", "-h", str(pg_cluster.socket_dir),
            "-p", str(pg_cluster.port), "-U", pg_cluster.superuser, "-d", pg_cluster.dbname]  # fmt: skip
    script = f"SET search_path = {SCHEMA};\n" + "\n".join(PSQL_COMMANDS) + "\n"
    done = subprocess.run(argv, check=False, input=script, capture_output=True, text=True, timeout=60,
                          cwd=pg_cluster.root, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    queries = re.findall(r"\*{9} QUERY \*{10}\n(.*?)\n\*{26}", done.stdout, re.DOTALL)
    assert len(queries) >= len(PSQL_COMMANDS)
    cache = CatalogCache()
    for query in queries:
        for _ in range(6):
            result = analyze(query, cache, shipped_masked)
            if isinstance(result, Analysis):
                break
            rows = conn.execute(relations_query(result.names)).fetchall()
            cache.store(parse_relation_rows(rows), 0.0)  # type: ignore[arg-type]
        assert isinstance(result, Analysis), query
        for lineage in result.statements:
            assert lineage.allowed, (query, lineage.violations, lineage.unknown)
            assert lineage.masked_positions() == (), (query, lineage.outputs)


def test_driver_introspection_queries_are_not_masked_or_denied(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """asyncpg's type introspection (recursive CTEs, ARRAY sublinks over pg_type) on connect."""
    from asyncpg import introspection  # type: ignore[import-untyped]

    cache = CatalogCache()
    for query in (introspection.INTRO_LOOKUP_TYPES, introspection.TYPE_BY_NAME):
        (lineage,) = load_and_analyze(conn, cache, query).statements
        assert lineage.allowed, (lineage.violations, lineage.unknown)
        assert lineage.masked_positions() == ()
