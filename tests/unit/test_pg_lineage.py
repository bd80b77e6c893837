"""connectors.postgres.lineage: which outputs show a masked column, which statements misuse one.

Every row of the tables is an attack spelling (or a precision case that must stay unmasked)
with the output positions the relay must mask, or the violation it must deny with. The fake
catalog (:class:`FakeCatalog`, resolving names as a server with ``search_path = public``) has
``customers(id, name, email, card, ssn)`` with ``[masking] columns = ["card", "*ssn*"]``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from connectors.postgres.catalog import (
    NOT_FOUND,
    NOT_LOADED,
    Column,
    Missing,
    Relation,
    RelationName,
)
from connectors.postgres.guard import SessionCatalog
from connectors.postgres.lineage import Analysis, NeedRelations, StatementLineage, analyze

TEXT, INT, NUMERIC = 25, 23, 1700


class FakeCatalog:
    """``tables``: "schema.name" -> "col type, col type" (type: text|int|numeric);
    ``views``: "schema.name" -> (columns, SELECT text). ``unloaded`` names answer NOT_LOADED
    until :meth:`load` is called with them, which records the request."""

    def __init__(self, tables: dict[str, str], views: dict[str, tuple[str, str]] | None = None,
                 *, search_path: Iterable[str] = ("public",), safe: bool | None = True,
                 unloaded: Iterable[str] = (), shadowed: Iterable[tuple[str, str]] = ()) -> None:
        self.search_path = list(search_path)
        self.safe = safe
        self.shadowed = set(shadowed)
        self.relations: dict[tuple[str, str], Relation] = {}
        self.unloaded = set(unloaded)
        self.requests: list[tuple[str | None, str]] = []
        oid = 16000
        types = {"text": TEXT, "int": INT, "numeric": NUMERIC}
        for qualified, spec in tables.items():
            schema, name = qualified.split(".")
            oid += 1
            parts = [part.split() for part in spec.split(",")]
            columns = tuple(Column(c, i, types[t]) for i, (c, t) in enumerate(parts, 1))
            self.relations[(schema, name)] = Relation(oid, schema, name, "r", columns)
        for qualified, (cols, sql) in (views or {}).items():
            schema, name = qualified.split(".")
            oid += 1
            view_columns = tuple(Column(c.strip(), i, TEXT) for i, c in enumerate(cols.split(","), 1))
            kind = "m" if name.startswith("mv") else "v"
            self.relations[(schema, name)] = Relation(oid, schema, name, kind, view_columns, sql)
        visible = self._visible()
        for key, rel in list(self.relations.items()):
            if rel.view_sql is not None:
                self.relations[key] = Relation(rel.oid, rel.schema, rel.name, rel.kind,
                                               rel.columns, rel.view_sql, visible)

    def _visible(self) -> tuple[tuple[str, str], ...]:
        names: dict[str, str] = {}
        for schema in ["pg_catalog", *self.search_path]:
            for (s, n) in self.relations:
                if s == schema:
                    names.setdefault(n, s)
        return tuple(sorted(names.items()))

    def relation(self, schema: str | None, name: str) -> Relation | Missing:
        key = f"{schema}.{name}" if schema else name
        if key in self.unloaded:
            self.requests.append((schema, name))
            return NOT_LOADED
        if schema is not None:
            return self.relations.get((schema, name), NOT_FOUND)
        for s in ["pg_temp", "pg_catalog", *self.search_path]:
            if (s, name) in self.relations:
                return self.relations[(s, name)]
        return NOT_FOUND

    def relation_by_oid(self, oid: int) -> Relation | Missing:
        for rel in self.relations.values():
            if rel.oid == oid:
                return rel
        return NOT_FOUND

    def search_path_safe(self) -> bool | None:
        return self.safe

    def resolves_to_builtin(self, kind: str, name: str) -> bool | None:
        if self.safe is None:
            return None
        return self.safe and (kind, name) not in self.shadowed

    def load(self, names: Iterable[RelationName]) -> None:
        for n in names:
            self.unloaded.discard(f"{n.schema}.{n.name}" if n.schema else n.name)


GLOBS = ("card", "*ssn*")

TABLES = {
    "public.customers": "id int, name text, email text, card text, ssn text",
    "public.orders": "id int, customer_id int, total numeric, note text",
    "public.t": "a text, b text",
    "public.cards_archive": "card text, id int",
    "pg_catalog.pg_stats": "attname text, histogram_bounds text",
    "pg_catalog.pg_class": "oid int, relname text",
}
VIEWS = {
    "public.v": ("x, id", "SELECT card AS x, id FROM customers"),
    "public.vv": ("y", "SELECT x FROM v"),
    "public.vsafe": ("id, name", "SELECT id, name FROM customers"),
    "public.vfilter": ("id", "SELECT id FROM customers WHERE card LIKE '4%'"),
    "public.mv_cards": ("x", "SELECT card FROM customers"),
    "public.vssn": ("ssn_hint", "SELECT name FROM customers"),
    "public.vstar": ("id, name, email, card, ssn", "SELECT * FROM customers"),
    "public.vupper": ("u", "SELECT upper(card) FROM customers"),
    "public.vcte": ("z", "WITH customers AS (SELECT 'x' AS card) SELECT card FROM customers"),
}


def is_masked(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), g) for g in GLOBS)


def catalog(**kwargs: object) -> FakeCatalog:
    return FakeCatalog(TABLES, VIEWS, **kwargs)  # type: ignore[arg-type]


def run(sql: str, cat: FakeCatalog | SessionCatalog | None = None) -> tuple[StatementLineage, ...]:
    result = analyze(sql, cat or catalog(), is_masked)
    assert isinstance(result, Analysis), result
    return result.statements


def one(sql: str, cat: FakeCatalog | SessionCatalog | None = None) -> StatementLineage:
    statements = run(sql, cat)
    assert len(statements) == 1
    return statements[0]


COMPUTED = "masked columns may be shown as they are, not computed with"


@dataclass(frozen=True)
class Out:
    """Expected: exactly these output positions masked; ``exact`` among them pass-throughs."""

    sql: str
    masked: tuple[int, ...]
    width: int | None = None
    exact: tuple[int, ...] = ()


# fmt: off
OUTPUTS = {
    # Whole-row references: the row carries every column, so it is masked as a whole.
    "whole_row_alias": Out("SELECT c FROM customers c", (0,), 1),
    "whole_row_cast_to_text": Out("SELECT c::text FROM customers c", (0,), 1),
    "whole_row_row_to_json": Out("SELECT row_to_json(c) FROM customers c", (0,)),
    "whole_row_to_jsonb_field": Out("SELECT to_jsonb(c)->>'card' FROM customers c", (0,)),
    "whole_row_json_agg": Out("SELECT json_agg(c) FROM customers c", (0,)),
    "whole_row_array_agg": Out("SELECT array_agg(c) FROM customers c", (0,)),
    "whole_row_table_name": Out("SELECT customers FROM customers", (0,)),
    "whole_row_star_cast": Out("SELECT (customers.*)::text FROM customers", (0,)),
    "whole_row_row_constructor": Out("SELECT ROW(c.*) FROM customers c", (0,)),
    "whole_row_format": Out("SELECT format('%s', c) FROM customers c", (0,)),
    "whole_row_md5": Out("SELECT md5(c::text) FROM customers c", (0,)),
    "whole_row_scalar_sublink": Out("SELECT (SELECT c FROM customers c LIMIT 1)", (0,)),
    "whole_row_of_view": Out("SELECT v FROM v", (0,)),
    "whole_row_in_join": Out("SELECT c, o.id FROM customers c JOIN orders o ON o.customer_id = c.id", (0,)),
    "column_named_like_alias_wins": Out("SELECT c FROM customers AS c(c)", ()),
    # Alias column lists rename positionally.
    "alias_list_rename": Out("SELECT d FROM customers AS t(a, b, c, d)", (0,), 1, (0,)),
    "alias_list_rename_qualified": Out("SELECT t.e FROM customers AS t(a, b, c, d, e)", (0,), 1, (0,)),
    "alias_list_partial": Out("SELECT a, ssn FROM customers AS t(a)", (1,), 2, (1,)),
    "alias_list_star": Out("SELECT * FROM customers AS t(a, b, c, d)", (3, 4), 5, (3, 4)),
    # Composite field access picks the one column.
    "field_of_whole_row": Out("SELECT (c).card FROM customers c", (0,), 1, (0,)),
    "field_of_whole_row_unmasked": Out("SELECT (c).id FROM customers c", ()),
    "field_of_star": Out("SELECT (c.*).ssn FROM customers c", (0,), 1, (0,)),
    "composite_star_expands": Out("SELECT (c).*, 1 FROM customers c", (3, 4), 6, (3, 4)),
    "composite_star_of_view_row": Out("SELECT (w).* FROM v w", (0,), 2, (0,)),
    "field_of_json_populate": Out("SELECT (jsonb_populate_record(null::customers, to_jsonb(c))).id FROM customers c", (0,)),
    # Stars inside functions are whole-row references.
    "star_in_concat": Out("SELECT concat(c.*) FROM customers c", (0,)),
    "star_in_jsonb_build_array": Out("SELECT jsonb_build_array(c.*) FROM customers c", (0,)),
    "star_in_count": Out("SELECT count(c.*) FROM customers c", (0,)),
    "star_in_to_json": Out("SELECT to_json(c.*) FROM customers c", (0,)),
    # Views, read through their definitions.
    "view_rename": Out("SELECT x FROM v", (0,), 1, (0,)),
    "view_of_view": Out("SELECT * FROM vv", (0,), 1, (0,)),
    "view_unmasked_column": Out("SELECT id FROM v", (), 1, (0,)),
    "view_safe": Out("SELECT * FROM vsafe", (), 2, (0, 1)),
    "view_star_keeps_order": Out("SELECT * FROM vstar", (3, 4), 5, (3, 4)),
    "matview": Out("SELECT x FROM mv_cards", (0,), 1, (0,)),
    "view_column_named_by_glob": Out("SELECT ssn_hint FROM vssn", (0,)),
    "view_derived": Out("SELECT u FROM vupper", (0,)),
    "view_cte_shadows_table": Out("SELECT z FROM vcte", ()),
    "view_qualified": Out("SELECT public.v.x FROM public.v", (0,), 1, (0,)),
    # Casts and collations are computations: masked, not exact.
    "cast_bytea": Out("SELECT card::bytea FROM customers", (0,)),
    "cast_int": Out("SELECT ssn::int FROM customers", (0,)),
    "cast_function_syntax": Out("SELECT CAST(card AS varchar(4)) FROM customers", (0,)),
    "cast_chain": Out("SELECT card::text::varchar::text FROM customers", (0,)),
    "collate": Out('SELECT card COLLATE "C" FROM customers', (0,)),
    # Renames through CTEs and subqueries.
    "cte_column_list": Out("WITH x(a) AS (SELECT card FROM customers) SELECT a FROM x", (0,), 1, (0,)),
    "cte_alias": Out("WITH x AS (SELECT card AS a FROM customers) SELECT * FROM x", (0,), 1, (0,)),
    "cte_chain": Out("WITH a AS (SELECT card FROM customers), b AS (SELECT * FROM a) SELECT card AS z FROM b", (0,)),
    "cte_shadows_table": Out("WITH customers AS (SELECT 1 AS card) SELECT card FROM customers", ()),
    "cte_materialized": Out("WITH x AS MATERIALIZED (SELECT ssn AS s FROM customers) SELECT s FROM x", (0,)),
    "nested_with_inner_shadow": Out("WITH x AS (SELECT card FROM customers) SELECT (WITH x AS (SELECT 1 AS card) SELECT card FROM x), card FROM x", (1,)),
    "subquery_alias_list": Out("SELECT a FROM (SELECT card FROM customers) s(a)", (0,), 1, (0,)),
    "subquery_alias": Out("SELECT s.a FROM (SELECT card AS a FROM customers) s", (0,)),
    "subquery_star": Out("SELECT * FROM (SELECT * FROM customers) s", (3, 4), 5),
    "lateral_subquery": Out("SELECT s.z FROM customers c, LATERAL (SELECT c.card AS z) s", (0,)),
    "lateral_values": Out("SELECT v.x FROM customers c CROSS JOIN LATERAL (VALUES (c.card)) v(x)", (0,)),
    "lateral_whole_row": Out("SELECT s.x FROM customers c, LATERAL (SELECT c) s(x)", (0,)),
    "lateral_json_to_record": Out("SELECT r.card FROM customers c JOIN LATERAL jsonb_to_record(to_jsonb(c)) AS r(card text) ON true", (0,)),
    "alias_list_moves_names": Out("SELECT card, innocuous FROM customers AS c(card, b, c2, innocuous)", (1,), 2, (1,)),
    "table_subquery": Out("SELECT * FROM (TABLE customers) s", (3, 4), 5),
    "delete_returning_whole_row": Out("DELETE FROM customers c WHERE id = 1 RETURNING c", (0,)),
    # Joins.
    "join_star": Out("SELECT * FROM customers JOIN orders ON orders.customer_id = customers.id", (3, 4), 9),
    "join_using_merges_first": Out("SELECT * FROM customers c JOIN orders o USING (id)", (3, 4), 8),
    "natural_join": Out("SELECT * FROM customers NATURAL JOIN orders", (3, 4), 8),
    "join_alias": Out("SELECT j.card FROM (customers c JOIN orders o ON true) j", (0,)),
    "join_alias_list": Out("SELECT j.d FROM (customers JOIN orders USING (id)) AS j(a, b, c, d)", (0,)),
    "join_using_alias": Out("SELECT x.id FROM customers JOIN orders USING (id) AS x", ()),
    "left_join_unqualified": Out("SELECT card FROM orders LEFT JOIN customers ON true", (0,)),
    "join_qualified_star": Out("SELECT o.*, c.* FROM customers c, orders o", (7, 8), 9),
    # Set operations line up by position.
    "union_all": Out("SELECT name FROM customers UNION ALL SELECT card FROM customers", (0,)),
    "union_all_third": Out("SELECT 1, 'a' UNION ALL SELECT 2, 'b' UNION ALL SELECT id, ssn FROM customers", (1,)),
    "values_sublink": Out("SELECT * FROM (VALUES ((SELECT card FROM customers LIMIT 1))) v(x)", (0,)),
    "values_plain": Out("VALUES (1, 'a'), (2, 'b')", (), 2),
    # Functions in FROM.
    "srf_plain": Out("SELECT * FROM generate_series(1, 3)", (), 1),
    "lateral_scalar_function": Out("SELECT u FROM customers c, LATERAL upper(c.card) u", (0,)),
    "lateral_to_jsonb": Out("SELECT j FROM customers c, LATERAL to_jsonb(c) j", (0,)),
    "coldef_names_are_not_columns": Out("SELECT * FROM json_to_record('{}') AS x(card text)", (), 1),
    "json_to_record_of_row": Out("SELECT x.a FROM customers c, json_to_record(row_to_json(c)) AS x(a text, card text)", (0,)),
    "rows_from_ordinality": Out("SELECT * FROM ROWS FROM (upper('x'), generate_series(1, 2)) WITH ORDINALITY", (), 3),
    "ordinality_not_masked": Out("SELECT ordinality FROM customers c, lower(c.name) WITH ORDINALITY", ()),
    "json_each_names": Out("SELECT key, value FROM jsonb_each('{}')", (), 2),
    # Scalar sublinks derive.
    "scalar_sublink": Out("SELECT (SELECT card FROM customers LIMIT 1)", (0,)),
    "array_sublink": Out("SELECT ARRAY(SELECT card FROM customers)", (0,)),
    "sublink_aggregate": Out("SELECT (SELECT max(ssn) FROM customers)", (0,)),
    "correlated_sublink": Out("SELECT name, (SELECT c2.card FROM customers c2 WHERE c2.id = c.id) FROM customers c", (1,)),
    "outer_reference": Out("SELECT (SELECT c.card) FROM customers c", (0,)),
    "outer_reference_unqualified": Out("SELECT (SELECT card FROM orders LIMIT 1) FROM customers", (0,)),
    "in_sublink_in_output": Out("SELECT '4111' IN (SELECT card FROM customers)", (0,)),
    "exists_in_output": Out("SELECT EXISTS (SELECT card FROM customers)", ()),
    # Aggregates and windows in outputs derive.
    "max": Out("SELECT max(card) FROM customers", (0,)),
    "count_distinct": Out("SELECT count(DISTINCT card) FROM customers", (0,)),
    "within_group": Out("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY card) FROM customers", (0,)),
    "string_agg_separator": Out("SELECT string_agg(name, card) FROM customers", (0,)),
    "lag": Out("SELECT lag(card) OVER (ORDER BY id) FROM customers", (0,)),
    "group_by_input_before_output": Out("SELECT max(card) AS id FROM customers GROUP BY id", (0,)),
    "order_by_output_before_input": Out("SELECT id AS card FROM customers ORDER BY card", ()),
    # Expressions.
    "reverse": Out("SELECT reverse(card) FROM customers", (0,)),
    "substr_concat": Out("SELECT substr(card, 1, 8) || substr(card, 9) FROM customers", (0,)),
    "encode_hex": Out("SELECT encode(card::bytea, 'hex') FROM customers", (0,)),
    "case_condition": Out("SELECT CASE WHEN card LIKE '4%' THEN 1 END FROM customers", (0,)),
    "coalesce": Out("SELECT coalesce(card, name) FROM customers", (0,)),
    "greatest": Out("SELECT greatest(ssn, 'z') FROM customers", (0,)),
    "is_null": Out("SELECT card IS NULL FROM customers", (0,)),
    "json_value": Out("SELECT JSON_VALUE(to_jsonb(c), '$.card') FROM customers c", (0,)),
    "json_object": Out("SELECT JSON_OBJECT('k': card) FROM customers", (0,)),
    "json_arrayagg": Out("SELECT JSON_ARRAYAGG(card) FROM customers", (0,)),
    "array_subscript": Out("SELECT (ARRAY[card])[1] FROM customers", (0,)),
    "xmlelement": Out("SELECT xmlelement(name x, card) FROM customers", (0,)),
    "named_argument": Out("SELECT jsonb_build_object(VARIADIC ARRAY['k', card]) FROM customers", (0,)),
    "table_statement": Out("TABLE customers", (3, 4), 5, (3, 4)),
    "only": Out("SELECT * FROM ONLY customers", (3, 4), 5),
    "tablesample": Out("SELECT * FROM customers TABLESAMPLE BERNOULLI (50)", (3, 4), 5),
    "quoted_identifier": Out('SELECT "card" FROM "customers"', (0,), 1, (0,)),
    "schema_qualified_column": Out("SELECT public.customers.card FROM public.customers", (0,), 1, (0,)),
    "table_qualified_column": Out("SELECT customers.ssn FROM public.customers", (0,), 1, (0,)),
    "system_columns": Out("SELECT ctid, xmin, tableoid FROM customers", (), 3),
    "ambiguous_name": Out("SELECT card FROM customers, cards_archive", (0,)),
    "constant_named_like_glob": Out("SELECT 'x' AS ssn, 1 AS card", (), 2),
    "show": Out("SHOW password_encryption", (), 1),
    "show_all": Out("SHOW ALL", (), 3),
    "pg_catalog_names_unmasked": Out("SELECT relname FROM pg_catalog.pg_class", (), 1, (0,)),
    # Data-modifying statements return what RETURNING lists.
    "delete_returning": Out("DELETE FROM customers WHERE id = 1 RETURNING card", (0,), 1, (0,)),
    "insert_returning_star": Out("INSERT INTO customers (name) VALUES ('x') RETURNING *", (3, 4), 5),
    "update_returning_alias": Out("UPDATE customers SET name = 'x' WHERE id = 1 RETURNING card AS c", (0,)),
    "writable_cte_returning": Out("WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING card) SELECT * FROM d", (0,)),
    "merge_returning": Out("MERGE INTO t USING customers c ON t.a = c.name WHEN MATCHED THEN DO NOTHING RETURNING c.card", (0,)),
    # COPY TO STDOUT sends rows too.
    "copy_table": Out("COPY customers TO STDOUT", (3, 4), 5, (3, 4)),
    "copy_columns": Out("COPY customers (id, card) TO STDOUT", (1,), 2),
    "copy_query": Out("COPY (SELECT card AS x FROM customers) TO STDOUT", (0,), 1),
    "copy_view": Out("COPY v TO STDOUT", (0,), 2),
    "copy_returning": Out("COPY (DELETE FROM customers WHERE id = 1 RETURNING ssn) TO STDOUT", (0,)),
    # Recursive CTEs reach a fixpoint.
    "recursive_base": Out("WITH RECURSIVE r(a, n) AS (SELECT card, 1 FROM customers UNION ALL SELECT a, n + 1 FROM r WHERE n < 3) SELECT a FROM r", (0,)),
    "recursive_step": Out("WITH RECURSIVE r(a) AS (SELECT 'x' UNION ALL SELECT c.card FROM r, customers c WHERE false) SELECT a FROM r", (0,)),
    "recursive_forward_reference": Out("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT card FROM customers) SELECT * FROM a", (0,)),
    "recursive_counter": Out("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", (), 1),
    "explain_plans_only": Out("EXPLAIN SELECT card FROM customers WHERE id = 4", (), 1),
    "explain_analyze_false": Out("EXPLAIN (ANALYZE false) SELECT card, ssn FROM customers", (), 1),
}
# fmt: on


@pytest.mark.parametrize("case", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_outputs_derived_from_a_masked_column_are_found(case: Out) -> None:
    lineage = one(case.sql)
    # A value computed from a masked column below the outputs is refused where it is formed
    # (the guard refuses computed outputs too): only that violation may come with the outputs.
    assert all(v.endswith(COMPUTED) for v in lineage.violations), lineage.violations
    assert lineage.unknown == ()
    assert lineage.outputs is not None
    assert lineage.masked_positions() == case.masked
    if case.width is not None:
        assert len(lineage.outputs) == case.width
        assert not lineage.open_ended
    for index in case.exact:
        assert lineage.outputs[index].exact, lineage.outputs[index]


# fmt: off
VIOLATIONS = {
    # Computed below the outputs: evaluated all the same, its errors are an oracle.
    "function_in_from": ("SELECT ordinality FROM customers c, upper(c.card) WITH ORDINALITY", "card is computed with"),
    "lateral_division_oracle": ("SELECT c.id FROM customers c, LATERAL abs(1/(CASE WHEN c.ssn LIKE '9%' THEN 0 ELSE 1 END)) x", "ssn is computed with"),
    "materialized_cte_oracle": ("WITH x AS MATERIALIZED (SELECT id, 1/(CASE WHEN ssn LIKE '9%' THEN 0 ELSE 1 END) AS z FROM customers) SELECT id FROM x", "ssn is computed with"),
    "subquery_offset_oracle": ("SELECT id FROM (SELECT id, length(ssn::regclass::text) AS z FROM customers OFFSET 0) s", "ssn is computed with"),
    "exists_sublink_oracle": ("SELECT 1 WHERE EXISTS (SELECT 1/(CASE WHEN card > '4' THEN 0 ELSE 1 END) FROM customers)", "card is computed with"),
    "values_row_oracle": ("SELECT c.id FROM customers c, LATERAL (VALUES (c.ssn::regrole)) v(r)", "ssn is computed with"),
    "returning_in_cte": ("WITH d AS (DELETE FROM customers WHERE id = 1 RETURNING upper(ssn)) SELECT 1", "ssn is computed with"),
    "explain_analyze_computed": ("EXPLAIN ANALYZE SELECT 1/(CASE WHEN ssn LIKE '9%' THEN 0 ELSE 1 END) FROM customers", "ssn is computed with"),
    # Probing without showing.
    "where_like": ("SELECT id FROM customers WHERE card LIKE '4111%'", "public.customers.card is used in WHERE"),
    "where_in_list": ("SELECT id FROM customers WHERE card IN ('4111')", "used in WHERE"),
    "where_is_null": ("SELECT id FROM customers WHERE ssn IS NULL", "public.customers.ssn is used in WHERE"),
    "where_through_view": ("SELECT id FROM v WHERE x > '4'", "card is used in WHERE"),
    "where_whole_row": ("SELECT id FROM customers c WHERE c::text LIKE '%4111%'", "card is used in WHERE"),
    "where_field_of_row": ("SELECT id FROM customers c WHERE (c).card = 'x'", "card is used in WHERE"),
    "where_in_subquery": ("SELECT id FROM orders WHERE note IN (SELECT card FROM customers)", "card is used in WHERE"),
    "where_any_subquery": ("SELECT id FROM orders WHERE note = ANY (SELECT card FROM customers)", "card is used in WHERE"),
    "where_exists_correlated": ("SELECT id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.note = c.card)", "card is used in WHERE"),
    "where_correlated_in_output": ("SELECT (SELECT 1 WHERE c.card LIKE '4%') FROM customers c", "card is used in WHERE"),
    "where_outer_unqualified": ("SELECT (SELECT note FROM orders WHERE note = card LIMIT 1) FROM customers", "card is used in WHERE"),
    "where_whole_row_equals": ("SELECT id FROM customers WHERE customers = ROW(1, 'a', 'b', 'c', 'd')", "card is used in WHERE"),
    "where_row_comparison": ("SELECT id FROM customers WHERE (card, id) = ('4111', 1)", "card is used in WHERE"),
    "where_rank_by_sublink": ("SELECT (SELECT count(*) FROM customers c2 WHERE c2.card < c.card) FROM customers c", "card is used in WHERE"),
    "where_implicit_join": ("SELECT c.id FROM customers c, cards_archive a WHERE c.card = a.card", "card is used in WHERE"),
    "view_with_filter": ("SELECT id FROM vfilter", "card is used in WHERE (in view public.vfilter)"),
    "join_on": ("SELECT 1 FROM customers a JOIN customers b ON a.card < b.card", "used in JOIN ... ON"),
    "join_using": ("SELECT 1 FROM customers JOIN cards_archive USING (card)", "used in JOIN ... USING"),
    "natural_join_on_masked": ("SELECT 1 FROM customers NATURAL JOIN cards_archive", "used in NATURAL JOIN"),
    "group_by": ("SELECT count(*) FROM customers GROUP BY card", "used in GROUP BY"),
    "group_by_position": ("SELECT card, count(*) FROM customers GROUP BY 1", "used in GROUP BY"),
    "group_by_output_alias": ("SELECT card AS k, count(*) FROM customers GROUP BY k", "used in GROUP BY"),
    "group_by_rollup": ("SELECT count(*) FROM customers GROUP BY ROLLUP (id, ssn)", "used in GROUP BY"),
    "having": ("SELECT id FROM customers GROUP BY id HAVING max(card) > '4'", "used in HAVING"),
    "order_by": ("SELECT id FROM customers ORDER BY card", "used in ORDER BY"),
    "order_by_alias": ("SELECT card AS x FROM customers ORDER BY x", "used in ORDER BY"),
    "order_by_position": ("SELECT * FROM customers ORDER BY 4", "used in ORDER BY"),
    "order_by_expression": ("SELECT id FROM customers ORDER BY length(card)", "used in ORDER BY"),
    "order_by_with_ties": ("SELECT id FROM customers ORDER BY ssn FETCH FIRST 1 ROWS WITH TIES", "used in ORDER BY"),
    "order_by_set_operation": ("(SELECT card FROM customers) UNION ALL (SELECT note FROM orders) ORDER BY 1", "used in ORDER BY"),
    "distinct": ("SELECT DISTINCT card FROM customers", "used in DISTINCT"),
    "distinct_whole_row": ("SELECT DISTINCT c FROM customers c", "card is used in DISTINCT"),
    "distinct_in_subquery": ("SELECT count(*) FROM (SELECT DISTINCT card FROM customers) s", "used in DISTINCT"),
    "order_by_whole_row": ("SELECT id FROM customers ORDER BY customers", "card is used in ORDER BY"),
    "order_by_in_copy": ("COPY (SELECT id FROM customers ORDER BY card) TO STDOUT", "used in ORDER BY"),
    "having_bool_or": ("SELECT 1 FROM customers HAVING bool_or(card LIKE '4%')", "used in HAVING"),
    "distinct_on": ("SELECT DISTINCT ON (card) id FROM customers", "used in DISTINCT ON"),
    "limit": ("SELECT id FROM customers LIMIT length((SELECT card FROM customers LIMIT 1))", "used in LIMIT"),
    "offset_subquery_filter": ("SELECT id FROM customers OFFSET (SELECT count(*) FROM customers WHERE card > '4')", "used in WHERE"),
    "union_deduplicates": ("SELECT name FROM customers UNION SELECT card FROM customers", "used in UNION"),
    "intersect": ("SELECT card FROM customers INTERSECT SELECT '4111'", "used in INTERSECT"),
    "except": ("SELECT card FROM customers EXCEPT SELECT '4111'", "used in EXCEPT"),
    "except_all": ("SELECT ssn FROM customers EXCEPT ALL SELECT '1'", "used in EXCEPT"),
    "recursive_union": ("WITH RECURSIVE r(a) AS (SELECT card FROM customers UNION SELECT a FROM r) SELECT * FROM r", "used in UNION"),
    "recursive_where": ("WITH RECURSIVE r(a) AS (SELECT card FROM customers UNION ALL SELECT a FROM r WHERE a > '5') SELECT 1", "used in WHERE"),
    "cte_search": ("WITH RECURSIVE r(a) AS (SELECT card FROM customers UNION ALL SELECT a FROM r) SEARCH DEPTH FIRST BY a SET o SELECT 1 FROM r", "used in SEARCH"),
    "cte_cycle": ("WITH RECURSIVE r(a) AS (SELECT card FROM customers UNION ALL SELECT a FROM r) CYCLE a SET m USING p SELECT 1 FROM r", "used in CYCLE"),
    # Aggregates and windows.
    "aggregate_filter": ("SELECT count(*) FILTER (WHERE card LIKE '4%') FROM customers", "used in an aggregate's FILTER"),
    "aggregate_order_by": ("SELECT array_agg(id ORDER BY card) FROM customers", "used in an aggregate's ORDER BY"),
    "json_aggregate_order_by": ("SELECT JSON_ARRAYAGG(id ORDER BY card) FROM customers", "used in an aggregate's ORDER BY"),
    "window_order_by": ("SELECT row_number() OVER (ORDER BY card) FROM customers", "used in a window's ORDER BY"),
    "window_partition_by": ("SELECT sum(id) OVER (PARTITION BY ssn) FROM customers", "used in a window's PARTITION BY"),
    "named_window": ("SELECT count(*) OVER w FROM customers WINDOW w AS (PARTITION BY card)", "used in a window's PARTITION BY"),
    # Row counts that depend on the value.
    "srf_in_output": ("SELECT generate_series(1, length(card)) FROM customers", "used in a set-returning function"),
    "unnest_in_output": ("SELECT unnest(string_to_array(card, '1')) FROM customers", "used in a set-returning function"),
    "srf_in_from": ("SELECT c.id FROM customers c, generate_series(1, length(c.card))", "used in a set-returning function"),
    "json_each_of_row": ("SELECT * FROM customers c, jsonb_each_text(to_jsonb(c))", "used in a set-returning function"),
    "regexp_matches_in_from": ("SELECT m FROM customers c, regexp_matches(c.card, '4', 'g') m", "used in a set-returning function"),
    "xmltable_over_masked": ("SELECT * FROM customers c, XMLTABLE('/a' PASSING (c.card::xml) COLUMNS v text PATH '.') x", "used in a set-returning function"),
    "json_table_over_masked": ("SELECT * FROM customers c, JSON_TABLE(to_jsonb(c), '$' COLUMNS (v text PATH '$.card')) j", "used in a set-returning function"),
    # Functions the gateway cannot see into, or with effects.
    "user_function": ("SELECT myfunc(card) FROM customers", "used in a call to myfunc"),
    "function_notation_field": ("SELECT card(c) FROM customers c", "used in a call to card"),
    "dotted_function_notation": ("SELECT c.nosuch FROM customers c", "used in a call to nosuch"),
    "schema_qualified_user_function": ("SELECT public.reverse(card) FROM customers", "used in a call to public.reverse"),
    "user_operator": ("SELECT card OPERATOR(public.||) 'x' FROM customers", "used in a call to operator public.||"),
    "notify_payload": ("SELECT pg_notify('ch', card) FROM customers", "used in a call to pg_notify"),
    "set_config_value": ("SELECT set_config('x.y', ssn, false) FROM customers", "used in a call to set_config"),
    "large_object_copy": ("SELECT lo_from_bytea(0, card::bytea) FROM customers", "used in a call to lo_from_bytea"),
    "procedure_argument": ("CALL myproc((SELECT card FROM customers LIMIT 1))", "used in a call to procedure myproc"),
    "execute_parameter": ("EXECUTE p((SELECT card FROM customers LIMIT 1))", "used in a prepared statement's parameter"),
    # Copies into columns no glob names.
    "insert_select": ("INSERT INTO t SELECT card, name FROM customers", "public.customers.card is copied into public.t.a"),
    "insert_column_list": ("INSERT INTO t (b) SELECT ssn FROM customers", "ssn is copied into public.t.b"),
    "insert_values_sublink": ("INSERT INTO t VALUES ((SELECT card FROM customers LIMIT 1), 'x')", "copied into public.t.a"),
    "insert_whole_row": ("INSERT INTO t (a) SELECT c::text FROM customers c", "copied into public.t.a"),
    "insert_via_view": ("INSERT INTO t (a) SELECT x FROM v", "card is copied into public.t.a"),
    "insert_computed_into_masked": ("INSERT INTO cards_archive (card) SELECT upper(card) FROM customers", "computed into public.cards_archive.card"),
    "update_set": ("UPDATE customers SET name = card", "card is copied into public.customers.name"),
    "update_from": ("UPDATE t SET a = c.card FROM customers c WHERE c.id = 1", "copied into public.t.a"),
    "update_multi_assign": ("UPDATE t SET (a, b) = (SELECT card, name FROM customers LIMIT 1)", "copied into public.t.a"),
    "update_where": ("UPDATE customers SET name = 'x' WHERE card LIKE '4%'", "used in WHERE"),
    "delete_where": ("DELETE FROM customers WHERE ssn = '123'", "used in WHERE"),
    "delete_using": ("DELETE FROM orders USING customers c WHERE c.card = orders.note", "used in WHERE"),
    "on_conflict_target": ("INSERT INTO customers (card) VALUES ('4111') ON CONFLICT (card) DO NOTHING", "used in ON CONFLICT"),
    "on_conflict_update": ("INSERT INTO customers (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET name = customers.card", "copied into public.customers.name"),
    "on_conflict_excluded": ("INSERT INTO t (a) SELECT card FROM customers ON CONFLICT (a) DO UPDATE SET b = excluded.a", "copied into public.t"),
    "merge_on": ("MERGE INTO t USING customers c ON t.a = c.card WHEN MATCHED THEN DO NOTHING", "used in MERGE ... ON"),
    "merge_insert": ("MERGE INTO t USING customers c ON t.a = c.name WHEN NOT MATCHED THEN INSERT (a) VALUES (c.card)", "copied into public.t.a"),
    "merge_when": ("MERGE INTO t USING customers c ON t.a = c.name WHEN MATCHED AND c.ssn > '1' THEN DELETE", "used in MERGE ... WHEN"),
    "merge_update": ("MERGE INTO t USING customers c ON t.a = c.name WHEN MATCHED THEN UPDATE SET b = c.card", "copied into public.t.b"),
    "create_table_as_rename": ("CREATE TABLE x AS SELECT card AS n FROM customers", "copied into x.n"),
    "create_table_as_column_list": ("CREATE TABLE x (n) AS SELECT card FROM customers", "copied into x.n"),
    "create_table_as_expression": ("CREATE TABLE x AS SELECT upper(card) FROM customers", "copied into x.upper"),
    "select_into_rename": ("SELECT card AS n INTO x FROM customers", "copied into x.n"),
    "writable_cte_copy": ("WITH u AS (UPDATE customers SET name = card RETURNING id) SELECT * FROM u", "copied into public.customers.name"),
    "writable_cte_insert": ("WITH i AS (INSERT INTO t SELECT card, name FROM customers RETURNING a) SELECT 1", "copied into public.t.a"),
    "copy_to_file": ("COPY customers TO '/tmp/x'", "copied into a server file"),
    "copy_to_program": ("COPY (SELECT card FROM customers) TO PROGRAM 'cat'", "copied into a program"),
    "copy_query_filter": ("COPY (SELECT id FROM customers WHERE card > '4') TO STDOUT", "used in WHERE"),
    "prepare_filter": ("PREPARE p AS SELECT id FROM customers WHERE card = $1", "used in WHERE"),
    "declare_filter": ("DECLARE c CURSOR FOR SELECT id FROM customers ORDER BY ssn", "used in ORDER BY"),
    "explain_analyze_runs": ("EXPLAIN ANALYZE SELECT id FROM customers WHERE card = '4111'", "used in WHERE"),
    "explain_analyze_insert": ("EXPLAIN (ANALYZE) INSERT INTO t SELECT card, name FROM customers", "copied into public.t.a"),
    # Planned only, the row estimates still come from the column's statistics (real values).
    "explain_estimate_probe": ("EXPLAIN SELECT id FROM customers WHERE card = '4111'", "used in WHERE"),
    "explain_analyze_false_probe": ("EXPLAIN (ANALYZE false) SELECT id FROM customers WHERE card < 'x'", "used in WHERE"),
    # DDL that reads values now or later.
    "rename_masked_column": ("ALTER TABLE customers RENAME COLUMN card TO c2", "public.customers.card is renamed to c2"),
    "generated_column_copy": ("ALTER TABLE customers ADD COLUMN c2 text GENERATED ALWAYS AS (card) STORED", "copied into public.customers.c2"),
    "check_constraint_oracle": ("ALTER TABLE customers ADD CONSTRAINT k CHECK (card NOT LIKE '4%')", "used in a constraint"),
    "unique_constraint_oracle": ("ALTER TABLE customers ADD CONSTRAINT k UNIQUE (ssn)", "used in a constraint"),
    "unique_index_oracle": ("CREATE UNIQUE INDEX ON customers (card)", "used in a unique index"),
    "expression_index_error": ("CREATE INDEX ON customers ((card::int))", "used in an index expression"),
    "partial_index": ("CREATE INDEX ON customers (id) WHERE card LIKE '4%'", "used in an index predicate"),
    "row_security_policy": ("CREATE POLICY p ON customers USING (card LIKE '4%')", "used in a row security policy"),
    "extended_statistics": ("CREATE STATISTICS s ON card, id FROM customers", "extended statistics"),
    "alter_type_using": ("ALTER TABLE customers ALTER COLUMN card TYPE int USING card::int", "ALTER COLUMN ... TYPE ... USING"),
    # Names the model cannot place are masked if the name is.
    "unknown_relation_filter": ("SELECT x FROM missing_table WHERE card = '1'", "missing_table.card is used in WHERE"),
}
# fmt: on


@pytest.mark.parametrize(("sql", "expected"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_masked_columns_used_other_than_as_output_are_violations(sql: str, expected: str) -> None:
    statements = run(sql)
    found = [v for s in statements for v in s.violations]
    assert any(expected in v for v in found), found
    assert all(not s.allowed for s in statements if s.violations)


# fmt: off
ALLOWED = {
    "exists_without_filter": "SELECT id FROM orders WHERE EXISTS (SELECT card FROM customers)",
    "filter_on_unmasked": "SELECT card FROM customers WHERE id = 1 ORDER BY name LIMIT 5",
    "system_column_filter": "SELECT id FROM customers WHERE ctid = '(0,1)'",
    "intersect_unmasked": "SELECT id FROM customers INTERSECT SELECT 1",
    "distinct_unmasked": "SELECT DISTINCT id, name FROM customers",
    "constant_into_masked": "INSERT INTO customers (card) VALUES ('4111111111111111')",
    "update_constant_into_masked": "UPDATE customers SET card = 'x' WHERE id = 1",
    "exact_copy_into_masked": "INSERT INTO cards_archive (card, id) SELECT card, id FROM customers",
    "create_table_as_same_name": "CREATE TABLE x AS SELECT card FROM customers",
    "select_into_star": "SELECT * INTO x FROM customers",
    "create_table_as_no_data": "CREATE TABLE x AS SELECT card AS n FROM customers WITH NO DATA",
    "matview_definition": "CREATE MATERIALIZED VIEW mvx AS SELECT card AS n FROM customers",
    "view_definition": "CREATE VIEW w AS SELECT id FROM customers WHERE card LIKE '4%'",
    "rename_unmasked": "ALTER TABLE customers RENAME COLUMN name TO nm",
    "rename_to_masked_name": "ALTER TABLE t RENAME COLUMN a TO card_number_copy",
    "plain_index": "CREATE INDEX ON customers (card)",
    "copy_from_stdin": "COPY t FROM STDIN",
    "on_conflict_excluded_exact_copy": "INSERT INTO cards_archive (card, id) SELECT card, id FROM customers ON CONFLICT (id) DO UPDATE SET card = excluded.card",
    "on_conflict_unmasked": "INSERT INTO t (a) VALUES ('x') ON CONFLICT (a) DO UPDATE SET b = excluded.a",
    "begin_then_select": "BEGIN; SELECT card FROM customers; COMMIT",
    "window_on_unmasked": "SELECT lag(card) OVER (PARTITION BY id ORDER BY name) FROM customers",
    "srf_over_unmasked": "SELECT id, generate_series(1, id) FROM customers",
    "unnest_of_array_literal": "SELECT * FROM customers c, unnest(ARRAY[1, 2]) u",
}
# fmt: on


@pytest.mark.parametrize("sql", ALLOWED.values(), ids=ALLOWED.keys())
def test_uses_that_reveal_nothing_are_allowed(sql: str) -> None:
    for lineage in run(sql):
        assert lineage.violations == () and lineage.unknown == (), lineage


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT histogram_bounds FROM pg_stats WHERE attname = 'card'", "sample values"),
    ("SELECT query_to_xml('select card from customers', true, true, '')", "runs SQL text"),
    ("SELECT table_to_xml('customers', true, true, '')", "runs SQL text"),
    ("SELECT * FROM dblink('x', 'select card from customers') AS d(c text)", "runs SQL text"),
    ("DO $$BEGIN RAISE NOTICE '%', (SELECT card FROM customers LIMIT 1); END$$", "DO runs code"),
    ("CREATE TABLE x AS EXECUTE p", "prepared statement"),
])
def test_reads_the_gateway_cannot_follow_are_unknown(sql: str, reason: str) -> None:
    lineage = one(sql)
    assert any(reason in u for u in lineage.unknown), lineage.unknown


# -- opacity: sources that cannot be seen --------------------------------------------------


def test_relation_missing_from_the_catalog_is_opaque() -> None:
    """A table created by another session, or later in the same message, is not described:
    its columns are opaque (the relay masks them), and a masked name stays masked."""
    lineage = one("SELECT card, id FROM missing_table")
    assert lineage.outputs is not None
    assert [o.opaque for o in lineage.outputs] == [True, True]
    assert lineage.outputs[0].masked == ("missing_table.card (unresolved)",) or lineage.outputs[0].masked


def test_star_over_a_missing_relation_is_open_ended() -> None:
    lineage = one("SELECT c.*, m.* FROM customers c, missing_table m")
    assert lineage.open_ended
    assert lineage.outputs is not None and len(lineage.outputs) == 5
    assert lineage.masked_positions() == (3, 4)


def test_positions_past_the_listed_outputs_are_masked() -> None:
    """The relay asks per RowDescription column: an unlisted one is never shown as it is."""
    lineage = one("SELECT c.*, m.* FROM customers c, missing_table m")
    assert [lineage.masks(i) for i in range(7)] == [False, False, False, True, True, True, True]
    plain = one("SELECT id FROM customers")
    assert not plain.masks(0) and plain.masks(1)  # wider than analysed: fail closed


def test_star_after_an_unknown_width_function_stops_the_listing() -> None:
    """A user function's columns are unknown: what follows has no known position."""
    lineage = one("SELECT * FROM myfunc() f, customers c")
    assert lineage.open_ended and lineage.outputs == ()


def test_star_of_a_computed_row_stops_the_listing() -> None:
    """``(f(x)).*`` has as many columns as the row type: unknown here, so are later ones."""
    lineage = one("SELECT id, (jsonb_populate_record(null::customers, to_jsonb(c))).*, ssn FROM customers c")
    assert lineage.open_ended
    assert lineage.outputs is not None and len(lineage.outputs) == 1


def test_user_function_output_is_opaque_and_may_change_the_catalog() -> None:
    lineage = one("SELECT myfunc(id) FROM customers")
    assert lineage.outputs is not None and lineage.outputs[0].opaque
    assert lineage.violations == () and lineage.changes_catalog


def test_name_in_an_unknown_function_entry_is_a_candidate() -> None:
    lineage = one("SELECT card FROM myfunc() f")
    assert lineage.masked_positions() == (0,)


def test_unresolvable_name_is_opaque_not_an_error() -> None:
    lineage = one("SELECT nosuch FROM customers")
    assert lineage.outputs is not None and lineage.outputs[0].opaque


# -- the search path: builtin names may not be builtins ------------------------------------


@pytest.mark.parametrize(("sql", "violation"), [
    ("SELECT reverse(card) FROM customers", "a call to reverse"),
    ("SELECT card || 'x' FROM customers", "a call to operator ||"),
])
def test_builtins_are_not_trusted_when_a_schema_precedes_pg_catalog(sql: str, violation: str) -> None:
    """HOSTILE C.14: with search_path = evil, pg_catalog, evil.reverse may RAISE NOTICE."""
    lineage = one(sql, catalog(safe=False))
    assert any(violation in v for v in lineage.violations), lineage.violations


@pytest.mark.parametrize(("sql", "shadowed", "violation"), [
    ("SELECT reverse(card) FROM customers", ("function", "reverse"), "a call to reverse"),
    ("SELECT card || 'x' FROM customers", ("operator", "||"), "a call to operator ||"),
    ("SELECT card::text FROM customers", ("type", "text"), "a cast to type text"),
])
def test_a_builtin_name_another_schema_also_holds_is_not_trusted(sql: str, shadowed: tuple[str, str], violation: str) -> None:
    """PostgreSQL picks the best argument match across every searched schema (and looks types
    up in pg_temp first): public.reverse(varchar) wins over pg_catalog.reverse(text) for a
    varchar column, a pg_temp.text domain's CHECK sees every ::text value."""
    assert one(sql).violations == ()
    lineage = one(sql, catalog(shadowed=[shadowed]))
    assert any(violation in v for v in lineage.violations), lineage.violations


@pytest.mark.parametrize("sql", ["SELECT card::my_domain FROM customers",
                                 "SELECT CAST(ssn AS public.d) FROM customers"])
def test_a_cast_to_a_type_that_is_not_builtin_is_a_call(sql: str) -> None:
    """A domain's CHECK runs a function of the agent's on the value."""
    assert any("a cast to type" in v for v in one(sql).violations)
    assert one("SELECT 'x'::my_domain").outputs[0].opaque  # type: ignore[index]


def test_pg_catalog_qualified_builtins_stay_trusted() -> None:
    lineage = one("SELECT pg_catalog.reverse(card) FROM customers", catalog(safe=False))
    assert lineage.violations == () and lineage.masked_positions() == (0,)


def test_unknown_search_path_is_asked_for() -> None:
    result = analyze("SELECT reverse(card) FROM customers", catalog(safe=None), is_masked)
    assert isinstance(result, NeedRelations)


# -- statements the relay must remember ----------------------------------------------------


def test_declare_returns_the_cursor_lineage() -> None:
    lineage = one("DECLARE cur CURSOR FOR SELECT card AS x, id FROM customers")
    assert lineage.outputs is None and lineage.defines == "cursor:cur"
    assert lineage.inner is not None and lineage.inner.masked_positions() == (0,)


def test_prepare_returns_the_statement_lineage() -> None:
    lineage = one("PREPARE p(int) AS SELECT name, ssn FROM customers WHERE id = $1")
    assert lineage.defines == "prepared:p" and lineage.allowed
    assert lineage.inner is not None and lineage.inner.masked_positions() == (1,)


def test_fetch_and_execute_recall_a_name() -> None:
    assert one("FETCH ALL FROM cur").recalls == "cursor:cur"
    assert one("EXECUTE p(1)").recalls == "prepared:p"
    assert one("MOVE 1 IN cur").recalls is None


# -- several statements, and the catalog changing between them ------------------------------


def test_statements_align_with_the_parser_split() -> None:
    statements = run("SELECT 1; SELECT card FROM customers;; SELECT id FROM customers")
    assert [s.masked_positions() for s in statements] == [(), (0,), ()]


@pytest.mark.parametrize("sql", [
    "CREATE VIEW w AS SELECT card AS n FROM customers; SELECT n FROM w",
    "CREATE OR REPLACE VIEW vsafe AS SELECT card AS id, name FROM customers; SELECT id FROM vsafe",
    "SET search_path = evil, public; SELECT * FROM customers",
    "ROLLBACK; SELECT id FROM vsafe",
    "SELECT myfunc(1); SELECT * FROM vsafe",
    "ALTER TABLE customers RENAME COLUMN name TO card2; SELECT card2 FROM customers",
])
def test_statement_after_a_catalog_change_in_the_same_message_is_unknown(sql: str) -> None:
    """The catalog answers were loaded before the message ran: after DDL, SET search_path or
    ROLLBACK in the same message they may describe other objects."""
    last = run(sql)[-1]
    assert any("same message" in u for u in last.unknown), last


def test_a_catalog_change_with_no_later_relation_is_fine() -> None:
    statements = run("SELECT card FROM customers; SET search_path = public; SELECT 1")
    assert all(s.unknown == () for s in statements)
    assert statements[1].changes_catalog


# -- NeedRelations: what to load before retrying --------------------------------------------


def test_unloaded_relations_are_asked_for_together() -> None:
    cat = catalog(unloaded=["customers", "orders", "public.vsafe"])
    result = analyze("SELECT * FROM customers; SELECT * FROM orders, public.vsafe", cat, is_masked)
    assert isinstance(result, NeedRelations)
    assert {(n.schema, n.name) for n in result.names} == {
        (None, "customers"), (None, "orders"), ("public", "vsafe")}
    cat.load(result.names)
    assert isinstance(analyze("SELECT * FROM customers", cat, is_masked), Analysis)


def test_a_view_body_can_ask_for_more() -> None:
    cat = catalog(unloaded=["public.customers"])
    result = analyze("SELECT x FROM v", cat, is_masked)
    assert isinstance(result, NeedRelations)
    assert [(n.schema, n.name) for n in result.names] == [("public", "customers")]


def test_cte_names_are_never_asked_for() -> None:
    cat = catalog(unloaded=["x"])
    assert isinstance(analyze("WITH x AS (SELECT 1) SELECT * FROM x", cat, is_masked), Analysis)


# -- bounds ---------------------------------------------------------------------------------


def test_deep_nesting_is_unknown_not_a_crash() -> None:
    sql = "SELECT " + "upper(" * 300 + "card" + ")" * 300 + " FROM customers"
    lineage = one(sql)
    assert lineage.unknown and lineage.outputs is None


def test_too_many_relations_is_unknown() -> None:
    sql = "SELECT 1 FROM " + ", ".join(f"customers c{i}" for i in range(300))
    assert any("relations" in u for u in one(sql).unknown)


def test_view_cycle_is_unknown() -> None:
    cat = FakeCatalog(TABLES, {"public.loop1": ("a", "SELECT a FROM loop2"),
                               "public.loop2": ("a", "SELECT a FROM loop1")})
    assert any("itself" in u for u in one("SELECT * FROM loop1", cat).unknown)


def test_view_depth_is_bounded() -> None:
    views = {"public.w0": ("a", "SELECT card AS a FROM customers")}
    views.update({f"public.w{i}": ("a", f"SELECT a FROM w{i - 1}") for i in range(1, 20)})
    cat = FakeCatalog(TABLES, views)
    assert one("SELECT a FROM w10", cat).masked_positions() == (0,)
    assert any("nested over" in u for u in one("SELECT a FROM w19", cat).unknown)


@pytest.mark.parametrize("view_sql", ["SELECT card, id FROM customers", "not sql at all",
                                      "SELECT 1; SELECT 2", "DELETE FROM customers"])
def test_view_definition_that_does_not_fit_is_unknown(view_sql: str) -> None:
    cat = FakeCatalog(TABLES, {"public.odd": ("a", view_sql)})
    assert one("SELECT a FROM odd", cat).unknown


def test_unparseable_text_is_one_unknown_statement() -> None:
    statements = run("SELEC card FROM customers")
    assert len(statements) == 1 and statements[0].unknown


def test_node_budget_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.postgres import lineage_expr

    monkeypatch.setattr(lineage_expr, "MAX_NODES", 50)
    sql = "SELECT " + ", ".join(f"upper(name) AS c{i}" for i in range(40)) + " FROM customers"
    assert any("too large" in u for u in one(sql).unknown)


# -- the session's own pg_temp: searched first for relations and types ------------------------

@pytest.mark.parametrize("sql, created", [
    ("CREATE TEMP TABLE customers (id int, note text)", ("relation", "customers")),
    ("CREATE TEMPORARY TABLE t AS SELECT ssn FROM customers", ("relation", "t")),
    ("CREATE TABLE pg_temp.t (a int)", ("relation", "t")),
    ("SELECT ssn INTO TEMP t FROM customers", ("relation", "t")),
    ("CREATE TEMP VIEW v AS SELECT 1", ("relation", "v")),
    ("CREATE TEMP SEQUENCE s", ("relation", "s")),
    ("ALTER TABLE pg_temp.t RENAME TO customers", ("relation", "customers")),
    ("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (VALUE <> '')", ("type", "text")),
    ("CREATE TYPE pg_temp.int4 AS (a int)", ("type", "int4")),
    ("ALTER TYPE pg_temp.t RENAME TO numeric", ("type", "numeric")),
])
def test_objects_made_in_pg_temp_are_reported(sql: str, created: tuple[str, str]) -> None:
    assert one(sql).temp_objects == (created,)


@pytest.mark.parametrize("sql", ["CREATE TABLE t (a int)", "CREATE UNLOGGED TABLE t (a int)",
                                 "CREATE VIEW v AS SELECT 1", "ALTER TABLE t RENAME TO customers",
                                 "CREATE DOMAIN public.d AS text"])
def test_permanent_objects_are_not_temporary(sql: str) -> None:
    assert one(sql).temp_objects == ()


def test_a_view_or_rename_after_a_temp_relation_counts_as_temporary() -> None:
    """A view over a temporary relation is made temporary by the server; renaming a temp
    relation keeps it in pg_temp under its new name."""
    cat = SessionCatalog(catalog())
    cat.note_temp_objects([("relation", "t")])
    assert one("CREATE VIEW customers AS SELECT * FROM t", cat).temp_objects == (
        ("relation", "customers"),)
    assert one("ALTER TABLE t RENAME TO customers", cat).temp_objects == (
        ("relation", "customers"),)


def test_a_temporary_relation_shadows_the_catalog_and_is_opaque() -> None:
    cat = SessionCatalog(catalog())
    assert one("SELECT * FROM customers", cat).outputs[0].opaque is False
    cat.note_temp_objects([("relation", "customers")])
    shadowed = one("SELECT * FROM customers", cat)
    assert shadowed.open_ended and shadowed.masks(0) and shadowed.masks(3)
    assert one("SELECT * FROM public.customers", cat).masks(0) is False
    assert one("SELECT * FROM pg_temp.anything", cat).masks(0)


def test_a_temporary_type_shadowing_a_builtin_is_the_agents_own() -> None:
    cat = SessionCatalog(catalog())
    assert one("SELECT ssn::text FROM customers", cat).allowed
    cat.note_temp_objects([("type", "text")])
    assert "cannot see into" in one("SELECT ssn::text FROM customers", cat).violations[0]


def with_archive() -> FakeCatalog:
    """``archive(id int, snapshot customers, note text)``: snapshot holds a customers row."""
    cat = catalog()
    cat.relations[("public", "archive")] = Relation(
        17000, "public", "archive", "r",
        (Column("id", 1, INT), Column("snapshot", 2, 16400, ("id", "name", "card", "ssn")),
         Column("note", 3, TEXT, ())))
    return cat


@pytest.mark.parametrize("sql, masked", [
    ("SELECT snapshot FROM archive", (0,)),
    ("SELECT a.snapshot AS s, note FROM archive a", (0,)),
    ("SELECT * FROM archive", (1,)),
])
def test_a_column_holding_a_masked_field_is_masked_whole(sql: str, masked: tuple[int, ...]) -> None:
    lineage = one(sql, with_archive())
    assert lineage.allowed and lineage.masked_positions() == masked


@pytest.mark.parametrize("sql", [
    "SELECT (snapshot).ssn FROM archive",
    "SELECT (snapshot).name FROM archive",
    "SELECT id FROM archive WHERE (snapshot).ssn LIKE '9%'",
    "SELECT id FROM archive ORDER BY snapshot",
    "SELECT snapshot::text FROM archive",
])
def test_a_column_holding_a_masked_field_is_not_computed_with(sql: str) -> None:
    lineage = one(sql, with_archive())
    assert not lineage.allowed or any(
        not o.exact for o in lineage.outputs or () if o.masked), lineage


def test_the_fields_of_a_column_holding_a_masked_field_are_all_masked() -> None:
    lineage = one("SELECT (snapshot).* FROM archive", with_archive())
    assert lineage.open_ended and all(lineage.masks(i) for i in range(4))
