"""Where masked columns flow: which outputs derive from them, and which statements misuse them.

``[masking] columns`` globs name columns of tables and views. A query can show such a column
under any name (``card AS x``, a view, a CTE, ``SELECT c FROM customers c``, ``row_to_json(c)``),
probe it without showing it (``WHERE card LIKE '4111%'``, ``ORDER BY card``, ``INTERSECT``), or
copy it somewhere no glob names (``INSERT INTO t SELECT card ...``). HOSTILE H.46/H.47.

:func:`analyze` answers, per statement, from the target's catalog (``catalog.py``):

* ``outputs``: for each output column, in order, the masked base columns it derives from
  (``public.customers.card``), whether it is an exact pass-through of one base column, and
  whether its source cannot be seen (*opaque*: a relation the catalog does not describe, a
  function the gateway cannot see into). The relay masks by these positions, whatever the
  columns are called; a name matching a glob (``SHOW password_encryption``) masks nothing.
* ``violations``: each use of a masked column other than as an output: a filter, a sort, a
  grouping, deduplication, a row-count-changing function, a copy into an unmasked column.
* ``unknown``: why lineage cannot be determined where a masked column might be involved.

The relay denies a statement with violations or unknowns. When the catalog lacks a relation,
:func:`analyze` returns :class:`NeedRelations` instead: load those (``relations_query``), store
the answer and call again; view definitions can name more relations, so the relay loops, a
bounded number of times.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pglast.parser

from . import functions
from .catalog import Catalog, RelationName
from .lineage_model import (
    NONE,
    OPAQUE,
    Bound,
    Item,
    Node,
    Origin,
    Rel,
    Scope,
    strings,
    unwrap,
    words,
)
from .lineage_query import Run
from .lineage_write import Statement, copy_into, ddl, dml, temp_objects

__all__ = [
    "Analysis",
    "NeedRelations",
    "Origin",
    "OutputColumn",
    "StatementLineage",
    "analyze",
    "analyze_tree",
    "masked_column_uses",
]

MAX_SQL_CHARS = 16 << 20  # as classify.MAX_SQL_CHARS
MAX_CACHED_SQL_CHARS = 16 << 10
MEMO_SIZE = 1024  # analyses memoised per catalog (per session)
_DML = frozenset(("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"))
# Statements that neither return rows nor change what a relation name means.
_INERT = words("""
    LockStmt VacuumStmt TruncateStmt NotifyStmt ListenStmt UnlistenStmt CheckPointStmt
    ClosePortalStmt DeallocateStmt ConstraintsSetStmt CommentStmt SecLabelStmt GrantStmt
    GrantRoleStmt ClusterStmt ReindexStmt RefreshMatViewStmt AlterSystemStmt
    AlterDefaultPrivilegesStmt CreateRoleStmt AlterRoleStmt AlterRoleSetStmt DropRoleStmt
    AlterDatabaseSetStmt
""")
# Ending a transaction (or a savepoint) may undo DDL or SET LOCAL: names may mean other things.
_ENDS = frozenset(("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_ROLLBACK_TO",
                   "TRANS_STMT_PREPARE", "TRANS_STMT_COMMIT_PREPARED",
                   "TRANS_STMT_ROLLBACK_PREPARED"))  # fmt: skip
_RESOLUTION_SETTINGS = frozenset(("search_path", "role", "session_authorization"))
_FALSE_WORDS = frozenset(("false", "off", "no", "0"))


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """One output column: its name as best known, and where its values come from."""

    name: str
    masked: tuple[str, ...]  # masked base columns it derives from, e.g. "public.customers.card"
    origin: Origin | None  # the base column it passes through unchanged, if it does
    opaque: bool  # its source cannot be seen: treat as masked

    @property
    def exact(self) -> bool:
        return self.origin is not None and not self.opaque


@dataclass(frozen=True, slots=True)
class StatementLineage:
    """What one statement does with masked columns.

    ``outputs`` is None for a statement that returns no rows. With ``open_ended`` more columns
    than listed may come (a ``*`` over something whose columns are unknown): those are opaque.
    DECLARE and PREPARE return no rows but ``define`` a name (``cursor:c``, ``prepared:p``) whose
    later FETCH/EXECUTE (``recalls``) returns rows of lineage ``inner``. ``changes_catalog``:
    after it runs, cached catalog answers may be wrong (the relay invalidates its cache).
    """

    outputs: tuple[OutputColumn, ...] | None
    open_ended: bool = False
    violations: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    changes_catalog: bool = False
    defines: str | None = None
    inner: StatementLineage | None = None
    recalls: str | None = None
    #: Whether columns beyond ``outputs`` (open-ended, or a wider RowDescription) are masked:
    #: only not when they come from a relation a clean catalog does not describe.
    rest_masked: bool = True
    #: What it may create in the session's pg_temp: ("relation" | "type", name).
    temp_objects: tuple[tuple[str, str], ...] = ()
    #: It reads a masked column (shows one, or copies one into a masked column): the server's
    #: errors about it may quote such a value, whatever their class.
    reads_masked: bool = False
    #: The relations (OIDs) its names resolved to, views' bodies included: the server's
    #: RowDescription must name no other as a column's origin.
    relation_oids: frozenset[int] = frozenset()

    @property
    def allowed(self) -> bool:
        return not self.violations and not self.unknown

    def masks(self, position: int) -> bool:
        """Whether the relay must mask output column ``position`` of the rows returned: it
        derives from a masked column, its source is opaque, or it lies beyond the listed
        outputs (``open_ended``, or a RowDescription wider than the analysis)."""
        outputs = self.outputs or ()
        if position < len(outputs):
            return bool(outputs[position].masked) or outputs[position].opaque
        return self.rest_masked

    def masked_positions(self) -> tuple[int, ...]:
        """The listed output positions to mask (see :meth:`masks` for the others)."""
        return tuple(i for i, o in enumerate(self.outputs or ()) if o.masked or o.opaque)


@dataclass(frozen=True, slots=True)
class Analysis:
    """One :class:`StatementLineage` per statement libpg_query splits the text into."""

    statements: tuple[StatementLineage, ...]


@dataclass(frozen=True, slots=True)
class NeedRelations:
    """Load these into the catalog (one ``relations_query``) and analyse again."""

    names: tuple[RelationName, ...]


def _outputs(rel: Rel) -> tuple[OutputColumn, ...]:
    return tuple(
        OutputColumn(name, tuple(sorted(lin.masked)), lin.origin, lin.opaque)
        for name, lin in rel.cols
    )


def _result(run: Run, rel: Rel | None, **extra: Any) -> StatementLineage:
    outputs = _outputs(rel) if rel is not None else None
    shown = any(o.masked or o.opaque for o in outputs or ()) or (
        rel is not None and rel.open and (bool(rel.rest.masked) or rel.rest.opaque))
    return StatementLineage(
        outputs,
        reads_masked=run.copied_masked or shown,
        relation_oids=frozenset(run.resolved),
        open_ended=rel is not None and rel.open,
        rest_masked=not (rel is not None and rel.open and rel.rest == NONE),
        violations=tuple(run.violations),
        unknown=tuple(run.unknown),
        changes_catalog=run.changes_catalog or bool(extra.pop("changes", False)),
        **extra,
    )


def _copy(run: Run, node: Node) -> Rel | None:
    if node.get("is_from"):
        return None  # rows come from the client
    qtype, query = unwrap(node.get("query"))
    run.top_nodes.add(id(query))
    if qtype == "SelectStmt":
        rel = run.select(query, None, None)
    elif qtype in _DML:
        rel = dml(run, qtype, query, None, None) or Rel([])
    else:
        target = node.get("relation") or {}
        rel, _ = run.relation_rel(target.get("schemaname"), str(target.get("relname", "")))
        listed = strings(node.get("attlist"))
        if listed:
            scope = Scope([Item(None, rel)], None, None)
            rel = Rel([(n, run.column([{"String": {"sval": n}}], scope)) for n in listed])
    if "filename" in node or node.get("is_program"):
        dest = "a program" if node.get("is_program") else "a server file"
        for _, lin in rel.cols:
            run.copied(lin, dest, False)
        run.copied(rel.rest, dest, False)
        return None
    return rel


def _explain_analyze(options: Any) -> bool:
    for option in options or ():
        _, elem = unwrap(option)
        if str(elem.get("defname", "")).lower() != "analyze":
            continue
        atype, arg = unwrap(elem.get("arg"))
        if atype == "Boolean":
            value: object = arg.get("boolval", False)
        elif atype == "Integer":
            value = arg.get("ival", 0)
        else:  # a bare ANALYZE, or a value we cannot read: counts as true (fails closed)
            value = arg.get("sval", "true") if atype == "String" else "true"
        if str(value).lower() not in _FALSE_WORDS:
            return True
    return False


def _statement(run: Run, ntype: str, node: Node, *, shown: bool = True) -> StatementLineage:
    """``shown``: its outputs reach the client (not so under EXPLAIN ANALYZE, which computes
    them all the same: every computed value is then judged where it is formed)."""
    if shown:
        run.top_nodes.add(id(node))
    if ntype == "SelectStmt":
        rel = run.select(node, None, None)
        into = node.get("intoClause")
        if isinstance(into, dict):
            copy_into(run, rel, into)
            return _result(run, None, changes=True)
        return _result(run, rel)
    if ntype in _DML:
        return _result(run, dml(run, ntype, node, None, None))
    if ntype == "CreateTableAsStmt":
        qtype, query = unwrap(node.get("query"))
        if qtype != "SelectStmt":
            run.unknown["CREATE TABLE AS EXECUTE copies what a prepared statement returns"] = None
        else:
            copy_into(run, run.select(query, None, None), node.get("into") or {},
                       str(node.get("objtype", "")))  # fmt: skip
        return _result(run, None, changes=True)
    if ntype == "CopyStmt":
        return _result(run, _copy(run, node))
    if ntype == "ExplainStmt":
        plan = Rel([("QUERY PLAN", NONE)])
        runs = _explain_analyze(node.get("options"))
        # Only planned, no row is read; but the planner's row estimates come from the column
        # statistics (most common values, histogram bounds: real values), so a filter on a
        # masked column is as much a probe planned as run: the inner statement is judged.
        inner = _statement(run, *unwrap(node.get("query")), shown=False)
        return replace(inner, outputs=_outputs(plan), open_ended=False, defines=None,
                       inner=None, recalls=None, rest_masked=True,
                       changes_catalog=inner.changes_catalog and runs)  # fmt: skip
    if ntype in ("DeclareCursorStmt", "PrepareStmt"):
        inner = _statement(run, *unwrap(node.get("query")))
        name = node.get("portalname") if ntype == "DeclareCursorStmt" else node.get("name")
        kind = "cursor" if ntype == "DeclareCursorStmt" else "prepared"
        return replace(inner, outputs=None, open_ended=False, defines=f"{kind}:{name}",
                       inner=inner, recalls=None)  # fmt: skip
    if ntype == "ExecuteStmt":
        scope = Scope([], None, None)
        for param in node.get("params") or []:
            run.predicate(param, scope, "a prepared statement's parameter")
        # What runs is the prepared statement: it may call functions that change the catalog.
        return _result(run, None, recalls=f"prepared:{node.get('name', '')}", changes=True)
    if ntype == "FetchStmt":
        recalls = None if node.get("ismove") else f"cursor:{node.get('portalname', '')}"
        return _result(run, None, recalls=recalls)
    if ntype == "VariableShowStmt":
        name = str(node.get("name", ""))
        names = ["name", "setting", "description"] if name == "all" else [name]
        return _result(run, Rel([(n, NONE) for n in names]))
    if ntype == "CallStmt":
        _, call = unwrap({"FuncCall": node.get("funccall") or {}})
        scope = Scope([], None, None)
        lins = [run.expr(arg, scope) for arg in call.get("args") or []]
        run.call(
            strings(call.get("funcname")),
            lins,
            "procedure " + functions.qualified_name(strings(call.get("funcname"))),
        )
        return _result(run, Rel([], True, OPAQUE))  # OUT parameters come back as a row
    if ntype == "DoStmt":
        run.unknown["DO runs code the gateway cannot see into"] = None
        return _result(run, None, changes=True)
    if ntype == "VariableSetStmt":
        name = str(node.get("name", "")).lower()
        resets_all = node.get("kind") == "VAR_RESET_ALL"
        return _result(run, None, changes=resets_all or name in _RESOLUTION_SETTINGS)
    if ntype in ("TransactionStmt", "DiscardStmt") or ntype in _INERT:
        return _result(run, None, changes=ntype == "DiscardStmt")
    ddl(run, ntype, node)
    return _result(run, None, changes=True)  # any other statement may change the catalog


def _ends_transaction(ntype: str, node: Node) -> bool:
    return ntype == "TransactionStmt" and node.get("kind") in _ENDS


def analyze_tree(tree: Mapping[str, Any], catalog: Catalog,
                 is_masked: Callable[[str], bool]) -> Analysis | NeedRelations:  # fmt: skip
    """:func:`analyze` of a tree ``pglast.parser.parse_sql_json`` produced (and json decoded),
    so the relay can reuse the classifier's parse. The tree is not modified, and must not be
    afterwards: results are memoised per tree object in the catalog's ``memo`` (if it has one,
    as :class:`~.catalog.CatalogCache` does, emptied whenever its answers change)."""
    memo = getattr(catalog, "memo", None)
    if not isinstance(memo, dict):
        return _analyze_tree(tree, catalog, is_masked)
    key = (id(tree), is_masked)
    found = memo.get(key)
    if isinstance(found, tuple) and found[0] is tree:
        return found[1]  # type: ignore[no-any-return]
    result = _analyze_tree(tree, catalog, is_masked)
    if len(memo) >= MEMO_SIZE:
        memo.clear()
    memo[key] = (tree, result)  # holding the tree keeps its id from being reused
    return result


def _analyze_tree(tree: Mapping[str, Any], catalog: Catalog,
                  is_masked: Callable[[str], bool]) -> Analysis | NeedRelations:  # fmt: skip
    out: list[StatementLineage] = []
    need: dict[RelationName, None] = {}
    need_settings = False
    tainted: str | None = None
    for raw in tree.get("stmts") or []:
        ntype, node = unwrap(raw.get("stmt") if isinstance(raw, dict) else None)
        run = Statement(catalog, is_masked)
        try:
            lineage = _statement(run, ntype, node)
        except Bound as error:
            lineage = StatementLineage(None, unknown=(str(error),), changes_catalog=True)
        except RecursionError:
            lineage = StatementLineage(None, unknown=("statement nested too deeply",),
                                       changes_catalog=True)  # fmt: skip
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            # An unforeseen tree shape: fail closed, never escape.
            lineage = StatementLineage(None, unknown=("statement could not be analysed",),
                                       changes_catalog=True)  # fmt: skip
        created = temp_objects(ntype, node, getattr(catalog, "temp_relations", ()))
        if created:
            lineage = replace(lineage, temp_objects=created)
        need.update(run.need)
        need_settings = need_settings or run.need_settings
        if tainted is not None and run.relations:
            why = f"it follows {tainted} in the same message; send it on its own"
            lineage = replace(lineage, unknown=(*lineage.unknown, why))
        if tainted is None and (lineage.changes_catalog or _ends_transaction(ntype, node)):
            tainted = "a statement that may change what names mean"
        out.append(lineage)
    if need or need_settings:
        return NeedRelations(tuple(need))
    return Analysis(tuple(out))


def _parse_uncached(sql: str) -> Mapping[str, Any] | None:
    if len(sql) > MAX_SQL_CHARS or "\x00" in sql:
        return None
    try:
        tree = json.loads(pglast.parser.parse_sql_json(sql))
    except (pglast.parser.ParseError, ValueError, RecursionError):
        return None
    return tree if isinstance(tree, dict) else None


_parse_cached = functools.lru_cache(maxsize=4096)(_parse_uncached)


def analyze(sql: str, catalog: Catalog,
            is_masked: Callable[[str], bool]) -> Analysis | NeedRelations:  # fmt: skip
    """Lineage of every statement in ``sql``; see the module docstring. Never raises.

    ``is_masked(column_name)`` says whether a table or view column is sensitive (the relay
    passes ``Masker.column_is_masked``). Text that does not parse gives one statement whose
    ``unknown`` says so (the classifier has made it UNKNOWN already).
    """
    tree = _parse_cached(sql) if len(sql) <= MAX_CACHED_SQL_CHARS else _parse_uncached(sql)
    if tree is None:
        return Analysis((StatementLineage(None, unknown=("statement could not be parsed",)),))
    return analyze_tree(tree, catalog, is_masked)


# -- the name-only check the relay used before lineage (kept until it calls analyze) ---------


def _column_name(node: dict[str, Any]) -> str | None:
    fields = node.get("fields") or []
    last = fields[-1] if fields else None
    if isinstance(last, dict) and "String" in last:
        return str(last["String"].get("sval", ""))
    return None


def _plain_outputs(stmt: dict[str, Any]) -> set[int]:
    outputs: list[Any] = []
    if "SelectStmt" in stmt:
        select = stmt["SelectStmt"]
        if select.get("op", "SETOP_NONE") == "SETOP_NONE" and "intoClause" not in select:
            outputs = select.get("targetList") or []
    else:
        for kind in _DML:
            if kind in stmt:
                body = stmt[kind]
                clause = body.get("returningClause")
                outputs = (clause or {}).get("exprs") or body.get("returningList") or []
    plain: set[int] = set()
    for entry in outputs:
        target = entry.get("ResTarget", {}) if isinstance(entry, dict) else {}
        value = target.get("val", {})
        ref = value.get("ColumnRef") if isinstance(value, dict) else None
        if ref is not None and target.get("name") in (None, _column_name(ref)):
            plain.add(id(ref))
    return plain


def masked_column_uses(sql: str, is_masked: Callable[[str], bool]) -> list[str]:
    """Deprecated name-only check: names of masked columns ``sql`` uses other than as plain,
    un-renamed output. Blind to views, whole-row references and renames; :func:`analyze`
    replaces it."""
    return list(_uses(sql, is_masked))


@functools.lru_cache(maxsize=4096)
def _uses(sql: str, is_masked: Callable[[str], bool]) -> tuple[str, ...]:
    tree = _parse_uncached(sql)
    if tree is None:
        return ()
    found: list[str] = []
    for raw in tree.get("stmts", []):
        stmt = raw.get("stmt", {})
        plain = _plain_outputs(stmt)
        stack: list[Any] = [stmt]
        seen = 0
        while stack:
            node = stack.pop()
            seen += 1
            if seen > 200_000:
                return ("<statement too large to check>",)
            if isinstance(node, dict):
                ref = node.get("ColumnRef")
                if isinstance(ref, dict):
                    name = _column_name(ref)
                    if name and id(ref) not in plain and is_masked(name) and name not in found:
                        found.append(name)
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return tuple(found)
