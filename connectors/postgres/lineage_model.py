"""The values column lineage computes with, and helpers to read libpg_query's JSON tree.

A value's lineage (:class:`Lin`) is the set of masked base columns it derives from, the one base
column it passes through unchanged if it does (its :class:`Origin`, what the server reports in
a RowDescription), and whether its source cannot be seen (*opaque*). Queries and FROM entries
yield :class:`Rel` column lists; name resolution sees them as namespace entries (:class:`Item`)
grouped per query level (:class:`Scope`), with the CTE names in scope (:class:`Ctes`).
"""

from __future__ import annotations

import functools
import json
from typing import Any, NamedTuple

from pglast import parser as pg_parser

Node = dict[str, Any]

SYSTEM_COLUMNS = frozenset(("ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"))
_SQL_VALUE_NAMES = {
    "SVFOP_CURRENT_DATE": "current_date", "SVFOP_CURRENT_TIME": "current_time",
    "SVFOP_CURRENT_TIME_N": "current_time", "SVFOP_CURRENT_TIMESTAMP": "current_timestamp",
    "SVFOP_CURRENT_TIMESTAMP_N": "current_timestamp", "SVFOP_LOCALTIME": "localtime",
    "SVFOP_LOCALTIME_N": "localtime", "SVFOP_LOCALTIMESTAMP": "localtimestamp",
    "SVFOP_LOCALTIMESTAMP_N": "localtimestamp", "SVFOP_CURRENT_ROLE": "current_role",
    "SVFOP_CURRENT_USER": "current_user", "SVFOP_USER": "user",
    "SVFOP_SESSION_USER": "session_user", "SVFOP_CURRENT_CATALOG": "current_catalog",
    "SVFOP_CURRENT_SCHEMA": "current_schema",
}  # fmt: skip
_NODE_NAMES = {
    "A_ArrayExpr": "array", "RowExpr": "row", "CoalesceExpr": "coalesce",
    "GroupingFunc": "grouping", "XmlSerialize": "xmlserialize", "JsonParseExpr": "json",
    "JsonScalarExpr": "json_scalar", "JsonSerializeExpr": "json_serialize",
    "JsonObjectConstructor": "json_object", "JsonArrayConstructor": "json_array",
    "JsonArrayQueryConstructor": "json_array", "JsonObjectAgg": "json_objectagg",
    "JsonArrayAgg": "json_arrayagg", "MergeSupportFunc": "merge_action",
}  # fmt: skip
# Leaves: nothing below them reads a column.
CONSTANTS = frozenset(("A_Const", "ParamRef", "SQLValueFunction", "SetToDefault", "CurrentOfExpr",
                       "MergeSupportFunc", "A_Star", "String", "Integer", "Float", "Boolean",
                       "BitString", "TypeName", "Alias"))  # fmt: skip
STATEMENTS = frozenset(("SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"))


class Origin(NamedTuple):
    """The one base column a value passes through unchanged."""

    relation: int  # pg_class OID
    attnum: int
    type_oid: int
    column: str  # schema.relation.column


class Lin(NamedTuple):
    """A value's lineage: masked base columns it derives from, its exact origin, opacity."""

    masked: frozenset[str]
    origin: Origin | None
    opaque: bool


NONE = Lin(frozenset(), None, False)
OPAQUE = Lin(frozenset(), None, True)


def derive(lins: list[Lin]) -> Lin:
    """The lineage of a value computed from ``lins``: never exact."""
    masked: frozenset[str] = frozenset()
    opaque = False
    for lin in lins:
        if lin.masked:
            masked = masked | lin.masked
        opaque = opaque or lin.opaque
    return Lin(masked, None, opaque) if masked or opaque else NONE


Col = tuple[str, Lin]


class Rel:
    """A query's (or FROM item's) columns. ``open``: more columns of unknown names may follow,
    with lineage ``rest``. ``sure``: per column, whether its name is certainly the server's."""

    __slots__ = ("cols", "open", "rest", "sure")

    def __init__(self, cols: list[Col], open_: bool = False, rest: Lin = NONE,
                 sure: list[bool] | None = None) -> None:  # fmt: skip
        self.cols = cols
        self.open = open_
        self.rest = rest
        self.sure = sure if sure is not None else [False] * len(cols)

    def key(self) -> tuple[object, ...]:
        return (tuple(self.cols), self.open, self.rest)


class Item:
    """One namespace entry: how column references see a FROM item."""

    __slots__ = ("cols", "cols_visible", "label", "open", "refname", "rel_visible", "rest",
                 "schema", "system")  # fmt: skip

    def __init__(self, refname: str | None, rel: Rel, *, schema: str | None = None,
                 label: str = "", system: bool = False) -> None:  # fmt: skip
        self.refname = refname
        self.schema = schema  # set for an un-aliased relation: ``schema.rel.col`` works
        self.cols = rel.cols
        self.open = rel.open
        self.rest = rel.rest
        self.label = label or refname or "?"
        self.system = system  # a plain relation: has ctid, xmin, ...
        self.rel_visible = refname is not None
        self.cols_visible = True

    def hidden(self, *, entirely: bool = False) -> Item:
        copy = Item(self.refname, Rel(self.cols, self.open, self.rest), schema=self.schema,
                    label=self.label, system=self.system)  # fmt: skip
        copy.rel_visible = self.rel_visible and not entirely
        copy.cols_visible = False
        return copy

    def whole(self) -> Lin:
        return derive([lin for _, lin in self.cols] + [self.rest])


class Ctes:
    """CTE names in scope: innermost WITH first. A value of None is a CTE being defined."""

    __slots__ = ("names", "parent")

    def __init__(self, names: dict[str, Rel | None], parent: Ctes | None) -> None:
        self.names = names
        self.parent = parent

    def find(self, name: str) -> tuple[bool, Rel | None]:
        env: Ctes | None = self
        while env is not None:
            if name in env.names:
                return True, env.names[name]
            env = env.parent
        return False, None


class Scope:
    """Namespace entries of one query level, the enclosing levels, and the CTEs in scope."""

    __slots__ = ("ctes", "items", "parent")

    def __init__(self, items: list[Item], parent: Scope | None, ctes: Ctes | None) -> None:
        self.items = items
        self.parent = parent
        self.ctes = ctes


class Frame(NamedTuple):
    """What one FROM entry adds: namespace entries, and the columns it contributes in order."""

    items: list[Item]
    rel: Rel


class Bound(Exception):
    """A limit was reached, or the statement cannot be analysed: lineage is unknown."""


def words(text: str) -> frozenset[str]:
    """``"a b c"`` -> ``{"a", "b", "c"}``: compact tables of names."""
    return frozenset(text.split())


def unwrap(wrapped: Any) -> tuple[str, Node]:
    if isinstance(wrapped, dict) and len(wrapped) == 1:
        ((ntype, node),) = wrapped.items()
        if isinstance(node, dict) and ntype[:1].isupper():
            return ntype, node
    return "", wrapped if isinstance(wrapped, dict) else {}


def strings(items: Any) -> list[str]:
    out = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("String"), dict):
            out.append(str(item["String"].get("sval", "")))
    return out


def int_const(wrapped: Any) -> int | None:
    ntype, node = unwrap(wrapped)
    if ntype == "A_Const" and "ival" in node:
        return int(node["ival"].get("ival", 0))  # JSON omits a zero
    return None


@functools.lru_cache(maxsize=512)
def parse_view(sql: str) -> Node | None:
    """The one SELECT of a view definition; None when it is anything else."""
    try:
        tree = json.loads(pg_parser.parse_sql_json(sql))
    except (pg_parser.ParseError, ValueError, RecursionError):
        return None
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        return None
    ntype, node = unwrap(stmts[0].get("stmt"))
    return node if ntype == "SelectStmt" else None


def figure_name(wrapped: Any) -> tuple[str, int]:
    """The column name PostgreSQL gives an unnamed output (FigureColname), with its strength."""
    ntype, node = unwrap(wrapped)
    if ntype == "ColumnRef":
        names = strings(node.get("fields"))
        if names:
            return names[-1], 2
    elif ntype == "A_Indirection":
        names = strings(node.get("indirection"))
        return (names[-1], 2) if names else figure_name(node.get("arg"))
    elif ntype == "FuncCall":
        names = strings(node.get("funcname"))
        if names:
            return names[-1], 2
    elif ntype == "A_Expr" and node.get("kind") == "AEXPR_NULLIF":
        return "nullif", 2
    elif ntype == "TypeCast":
        name, strength = figure_name(node.get("arg"))
        if strength <= 1:
            type_names = strings((node.get("typeName") or {}).get("names"))
            if type_names:
                return type_names[-1], 1
        return name, strength
    elif ntype == "CollateClause":
        return figure_name(node.get("arg"))
    elif ntype == "SubLink":
        kind = node.get("subLinkType")
        if kind == "EXISTS_SUBLINK":
            return "exists", 2
        if kind == "ARRAY_SUBLINK":
            return "array", 2
        if kind == "EXPR_SUBLINK":
            _, sub = unwrap(node.get("subselect"))
            targets = sub.get("targetList") or []
            if targets:
                _, target = unwrap(targets[0])
                if "name" in target:
                    return str(target["name"]), 2
                return figure_name(target.get("val"))[0], 2
    elif ntype == "CaseExpr":
        return "case", 1
    elif ntype == "MinMaxExpr":
        return ("greatest" if node.get("op") == "IS_GREATEST" else "least"), 2
    elif ntype == "SQLValueFunction":
        return _SQL_VALUE_NAMES.get(str(node.get("op")), "?column?"), 2
    elif ntype == "XmlExpr":
        op = str(node.get("op", ""))
        if op != "IS_DOCUMENT":
            return op.removeprefix("IS_").lower(), 2
    elif ntype == "JsonFuncExpr":
        return str(node.get("op", "")).removesuffix("_OP").lower(), 2
    elif ntype in _NODE_NAMES:
        return _NODE_NAMES[ntype], 2
    return "?column?", 0


def flat(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.extend(value)
        elif value is not None:
            out.append(value)
    return out
