"""REDTEAM findings against the PostgreSQL connector, one regression test per bypass.

Every test here reproduces a bypass found by the red team (branch ``redteam``) against the real
gateway and a real cluster, and asserts the safe behaviour; each one failed before its fix
(they were marked ``xfail(strict=True)`` while the bypass was open) and guards it from then on.

The gateway masks ``*ssn*``, ``*secret*`` and ``*password*`` (tests/support/gateway.py). Row 4's
SSN (987-65-4320) is one no detector recognises, so only lineage can hide it, and the table
``rt_vault`` made here holds values no detector recognises either.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from connectors.postgres.messages import Bind, Execute, Parse, Query, Sync
from tests.support.gateway import GatewayProcess
from tests.support.pgcluster import PgCluster
from tests.support.rawpg import RawConnection, login

SSN = "987-65-4320"  # customers.ssn of id 4: no detector masks it
NOTE = "the-eagle-lands-at-noon"  # rt_vault.secret_note of id 1: no detector masks it
PASSWORD = "hunter2-zebra"  # rt_vault.login_password of id 1

@pytest.fixture(scope="module")
def vault(pg_cluster: PgCluster) -> Iterator[None]:
    """A table of the tests' own with masked columns and a NOT NULL one, readable and writable
    by the target user; the rows are put back before every test that changes them."""
    reader = pg_cluster.reader_user
    pg_cluster.sql_script(f"""
        CREATE TABLE public.rt_vault (id int PRIMARY KEY, owner text NOT NULL,
                                      secret_note text, login_password text);
        CREATE TABLE public.rt_events (id int, detail text);
        INSERT INTO public.rt_events VALUES (1, 'boring');
        CREATE SCHEMA rt_shadow;
        CREATE TABLE rt_shadow.rt_events (id int, api_secret text);
        INSERT INTO rt_shadow.rt_events VALUES (1, '{NOTE}');
        GRANT USAGE ON SCHEMA rt_shadow TO {reader};
        GRANT SELECT ON public.rt_events, rt_shadow.rt_events TO {reader};
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.rt_vault TO {reader};
    """)
    yield
    pg_cluster.sql_script("DROP TABLE public.rt_vault; DROP TABLE public.rt_events; "
                          "DROP SCHEMA rt_shadow CASCADE;")


def reset_vault(pg_cluster: PgCluster) -> None:
    pg_cluster.sql_script(
        "DELETE FROM public.rt_vault;\n"
        f"INSERT INTO public.rt_vault VALUES (1, 'ada', '{NOTE}', '{PASSWORD}'), "
        "(2, 'alan', 'blue-moon-rising', 'correcthorse');"
    )


def vault_owners(pg_cluster: PgCluster) -> str:
    return pg_cluster.sql_script("SELECT string_agg(id || '=' || owner, ',' ORDER BY id) "
                                 "FROM public.rt_vault")


def bench(gateway: GatewayProcess) -> str:
    return gateway.token("bob", "bench")


def until_ready(conn: RawConnection, count: int = 1) -> list[object]:
    out: list[object] = []
    for _ in range(count):
        out.extend(conn.read_until_ready())
    return out


# -- 1. decision binding -------------------------------------------------------------------

def test_sql_prepare_run_through_the_extended_protocol_cannot_swap_a_judged_name(
    gateway: GatewayProcess, pg_cluster: PgCluster, vault: None
) -> None:
    """Parse s1 "SELECT 1" is judged and tracked. DEALLOCATE s1 and PREPARE s1 AS DELETE ...,
    each run as Parse/Bind/Execute of the unnamed statement, change what the server holds
    under s1, but layer._execute never applies a SQL statement's name changes (only simple
    Query does, through _sql_changes). Bind/Execute of s1 is then judged as SELECT 1 and the
    server runs the DELETE, with no review (the recording says SELECT 1)."""
    reset_vault(pg_cluster)
    conn = login(gateway.port, gateway.token())
    try:
        conn.send(Parse("s1", "SELECT 1").encode() + Sync().encode())
        until_ready(conn)
        conn.send(Parse("", "DEALLOCATE s1").encode() + Bind("", "").encode()
                  + Execute("").encode() + Sync().encode())
        until_ready(conn)
        conn.send(Parse("", "PREPARE s1 AS DELETE FROM rt_vault WHERE id = 2").encode()
                  + Bind("", "").encode() + Execute("").encode() + Sync().encode())
        until_ready(conn)
        conn.send(Bind("p", "s1").encode() + Execute("p").encode() + Sync().encode())
        until_ready(conn)
    finally:
        conn.close()
    assert "2=alan" in vault_owners(pg_cluster), "a DELETE ran without review"


# -- 2. classification ---------------------------------------------------------------------

def test_insert_on_conflict_do_update_is_judged_as_an_update(
    gateway: GatewayProcess, pg_cluster: PgCluster, vault: None
) -> None:
    """classify._insert_merge gives ``INSERT ... ON CONFLICT DO UPDATE`` the kind insert only:
    the agents' "insert" rule allows it and the review on update never applies."""
    reset_vault(pg_cluster)
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO rt_vault (id, owner) VALUES (2, 'x') "
                         "ON CONFLICT (id) DO UPDATE SET owner = 'changed'")
    assert "2=alan" in vault_owners(pg_cluster)


# -- 3. masking ----------------------------------------------------------------------------

@pytest.mark.parametrize("sql", [
    # An exact copy into the masked column is allowed; the NOT NULL failure shows the row.
    "INSERT INTO customers (id, ssn) SELECT NULL, ssn FROM customers WHERE id = 4",
    "INSERT INTO rt_vault (id, owner, secret_note) SELECT id + 100, NULL, secret_note "
    "FROM rt_vault WHERE id = 1",
    # The same without an INSERT of masked values: the updated row is shown whole.
    "INSERT INTO rt_vault (id, owner) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET owner = NULL",
])
def test_constraint_errors_do_not_show_masked_values(
    gateway: GatewayProcess, pg_cluster: PgCluster, vault: None, sql: str
) -> None:
    """"Failing row contains (...)" (23502/23514) carries every column of the row; error
    DETAIL is masked by detectors only (layer._masked_fields), so listed columns show."""
    reset_vault(pg_cluster)
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(sql)
    text = str(caught.value) + str(caught.value.diag.message_detail)
    assert SSN not in text and NOTE not in text, text


@pytest.mark.parametrize("setup, read", [
    ("CREATE TEMP TABLE rt_t AS SELECT * FROM customers WHERE id = 4", "SELECT * FROM rt_t"),
    ("CREATE TEMP TABLE rt_t AS SELECT * FROM customers WHERE id = 4", "SELECT rt_t FROM rt_t"),
    ("CREATE TEMP VIEW rt_v AS SELECT ssn AS tax_id FROM customers WHERE id = 4",
     "SELECT tax_id FROM rt_v"),
    ("CREATE TEMP VIEW rt_v AS SELECT upper(ssn) AS u FROM customers WHERE id = 4",
     "SELECT * FROM rt_v"),
    # pg_temp is searched first: a temp table shadows a table the catalog connection describes.
    ("CREATE TEMP TABLE rt_events AS SELECT ssn FROM customers WHERE id = 4",
     "SELECT * FROM rt_events"),
    ("CREATE TEMP TABLE rt_events AS SELECT ssn FROM customers WHERE id = 4",
     "SELECT e FROM rt_events e"),
    ("CREATE TEMP TABLE rt_x AS SELECT ssn FROM customers WHERE id = 4;"
     "ALTER TABLE rt_x RENAME TO rt_events", "SELECT * FROM rt_events"),
    # ... and so does a pg_temp type a builtin cast then means.
    ("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (VALUE NOT LIKE '987%')",
     "SELECT ssn::text FROM customers WHERE id = 4"),
])
def test_temporary_relations_over_masked_columns_stay_masked(
    gateway: GatewayProcess, vault: None, setup: str, read: str
) -> None:
    """The catalog connection cannot see a session's temp objects and lineage_query calls a
    relation it cannot see clean (missing_is_clean): a temp copy (or a temp view, whose body
    is never judged as a read) shows masked columns, and computations on them, in clear."""
    with psycopg.connect(gateway.dsn(token=bench(gateway)), autocommit=True) as conn:
        for statement in setup.split(";"):
            conn.execute(statement)
        try:
            rows = conn.execute(read).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return
        except psycopg.errors.CheckViolation as error:  # the oracle answered
            rows = [str(error)]
    assert SSN not in str(rows) and "check constraint" not in str(rows), rows


def test_a_cursor_name_the_server_dropped_is_not_trusted_again(
    gateway: GatewayProcess, vault: None, pg_cluster: PgCluster
) -> None:
    """A WITH HOLD cursor declared in a transaction that rolls back is gone from the server,
    but tracking.block_answered keeps holdable portals. A function that opens a refcursor under
    the same name is then FETCHed as the old, clean query: computed masked values come back."""
    reset_vault(pg_cluster)
    with psycopg.connect(gateway.dsn(token=bench(gateway)), autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE c CURSOR WITH HOLD FOR SELECT 1 AS n, 'x' AS m")
        conn.execute("ROLLBACK")
        conn.execute("""CREATE FUNCTION pg_temp.rt_open() RETURNS refcursor LANGUAGE plpgsql
            AS $$ DECLARE r refcursor := 'c'; BEGIN
            OPEN r FOR SELECT id, upper(secret_note) FROM rt_vault; RETURN r; END $$""")
        conn.execute("BEGIN")
        conn.execute("SELECT pg_temp.rt_open()")
        try:
            rows = conn.execute("FETCH ALL c").fetchall()
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidCursorName):
            return  # refused: the name is not trusted after code wardgate cannot see
    assert NOTE.upper() not in str(rows), rows


def test_a_schema_put_ahead_in_search_path_cannot_swap_a_table(
    gateway: GatewayProcess, vault: None
) -> None:
    """The shared catalog resolves unqualified names with the target user's default
    search_path; after the agent's (allowed) SET search_path the server reads another schema's
    table of the same name, and the masks of the default one are applied."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        conn.execute("SET search_path = rt_shadow, public")
        try:
            rows = conn.execute("SELECT id, upper(e::text) FROM rt_events e").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return
    assert NOTE.upper() not in str(rows), rows


def test_other_sessions_statements_are_not_readable(gateway: GatewayProcess) -> None:
    """Every session reaches the target as the same user, so pg_stat_activity.query (and
    pg_stat_get_backend_activity, a "pure" pg_stat_get_ function) shows other identities'
    statement text; only detectors mask it."""
    marker = "rt-marker-zq-7781"
    with psycopg.connect(gateway.dsn(token=bench(gateway)), autocommit=True) as other:
        other.execute(f"SELECT '{marker}' AS note")
        with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
            try:
                rows = conn.execute("SELECT query FROM pg_stat_activity").fetchall()
            except psycopg.errors.InsufficientPrivilege:
                return
    assert marker not in str(rows), rows


def test_every_text_field_of_a_notice_is_masked(gateway: GatewayProcess) -> None:
    """layer._masked_fields masks M, D, H, W and q only; RAISE ... USING SCHEMA/TABLE/COLUMN/
    DATATYPE/CONSTRAINT puts any text in s, t, c, d, n, which reach the client unmasked, not
    even scanned by detectors (a card number comes through whole)."""
    conn = login(gateway.port, bench(gateway))
    try:
        conn.send(Query(
            "CREATE FUNCTION pg_temp.rt_raise() RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE NOTICE 'x' USING COLUMN = (SELECT card_number FROM customers WHERE id = 1), "
            "SCHEMA = (SELECT ssn FROM customers WHERE id = 4); RETURN 1; END $$").encode())
        until_ready(conn)
        conn.send(Query("SELECT pg_temp.rt_raise()").encode())
        text = str([getattr(m, "fields", None) for m in until_ready(conn)])
    finally:
        conn.close()
    assert "4111111111111111" not in text and SSN not in text, text


# -- 4. fail-closed ParameterStatus checks -------------------------------------------------

def test_a_statement_pipelined_after_a_lexer_change_never_runs(
    gateway: GatewayProcess, pg_cluster: PgCluster, vault: None
) -> None:
    """The server reports standard_conforming_strings only before ReadyForQuery. A Query
    pipelined after the one that turned it off is already forwarded when the gateway sees the
    ParameterStatus and ends the session: the server reads it with backslash escapes and runs
    an INSERT the gateway judged to be part of a string literal (a masked value copied into an
    unmasked column, which wardgate.masking refuses when it can see it)."""
    reset_vault(pg_cluster)
    conn = login(gateway.port, bench(gateway))
    try:
        conn.send(Query("CREATE FUNCTION pg_temp.rt_scs() RETURNS text LANGUAGE sql AS "
                        "$$ SELECT set_config('standard_conforming_strings', 'off', false) $$"
                        ).encode())
        until_ready(conn)
        hidden = ("SELECT 'a\\' AS x, $$' ; INSERT INTO rt_vault (id, owner) "
                  "SELECT 1000 + id, secret_note FROM rt_vault; -- $$")
        conn.send(Query("SELECT pg_temp.rt_scs()").encode() + Query(hidden).encode())
        while conn.read_message() is not None:
            pass
    finally:
        conn.close()
    time.sleep(0.5)
    assert NOTE not in vault_owners(pg_cluster), "an unjudged statement ran"



# -- round 2 -------------------------------------------------------------------------------
# Found by the second red team (branch ``redteam2``); each test asserts the safe behaviour and
# was marked xfail(strict=True) while the bypass was open.

def _probe(conn: psycopg.Connection[tuple[object, ...]], sql: str) -> str:
    """What a probe answers: "denied", "error" (the oracle's 1) or "ok" (its 0)."""
    try:
        conn.execute(sql).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return "denied"
    except psycopg.Error:
        return "error"
    return "ok"


@pytest.mark.parametrize("template", [
    # A function in FROM runs for every row whether its column is used or not.
    "SELECT c.id FROM customers c, LATERAL abs(1/(CASE WHEN c.ssn LIKE '{p}%' THEN 0 ELSE 1 END))"
    " x WHERE c.id = 4",
    # A materialized CTE computes every column it lists.
    "WITH x AS MATERIALIZED (SELECT id, 1/(CASE WHEN ssn LIKE '{p}%' THEN 0 ELSE 1 END) AS z "
    "FROM customers WHERE id = 4) SELECT id FROM x",
    # A subquery kept whole (OFFSET 0) keeps a volatile column.
    "SELECT id FROM (SELECT id, 1/(CASE WHEN ssn LIKE '{p}%' THEN 0 ELSE 1 END) + random() AS z "
    "FROM customers WHERE id = 4 OFFSET 0) s",
])
def test_a_masked_value_computed_below_the_outputs_is_no_oracle(
    gateway: GatewayProcess, template: str
) -> None:
    """(Fixed: a computation is now refused wherever it is formed, lineage_expr.computed.) It
    was: guard._problem refused a computation on a masked column only when it was a top-level
    output; lineage_query.Run.targets (subquery and CTE target lists) and range_function
    (functions in FROM, run for every row) derive masked lineage into columns the outer query
    drops, and no violation is recorded. The server still computes them, so an error raised
    only for some values (division by zero under CASE WHEN ssn LIKE ...) answers any
    predicate on the masked column, one bit per query: the SSN comes out character by
    character."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        answers = {prefix: _probe(conn, template.format(p=prefix)) for prefix in ("9", "8")}
    assert set(answers.values()) == {"denied"}, answers


@pytest.mark.parametrize("cast, value", [
    ("c.ssn::regclass", SSN),  # 42P01 relation "..." does not exist
    ("v.login_password::regrole", PASSWORD),  # 42704 role "..." does not exist
    ("v.secret_note::regtype", NOTE),  # 42601 CONTEXT: invalid type name "..."
])
def test_an_error_outside_class_22_does_not_quote_a_masked_value(
    gateway: GatewayProcess, pg_cluster: PgCluster, vault: None, cast: str, value: str
) -> None:
    """(Fixed with the gap above, and errors of a statement reading a listed column now hide
    every quoted string.) It was: the inner-computation gap above let a cast run on a masked
    value; server_side._masked_fields hides quoted values only for
    SQLSTATE classes 22 and 23 (_VALUE_QUOTING_CLASSES), but casts to the reg* types fail with
    42P01/42704/42601 quoting their whole input. No detector knows these values, so one query
    shows a masked value whole."""
    reset_vault(pg_cluster)
    sql = (f"SELECT c.id FROM customers c JOIN rt_vault v ON v.id = 1, "
           f"LATERAL abs(length(({cast})::text)) x WHERE c.id = 4")
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        try:
            conn.execute(sql).fetchall()
            text = ""
        except psycopg.Error as error:
            text = str(error) + str(error.diag.context)
    assert value not in text, text


def test_an_error_of_a_statement_reading_a_listed_column_quotes_nothing(
    gateway: GatewayProcess,
) -> None:
    """Whatever its class: a statement that shows a listed column may fail quoting a value
    (a cast to regclass fails with 42P01 relation "..." does not exist), so every string its
    errors quote is hidden; a statement reading none keeps its messages as they are."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable) as reading:
            conn.execute("SELECT ssn FROM customers WHERE id = 4 "
                         "AND 'no_such_table'::regclass IS NOT NULL")
        with pytest.raises(psycopg.errors.UndefinedTable) as not_reading:
            conn.execute("SELECT name FROM customers WHERE id = 4 "
                         "AND 'no_such_table'::regclass IS NOT NULL")
    assert reading.value.diag.message_primary == 'relation "****" does not exist'
    assert not_reading.value.diag.message_primary == 'relation "no_such_table" does not exist'


@pytest.fixture(scope="module")
def archive(pg_cluster: PgCluster) -> Iterator[None]:
    """A table whose column holds whole customers rows (a snapshot), and one whose column is of
    a composite type with a password field: both readable by the target user."""
    reader = pg_cluster.reader_user
    pg_cluster.sql_script(f"""
        CREATE TABLE public.rt_archive (id int, snapshot public.customers);
        INSERT INTO public.rt_archive SELECT id, c FROM public.customers c;
        CREATE TYPE public.rt_cred AS (login text, password text);
        CREATE TABLE public.rt_accounts (id int, cred public.rt_cred);
        INSERT INTO public.rt_accounts VALUES (1, ROW('ada', '{PASSWORD}'));
        GRANT SELECT ON public.rt_archive, public.rt_accounts TO {reader};
    """)
    yield
    pg_cluster.sql_script("DROP TABLE public.rt_archive, public.rt_accounts; "
                          "DROP TYPE public.rt_cred;")


@pytest.mark.parametrize("sql", [
    "SELECT (snapshot).ssn FROM rt_archive WHERE id = 4",
    "SELECT snapshot FROM rt_archive WHERE id = 4",
    "SELECT (snapshot).* FROM rt_archive WHERE id = 4",
    "SELECT (cred).password FROM rt_accounts",
    "SELECT cred FROM rt_accounts",
])
def test_a_masked_field_of_a_composite_column_is_masked(
    gateway: GatewayProcess, archive: None, sql: str
) -> None:
    """lineage_query.Run.base_cols masks a table column only when its own name matches a glob,
    and lineage_expr.Analyser.indirection resolves ``(x).field`` to a masked column only when x
    is a whole-row reference (_row_item), never a column of composite type. A column that
    stores a customers row (or a type with a password field) therefore shows the masked field
    in clear, alone, whole, or expanded with .*; the result masker (values.py) decodes the
    composite but asks only the detectors. The ``WHERE (snapshot).ssn LIKE`` probe is allowed
    as well."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        try:
            rows = conn.execute(sql).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            return
    assert SSN not in str(rows) and PASSWORD not in str(rows), rows


@pytest.mark.parametrize("sql", [
    "SELECT id FROM rt_archive WHERE (snapshot).ssn LIKE '9%'",
    "SELECT id FROM rt_archive ORDER BY snapshot",
    "SELECT (snapshot).name FROM rt_archive",
])
def test_a_composite_column_holding_a_masked_field_is_not_probed(
    gateway: GatewayProcess, archive: None, sql: str
) -> None:
    """The column is as sensitive as the field it holds: filtering, sorting or computing with
    it (taking any field of it) is refused like any use of a listed column."""
    with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql).fetchall()


def test_other_sessions_statements_are_not_readable_by_backend_id(
    gateway: GatewayProcess,
) -> None:
    """LIMITATIONS.md says other sessions' statement text (pg_stat_activity,
    pg_stat_statements, pg_stat_get_activity) is admin and denied; functions.PURE_PREFIXES
    makes every other ``pg_stat_get_`` function pure, and pg_stat_get_backend_activity(id)
    returns the current query of any backend of the same database user: every session, since
    all reach the target as the gateway's one user."""
    marker = "rt2-marker-qx-5512"
    with psycopg.connect(gateway.dsn(token=bench(gateway)), autocommit=True) as other:
        other.execute(f"SELECT '{marker}' AS note")
        with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
            try:
                rows = conn.execute("SELECT pg_stat_get_backend_activity(b) "
                                    "FROM pg_stat_get_backend_idset() b").fetchall()
            except psycopg.errors.InsufficientPrivilege:
                return
    assert marker not in str(rows), rows


def test_a_default_search_path_set_on_the_role_cannot_swap_a_table(
    gateway: GatewayProcess, vault: None
) -> None:
    """catalog_client reads the catalog with the target user's default search_path as it was
    when its connection opened, and a session's path counts as changed only after a statement
    of that session flagged search_path (guard.ColumnGuard.search_path_changed);
    lineage._INERT even lists AlterRoleSetStmt/AlterDatabaseSetStmt. ALTER ROLE CURRENT_USER
    SET search_path (allowed to the bench identity, which masking still binds) makes every
    later session of the target, any identity's, read rt_shadow.rt_events while lineage
    describes public.rt_events: its api_secret column comes back in clear, even to ``*``
    (guard._origin_masked finds no relation for the unloaded OID and masks nothing)."""
    with psycopg.connect(gateway.dsn(token=bench(gateway)), autocommit=True) as keeper:
        keeper.execute("SELECT id, e::text FROM rt_events e").fetchall()
        keeper.execute("ALTER ROLE CURRENT_USER SET search_path = rt_shadow, public")
        try:
            with psycopg.connect(gateway.dsn(), autocommit=True) as conn:
                rows = []
                for sql in ("SELECT * FROM rt_events", "SELECT id, e::text FROM rt_events e"):
                    try:
                        rows.append(conn.execute(sql).fetchall())
                    except psycopg.errors.InsufficientPrivilege:
                        pass
        finally:
            keeper.execute("ALTER ROLE CURRENT_USER RESET search_path")
    assert NOTE not in str(rows), rows
