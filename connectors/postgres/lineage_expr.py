"""Name resolution and expressions for column lineage, and what the analysis finds.

:class:`Analyser` resolves column references as PostgreSQL does (``transformColumnRef``): an
unqualified name is a column of the innermost query level that has one, and only failing that a
whole-row reference to an entry of that name; ``t.c`` is column ``c`` of entry ``t``, or
``c(t)`` when ``t`` has no such column. An expression's lineage is the union of what it reads.
Predicates (``WHERE``, window and aggregate clauses) record a violation for each masked column
they read; calls of functions the gateway cannot see into are opaque and may take no masked
argument. Query structure lives in the subclass (``lineage_query.Run``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import functions
from .catalog import Catalog, RelationName
from .lineage_model import (
    CONSTANTS,
    NONE,
    OPAQUE,
    STATEMENTS,
    SYSTEM_COLUMNS,
    Bound,
    Col,
    Ctes,
    Item,
    Lin,
    Node,
    Rel,
    Scope,
    derive,
    flat,
    strings,
    unwrap,
    words,
)

MAX_NODES = 100_000  # expression and FROM nodes visited per statement, view bodies included
MAX_RELATIONS = 256  # relation references per statement, view bodies included
MAX_VIEW_DEPTH = 16
MAX_DEPTH = 120  # nesting of expressions and queries (libpg_query itself allows more)
MAX_RECURSION_ROUNDS = 8  # fixpoint rounds of a WITH RECURSIVE
MAX_VIEW_SQL_CHARS = 1 << 20

# Builtin set-returning functions: their row count depends on their arguments.
_SRF = words("""
    generate_series generate_subscripts unnest regexp_matches regexp_split_to_table string_to_table
    json_array_elements json_array_elements_text jsonb_array_elements jsonb_array_elements_text
    json_object_keys jsonb_object_keys json_each json_each_text jsonb_each jsonb_each_text
    json_populate_recordset jsonb_populate_recordset json_to_recordset jsonb_to_recordset
    jsonb_path_query jsonb_path_query_tz txid_snapshot_xip pg_snapshot_xip pg_listening_channels
    pg_tablespace_databases pg_partition_ancestors pg_partition_tree pg_options_to_table
    aclexplode ts_debug ts_parse ts_token_type pg_get_keywords pg_lock_status ts_stat
""")

# pg_catalog's type names (base, domain, enum, range, multirange, pseudo; PostgreSQL 15-18).
# A cast to any other type may run code of the agent's (a domain's CHECK sees the value).
BUILTIN_TYPES = words("""
    aclitem any anyarray anycompatible anycompatiblearray anycompatiblemultirange
    anycompatiblenonarray anycompatiblerange anyelement anyenum anymultirange anynonarray
    anyrange bit bool box bpchar bytea char cid cidr circle cstring date datemultirange
    daterange event_trigger fdw_handler float4 float8 gtsvector index_am_handler inet int2
    int2vector int4 int4multirange int4range int8 int8multirange int8range internal interval
    json jsonb jsonpath language_handler line lseg macaddr macaddr8 money name numeric
    nummultirange numrange oid oidvector path pg_brin_bloom_summary pg_brin_minmax_multi_summary
    pg_ddl_command pg_dependencies pg_lsn pg_mcv_list pg_ndistinct pg_node_tree pg_snapshot
    point polygon record refcursor regclass regcollation regconfig regdictionary regnamespace
    regoper regoperator regproc regprocedure regrole regtype table_am_handler text tid time
    timestamp timestamptz timetz trigger tsm_handler tsmultirange tsquery tsrange tstzmultirange
    tstzrange tsvector txid_snapshot unknown uuid varbit varchar void xid xid8 xml
""")


class Analyser:
    """The analysis of one top-level statement: what it found, what it needs, its budgets."""

    def __init__(self, catalog: Catalog, is_masked: Callable[[str], bool]) -> None:
        self.catalog = catalog
        self.is_masked = is_masked
        self.violations: dict[str, None] = {}
        self.unknown: dict[str, None] = {}
        self.need: dict[RelationName, None] = {}
        self.need_settings = False
        self.changes_catalog = False
        self.relations = 0  # catalog relations referenced
        self.resolved: set[int] = set()  # OIDs of the relations names resolved to
        self.nodes = 0
        self.depth = 0
        self.where = ""  # " (in view x)" while inside a view body
        self.view_stack: list[int] = []
        #: The statement's own output-producing queries (ids of their nodes): their computed
        #: outputs are judged by the guard, which names the output; every other target list
        #: is judged where a value is computed (``computed``).
        self.top_nodes: set[int] = set()
        self.copied_masked = False  # an exact copy of a masked column into a masked one
        self.view_names: list[dict[str, str]] = []  # per view body: unqualified name -> schema
        self._views: dict[int, Rel] = {}
        self._masked_names: dict[str, bool] = {}

    def masked_name(self, name: str) -> bool:
        found = self._masked_names.get(name)
        if found is None:
            found = self._masked_names[name] = bool(self.is_masked(name))
        return found

    def violation(self, lin: Lin, use: str) -> None:
        for column in sorted(lin.masked):
            self.violations[f"masked column {column} is used in {use}{self.where}"] = None

    def computed(self, lin: Lin) -> None:
        """A value computed from a masked column is formed here (a target list at any level, a
        VALUES row, a function in FROM): the server evaluates it whether or not any output
        shows it, and its errors (``1/0`` under a CASE on the value, a cast that quotes it)
        answer questions about the value. Only an exact pass-through may travel on. A view's
        own definition is not the agent's to choose, and is judged where its columns are
        used."""
        if lin.masked and lin.origin is None and not self.view_stack:
            for column in sorted(lin.masked):
                self.violations[f"masked column {column} is computed with{self.where}; masked "
                                "columns may be shown as they are, not computed with"] = None

    def copied(self, lin: Lin, dest: str, dest_masked: bool) -> None:
        """``lin`` is written into ``dest``: allowed only for an exact copy into a masked column
        (reading it back is masked too); a constant is not a read."""
        if not lin.masked:
            return
        if dest_masked and lin.origin is not None:
            self.copied_masked = True
            return
        verb = "computed into" if dest_masked else "copied into"
        for column in sorted(lin.masked):
            self.violations[f"masked column {column} is {verb} {dest}{self.where}"] = None

    def fail(self, reason: str) -> Bound:
        return Bound(reason + self.where)

    def tick(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(f"statement too large to analyse (over {MAX_NODES} nodes)")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"statement nested over {MAX_DEPTH} levels deep")

    def predicate(self, wrapped: Any, scope: Scope, use: str) -> None:
        if wrapped is not None:
            self.violation(self.expr(wrapped, scope), use)

    def window(self, spec: Node, scope: Scope) -> None:
        for entry in spec.get("partitionClause") or []:
            self.violation(self.expr(entry, scope), "a window's PARTITION BY")
        for entry in spec.get("orderClause") or []:
            _, sort = unwrap(entry)
            self.violation(self.expr(sort.get("node"), scope), "a window's ORDER BY")
        for key in ("startOffset", "endOffset"):
            self.predicate(spec.get(key), scope, "a window frame")

    def star(self, fields: list[Any], scope: Scope) -> Rel:
        """What ``*`` or ``t.*`` in a target list expands to."""
        names = strings(fields)
        if not names:
            items = [item for item in scope.items if item.cols_visible]
        else:
            items = self.items_named(names, scope)
            if not items:
                return Rel([], True, self.unresolved(names[-1] if names else "*"))
        cols: list[Col] = []
        for item in items:
            cols.extend(item.cols)
            if item.open:
                return Rel(cols, True, derive([i.whole() for i in items]))
        return Rel(cols)

    def items_named(self, names: list[str], scope: Scope) -> list[Item]:
        """Entries a qualified reference (``t``, ``s.t``, ``db.s.t``) can mean, innermost level
        first; several at one level when the name is ambiguous."""
        refname = names[-1]
        schema = names[-2] if len(names) >= 2 else None
        level: Scope | None = scope
        while level is not None:
            found = [
                item for item in level.items
                if item.rel_visible and item.refname == refname
                and (schema is None or item.schema == schema)
            ]  # fmt: skip
            if found:
                return found
            level = level.parent
        return []

    def unresolved(self, name: str) -> Lin:
        """A name the model cannot place (the server may, or may refuse it): masked if the
        name is, and opaque."""
        if self.masked_name(name):
            return Lin(frozenset((f"{name} (unresolved)",)), None, True)
        return OPAQUE

    def open_candidate(self, item: Item, name: str) -> Lin:
        """What ``name`` is in an entry whose columns are unknown."""
        if self.masked_name(name):
            return derive([item.rest, Lin(frozenset((f"{item.label}.{name}",)), None, True)])
        return derive([item.rest, OPAQUE]) if item.rest is not NONE else NONE

    def column(self, fields: list[Any], scope: Scope) -> Lin:
        names = strings(fields)
        star = bool(fields) and "A_Star" in fields[-1]
        if star or len(names) != len(fields):
            items = self.items_named(names, scope) if names else [
                i for i in scope.items if i.cols_visible]  # fmt: skip
            return derive([i.whole() for i in items]) if items else self.unresolved("*")
        if len(names) == 1:
            return self._unqualified(names[0], scope)
        items = self.items_named(names[:-1], scope)
        if not items:
            return self.unresolved(names[-1])
        found: list[Lin] = []
        for item in items:
            found.extend(lin for name, lin in item.cols if name == names[-1])
            if item.open:
                found.append(self.open_candidate(item, names[-1]))
        if found:
            return found[0] if len(found) == 1 else derive(found)
        if names[-1] in SYSTEM_COLUMNS and any(item.system for item in items):
            return NONE
        # t.f with no column f is f(t): a function applied to the whole row.
        return self.call([names[-1]], [derive([i.whole() for i in items])], names[-1])

    def _unqualified(self, name: str, scope: Scope) -> Lin:
        # As colNameToVar then refnameNamespaceItem: a column of any level, innermost first,
        # before a whole-row reference. An entry of unknown columns may hold the name at any
        # level: it is a candidate as well, and the search goes on.
        candidates: list[Lin] = []
        level: Scope | None = scope
        while level is not None:
            found: list[Lin] = []
            for item in level.items:
                if not item.cols_visible:
                    continue
                found.extend(lin for col, lin in item.cols if col == name)
                if item.open:
                    candidates.append(self.open_candidate(item, name))
                elif name in SYSTEM_COLUMNS and item.system:
                    found.append(NONE)
            if found:
                return (
                    found[0] if not candidates and len(found) == 1 else derive(found + candidates)
                )
            level = level.parent
        level = scope
        while level is not None:
            wholes = [i.whole() for i in level.items if i.rel_visible and i.refname == name]
            if wholes:
                return derive(wholes + candidates)
            level = level.parent
        return derive(candidates) if candidates else self.unresolved(name)

    def _is_column(self, name: str, scope: Scope) -> bool:
        level: Scope | None = scope
        while level is not None:
            for item in level.items:
                if item.cols_visible and (item.open or any(n == name for n, _ in item.cols)):
                    return True
            level = level.parent
        return False

    def _row_item(self, wrapped: Any, scope: Scope) -> Item | None:
        """The entry a whole-row reference (``c`` naming no column, or ``c.*``) denotes."""
        ntype, ref = unwrap(wrapped)
        fields = (ref.get("fields") or []) if ntype == "ColumnRef" else []
        names = strings(fields)
        if not names:
            return None
        starred = len(fields) == len(names) + 1 and "A_Star" in fields[-1]
        if not starred and (len(fields) != 1 or self._is_column(names[0], scope)):
            return None  # a column, not a row
        items = self.items_named(names, scope)
        return items[0] if len(items) == 1 else None

    def expr(self, wrapped: Any, scope: Scope) -> Lin:
        if wrapped is None:
            return NONE
        self.tick()
        ntype, node = unwrap(wrapped)
        if ntype == "ColumnRef":
            return self.column(node.get("fields") or [], scope)
        if ntype in CONSTANTS:
            return NONE
        self.enter()
        try:
            if ntype == "FuncCall":
                return self.function(node, scope)
            if ntype == "SubLink":
                return self.sublink(node, scope)
            if ntype == "A_Indirection":
                return self.indirection(node, scope)
            if ntype == "TypeCast":
                return self.cast(node, scope)
            if ntype == "A_Expr":
                args = [node.get("lexpr"), node.get("rexpr")]
                lins = [self.expr(a, scope) for a in flat(args)]
                return self.operator(node.get("name"), lins)
            if ntype in ("JsonObjectAgg", "JsonArrayAgg"):
                _, constructor = unwrap(node.get("constructor"))
                self.aggregate_clauses(constructor, scope, within_group=False)
                rest = {k: v for k, v in node.items() if k != "constructor"}
                return self.generic(rest, scope)
            if ntype in STATEMENTS:
                rel = self.statement(ntype, node, scope)
                return derive([lin for _, lin in rel.cols] + [rel.rest])
            return self.generic(node, scope)
        finally:
            self.depth -= 1

    def statement(self, ntype: str, node: Node, scope: Scope) -> Rel:
        if ntype == "SelectStmt":
            return self.select(node, scope, scope.ctes)
        return self.dml(ntype, node, scope, scope.ctes)

    def generic(self, node: Node, scope: Scope) -> Lin:
        """Any other expression: it derives from every expression below it."""
        lins: list[Lin] = []
        stack: list[Any] = list(node.values())
        while stack:
            value = stack.pop()
            if isinstance(value, list):
                stack.extend(value)
            elif isinstance(value, dict):
                ntype, _ = unwrap(value)
                if ntype:
                    lins.append(self.expr(value, scope))
                else:
                    self.tick()
                    stack.extend(value.values())  # a bare struct (JsonValueExpr, ...)
        return derive(lins)

    def builtin(self, kind: str, name: str) -> bool:
        """Whether an unqualified name is the builtin (asked for when not known yet)."""
        trusted = self.catalog.resolves_to_builtin(kind, name)
        if trusted is None:
            self.need_settings = True  # this pass assumes so; the retry knows
        return trusted is not False

    def operator(self, name: Any, lins: list[Lin]) -> Lin:
        parts = strings(name)
        if parts and not functions.is_builtin_operator(parts):
            return self.call(parts, lins, "operator " + functions.qualified_name(parts))
        if parts and parts[0] != "pg_catalog" and not self.builtin("operator", parts[-1]):
            return self.call(parts, lins, "operator " + parts[-1])
        return derive(lins)

    def cast(self, node: Node, scope: Scope) -> Lin:
        lin = self.generic(node, scope)
        names = strings((node.get("typeName") or {}).get("names"))
        if len(names) == 2 and names[0] == "pg_catalog":
            return lin
        if (len(names) == 2 and names[0] == "information_schema"
                and names[1] in functions.SQL_STANDARD_DOMAINS):
            return lin  # the SQL-standard views cast catalog values to these
        if len(names) == 1 and names[0] in BUILTIN_TYPES and self.builtin("type", names[0]):
            return lin
        label = "a cast to type " + functions.qualified_name(names)
        return self.call(names, [lin], label)

    def function_kind(self, parts: list[str]) -> str:
        """user | dynamic | effect | pure: what the call can do besides computing a value."""
        found = functions.call_effect(parts, [])
        if found is not None:
            effect = found[1]
            if effect is None:
                return "user"
            return "dynamic" if "dynamic_sql" in effect.flags else "effect"
        if len(parts) == 1 and not self.builtin("function", parts[0]):
            return "user"  # another schema may hold a better match of this name
        return "pure"

    def call(self, parts: list[str], lins: list[Lin], label: str) -> Lin:
        """A call of something the gateway cannot see into: opaque, and no masked arguments."""
        lin = derive(lins)
        self.violation(lin, f"a call to {label}, which the gateway cannot see into")
        self.changes_catalog = True  # it may run DDL or SET search_path
        return Lin(lin.masked, None, True)

    def function(self, node: Node, scope: Scope) -> Lin:
        parts = strings(node.get("funcname"))
        name = parts[-1] if parts else "?"
        lins = [self.expr(arg, scope) for arg in node.get("args") or []]
        within = bool(node.get("agg_within_group"))
        lins.extend(self.aggregate_clauses(node, scope, within_group=within))
        kind = self.function_kind(parts)
        label = functions.qualified_name(parts)
        if kind == "user":
            return self.call(parts, lins, label)
        lin = derive(lins)
        if kind == "dynamic":
            self.unknown[f"{label} runs SQL text the gateway cannot see{self.where}"] = None
            self.changes_catalog = True
            return Lin(lin.masked, None, True)
        if kind == "effect":
            self.violation(lin, f"a call to {label}")
            if name == "set_config":
                self.changes_catalog = True
        elif name in _SRF:
            self.violation(lin, "a set-returning function")  # the row count shows the value
        return lin

    def aggregate_clauses(self, node: Node, scope: Scope, *, within_group: bool) -> list[Lin]:
        """FILTER and ORDER BY of an aggregate, OVER of a window call. WITHIN GROUP's ORDER BY
        is the aggregated value itself: returned, to derive from."""
        self.predicate(node.get("agg_filter"), scope, "an aggregate's FILTER")
        ordered: list[Lin] = []
        for entry in node.get("agg_order") or []:
            _, sort = unwrap(entry)
            lin = self.expr(sort.get("node"), scope)
            if within_group:
                ordered.append(lin)
            else:
                self.violation(lin, "an aggregate's ORDER BY")
        over = node.get("over")
        if isinstance(over, dict):
            self.window(over, scope)
        return ordered

    def sublink(self, node: Node, scope: Scope) -> Lin:
        kind = node.get("subLinkType")
        _, sub = unwrap(node.get("subselect"))
        rel = self.select(sub, scope, scope.ctes)
        lins = [lin for _, lin in rel.cols] + [rel.rest]
        if kind == "EXISTS_SUBLINK":
            return NONE  # whether rows exist: filters inside the subquery were judged there
        if kind in ("EXPR_SUBLINK", "ARRAY_SUBLINK"):
            return derive(lins[:1] if rel.cols else lins)
        test = self.expr(node.get("testexpr"), scope)
        return self.operator(node.get("operName"), [test, *lins])

    def indirection(self, node: Node, scope: Scope) -> Lin:
        """``(c).card`` selects one column of a whole-row value, exactly as ``c.card`` does."""
        arg = node.get("arg")
        entries = node.get("indirection") or []
        lin: Lin | None = None
        first = entries[0] if entries else None
        if isinstance(first, dict) and "String" in first:
            item = self._row_item(arg, scope)
            field = str(first["String"].get("sval", ""))
            picked = [c for n, c in item.cols if n == field] if item and not item.open else []
            if len(picked) == 1:
                lin = picked[0]
                entries = entries[1:]
        if lin is None:
            lin = self.expr(arg, scope)
        if not entries:
            return lin
        lins = [lin]
        for entry in entries:
            etype, index = unwrap(entry)
            if etype == "A_Indices":
                lins.extend(self.expr(index.get(k), scope) for k in ("lidx", "uidx"))
        return derive(lins)

    def select(self, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel:
        """The columns of a query (``lineage_query.Run``)."""
        raise NotImplementedError

    def dml(self, ntype: str, node: Node, outer: Scope | None, ctes: Ctes | None) -> Rel:
        """The RETURNING columns of a data-modifying statement (``lineage.py``)."""
        raise self.fail(f"{ntype} is not analysed here")
