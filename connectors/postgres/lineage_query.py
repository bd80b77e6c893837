"""The query half of column lineage: which base columns each value of a query comes from.

:class:`Run` mirrors PostgreSQL's parse analysis (``transformSelectStmt``) on libpg_query's
JSON tree, only as far as lineage needs: FROM entries become namespace entries with columns in
catalog order (views read through their definitions), ``*`` expands, joins merge USING columns,
set operations line up by position, WITH RECURSIVE is iterated to a fixpoint. Where the
server's choice cannot be seen (an ambiguous or unknown name, a relation the catalog does not
describe, a function of unknown shape) the answer is the union of every candidate: masked if
any candidate is.
"""

from __future__ import annotations

from typing import Any

from . import functions
from .catalog import NOT_FOUND, NOT_LOADED, Relation, RelationName
from .lineage_expr import (
    MAX_RECURSION_ROUNDS,
    MAX_RELATIONS,
    MAX_VIEW_DEPTH,
    MAX_VIEW_SQL_CHARS,
    Analyser,
)
from .lineage_model import (
    NONE,
    OPAQUE,
    STATEMENTS,
    Col,
    Ctes,
    Frame,
    Item,
    Lin,
    Node,
    Origin,
    Rel,
    Scope,
    derive,
    figure_name,
    int_const,
    parse_view,
    strings,
    unwrap,
)

# pg_catalog relations that expose sample values of every column (histograms, common values).
STATISTICS_RELATIONS = frozenset(
    ("pg_stats", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic", "pg_statistic_ext_data")
)
# Builtins returning a row, by output column names; None: the width depends on argument types.
_RECORDS: dict[str, tuple[str, ...] | None] = {
    "json_each": ("key", "value"), "json_each_text": ("key", "value"),
    "jsonb_each": ("key", "value"), "jsonb_each_text": ("key", "value"),
    "pg_options_to_table": ("option_name", "option_value"),
    "aclexplode": ("grantor", "grantee", "privilege_type", "is_grantable"),
    "pg_partition_tree": ("relid", "parentrelid", "isleaf", "level"),
    "ts_debug": ("alias", "description", "token", "dictionaries", "dictionary", "lexemes"),
    "ts_parse": ("tokid", "token"), "ts_token_type": ("tokid", "alias", "description"),
    "pg_get_keywords": ("word", "catcode", "barelabel", "catdesc", "baredesc"),
    "pg_identify_object": ("type", "schema", "name", "identity"),
    "pg_identify_object_as_address": ("type", "object_names", "object_args"),
    "pg_get_object_address": ("classid", "objid", "objsubid"),
    "json_populate_record": None, "jsonb_populate_record": None, "json_to_record": None,
    "jsonb_to_record": None, "json_populate_recordset": None, "jsonb_populate_recordset": None,
    "json_to_recordset": None, "jsonb_to_recordset": None, "pg_lock_status": None,
    "pg_input_error_info": None, "unnest": None,
    # The functions behind read-only system views (pg_settings, pg_cursors, ...): the views name
    # their columns in an alias list.
    "pg_show_all_settings": None, "pg_cursor": None, "pg_prepared_statement": None,
    "pg_prepared_xact": None, "pg_timezone_names": None, "pg_timezone_abbrevs": None,
    "pg_available_extensions": None, "pg_available_extension_versions": None,
    "pg_show_all_file_settings": None, "pg_hba_file_rules": None, "pg_ident_file_mappings": None,
    "pg_get_shmem_allocations": None, "pg_get_backend_memory_contexts": None,
    "pg_config": ("name", "setting"), "pg_tablespace_databases": ("pg_tablespace_databases",),
}  # fmt: skip
_RECORD_PREFIXES = ("pg_stat_get_", "pg_control_", "pg_get_")
_SCALAR_GET = frozenset(n for n in functions.PURE_FUNCTIONS if n.startswith("pg_get_"))
_MAX_BASES = 8192
_BASES: dict[tuple[int, object], tuple[Relation, list[Col]]] = {}


class Run(Analyser):
    """Queries, FROM entries and WITH; the statement module adds statements (``lineage.py``)."""

    def relation_rel(self, schema: str | None, name: str) -> tuple[Rel, Relation | None]:
        """The columns a relation reference yields (views analysed through their definition)."""
        self.relations += 1
        if self.relations > MAX_RELATIONS:
            raise self.fail(f"statement references over {MAX_RELATIONS} relations")
        if schema is None and self.view_names:
            # Inside a view body: pg_get_viewdef wrote this name unqualified because it was
            # visible then; read it as it was printed, whatever the search path is now.
            # pg_depend records no dependency on pinned objects (the system catalogs), so a
            # name missing from the map is one of those: definitions are read only while
            # pg_catalog is searched first. Were it not there, it is not found: opaque.
            schema = self.view_names[-1].get(name, "pg_catalog")
        found = self.catalog.relation(schema, name)
        if found is NOT_LOADED:
            self.need[RelationName(schema, name)] = None
            return Rel([], True, NONE), None
        if found is NOT_FOUND or not isinstance(found, Relation):
            # Created later in the same message, or the session's own (a temp table or view,
            # DDL not committed): the catalog cannot see it, and it may hold copies of masked
            # columns (CREATE TEMP TABLE t AS SELECT * FROM customers): opaque, masked whole.
            return Rel([], True, OPAQUE), None
        if schema is None and getattr(self.catalog, "search_path_changed", False):
            # The session put other schemas ahead: the catalog connection's answer for an
            # unqualified name may not be the table the session reads.
            return Rel([], True, OPAQUE), None
        if found.schema == "pg_catalog" and found.name in STATISTICS_RELATIONS:
            why = f"{found.qualified} shows sample values of every column, masked ones too"
            self.unknown[why + self.where] = None
        self.resolved.add(found.oid)
        if found.kind in ("v", "m"):
            return self.view_rel(found), found
        return Rel(list(self.base_cols(found)), sure=[True] * len(found.columns)), found

    def base_cols(self, relation: Relation) -> list[Col]:
        # Shared across statements: a Relation never changes, and is_masked is the masker's.
        # The entry holds the relation, so its id cannot be reused while the entry exists.
        key = (id(relation), self.is_masked)
        found = _BASES.get(key)
        if found is not None and found[0] is relation:
            return found[1]
        cols = []
        for column in relation.columns:
            qualified = relation.column_name(column.name)
            # A column is as sensitive as any field its type holds (a ``customers``-typed
            # column holds ``ssn``): shown whole it is masked, any field of it computed with.
            sensitive = self.masked_name(column.name) or any(
                self.masked_name(f) for f in column.fields)
            masked = frozenset((qualified,)) if sensitive else frozenset()
            origin = Origin(relation.oid, column.attnum, column.type_oid, qualified)
            cols.append((column.name, Lin(masked, origin, False)))
        if len(_BASES) >= _MAX_BASES:
            _BASES.clear()
        _BASES[key] = (relation, cols)
        return cols

    def view_rel(self, view: Relation) -> Rel:
        cached = self._views.get(view.oid)
        if cached is not None:
            return cached
        if view.oid in self.view_stack:
            raise self.fail(f"view {view.qualified} is defined in terms of itself")
        if len(self.view_stack) >= MAX_VIEW_DEPTH:
            raise self.fail(f"views nested over {MAX_VIEW_DEPTH} levels deep")
        body = (
            parse_view(view.view_sql)
            if view.view_sql and len(view.view_sql) <= MAX_VIEW_SQL_CHARS
            else None
        )
        if body is None:
            if view.view_sql is None and self.catalog.search_path_safe() is False:
                raise self.fail(f"view {view.qualified} cannot be read safely while a schema "
                                "comes before pg_catalog in search_path")  # fmt: skip
            raise self.fail(f"the definition of view {view.qualified} cannot be read")
        saved = self.where
        self.view_stack.append(view.oid)
        self.view_names.append(dict(view.view_names))
        self.where = f" (in view {view.qualified})"
        try:
            inner = self.select(body, None, None)
        finally:
            self.where = saved
            self.view_stack.pop()
            self.view_names.pop()
        if not inner.open and len(inner.cols) != len(view.columns):
            raise self.fail(
                f"view {view.qualified} has {len(view.columns)} columns, "
                f"its definition {len(inner.cols)}"
            )
        cols: list[Col] = []
        for index, column in enumerate(view.columns):
            lin = inner.cols[index][1] if index < len(inner.cols) else inner.rest
            if self.masked_name(column.name) or any(self.masked_name(f) for f in column.fields):
                lin = Lin(lin.masked | {view.column_name(column.name)}, lin.origin, lin.opaque)
            cols.append((column.name, lin))
        rel = Rel(cols, sure=[True] * len(cols))
        self._views[view.oid] = rel
        return rel

    def select(self, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel:
        """The columns of a SELECT (or VALUES, or set operation) and what it does with them."""
        self.enter()
        try:
            ctes = self.with_clause(node.get("withClause"), outer, ctes)
            op = node.get("op", "SETOP_NONE")
            if op != "SETOP_NONE":
                rel = self._set_operation(node, op, outer, ctes)
            elif "valuesLists" in node:
                rel = self._values(node, Scope([], outer, ctes))
            else:
                return self._plain_select(node, outer, ctes)
            self._sort_limit(node, rel, Scope([Item(None, rel)], outer, ctes))
            return rel
        finally:
            self.depth -= 1

    def _set_operation(self, node: Node, op: str, outer: Scope | None, ctes: Ctes | None) -> Rel:
        if id(node) in self.top_nodes:  # each branch's targets are the statement's outputs
            self.top_nodes.update((id(node.get("larg")), id(node.get("rarg"))))
        left = self.select(node.get("larg") or {}, outer, ctes)
        right = self.select(node.get("rarg") or {}, outer, ctes)
        if left.open and not right.open:
            left, right = Rel(right.cols, False, right.rest, right.sure), left
        cols: list[Col] = []
        for index, (name, lin) in enumerate(left.cols):
            other = right.cols[index][1] if index < len(right.cols) else right.rest
            cols.append((name, derive([lin, other])))
        rel = Rel(cols, left.open and right.open, derive([left.rest, right.rest]), left.sure)
        if op != "SETOP_UNION" or not node.get("all"):
            use = {"SETOP_UNION": "UNION", "SETOP_INTERSECT": "INTERSECT"}.get(op, "EXCEPT")
            # Deduplicating or matching rows compares the values: a probe, as WHERE is.
            for _, lin in cols:
                self.violation(lin, use)
            self.violation(rel.rest, use)
        return rel

    def _values(self, node: Node, scope: Scope) -> Rel:
        top = id(node) in self.top_nodes
        columns: list[list[Lin]] = []
        for row in node.get("valuesLists") or []:
            _, items = unwrap(row)
            for index, item in enumerate(items.get("items") or []):
                if index == len(columns):
                    columns.append([])
                lin = self.expr(item, scope)
                if not top:
                    self.computed(lin)
                columns[index].append(lin)
        # A VALUES column is a new value, even from one row (the server reports no origin).
        cols = [(f"column{i + 1}", derive(lins)) for i, lins in enumerate(columns)]
        return Rel(cols, sure=[True] * len(cols))

    def _plain_select(self, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel:
        scope = Scope([], outer, ctes)
        for entry in node.get("fromClause") or []:
            scope.items.extend(self.from_item(entry, scope, ctes, outer).items)
        self.predicate(node.get("whereClause"), scope, "WHERE")
        rel = self.targets(node.get("targetList") or [], scope, top=id(node) in self.top_nodes)
        for entry in node.get("groupClause") or []:
            self._group_item(entry, rel, scope)
        self.predicate(node.get("havingClause"), scope, "HAVING")
        for entry in node.get("windowClause") or []:
            self.window(unwrap(entry)[1], scope)
        distinct = node.get("distinctClause")
        if distinct is not None:
            if distinct == [{}]:
                for _, lin in rel.cols:
                    self.violation(lin, "DISTINCT")
                self.violation(rel.rest, "DISTINCT")
            else:
                for entry in distinct:
                    self.violation(self._output_or_input(entry, rel, scope), "DISTINCT ON")
        self._sort_limit(node, rel, scope)
        return rel

    def _sort_limit(self, node: Node, rel: Rel, scope: Scope) -> None:
        for entry in node.get("sortClause") or []:
            _, sort = unwrap(entry)
            self.operator(sort.get("useOp"), [])
            self.violation(self._output_or_input(sort.get("node"), rel, scope), "ORDER BY")
        self.predicate(node.get("limitCount"), scope, "LIMIT")
        self.predicate(node.get("limitOffset"), scope, "OFFSET")

    def _output_column(self, wrapped: Any, rel: Rel) -> Lin | None:
        """ORDER BY 2 / ORDER BY name: the output column it denotes, if it is one."""
        position = int_const(wrapped)
        if position is not None:
            if 1 <= position <= len(rel.cols):
                return rel.cols[position - 1][1]
            return rel.rest if rel.open else NONE
        ntype, node = unwrap(wrapped)
        if ntype == "ColumnRef":
            names = strings(node.get("fields"))
            if len(names) == 1 and len(node.get("fields") or []) == 1:
                found = [lin for name, lin in rel.cols if name == names[0]]
                if found:
                    return found[0] if len(found) == 1 else derive(found)
        return None

    def _output_or_input(self, wrapped: Any, rel: Rel, scope: Scope) -> Lin:
        found = self._output_column(wrapped, rel)
        if found is not None:
            return found
        if rel.open and unwrap(wrapped)[0] == "ColumnRef":
            return derive([self.expr(wrapped, scope), rel.rest])  # maybe an unlisted output
        return self.expr(wrapped, scope)

    def _group_item(self, entry: Any, rel: Rel, scope: Scope) -> None:
        ntype, node = unwrap(entry)
        if ntype == "GroupingSet":
            for item in node.get("content") or []:
                self._group_item(item, rel, scope)
            return
        if int_const(entry) is not None:
            self.violation(self._output_column(entry, rel) or NONE, "GROUP BY")
            return
        # GROUP BY name means an input column of this level first, an output column failing
        # that, an expression over the input (or outer levels) failing both.
        names = strings(node.get("fields")) if ntype == "ColumnRef" else []
        if len(names) == 1 and len(node.get("fields") or []) == 1:
            here = Scope(scope.items, None, None)
            local = self._is_column(names[0], here)
            output = self._output_column(entry, rel)
            if not local and output is not None:
                self.violation(output, "GROUP BY")
                return
            if local and any(i.open for i in scope.items if i.cols_visible) and output:
                self.violation(derive([output, self.expr(entry, scope)]), "GROUP BY")
                return
        self.violation(self.expr(entry, scope), "GROUP BY")

    def targets(self, entries: list[Any], scope: Scope, *, top: bool = False) -> Rel:
        cols: list[Col] = []
        sure: list[bool] = []
        open_ = False
        rest: list[Lin] = []
        for entry in entries:
            _, target = unwrap(entry)
            value = target.get("val")
            vtype, vnode = unwrap(value)
            fields = (vnode.get("fields") or []) if vtype == "ColumnRef" else []
            expanded: Rel | None = None
            if fields and "A_Star" in fields[-1] and "name" not in target:
                expanded = self.star(fields, scope)
            elif vtype == "A_Indirection" and "name" not in target:
                expanded = self._composite_star(vnode, scope)
            if expanded is not None:
                if not open_:
                    cols.extend(expanded.cols)
                    sure.extend([True] * len(expanded.cols))
                if expanded.open:
                    open_ = True
                    rest.append(expanded.rest)
                continue
            lin = self.expr(value, scope)
            if not top:
                self.computed(lin)
            if open_:
                rest.append(lin)  # its position is unknown: it may be any unlisted column
                continue
            if "name" in target:
                cols.append((str(target["name"]), lin))
                sure.append(True)
            else:
                name, strength = figure_name(value)
                cols.append((name if strength else "?column?", lin))
                sure.append(vtype == "ColumnRef")
        return Rel(cols, open_, derive(rest), sure)

    def _composite_star(self, node: Node, scope: Scope) -> Rel | None:
        """``(c).*`` / ``(f(x)).*`` in a target list: one output per field of the row."""
        entries = node.get("indirection") or []
        if not entries or "A_Star" not in entries[-1]:
            return None
        if len(entries) == 1:
            item = self._row_item(node.get("arg"), scope)
            if item is not None:
                return Rel(list(item.cols), item.open, item.rest)
        # The fields of a computed row are not known here: their count, hence every later
        # position, is unknown.
        row = {"A_Indirection": {**node, "indirection": entries[:-1]}}
        return Rel([], True, self.expr(row, scope))

    def from_item(self, wrapped: Any, lateral: Scope, ctes: Ctes | None,
                  outer: Scope | None) -> Frame:  # fmt: skip
        """One FROM entry: ``lateral`` sees the entries to its left, ``outer`` does not."""
        self.tick()
        ntype, node = unwrap(wrapped)
        alias = node.get("alias") or {}
        if ntype == "RangeVar":
            rel, item = self.range_var(node, ctes)
        elif ntype == "RangeSubselect":
            parent = lateral if node.get("lateral") else outer
            _, sub = unwrap(node.get("subquery"))
            rel = self.select(sub, Scope([], parent, ctes) if parent else None, ctes)
            item = Item(alias.get("aliasname"), rel)
        elif ntype == "RangeFunction":
            rel = self.range_function(node, lateral)
            item = Item(alias.get("aliasname") or self._function_refname(node), rel)
        elif ntype == "JoinExpr":
            return self.join(node, lateral, ctes, outer)
        elif ntype == "RangeTableSample":
            frame = self.from_item(node.get("relation"), lateral, ctes, outer)
            for arg in [*(node.get("args") or []), node.get("repeatable")]:
                self.predicate(arg, lateral, "TABLESAMPLE")
            return frame
        elif ntype in ("RangeTableFunc", "JsonTable"):
            rel = self.table_function(ntype, node, lateral)
            item = Item(alias.get("aliasname"), rel)
        else:
            raise self.fail(f"FROM item {ntype or '?'} is not understood")
        rel = self.renamed(rel, strings(alias.get("colnames")))
        item.cols, item.open, item.rest = rel.cols, rel.open, rel.rest
        return Frame([item], rel)

    def renamed(self, rel: Rel, names: list[str]) -> Rel:
        if not names:
            return rel
        cols = [
            (names[i] if i < len(names) else name, lin) for i, (name, lin) in enumerate(rel.cols)
        ]
        extra = len(names) - len(cols)
        if extra > 0 and rel.open:  # names for columns we could not list: their values unknown
            cols.extend((name, rel.rest) for name in names[len(cols) :])
        return Rel(cols, rel.open and extra <= 0, rel.rest, [True] * len(cols))

    def range_var(self, node: Node, ctes: Ctes | None) -> tuple[Rel, Item]:
        name = str(node.get("relname", ""))
        schema = node.get("schemaname")
        alias = (node.get("alias") or {}).get("aliasname")
        if schema is None and ctes is not None:
            is_cte, cte = ctes.find(name)
            if is_cte:
                rel = cte if cte is not None else Rel([], True, NONE)  # being defined: round 0
                return rel, Item(alias or name, rel)
        rel, relation = self.relation_rel(schema, name)
        label = relation.qualified if relation else functions.qualified_name(
            [schema, name] if schema else [name])  # fmt: skip
        system = relation is not None and relation.kind in ("r", "p", "m", "f", "t", "S")
        if alias:
            return rel, Item(alias, rel, label=label, system=system)
        owner = relation.schema if relation else schema
        return rel, Item(name, rel, schema=owner, label=label, system=system)

    def join(self, node: Node, lateral: Scope, ctes: Ctes | None,
             outer: Scope | None) -> Frame:  # fmt: skip
        left = self.from_item(node.get("larg"), lateral, ctes, outer)
        right_scope = Scope(lateral.items + left.items, lateral.parent, lateral.ctes)
        right = self.from_item(node.get("rarg"), right_scope, ctes, outer)
        inner = Scope(left.items + right.items, lateral.parent, lateral.ctes)
        self.predicate(node.get("quals"), inner, "JOIN ... ON")
        using = strings(node.get("usingClause"))
        if node.get("isNatural"):
            right_names = {name for name, _ in right.rel.cols}
            using = [name for name, _ in left.rel.cols if name in right_names]
        jointype = node.get("jointype", "JOIN_INNER")
        merged: list[Col] = []
        lcols, rcols = list(left.rel.cols), list(right.rel.cols)
        for name in using:
            lfound = [i for i, (n, _) in enumerate(lcols) if n == name]
            rfound = [i for i, (n, _) in enumerate(rcols) if n == name]
            llin = lcols[lfound[0]][1] if lfound else derive([left.rel.rest, OPAQUE])
            rlin = rcols[rfound[0]][1] if rfound else derive([right.rel.rest, OPAQUE])
            self.violation(
                derive([llin, rlin]), "NATURAL JOIN" if node.get("isNatural") else "JOIN ... USING"
            )
            merged.append((name, self._merged(llin, rlin, jointype)))
            lcols = [c for i, c in enumerate(lcols) if i not in lfound[:1]]
            rcols = [c for i, c in enumerate(rcols) if i not in rfound[:1]]
        open_ = left.rel.open or right.rel.open
        rests = [left.rel.rest, right.rel.rest]
        if left.rel.open:
            # The right side's columns come after an unknown number of columns.
            rests.extend(lin for _, lin in rcols)
            rcols = []
        rel = Rel(merged + lcols + rcols, open_, derive(rests))
        alias = node.get("alias") or {}
        rel = self.renamed(rel, strings(alias.get("colnames")))
        refname = alias.get("aliasname")
        items = [i.hidden(entirely=refname is not None) for i in left.items + right.items]
        items.append(Item(refname, rel))
        using_alias = (node.get("join_using_alias") or {}).get("aliasname")
        if using_alias:
            named = Item(using_alias, Rel(merged))
            named.cols_visible = False
            items.append(named)
        return Frame(items, rel)

    @staticmethod
    def _merged(left: Lin, right: Lin, jointype: str) -> Lin:
        pick = right if jointype == "JOIN_RIGHT" else left
        other = left if pick is right else right
        same_type = (
            pick.origin is not None and other.origin is not None
            and pick.origin.type_oid == other.origin.type_oid
        )  # fmt: skip
        if jointype != "JOIN_FULL" and same_type:
            return Lin(pick.masked | other.masked, pick.origin, pick.opaque or other.opaque)
        return derive([left, right])

    @staticmethod
    def _function_refname(node: Node) -> str | None:
        functions_ = node.get("functions") or []
        if len(functions_) != 1 or node.get("is_rowsfrom"):
            return None
        _, pair = unwrap(functions_[0])
        items = pair.get("items") or []
        ftype, call = unwrap(items[0]) if items else ("", {})
        names = strings(call.get("funcname")) if ftype == "FuncCall" else []
        return names[-1] if names else None

    def range_function(self, node: Node, scope: Scope) -> Rel:
        """Functions in FROM: LATERAL whether written or not, so they see earlier entries."""
        cols: list[Col] = []
        open_ = False
        rests: list[Lin] = []
        calls = node.get("functions") or []
        alias = (node.get("alias") or {}).get("aliasname")
        for entry in calls:
            _, pair = unwrap(entry)
            items = pair.get("items") or []
            ftype, call = unwrap(items[0]) if items else ("", {})
            coldefs = (
                [unwrap(c)[1] for c in unwrap(items[1])[1].get("items") or []]
                if len(items) > 1 and items[1]
                else []
            )
            coldefs = coldefs or [unwrap(c)[1] for c in node.get("coldeflist") or []]
            lin = self.expr(items[0], scope) if items else OPAQUE
            self.computed(lin)  # it runs for every row, whatever the query shows of it
            if ftype != "FuncCall":
                names: tuple[str, ...] | None = None  # CAST(... AS composite) has columns
            else:
                names = self._function_columns(
                    call, len(calls) == 1 and not node.get("is_rowsfrom") and alias
                )
            if coldefs:
                names = tuple(str(c.get("colname", "")) for c in coldefs)
            if open_:
                rests.append(lin)
            elif names is None:
                open_ = True
                rests.append(lin)
            else:
                cols.extend((name, lin) for name in names)
        if node.get("ordinality") and not open_:
            cols.append(("ordinality", NONE))
        return Rel(cols, open_, derive(rests), [True] * len(cols))

    def _function_columns(self, call: Node, alias: Any) -> tuple[str, ...] | None:
        parts = strings(call.get("funcname"))
        name = parts[-1] if parts else "?"
        builtin = len(parts) == 1 or parts[0] == "pg_catalog" or (
            parts[0] == "information_schema" and name in functions.SQL_STANDARD_HELPERS)
        if not builtin or self.function_kind(parts) == "user":
            return None  # unknown shape
        args = call.get("args") or []
        if name == "unnest":
            if len(args) > 1:
                return tuple("unnest" for _ in args)  # the several-argument form takes arrays
            if args and self._is_array(args[0]):
                return (alias if isinstance(alias, str) else "unnest",)
            return None  # unnest(tsvector) returns three columns
        if name in _RECORDS:
            return _RECORDS[name]
        if name.startswith(_RECORD_PREFIXES) and name not in _SCALAR_GET:
            return None
        return (alias if isinstance(alias, str) else name,)

    @staticmethod
    def _is_array(wrapped: Any) -> bool:
        ntype, node = unwrap(wrapped)
        if ntype == "A_ArrayExpr":
            return True
        if ntype == "SubLink":
            return node.get("subLinkType") == "ARRAY_SUBLINK"
        if ntype == "TypeCast":
            return bool((node.get("typeName") or {}).get("arrayBounds"))
        return False

    def table_function(self, ntype: str, node: Node, scope: Scope) -> Rel:
        """XMLTABLE and JSON_TABLE: rows cut from a document, so the document sets the count."""
        if ntype == "RangeTableFunc":
            source = derive(
                [self.expr(node.get("docexpr"), scope), self.expr(node.get("rowexpr"), scope)]
            )
            columns = [unwrap(c)[1] for c in node.get("columns") or []]
            for column in columns:
                for key in ("colexpr", "coldefexpr"):
                    source = derive([source, self.expr(column.get(key), scope)])
            names = [str(c.get("colname", "")) for c in columns]
        else:
            _, context = unwrap(node.get("context_item"))
            source = self.expr(context.get("raw_expr"), scope)
            names = []
            pending = list(node.get("columns") or [])
            while pending:
                _, column = unwrap(pending.pop(0))
                if column.get("coltype") == "JTC_NESTED":
                    pending[:0] = column.get("columns") or []
                else:
                    names.append(str(column.get("name", "")))
            for passing in node.get("passing") or []:
                source = derive([source, self.expr(passing, scope)])
        self.violation(source, "a set-returning function")
        return Rel([(name, source) for name in names], sure=[True] * len(names))

    def with_clause(self, clause: Any, outer: Scope | None, ctes: Ctes | None) -> Ctes | None:
        if not isinstance(clause, dict):
            return ctes
        entries = [unwrap(e)[1] for e in clause.get("ctes") or []]
        env: dict[str, Rel | None] = {}
        scope = Ctes(env, ctes)
        if not clause.get("recursive"):
            for entry in entries:
                # A CTE sees the earlier ones only: its own name, here, is a table.
                env[str(entry.get("ctename", ""))] = self._cte(entry, outer, scope)
            return scope
        for entry in entries:
            names = strings(entry.get("aliascolnames"))
            env[str(entry.get("ctename", ""))] = Rel([(n, NONE) for n in names]) if names else None
        for _ in range(MAX_RECURSION_ROUNDS):
            before = {name: rel.key() if rel else None for name, rel in env.items()}
            for entry in entries:
                env[str(entry.get("ctename", ""))] = self._cte(entry, outer, scope)
            if all(before[n] == (r.key() if r else None) for n, r in env.items()):
                return scope
        raise self.fail("WITH RECURSIVE lineage did not settle")

    def _cte(self, entry: Node, outer: Scope | None, ctes: Ctes) -> Rel:
        ntype, body = unwrap(entry.get("ctequery"))
        if ntype == "SelectStmt":
            rel = self.select(body, outer, ctes)
        elif ntype in STATEMENTS:
            rel = self.dml(ntype, body, outer, ctes)
        else:
            raise self.fail(f"WITH holds a {ntype or '?'}")
        rel = self.renamed(rel, strings(entry.get("aliascolnames")))
        _, search = unwrap(entry.get("search_clause"))
        _, cycle = unwrap(entry.get("cycle_clause"))
        extra: list[Col] = []
        clauses = (
            (search, "SEARCH", ("search_seq_column",)),
            (cycle, "CYCLE", ("cycle_mark_column", "cycle_path_column")),
        )
        for clause, use, keys in clauses:
            if not clause:
                continue
            listed = set(strings(clause.get("search_col_list") or clause.get("cycle_col_list")))
            lin = derive([lin for name, lin in rel.cols if name in listed])
            self.violation(lin, use)
            extra.extend((str(clause.get(key, "")), lin) for key in keys if key in clause)
        if extra and not rel.open:
            rel = Rel(rel.cols + extra, sure=rel.sure + [True] * len(extra))
        return rel
